//! Admin queries, retention, endpoint state and rate limits on SQLite.
//!
//! Longer than 400 lines until issue 29 moves the endpoint-state and rate
//! rules, which exist once here and once in PostgreSQL SQL, behind one
//! store capability (then this file keeps the admin queries only).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::queue::audited;
use super::{Lite, after, at, ms, now_ms};
use crate::store::queries::DELIVERY_COLUMNS;
use crate::store::{
    AttemptRow, AuditRow, DeliveryFilter, DeliveryRow, EndpointState, EndpointStatus, Grant,
    NewEvent, Purged, StoreError, WebhookStats, millis, storable,
};

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    event_id: String,
    webhook_id: String,
    topic: String,
    state: String,
    attempts: i32,
    next_attempt_at: i64,
    last_status: Option<i32>,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
    completed_at: Option<i64>,
}

impl From<Row> for DeliveryRow {
    fn from(r: Row) -> Self {
        Self {
            id: r.id,
            event_id: r.event_id,
            webhook_id: r.webhook_id,
            topic: r.topic,
            state: r.state,
            attempts: r.attempts,
            next_attempt_at: at(r.next_attempt_at),
            last_status: r.last_status,
            last_error: r.last_error,
            created_at: at(r.created_at),
            updated_at: at(r.updated_at),
            completed_at: r.completed_at.map(at),
        }
    }
}

impl Lite {
    pub(in crate::store) async fn list_deliveries(
        &self,
        f: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        // Only the filters given, and the state as a literal: SQLite plans
        // once per statement, so `(? IS NULL OR …)` or a bound state would
        // keep it from the indexes (a 1,000,000-row scan for a rare value).
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id WHERE 1 = 1"
        ));
        if let Some(state) = f.state {
            q.push(format_args!(" AND d.state = '{}'", state.as_str()));
        }
        if let Some(w) = &f.webhook_id {
            q.push(" AND d.webhook_id = ").push_bind(w);
        }
        if let Some(e) = &f.event_id {
            q.push(" AND d.event_id = ").push_bind(e);
        }
        if let Some(t) = &f.topic {
            q.push(" AND e.topic = ").push_bind(t);
        }
        if let Some(before) = f.before {
            q.push(" AND d.id < ").push_bind(before);
        }
        if let Some(after) = f.after {
            q.push(" AND d.id >= ").push_bind(after);
        }
        q.push(" ORDER BY d.id DESC LIMIT ")
            .push_bind(i64::from(f.limit));
        let rows: Vec<Row> = q.build_query_as().fetch_all(&self.read).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub(in crate::store) async fn get_delivery(
        &self,
        id: Uuid,
    ) -> Result<Option<(DeliveryRow, Vec<AttemptRow>)>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.id = ?1"
        );
        let Some(row) = sqlx::query_as::<_, Row>(&sql)
            .bind(id)
            .fetch_optional(&self.read)
            .await?
        else {
            return Ok(None);
        };
        type Attempt = (
            i32,
            i64,
            i32,
            Option<i32>,
            Option<String>,
            Option<String>,
            Option<String>,
            String,
        );
        let attempts: Vec<Attempt> = sqlx::query_as(
            "SELECT attempt, started_at, duration_ms, status_code, error_kind, error, response_body, recorded_by
             FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY attempt, started_at",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await?;
        let attempts = attempts
            .into_iter()
            .map(
                |(
                    attempt,
                    started,
                    duration_ms,
                    status_code,
                    error_kind,
                    error,
                    response_body,
                    recorded_by,
                )| {
                    AttemptRow {
                        attempt,
                        started_at: at(started),
                        duration_ms,
                        status_code,
                        error_kind,
                        error,
                        response_body,
                        recorded_by,
                    }
                },
            )
            .collect();
        Ok(Some((row.into(), attempts)))
    }

    pub(in crate::store) async fn purge_finished(
        &self,
        succeeded_before: DateTime<Utc>,
        dead_before: DateTime<Utc>,
        batch: u32,
    ) -> Result<Purged, StoreError> {
        let mut tx = self.write.begin().await?;
        let doomed: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, event_id FROM deliveries
             WHERE state IN ('succeeded', 'dead')
               AND completed_at < MAX(?1, ?2)
               AND ((state = 'succeeded' AND completed_at < ?1) OR (state = 'dead' AND completed_at < ?2))
             ORDER BY completed_at LIMIT ?3",
        )
        .bind(ms(succeeded_before))
        .bind(ms(dead_before))
        .bind(i64::from(batch))
        .fetch_all(&mut *tx)
        .await?;
        let mut purged = Purged::default();
        for (id, _) in &doomed {
            purged.attempts += sqlx::query("DELETE FROM delivery_attempts WHERE delivery_id = ?1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            purged.deliveries += sqlx::query("DELETE FROM deliveries WHERE id = ?1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        sqlx::query("DELETE FROM webhook_minutes WHERE minute < ?1")
            .bind(now_ms() - 86_400_000)
            .execute(&mut *tx)
            .await?;
        let mut events: Vec<&str> = doomed.iter().map(|(_, e)| e.as_str()).collect();
        events.sort_unstable();
        events.dedup();
        for event in events {
            purged.events += sqlx::query(&format!(
                "DELETE FROM events WHERE id = ?1 AND {UNREFERENCED}"
            ))
            .bind(event)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        // Events that matched no webhook at all, as old as `succeeded`.
        purged.events += sqlx::query(&format!(
            "DELETE FROM events WHERE id IN (
                 SELECT id FROM events WHERE undelivered AND received_at < ?1 AND {UNREFERENCED}
                 ORDER BY received_at LIMIT ?2)"
        ))
        .bind(ms(succeeded_before))
        .bind(i64::from(batch))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(purged)
    }

    /// Each count names its partial index: without fresh statistics
    /// SQLite may otherwise walk a webhook's every delivery.
    pub(in crate::store) async fn queue_depth(
        &self,
    ) -> Result<crate::store::QueueDepth, StoreError> {
        let now = now_ms();
        let (due, scheduled, waiting, in_flight, dead, oldest): (i64, i64, i64, i64, i64, Option<i64>) =
            sqlx::query_as(
                "SELECT
                   (SELECT count(*) FROM deliveries INDEXED BY deliveries_due_by_webhook WHERE state = 'pending' AND next_attempt_at <= ?1),
                   (SELECT count(*) FROM deliveries INDEXED BY deliveries_due_by_webhook WHERE state = 'pending' AND next_attempt_at > ?1),
                   (SELECT count(*) FROM deliveries INDEXED BY deliveries_line WHERE state = 'waiting' AND order_key IS NOT NULL
                                                      AND state IN ('waiting', 'pending', 'in_flight')),
                   (SELECT count(*) FROM deliveries INDEXED BY deliveries_leases WHERE state = 'in_flight'),
                   (SELECT count(*) FROM deliveries INDEXED BY deliveries_dead WHERE state = 'dead'),
                   (SELECT min(next_attempt_at) FROM deliveries WHERE state = 'pending' AND next_attempt_at <= ?1)",
            )
            .bind(now)
            .fetch_one(&self.read)
            .await?;
        Ok(crate::store::QueueDepth {
            pending_due: due,
            pending_scheduled: scheduled,
            waiting,
            in_flight,
            dead,
            oldest_due_seconds: oldest.map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0),
        })
    }

    pub(in crate::store) async fn webhook_stats(
        &self,
        webhook_ids: &[&str],
    ) -> Result<Vec<WebhookStats>, StoreError> {
        type Stats = (
            i64,
            i64,
            i64,
            i64,
            Option<i64>,
            Option<i64>,
            Option<String>,
            i64,
            i64,
        );
        let hour_ago = now_ms() - 3_600_000;
        let mut all = Vec::with_capacity(webhook_ids.len());
        for id in webhook_ids {
            let (pending, waiting, in_flight, dead, success, failure, kind, ok, failed): Stats =
                sqlx::query_as(
                    "SELECT
                       (SELECT count(*) FROM deliveries INDEXED BY deliveries_due_by_webhook WHERE webhook_id = ?1 AND state = 'pending'),
                       (SELECT count(*) FROM deliveries INDEXED BY deliveries_line WHERE webhook_id = ?1 AND state = 'waiting' AND order_key IS NOT NULL
                                                          AND state IN ('waiting', 'pending', 'in_flight')),
                       (SELECT count(*) FROM deliveries INDEXED BY deliveries_leases WHERE webhook_id = ?1 AND state = 'in_flight'),
                       (SELECT count(*) FROM deliveries INDEXED BY deliveries_dead WHERE webhook_id = ?1 AND state = 'dead'),
                       (SELECT last_success_at FROM webhook_health WHERE webhook_id = ?1),
                       (SELECT last_failure_at FROM webhook_health WHERE webhook_id = ?1),
                       (SELECT last_error_kind FROM webhook_health WHERE webhook_id = ?1),
                       (SELECT COALESCE(sum(succeeded), 0) FROM webhook_minutes WHERE webhook_id = ?1 AND minute > ?2),
                       (SELECT COALESCE(sum(failed), 0) FROM webhook_minutes WHERE webhook_id = ?1 AND minute > ?2)",
                )
                .bind(id)
                .bind(hour_ago)
                .fetch_one(&self.read)
                .await?;
            all.push(WebhookStats {
                webhook_id: (*id).to_owned(),
                pending,
                waiting,
                in_flight,
                dead,
                last_success_at: success.map(at),
                last_failure_at: failure.map(at),
                last_error_kind: kind,
                succeeded_last_hour: ok,
                failed_last_hour: failed,
            });
        }
        Ok(all)
    }

    pub(in crate::store) async fn endpoint_states(
        &self,
    ) -> Result<HashMap<String, EndpointState>, StoreError> {
        type Row = (
            String,
            String,
            String,
            i64,
            String,
            Option<i64>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT webhook_id, state, reason, since, changed_by, throttled_until, note FROM webhook_state",
        )
        .fetch_all(&self.read)
        .await?;
        let now = now_ms();
        Ok(rows
            .into_iter()
            .map(|(id, state, reason, since, changed_by, until, note)| {
                // A pause that has run out is simply active again.
                let left = until
                    .filter(|&u| u > now)
                    .map(|u| std::time::Duration::from_millis(u64::try_from(u - now).unwrap_or(0)));
                let status = match state.as_str() {
                    "disabled" => EndpointStatus::Disabled,
                    "throttled" if left.is_some() => EndpointStatus::Throttled,
                    _ => EndpointStatus::Active,
                };
                let throttled = status == EndpointStatus::Throttled;
                let state = EndpointState {
                    status,
                    reason,
                    since: at(since),
                    changed_by,
                    throttled_until: until.filter(|_| throttled).map(at),
                    throttled_for: left.filter(|_| throttled),
                    note: note.filter(|_| status == EndpointStatus::Disabled),
                };
                (id, state)
            })
            .collect())
    }

    pub(in crate::store) async fn throttle(
        &self,
        webhook: &str,
        pause: std::time::Duration,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO webhook_state AS s (webhook_id, state, reason, since, changed_by, throttled_until)
             VALUES (?1, 'throttled', 'retry_after', ?2, ?3, ?4)
             ON CONFLICT (webhook_id) DO UPDATE SET
                 since = CASE WHEN s.state = 'throttled' AND s.throttled_until > ?2 THEN s.since ELSE ?2 END,
                 state = 'throttled', reason = 'retry_after', changed_by = excluded.changed_by,
                 throttled_until = MAX(CASE WHEN s.state = 'throttled' THEN COALESCE(s.throttled_until, 0) ELSE 0 END,
                                       excluded.throttled_until)
             WHERE s.state <> 'disabled'",
        )
        .bind(webhook)
        .bind(now)
        .bind(crate::domain::ENGINE_SOURCE)
        .bind(after(now, pause))
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub(in crate::store) async fn set_endpoint_state(
        &self,
        webhook: &str,
        state: &EndpointState,
        audit: (&AuditRow, &NewEvent),
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<(EndpointState, bool), StoreError> {
        let mut tx = self.write.begin().await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT state FROM webhook_state WHERE webhook_id = ?1")
                .bind(webhook)
                .fetch_optional(&mut *tx)
                .await?;
        let was_disabled = current.as_deref() == Some("disabled");
        if was_disabled == (state.status == EndpointStatus::Disabled) {
            drop(tx);
            let kept = self
                .endpoint_states()
                .await?
                .remove(webhook)
                .unwrap_or_else(|| state.clone());
            return Ok((kept, false));
        }
        sqlx::query(
            "INSERT INTO webhook_state (webhook_id, state, reason, since, changed_by, note)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (webhook_id) DO UPDATE
             SET state = excluded.state, reason = excluded.reason,
                 since = excluded.since, changed_by = excluded.changed_by,
                 throttled_until = NULL, note = excluded.note",
        )
        .bind(webhook)
        .bind(state.status.as_str())
        .bind(storable(&state.reason))
        .bind(ms(state.since))
        .bind(storable(&state.changed_by))
        .bind(state.note.as_deref().map(storable))
        .execute(&mut *tx)
        .await?;
        let (row, audit_event) = audit;
        audited(&mut tx, row, audit_event, now).await?;
        super::events::insert_rows(&mut tx, std::slice::from_ref(event), now).await?;
        tx.commit().await?;
        self.local.endpoint_version.fetch_add(1, Ordering::Relaxed);
        self.local.wake.notify_one();
        Ok((state.clone(), true))
    }

    pub(in crate::store) async fn failing_for(
        &self,
        webhook: &str,
        after: std::time::Duration,
        min_failures: i32,
    ) -> Result<Option<Option<String>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT last_error_kind FROM webhook_health
             WHERE webhook_id = ?1 AND failures_since_success >= ?3 AND failing_since <= ?2",
        )
        .bind(webhook)
        .bind(now_ms().saturating_sub(millis(after)))
        .bind(min_failures)
        .fetch_optional(&self.read)
        .await?)
    }

    pub(in crate::store) async fn take_tokens(
        &self,
        webhook: &str,
        rate: f64,
        burst: f64,
        want: u32,
    ) -> Result<Grant, StoreError> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        let row: Option<(f64, i64)> =
            sqlx::query_as("SELECT tokens, updated_at FROM webhook_rate WHERE webhook_id = ?1")
                .bind(webhook)
                .fetch_optional(&mut *tx)
                .await?;
        // First use: a full bucket.
        let avail = row.map_or(burst, |(tokens, updated)| {
            let elapsed = (now - updated).max(0) as f64 / 1000.0;
            burst.min(tokens + rate * elapsed)
        });
        let granted = avail.floor().min(f64::from(want)).max(0.0);
        let left = avail - granted;
        sqlx::query(
            "INSERT INTO webhook_rate (webhook_id, tokens, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (webhook_id) DO UPDATE SET tokens = excluded.tokens, updated_at = excluded.updated_at",
        )
        .bind(webhook)
        .bind(left)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let granted = granted as u32;
        let next_in = if granted > 0 {
            0.0
        } else {
            (1.0 - left).max(0.0) / rate
        };
        Ok(Grant { granted, next_in })
    }

    pub(in crate::store) async fn give_back_tokens(
        &self,
        webhook: &str,
        n: u32,
        burst: f64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE webhook_rate SET tokens = MIN(?3, tokens + ?2) WHERE webhook_id = ?1")
            .bind(webhook)
            .bind(f64::from(n))
            .bind(burst)
            .execute(&self.write)
            .await?;
        Ok(())
    }
}

/// Nothing refers to the row of `events` in scope.
const UNREFERENCED: &str = "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)
   AND NOT EXISTS (SELECT 1 FROM commands c WHERE c.event_id = events.id)
   AND NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.event_id = events.id)";
