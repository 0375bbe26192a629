//! Admin queries and retention on SQLite ([`Queries`]); endpoint state and
//! rate limits are in `endpoints.rs` and `rate.rs`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Lite, at, ms, now_ms};
use crate::store::contract::Queries;
use crate::store::queries::DELIVERY_COLUMNS;
use crate::store::{AttemptRow, DeliveryFilter, DeliveryRow, Purged, StoreError, WebhookStats};

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

/// Nothing refers to the row of `events` in scope.
const UNREFERENCED: &str = "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)
   AND NOT EXISTS (SELECT 1 FROM commands c WHERE c.event_id = events.id)
   AND NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.event_id = events.id)";

impl Queries for Lite {
    async fn list_deliveries(&self, f: &DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
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

    async fn get_delivery(
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

    async fn purge_finished(
        &self,
        succeeded_before: DateTime<Utc>,
        dead_before: DateTime<Utc>,
        batch: u32,
    ) -> Result<Purged, StoreError> {
        let mut w = self.write.take().await?;
        let mut tx = w.begin().await?;
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
        w.done();
        Ok(purged)
    }

    /// Each count names its partial index: without fresh statistics
    /// SQLite may otherwise walk a webhook's every delivery.
    async fn queue_depth(&self) -> Result<crate::store::QueueDepth, StoreError> {
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

    async fn webhook_stats(&self, webhook_ids: &[&str]) -> Result<Vec<WebhookStats>, StoreError> {
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
}
