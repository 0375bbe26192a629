//! What the admin queries read, shared by both backends.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::DeliveryState;

/// Filters for listing deliveries; newest first, paged by `cursor` (the
/// last id of the previous page).
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub state: Option<DeliveryState>,
    pub webhook_id: Option<String>,
    pub event_id: Option<String>,
    pub topic: Option<String>,
    pub before: Option<Uuid>,
    /// Ids at or above this (a UUIDv7 bound: deliveries created since a
    /// time).
    pub after: Option<Uuid>,
    pub limit: u32,
}

/// Filters for listing audit records; newest first, paged by `before`
/// (the last id of the previous page).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub before: Option<i64>,
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

/// Queue sizes, read from the store (cached for a few seconds).
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueDepth {
    pub pending_due: i64,
    pub pending_scheduled: i64,
    pub waiting: i64,
    pub in_flight: i64,
    pub dead: i64,
    /// Seconds the oldest due delivery has been waiting (0 if none).
    pub oldest_due_seconds: f64,
}

impl QueueDepth {
    /// Each count with its state's metric label.
    pub fn by_state(&self) -> [(&'static str, i64); 5] {
        [
            ("pending_due", self.pending_due),
            ("pending_scheduled", self.pending_scheduled),
            ("waiting", self.waiting),
            ("in_flight", self.in_flight),
            ("dead", self.dead),
        ]
    }
}

/// What one retention batch deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub deliveries: u64,
    pub attempts: u64,
    pub events: u64,
    /// `source_rejects` rows (kept as long as dead deliveries).
    pub rejects: u64,
}

impl Purged {
    /// Each count with its kind's metric label.
    pub fn by_kind(&self) -> [(&'static str, u64); 4] {
        [
            ("deliveries", self.deliveries),
            ("attempts", self.attempts),
            ("events", self.events),
            ("source_rejects", self.rejects),
        ]
    }
}

/// Per-webhook health for `GET /v1/webhooks`.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct WebhookStats {
    pub webhook_id: String,
    pub pending: i64,
    /// Deliveries in a line behind its head (`ordering: key`).
    pub waiting: i64,
    pub in_flight: i64,
    pub dead: i64,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_error_kind: Option<String>,
    /// Attempts of the last hour that succeeded / failed.
    pub succeeded_last_hour: i64,
    pub failed_last_hour: i64,
}

/// The columns of a [`DeliveryRow`], from `deliveries d JOIN events e`, in
/// both stores' SQL.
pub(in crate::store) const DELIVERY_COLUMNS: &str =
    "d.id, d.event_id, d.webhook_id, e.topic, d.state, d.attempts, d.next_attempt_at,
     d.last_status, d.last_error, d.created_at, d.updated_at, d.completed_at";
