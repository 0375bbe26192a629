//! Read-only queries for the admin API: deliveries with their attempts,
//! per-webhook counts. Nothing here changes state.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Pg;
use crate::store::contract::Queries;
use crate::store::queries::DELIVERY_COLUMNS;
use crate::store::{
    AttemptRow, DeliveryFilter, DeliveryRow, DeliveryState, Purged, StoreError, WebhookStats,
    storable,
};

impl Queries for Pg {
    async fn list_deliveries(&self, f: &DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE ($1::text IS NULL OR d.state = $1)
               AND ($2::text IS NULL OR d.webhook_id = $2)
               AND ($3::text IS NULL OR d.event_id = $3)
               AND ($4::text IS NULL OR e.topic = $4)
               AND ($5::uuid IS NULL OR d.id < $5)
               AND ($7::uuid IS NULL OR d.id >= $7)
             ORDER BY d.id DESC LIMIT $6"
        );
        Ok(sqlx::query_as(&sql)
            .bind(f.state.map(DeliveryState::as_str))
            // What was stored went through `storable`; so do the filters
            // (PostgreSQL text cannot hold U+0000 even in a parameter).
            .bind(f.webhook_id.as_deref().map(storable))
            .bind(f.event_id.as_deref().map(storable))
            .bind(f.topic.as_deref().map(storable))
            .bind(f.before)
            .bind(i64::from(f.limit))
            .bind(f.after)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn get_delivery(
        &self,
        id: Uuid,
    ) -> Result<Option<(DeliveryRow, Vec<AttemptRow>)>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.id = $1"
        );
        let Some(row) = sqlx::query_as::<_, DeliveryRow>(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query_as(
            "SELECT attempt, started_at, duration_ms, status_code, error_kind, error, response_body, recorded_by
             FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt, started_at",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some((row, attempts)))
    }

    /// Deletes up to `batch` deliveries that finished before their cut-off
    /// (`succeeded` before `succeeded_before`, `dead` before `dead_before`),
    /// their attempts, and the events they leave with no delivery, no
    /// command and no audit record. Pending and in-flight rows are never
    /// touched; audit records are never deleted. Short: one batch, one
    /// transaction, rows other transactions hold are skipped.
    async fn purge_finished(
        &self,
        succeeded_before: DateTime<Utc>,
        dead_before: DateTime<Utc>,
        batch: u32,
    ) -> Result<Purged, StoreError> {
        let mut tx = self.pool.begin().await?;
        let (deliveries, attempts, event_ids): (i64, i64, Vec<String>) = sqlx::query_as(
            "WITH doomed AS (
                 SELECT id FROM deliveries
                 WHERE state IN ('succeeded', 'dead')
                   AND completed_at < GREATEST($1::timestamptz, $2::timestamptz)
                   AND ((state = 'succeeded' AND completed_at < $1) OR (state = 'dead' AND completed_at < $2))
                 ORDER BY completed_at LIMIT $3
                 FOR UPDATE SKIP LOCKED
             ), att AS (
                 DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM doomed) RETURNING 1
             ), del AS (
                 DELETE FROM deliveries WHERE id IN (SELECT id FROM doomed) RETURNING event_id
             )
             SELECT (SELECT count(*) FROM del), (SELECT count(*) FROM att),
                    COALESCE((SELECT array_agg(DISTINCT event_id) FROM del), '{}')",
        )
        .bind(succeeded_before)
        .bind(dead_before)
        .bind(i64::from(batch))
        .fetch_one(&mut *tx)
        .await?;
        // Health minutes past a day are no use to the last-hour rate.
        sqlx::query("DELETE FROM webhook_minutes WHERE minute < now() - interval '1 day'")
            .execute(&mut *tx)
            .await?;
        // A second statement: it must see the deliveries deleted above.
        let events = sqlx::query(
            "DELETE FROM events e WHERE e.id = ANY($1)
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
               AND NOT EXISTS (SELECT 1 FROM commands c WHERE c.event_id = e.id)
               AND NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.event_id = e.id)",
        )
        .bind(&event_ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // Events that matched no webhook at all, as old as `succeeded`.
        let undelivered = sqlx::query(
            "DELETE FROM events WHERE id = ANY(ARRAY(
                 SELECT e.id FROM events e WHERE e.undelivered AND e.received_at < $1
                   AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
                   AND NOT EXISTS (SELECT 1 FROM commands c WHERE c.event_id = e.id)
                   AND NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.event_id = e.id)
                 ORDER BY e.received_at LIMIT $2))",
        )
        .bind(succeeded_before)
        .bind(i64::from(batch))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Purged {
            deliveries: u64::try_from(deliveries).unwrap_or(0),
            attempts: u64::try_from(attempts).unwrap_or(0),
            events: events + undelivered,
            rejects: 0,
        })
    }

    /// Deliveries by state for `/metrics`, each count read through its
    /// partial index, and the age of the oldest due delivery.
    async fn queue_depth(&self) -> Result<crate::store::QueueDepth, StoreError> {
        let (due, scheduled, waiting, in_flight, dead, oldest): (i64, i64, i64, i64, i64, Option<f64>) =
            sqlx::query_as(
                "SELECT
                   (SELECT count(*) FROM deliveries WHERE state = 'pending' AND next_attempt_at <= now()),
                   (SELECT count(*) FROM deliveries WHERE state = 'pending' AND next_attempt_at > now()),
                   (SELECT count(*) FROM deliveries WHERE state = 'waiting' AND order_key IS NOT NULL),
                   (SELECT count(*) FROM deliveries WHERE state = 'in_flight'),
                   (SELECT count(*) FROM deliveries WHERE state = 'dead'),
                   (SELECT EXTRACT(EPOCH FROM (now() - min(next_attempt_at)))::float8
                    FROM deliveries WHERE state = 'pending' AND next_attempt_at <= now())",
            )
            .fetch_one(&self.pool)
            .await?;
        Ok(crate::store::QueueDepth {
            pending_due: due,
            pending_scheduled: scheduled,
            waiting,
            in_flight,
            dead,
            oldest_due_seconds: oldest.unwrap_or(0.0).max(0.0),
        })
    }

    /// Health of the given webhooks. Each count reads a partial index for
    /// one webhook, and the rest comes from the maintained health tables:
    /// no scan of the deliveries table, however many rows it holds.
    async fn webhook_stats(&self, webhook_ids: &[&str]) -> Result<Vec<WebhookStats>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT w.id AS webhook_id,
                    (SELECT count(*) FROM deliveries d WHERE d.webhook_id = w.id AND d.state = 'pending') AS pending,
                    (SELECT count(*) FROM deliveries d WHERE d.webhook_id = w.id AND d.state = 'waiting'
                                                        AND d.order_key IS NOT NULL) AS waiting,
                    (SELECT count(*) FROM deliveries d WHERE d.webhook_id = w.id AND d.state = 'in_flight') AS in_flight,
                    (SELECT count(*) FROM deliveries d WHERE d.webhook_id = w.id AND d.state = 'dead') AS dead,
                    h.last_success_at, h.last_failure_at, h.last_error_kind,
                    COALESCE(m.succeeded, 0) AS succeeded_last_hour, COALESCE(m.failed, 0) AS failed_last_hour
             FROM unnest($1::text[]) WITH ORDINALITY AS w(id, n)
             LEFT JOIN webhook_health h ON h.webhook_id = w.id
             LEFT JOIN LATERAL (
                 SELECT sum(succeeded)::bigint AS succeeded, sum(failed)::bigint AS failed
                 FROM webhook_minutes WHERE webhook_id = w.id AND minute > now() - interval '1 hour'
             ) AS m ON true
             ORDER BY w.n",
        )
        .bind(webhook_ids)
        .fetch_all(&self.pool)
        .await?)
    }
}
