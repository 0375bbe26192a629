//! The delivery queue's state transitions: claim, complete, release,
//! rescue, replay (the state machine is documented on [`DeliveryState`]).
//!
//! Due times and leases are read and written against the database's clock
//! (`now()` in the statements), never an engine's: engines whose clocks
//! disagree must still agree on when a lease has expired, or one of them
//! would rescue another's live lease and send the delivery twice. Engines
//! pass relative delays (`retry_in`, lease lengths) and the database anchors
//! them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::lines::{lock_query, promote, settle};
use super::{Pg, WAKE_CHANNEL};
use crate::store::contract::Queue;
use crate::store::health::tally;
use crate::store::queue::lines_from;
use crate::store::{Claimed, Completion, StoreError, WebhookSlot, clamp_i32, millis, storable};

pub(super) async fn notify(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(WAKE_CHANNEL)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: Uuid,
    event_id: String,
    webhook_id: String,
    attempts: i32,
    replay_base: i32,
    topic: String,
    body: Vec<u8>,
    trace_id: Option<String>,
    traceparent: Option<String>,
    in_line: bool,
    key: Option<String>,
}

impl Queue for Pg {
    /// Claims up to `limit` due deliveries of the given webhooks, at most
    /// `room` per webhook, and leases them to `worker`. Deliveries of
    /// webhooks not listed (disabled, or gone from the policy) stay pending.
    ///
    /// Fair by construction: each webhook's oldest due rows are read on
    /// their own (an index range per webhook, at most its room), then taken
    /// round-robin — every webhook's first due row, then every second, … —
    /// so however many due retries one webhook has piled up, the others'
    /// due deliveries are in the same batch.
    async fn claim(
        &self,
        slots: &[WebhookSlot],
        limit: u32,
        worker: &str,
    ) -> Result<Vec<Claimed>, StoreError> {
        if slots.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = slots.iter().map(|s| s.webhook_id.as_str()).collect();
        let rooms: Vec<i32> = slots
            .iter()
            .map(|s| clamp_i32(u64::from(s.room.min(limit))))
            .collect();
        let leases: Vec<i64> = slots.iter().map(|s| millis(s.lease)).collect();
        // Candidates are read without locks; only the chosen ones are locked
        // (SKIP LOCKED: another engine's pick is skipped, not waited for) and
        // re-checked on their latest version, so a row another engine has
        // just completed or released is not taken early. Two engines picking
        // the same candidates at once: the loser gets fewer rows this claim
        // and claims again at once (a short batch means "more may be due").
        // Joins go through `= ANY(ARRAY(…))` and LATERAL lookups so the
        // planner uses the indexes instead of hashing whole tables.
        let sql = "WITH slot AS (
                 SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[]) AS s(webhook_id, room, lease_ms)
             ), candidate AS (
                 SELECT c.id, c.next_attempt_at, row_number() OVER (PARTITION BY s.webhook_id ORDER BY c.next_attempt_at) AS rn
                 FROM slot s
                 CROSS JOIN LATERAL (
                     SELECT d.id, d.next_attempt_at FROM deliveries d
                     WHERE d.state = 'pending' AND d.webhook_id = s.webhook_id AND d.next_attempt_at <= now()
                     ORDER BY d.next_attempt_at LIMIT s.room
                 ) AS c
             ), locked AS (
                 SELECT d.id FROM deliveries d
                 WHERE d.id = ANY(ARRAY(SELECT id FROM candidate ORDER BY rn, next_attempt_at LIMIT $4))
                   AND d.state = 'pending' AND d.next_attempt_at <= now()
                 FOR UPDATE SKIP LOCKED
             ), claimed AS (
                 UPDATE deliveries d
                 SET state = 'in_flight', attempts = d.attempts + 1,
                     lease_expires_at = now() + (SELECT s.lease_ms FROM slot s WHERE s.webhook_id = d.webhook_id)
                                                * interval '1 millisecond',
                     leased_by = $5, updated_at = now()
                 WHERE d.id = ANY(ARRAY(SELECT id FROM locked))
                 RETURNING d.id, d.event_id, d.webhook_id, d.attempts, d.replay_base, d.order_key IS NOT NULL AS in_line
             )
             SELECT c.id, c.event_id, c.webhook_id, c.attempts, c.replay_base, e.topic, e.body, e.trace_id, e.traceparent, c.in_line, e.key
             FROM claimed c
             CROSS JOIN LATERAL (SELECT topic, body, trace_id, traceparent, key FROM events WHERE events.id = c.event_id) AS e";
        let mut conn = self.hot.take(&self.pool).await?;
        let rows: Vec<ClaimRow> = sqlx::query_as(sql)
            .bind(&ids)
            .bind(&rooms)
            .bind(&leases)
            .bind(i64::from(limit))
            .bind(worker)
            .fetch_all(&mut *conn)
            .await?;
        conn.done();
        Ok(rows
            .into_iter()
            .map(|r| Claimed {
                id: r.id,
                event_id: r.event_id,
                webhook_id: r.webhook_id,
                attempt: r.attempts,
                replay_base: r.replay_base,
                topic: r.topic,
                body: r.body,
                trace_id: r.trace_id,
                traceparent: r.traceparent,
                in_line: r.in_line,
                key: r.key,
            })
            .collect())
    }

    /// Records attempts and moves their deliveries on, in one transaction.
    ///
    /// A completion moves its delivery only if the delivery is still at that
    /// attempt: `in_flight` under it, or `pending` because the rescuer gave
    /// the lease up meanwhile (nobody has claimed it since, so the real
    /// outcome replaces the rescuer's guess). Otherwise — rescued and claimed
    /// again — only the attempt row is left: the delivery has a new holder.
    ///
    /// Text from outside (error details, response bodies) is made storable
    /// here ([`storable`]), so no receiver's bytes can fail the batch.
    async fn complete(&self, done: &[Completion], now: DateTime<Utc>) -> Result<u64, StoreError> {
        if done.is_empty() {
            return Ok(0);
        }
        let tallies = tally(done);
        // Rows are locked in id order, so two batches never wait on each other in a cycle.
        let mut done: Vec<&Completion> = done.iter().collect();
        done.sort_by_key(|c| (c.id, c.attempt));
        let ids: Vec<Uuid> = done.iter().map(|c| c.id).collect();
        let attempts: Vec<i32> = done.iter().map(|c| c.attempt).collect();
        let states: Vec<&str> = done.iter().map(|c| c.state.as_str()).collect();
        let retry_ms: Vec<Option<i64>> = done.iter().map(|c| c.retry_in.map(millis)).collect();
        let started: Vec<DateTime<Utc>> = done.iter().map(|c| c.record.started_at).collect();
        let durations: Vec<i32> = done
            .iter()
            .map(|c| clamp_i32(u64::try_from(c.record.duration.as_millis()).unwrap_or(u64::MAX)))
            .collect();
        let statuses: Vec<Option<i32>> = done
            .iter()
            .map(|c| c.record.status.map(i32::from))
            .collect();
        let kinds: Vec<Option<&str>> = done.iter().map(|c| c.record.error_kind).collect();
        let errors: Vec<Option<std::borrow::Cow<'_, str>>> = done
            .iter()
            .map(|c| c.record.error.as_deref().map(storable))
            .collect();
        let last_errors: Vec<Option<String>> = done.iter().map(|c| c.last_error()).collect();
        let tally_ids: Vec<&str> = tallies.iter().map(|t| t.webhook_id.as_str()).collect();
        let tally_ok: Vec<i64> = tallies.iter().map(|t| t.succeeded).collect();
        let tally_failed: Vec<i64> = tallies.iter().map(|t| t.failed).collect();
        let tally_kinds: Vec<Option<&str>> = tallies.iter().map(|t| t.error_kind).collect();
        let bodies: Vec<Option<std::borrow::Cow<'_, str>>> = done
            .iter()
            .map(|c| c.record.response_body.as_deref().map(storable))
            .collect();

        // One statement records the attempts, moves the deliveries and
        // their webhooks' health. Outside any line that is the whole write
        // (one round trip, its own commit); a batch with deliveries in a
        // line runs it in a transaction that then promotes the lines whose
        // head left them, under the locks the statement took.
        let sql = format!(
            "WITH recorded AS (
                 INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error_kind, error, response_body)
                 SELECT * FROM unnest($1::uuid[], $2::int[], $9::timestamptz[], $10::int[], $5::int[], $6::text[], $7::text[], $11::text[])
                          AS a(id, attempt, started, ms, status, kind, error, body)
                 -- Recorded already (a batch retried after an unknown commit): skipped.
                 -- No check that the delivery exists (the foreign key is gone:
                 -- see the migration narrow_writes). Checked row by row, it
                 -- kept PostgreSQL from reusing this statement's plan (0.55 ms
                 -- of planning per call); checked for the whole batch, some
                 -- runs' p99 rose to ~100 ms (docs/src/performance).
                 ON CONFLICT DO NOTHING
                 RETURNING 1
             ), moved AS (
             UPDATE deliveries d
             SET state = u.state,
                 next_attempt_at = CASE WHEN u.retry_ms IS NULL THEN d.next_attempt_at
                                        ELSE now() + u.retry_ms * interval '1 millisecond' END,
                 lease_expires_at = NULL, leased_by = NULL,
                 last_status = u.status,
                 last_error = u.last_error,
                 updated_at = $8,
                 completed_at = CASE WHEN u.state IN ('succeeded', 'dead') THEN $8 END
             FROM unnest($1::uuid[], $2::int[], $3::text[], $4::bigint[], $5::int[], $6::text[], $12::text[])
                  AS u(id, attempt, state, retry_ms, status, kind, last_error)
             WHERE d.id = ANY($1) AND d.id = u.id AND d.attempts = u.attempt
               AND (d.state = 'in_flight' OR (d.state = 'pending' AND d.leased_by IS NULL))
             RETURNING d.webhook_id, d.order_key, d.state
             ), tallies AS (
                 SELECT * FROM unnest($13::text[], $14::bigint[], $15::bigint[], $16::text[])
                          AS t(w, ok, failed, kind)
             ), health AS (
                 INSERT INTO webhook_health AS h (webhook_id, last_success_at, last_failure_at, last_error_kind,
                                                  failing_since, failures_since_success)
                 SELECT w, CASE WHEN ok > 0 THEN $8::timestamptz END,
                        CASE WHEN failed > 0 THEN $8::timestamptz END, kind,
                        CASE WHEN ok > 0 THEN NULL ELSE $8::timestamptz END,
                        CASE WHEN ok > 0 THEN 0 ELSE failed END
                 FROM tallies ORDER BY w
                 ON CONFLICT (webhook_id) DO UPDATE SET
                     last_success_at = COALESCE(EXCLUDED.last_success_at, h.last_success_at),
                     last_failure_at = COALESCE(EXCLUDED.last_failure_at, h.last_failure_at),
                     last_error_kind = COALESCE(EXCLUDED.last_error_kind, h.last_error_kind),
                     -- A success in the batch wins: a webhook that just
                     -- answered 2xx is never disabled for failing.
                     failing_since = CASE WHEN EXCLUDED.last_success_at IS NOT NULL THEN NULL
                                          ELSE COALESCE(h.failing_since, EXCLUDED.failing_since) END,
                     failures_since_success = CASE WHEN EXCLUDED.last_success_at IS NOT NULL THEN 0
                                          ELSE h.failures_since_success + EXCLUDED.failures_since_success END
                 RETURNING 1
             ), minutes AS (
                 INSERT INTO webhook_minutes AS m (webhook_id, minute, succeeded, failed)
                 SELECT w, date_trunc('minute', $8::timestamptz), ok, failed FROM tallies ORDER BY w
                 ON CONFLICT (webhook_id, minute) DO UPDATE SET
                     succeeded = m.succeeded + EXCLUDED.succeeded, failed = m.failed + EXCLUDED.failed
                 RETURNING 1
             ), left_line AS (
                 SELECT webhook_id AS w, order_key AS k FROM moved WHERE state IN ('succeeded', 'dead')
             ), locks AS ({LOCK})
             -- The lines whose head just left them, locked, for `lines::promote`.
             SELECT DISTINCT w, k FROM left_line WHERE k IS NOT NULL AND (SELECT n FROM locks) >= 0",
            LOCK = lock_query("SELECT * FROM left_line")
        );
        let statement = sqlx::query_as::<_, (String, Option<String>)>(&sql)
            .bind(&ids)
            .bind(&attempts)
            .bind(&states)
            .bind(&retry_ms)
            .bind(&statuses)
            .bind(&kinds)
            .bind(&errors)
            .bind(now)
            .bind(&started)
            .bind(&durations)
            .bind(&bodies)
            .bind(&last_errors)
            .bind(&tally_ids)
            .bind(&tally_ok)
            .bind(&tally_failed)
            .bind(&tally_kinds);
        let mut conn = self.hot.take(&self.pool).await?;
        let promoted = if done.iter().any(|c| c.in_line) {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            let finished = statement.fetch_all(&mut *tx).await?;
            let promoted = promote(&mut tx, &lines_from(finished)).await?;
            tx.commit().await?;
            promoted
        } else {
            let finished = statement.fetch_all(&mut *conn).await?;
            // Not expected (a delivery's line never changes), but should a
            // line show up here its locks are gone: settle it afresh.
            let lines = lines_from(finished);
            if lines.is_empty() {
                0
            } else {
                let mut tx = self.pool.begin().await?;
                let promoted = settle(&mut tx, &lines).await?;
                tx.commit().await?;
                promoted
            }
        };
        conn.done();
        Ok(promoted)
    }

    /// Gives a claimed delivery back untouched: nothing was sent (its webhook
    /// was disabled or removed between claim and send), so no attempt is
    /// recorded and none of its budget is used. Due again after `retry_in`.
    async fn release(
        &self,
        id: Uuid,
        attempt: i32,
        retry_in: std::time::Duration,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE deliveries
             SET state = 'pending', attempts = attempts - 1, lease_expires_at = NULL, leased_by = NULL,
                 next_attempt_at = now() + $3 * interval '1 millisecond', updated_at = now()
             WHERE id = $1 AND state = 'in_flight' AND attempts = $2",
        )
        .bind(id)
        .bind(attempt)
        .bind(millis(retry_in))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Returns deliveries whose lease expired (their engine died or hung) to
    /// `pending`, due now, recording the lost attempt as `lease_expired`
    /// (`recorded_by = rescuer`): it may or may not have reached the
    /// receiver. Expiry is judged by the database's clock.
    async fn rescue_expired(&self) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rescued: Vec<(Uuid, i32, DateTime<Utc>)> = sqlx::query_as(
            "UPDATE deliveries
             SET state = 'pending', next_attempt_at = now(), lease_expires_at = NULL, leased_by = NULL,
                 last_error = 'lease_expired', updated_at = now()
             WHERE id = ANY(ARRAY(SELECT id FROM deliveries
                                  WHERE state = 'in_flight' AND lease_expires_at < now()
                                  ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED))
             RETURNING id, attempts, updated_at",
        )
        .fetch_all(&mut *tx)
        .await?;
        if rescued.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = rescued.iter().map(|r| r.0).collect();
        let attempts: Vec<i32> = rescued.iter().map(|r| r.1).collect();
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, error_kind, error, recorded_by)
             SELECT id, attempt, now(), 0, 'lease_expired', 'the engine holding this attempt stopped before recording it', 'rescuer'
             FROM unnest($1::uuid[], $2::int[]) AS t(id, attempt)
             ON CONFLICT DO NOTHING",
        )
        .bind(&ids)
        .bind(&attempts)
        .execute(&mut *tx)
        .await?;
        notify(&mut tx).await?;
        tx.commit().await?;
        Ok(rescued.len() as u64)
    }

    /// How long until the earliest pending delivery of these webhooks falls
    /// due (zero if one is due already), by the database's clock. One index
    /// probe per webhook, however long the queue.
    async fn next_due(
        &self,
        webhook_ids: &[&str],
    ) -> Result<Option<std::time::Duration>, StoreError> {
        let ms: Option<f64> = sqlx::query_scalar(
            "SELECT (EXTRACT(EPOCH FROM (min(n.at) - now())) * 1000)::float8
             FROM unnest($1::text[]) AS w(id)
             CROSS JOIN LATERAL (
                 SELECT next_attempt_at AS at FROM deliveries
                 WHERE state = 'pending' AND webhook_id = w.id
                 ORDER BY next_attempt_at LIMIT 1
             ) AS n",
        )
        .bind(webhook_ids)
        .fetch_one(&self.pool)
        .await?;
        Ok(ms.map(|ms| std::time::Duration::from_millis(ms.max(0.0) as u64)))
    }
}
