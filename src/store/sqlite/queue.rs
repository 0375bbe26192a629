//! The queue's transitions on SQLite (the state machine is documented on
//! [`crate::store::DeliveryState`]). Each runs in one transaction on the
//! single write connection, so a claim never races another claim, a
//! completion or the rescuer.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::events::{insert_audit, insert_rows, promote};
use super::{Lite, after, ms, now_ms};
use crate::store::contract::Queue;
use crate::store::health::tally;
use crate::store::queue::lines_from;
use crate::store::{
    AuditRow, Claimed, Completion, NewEvent, StoreError, WebhookSlot, clamp_i32, storable,
};

/// Writes an audit record and its event inside the caller's transaction.
pub(super) async fn audited(
    conn: &mut SqliteConnection,
    row: &AuditRow,
    event: &NewEvent,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    insert_rows(conn, std::slice::from_ref(event), now).await?;
    insert_audit(conn, row, event).await
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: Uuid,
    event_id: String,
    webhook_id: String,
    attempts: i32,
    replay_base: i32,
    in_line: bool,
    topic: String,
    body: Vec<u8>,
    trace_id: Option<String>,
    traceparent: Option<String>,
    key: Option<String>,
}

impl Queue for Lite {
    async fn claim(
        &self,
        slots: &[WebhookSlot],
        limit: u32,
        worker: &str,
    ) -> Result<Vec<Claimed>, StoreError> {
        let now = now_ms();
        let mut w = self.write.take().await?;
        let mut tx = w.begin().await?;
        // Each webhook's oldest due rows, then round-robin: every webhook's
        // first, then every second, … (as the PostgreSQL claim).
        let mut candidates: Vec<(usize, i64, Uuid, usize)> = Vec::new();
        for (slot_no, slot) in slots.iter().enumerate() {
            let due: Vec<(Uuid, i64)> = sqlx::query_as(
                "SELECT id, next_attempt_at FROM deliveries
                 WHERE state = 'pending' AND webhook_id = ?1 AND next_attempt_at <= ?2
                 ORDER BY next_attempt_at LIMIT ?3",
            )
            .bind(&slot.webhook_id)
            .bind(now)
            .bind(i64::from(slot.room.min(limit)))
            .fetch_all(&mut *tx)
            .await?;
            candidates.extend(
                due.into_iter()
                    .enumerate()
                    .map(|(rank, (id, at))| (rank, at, id, slot_no)),
            );
        }
        candidates.sort_unstable();
        candidates.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        // One statement per webhook (its lease length), for all its rows.
        let mut per_slot: BTreeMap<usize, Vec<Uuid>> = BTreeMap::new();
        for (_, _, id, slot_no) in candidates {
            per_slot.entry(slot_no).or_default().push(id);
        }
        let mut claimed = Vec::new();
        for (slot_no, ids) in per_slot {
            for run in super::shaped(&ids, super::ROWS_PER_STATEMENT) {
                let mut update = QueryBuilder::<Sqlite>::new(
                    "UPDATE deliveries SET state = 'in_flight', attempts = attempts + 1, lease_expires_at = ",
                );
                update
                    .push_bind(after(now, slots[slot_no].lease))
                    .push(", leased_by = ")
                    .push_bind(worker)
                    .push(", updated_at = ")
                    .push_bind(now)
                    .push(" WHERE id IN (");
                let mut list = update.separated(", ");
                for id in run {
                    list.push_bind(*id);
                }
                update.push(
                    ") RETURNING id, event_id, webhook_id, attempts, replay_base, order_key IS NOT NULL AS in_line,
                       (SELECT topic FROM events WHERE events.id = event_id) AS topic,
                       (SELECT body FROM events WHERE events.id = event_id) AS body,
                       (SELECT trace_id FROM events WHERE events.id = event_id) AS trace_id,
                       (SELECT traceparent FROM events WHERE events.id = event_id) AS traceparent,
                       (SELECT key FROM events WHERE events.id = event_id) AS key",
                );
                let rows: Vec<ClaimRow> = update.build_query_as().fetch_all(&mut *tx).await?;
                claimed.extend(rows.into_iter().map(|r| Claimed {
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
                }));
            }
        }
        tx.commit().await?;
        w.done();
        Ok(claimed)
    }

    async fn complete(&self, done: &[Completion], now: DateTime<Utc>) -> Result<u64, StoreError> {
        let (at, clock) = (ms(now), now_ms());
        let mut w = self.write.take().await?;
        let mut tx = w.begin().await?;
        let mut finished = Vec::new();
        for chunk in super::shaped(done, super::ROWS_PER_STATEMENT) {
            let mut attempts = QueryBuilder::<Sqlite>::new(
                "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error_kind, error, response_body) ",
            );
            attempts.push_values(chunk, |mut row, c| {
                let r = &c.record;
                row.push_bind(c.id)
                    .push_bind(c.attempt)
                    .push_bind(ms(r.started_at))
                    .push_bind(clamp_i32(
                        u64::try_from(r.duration.as_millis()).unwrap_or(u64::MAX),
                    ))
                    .push_bind(r.status.map(i32::from))
                    .push_bind(r.error_kind)
                    .push_bind(r.error.as_deref().map(|e| storable(e).into_owned()))
                    .push_bind(r.response_body.as_deref().map(|b| storable(b).into_owned()));
            });
            attempts.push(" ON CONFLICT DO NOTHING");
            attempts.build().execute(&mut *tx).await?;

            // Every move in one UPDATE … FROM (VALUES …): a delivery moves
            // only if it is still at that attempt (see `Store::complete`).
            let mut update = QueryBuilder::<Sqlite>::new(
                "WITH u(id, attempt, state, next_at, status, last_error, ends) AS (",
            );
            update.push_values(chunk, |mut row, c| {
                let r = &c.record;
                row.push_bind(c.id)
                    .push_bind(c.attempt)
                    .push_bind(c.state.as_str())
                    .push_bind(c.retry_in.map(|d| after(clock, d)))
                    .push_bind(r.status.map(i32::from))
                    .push_bind(c.last_error())
                    .push_bind(c.state.is_final());
            });
            update
                .push(
                    ") UPDATE deliveries
                     SET state = u.state,
                         next_attempt_at = COALESCE(u.next_at, deliveries.next_attempt_at),
                         lease_expires_at = NULL, leased_by = NULL,
                         last_status = u.status, last_error = u.last_error, updated_at = ",
                )
                .push_bind(at)
                .push(", completed_at = CASE WHEN u.ends THEN ")
                .push_bind(at)
                .push(
                    " END
                     FROM u
                     WHERE deliveries.id = u.id AND deliveries.attempts = u.attempt
                       AND (deliveries.state = 'in_flight'
                            OR (deliveries.state = 'pending' AND deliveries.leased_by IS NULL))
                     RETURNING deliveries.webhook_id, deliveries.order_key, deliveries.state IN ('succeeded', 'dead')",
                );
            let moved: Vec<(String, Option<String>, bool)> =
                update.build_query_as().fetch_all(&mut *tx).await?;
            finished.extend(
                moved
                    .into_iter()
                    .filter(|(_, _, ends)| *ends)
                    .map(|(webhook_id, key, _)| (webhook_id, key)),
            );
        }
        let minute = at - at.rem_euclid(60_000);
        for t in tally(done) {
            sqlx::query(
                "INSERT INTO webhook_health AS h (webhook_id, last_success_at, last_failure_at, last_error_kind,
                                                  failing_since, failures_since_success)
                 VALUES (?1, CASE WHEN ?2 THEN ?4 END, CASE WHEN ?3 > 0 THEN ?4 END, ?5,
                         CASE WHEN ?2 THEN NULL ELSE ?4 END, CASE WHEN ?2 THEN 0 ELSE ?3 END)
                 ON CONFLICT (webhook_id) DO UPDATE SET
                     last_success_at = COALESCE(excluded.last_success_at, h.last_success_at),
                     last_failure_at = COALESCE(excluded.last_failure_at, h.last_failure_at),
                     last_error_kind = COALESCE(excluded.last_error_kind, h.last_error_kind),
                     failing_since = CASE WHEN ?2 THEN NULL ELSE COALESCE(h.failing_since, excluded.failing_since) END,
                     failures_since_success = CASE WHEN ?2 THEN 0 ELSE h.failures_since_success + ?3 END",
            )
            .bind(&t.webhook_id)
            .bind(t.recovered())
            .bind(t.failed)
            .bind(at)
            .bind(t.error_kind)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO webhook_minutes AS m (webhook_id, minute, succeeded, failed) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (webhook_id, minute) DO UPDATE SET
                     succeeded = m.succeeded + excluded.succeeded, failed = m.failed + excluded.failed",
            )
            .bind(&t.webhook_id)
            .bind(minute)
            .bind(t.succeeded)
            .bind(t.failed)
            .execute(&mut *tx)
            .await?;
        }
        let promoted = promote(&mut tx, &lines_from(finished)).await?;
        tx.commit().await?;
        w.done();
        Ok(promoted)
    }

    async fn release(
        &self,
        id: Uuid,
        attempt: i32,
        retry_in: std::time::Duration,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut w = self.write.take().await?;
        sqlx::query(
            "UPDATE deliveries
             SET state = 'pending', attempts = attempts - 1, lease_expires_at = NULL, leased_by = NULL,
                 next_attempt_at = ?3, updated_at = ?4
             WHERE id = ?1 AND state = 'in_flight' AND attempts = ?2",
        )
        .bind(id)
        .bind(attempt)
        .bind(after(now, retry_in))
        .bind(now)
        .execute(&mut *w)
        .await?;
        w.done();
        Ok(())
    }

    async fn rescue_expired(&self) -> Result<u64, StoreError> {
        let now = now_ms();
        let mut w = self.write.take().await?;
        let mut tx = w.begin().await?;
        let rescued: Vec<(Uuid, i32)> = sqlx::query_as(
            "UPDATE deliveries
             SET state = 'pending', next_attempt_at = ?1, lease_expires_at = NULL, leased_by = NULL,
                 last_error = 'lease_expired', updated_at = ?1
             WHERE id IN (SELECT id FROM deliveries
                          WHERE state = 'in_flight' AND lease_expires_at < ?1
                          ORDER BY id LIMIT 1000)
             RETURNING id, attempts",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        for (id, attempt) in &rescued {
            sqlx::query(
                "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, error_kind, error, recorded_by)
                 VALUES (?1, ?2, ?3, 0, 'lease_expired', 'the engine holding this attempt stopped before recording it', 'rescuer')
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(attempt)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        w.done();
        Ok(rescued.len() as u64)
    }

    async fn next_due(
        &self,
        webhook_ids: &[&str],
    ) -> Result<Option<std::time::Duration>, StoreError> {
        let mut earliest: Option<i64> = None;
        for id in webhook_ids {
            let at: Option<i64> = sqlx::query_scalar(
                "SELECT next_attempt_at FROM deliveries
                 WHERE state = 'pending' AND webhook_id = ?1
                 ORDER BY next_attempt_at LIMIT 1",
            )
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
            earliest = earliest.min(at).or(earliest).or(at);
        }
        Ok(earliest
            .map(|at| std::time::Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0))))
    }
}
