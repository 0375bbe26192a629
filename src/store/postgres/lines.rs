//! Ordering per key: the lines of `ordering: key` webhooks.
//!
//! A line is one webhook's deliveries of events with one `key`, ordered by
//! acceptance (`order_seq`). Only its head is `pending` or `in_flight`; the
//! rest are `waiting`, which the claim never reads, so a line sends one
//! delivery at a time and a later event can never overtake an earlier one —
//! not on another engine, not after a rescue (the rescued head is still the
//! head). The head leaves the line when it succeeds or goes dead, and the
//! waiting delivery with the lowest `order_seq` becomes the head.
//!
//! Who promotes: every writer that can leave a line without a head — ingest
//! (new rows join as `waiting`), a completion that finishes a head, a replay
//! (the replayed delivery rejoins as `waiting`) — locks the lines it touched
//! after its own changes, in the same transaction (ingest and completion
//! inside the statement that makes the changes, through [`lock_query`];
//! replay through [`settle`]), then calls [`promote`], which looks with a
//! fresh snapshot: no head and someone waiting → the first waiting one
//! becomes the head. Two writers of one line are serialized by the
//! transaction-scoped advisory lock, and whichever promotes second sees the
//! first's committed rows, so no line is left waiting with no head and no
//! line ever gets two heads (the unique index `deliveries_line_head` would
//! refuse it).

use sqlx::PgConnection;

use super::WAKE_CHANNEL;
use crate::store::lines::Line;

/// A query that takes the advisory locks of the lines `rows` names (a
/// subquery with columns `w`, the webhook id, and `k`, the key), in one
/// global order — by the lock's own two halves — so two transactions
/// locking overlapping lines never wait in a cycle. Writers put it into the
/// statement that makes their own changes, and [`promote`] then runs as the
/// next statement, with a snapshot taken after the locks were granted.
pub(super) fn lock_query(rows: &str) -> String {
    format!(
        "SELECT count(pg_advisory_xact_lock(h, k)) AS n FROM (
             SELECT DISTINCT hashtext(w) AS h, hashtext(k) AS k FROM ({rows}) AS r
             WHERE w IS NOT NULL AND k IS NOT NULL ORDER BY 1, 2
         ) AS locks"
    )
}

/// Locks `lines` and promotes their next deliveries ([`promote`]): for a
/// writer whose own statement did not take the locks.
pub(super) async fn settle(conn: &mut PgConnection, lines: &[Line]) -> Result<u64, sqlx::Error> {
    if lines.is_empty() {
        return Ok(0);
    }
    let (hooks, keys) = columns(lines);
    sqlx::query(&lock_query(
        "SELECT * FROM unnest($1::text[], $2::text[]) AS l(w, k)",
    ))
    .bind(&hooks)
    .bind(&keys)
    .execute(&mut *conn)
    .await?;
    promote(conn, lines).await
}

fn columns(lines: &[Line]) -> (Vec<&str>, Vec<&str>) {
    lines
        .iter()
        .map(|l| (l.webhook_id.as_str(), l.key.as_str()))
        .unzip()
}

/// Gives each of `lines` that has no head its next waiting delivery (due
/// now). Returns how many deliveries became due; if any, workers are
/// notified at commit. The caller holds the lines' locks ([`lock_query`])
/// from an earlier statement of this transaction, made after its own
/// changes: the locks last until the transaction ends.
pub(super) async fn promote(conn: &mut PgConnection, lines: &[Line]) -> Result<u64, sqlx::Error> {
    if lines.is_empty() {
        return Ok(0);
    }
    let (hooks, keys) = columns(lines);
    let promoted: i64 = sqlx::query_scalar(
        "WITH line AS (
             SELECT DISTINCT w, k FROM unnest($1::text[], $2::text[]) AS l(w, k)
         ), next AS (
             SELECT n.id FROM line l
             CROSS JOIN LATERAL (
                 SELECT d.id FROM deliveries d
                 WHERE d.webhook_id = l.w AND d.order_key = l.k AND d.state = 'waiting'
                 ORDER BY d.order_seq LIMIT 1
             ) AS n
             WHERE NOT EXISTS (
                 SELECT 1 FROM deliveries h
                 WHERE h.webhook_id = l.w AND h.order_key = l.k AND h.state IN ('pending', 'in_flight')
             )
         ), promoted AS (
             UPDATE deliveries d SET state = 'pending', next_attempt_at = now(), updated_at = now()
             WHERE d.id = ANY(ARRAY(SELECT id FROM next)) AND d.state = 'waiting'
             RETURNING 1
         ), wake AS (
             SELECT pg_notify($3, '') FROM (SELECT 1 FROM promoted LIMIT 1) AS any_promoted
         )
         SELECT (SELECT count(*) FROM promoted) + 0 * (SELECT count(*) FROM wake)",
    )
    .bind(&hooks)
    .bind(&keys)
    .bind(WAKE_CHANNEL)
    .fetch_one(&mut *conn)
    .await?;
    Ok(u64::try_from(promoted).unwrap_or(0))
}
