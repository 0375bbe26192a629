//! Read-only queries for the admin API: deliveries with their attempts,
//! per-webhook counts. Nothing here changes state.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{DeliveryState, Store, StoreError};

/// Filters for listing deliveries; newest first, paged by `cursor` (the
/// last id of the previous page).
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub state: Option<DeliveryState>,
    pub webhook_id: Option<String>,
    pub event_id: Option<String>,
    pub topic: Option<String>,
    pub before: Option<Uuid>,
    pub limit: u32,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub event_id: String,
    pub webhook_id: String,
    pub topic: String,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub response_body: Option<String>,
    /// `worker` (the engine that made the attempt) or `rescuer` (its lease
    /// expired before an outcome was recorded).
    pub recorded_by: String,
}

/// Per-webhook counts for `GET /v1/webhooks`.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct WebhookStats {
    pub webhook_id: String,
    pub pending: i64,
    pub dead: i64,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
}

const DELIVERY_COLUMNS: &str =
    "d.id, d.event_id, d.webhook_id, e.topic, d.state, d.attempts, d.next_attempt_at,
     d.last_status, d.last_error, d.created_at, d.updated_at, d.completed_at";

impl Store {
    pub async fn list_deliveries(
        &self,
        f: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE ($1::text IS NULL OR d.state = $1)
               AND ($2::text IS NULL OR d.webhook_id = $2)
               AND ($3::text IS NULL OR d.event_id = $3)
               AND ($4::text IS NULL OR e.topic = $4)
               AND ($5::uuid IS NULL OR d.id < $5)
             ORDER BY d.id DESC LIMIT $6"
        );
        Ok(sqlx::query_as(&sql)
            .bind(f.state.map(DeliveryState::as_str))
            .bind(f.webhook_id.as_deref())
            .bind(f.event_id.as_deref())
            .bind(f.topic.as_deref())
            .bind(f.before)
            .bind(i64::from(f.limit))
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn get_delivery(
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

    /// Deliveries by state for `/metrics`, each count read through its
    /// partial index, and the age of the oldest due delivery.
    pub async fn queue_depth(&self) -> Result<crate::metrics::QueueDepth, StoreError> {
        let (due, scheduled, in_flight, dead, oldest): (i64, i64, i64, i64, Option<f64>) =
            sqlx::query_as(
                "SELECT
                   (SELECT count(*) FROM deliveries WHERE state = 'pending' AND next_attempt_at <= now()),
                   (SELECT count(*) FROM deliveries WHERE state = 'pending' AND next_attempt_at > now()),
                   (SELECT count(*) FROM deliveries WHERE state = 'in_flight'),
                   (SELECT count(*) FROM deliveries WHERE state = 'dead'),
                   (SELECT EXTRACT(EPOCH FROM (now() - min(next_attempt_at)))::float8
                    FROM deliveries WHERE state = 'pending' AND next_attempt_at <= now())",
            )
            .fetch_one(&self.pool)
            .await?;
        Ok(crate::metrics::QueueDepth {
            pending_due: due,
            pending_scheduled: scheduled,
            in_flight,
            dead,
            oldest_due_seconds: oldest.unwrap_or(0.0).max(0.0),
        })
    }

    pub async fn webhook_stats(&self) -> Result<Vec<WebhookStats>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT webhook_id,
                    count(*) FILTER (WHERE state IN ('pending', 'in_flight')) AS pending,
                    count(*) FILTER (WHERE state = 'dead') AS dead,
                    max(completed_at) FILTER (WHERE state = 'succeeded') AS last_success_at,
                    max(updated_at) FILTER (WHERE last_error IS NOT NULL) AS last_failure_at
             FROM deliveries GROUP BY webhook_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
