//! The bodies the API answers with and takes, as types: the handlers
//! serialize these, and the OpenAPI description (`openapi.rs`) is derived
//! from the same types, so the two cannot drift apart. Conversions from the
//! store's rows live here too; no I/O.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

mod ops;

pub use ops::*;

use super::ErrorCode;
use crate::domain::DeliveryId;
use crate::store::{AttemptRow, DeliveryRow};

/// Every 4xx/5xx answer (contract §7).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// What went wrong, for a person; never a secret or a stored value.
    pub message: String,
    /// The request field at fault (`id`, `[2].payload`, `limit`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `policy_invalid`: every problem, `file:line:column: path: message`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<String>>,
    /// `schema_violation`: each failed pointer and keyword (at most 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub violations: Option<Vec<ViolationView>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ViolationView {
    /// JSON pointer into the payload (`""` is the payload itself).
    pub pointer: String,
    /// The schema keyword that failed.
    pub keyword: String,
    pub message: String,
}

/// One event for `POST /v1/events` (contract §2). Aliases accepted for
/// existing producers: `event_type`, `type`, `event_name` for `topic`;
/// `event_id` for `id`; `data` for `payload`; `timestamp` for
/// `occurred_at`; `version` for `event_version`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EventIn {
    /// `segment(.segment){0,15}`, segments `[A-Za-z0-9_-]+`, ≤ 255 bytes; no wildcards.
    /// `command.**`, `aion.audit.**` and `aion.webhooks.**` are the engine's (`403 reserved_topic`).
    #[schema(
        example = "kernel.proposal.created",
        pattern = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){0,15}$",
        max_length = 255
    )]
    pub topic: String,
    /// `[A-Za-z0-9._:-]{1,128}`; generated (`evt_` + UUIDv7) when absent.
    /// Ids starting with `kafka:` or `nats:` are the event-bus sources' own.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub id: Option<String>,
    /// Any JSON value (checked against the topic's schema, if any).
    pub payload: serde_json::Value,
    /// RFC 3339; the time received when absent.
    pub occurred_at: Option<DateTime<Utc>>,
    /// An integer or a semver string; selects the schema version.
    pub event_version: Option<serde_json::Value>,
    #[schema(max_length = 255)]
    pub tenant_id: Option<String>,
    #[schema(max_length = 255)]
    pub source: Option<String>,
    /// The ordering and partition key.
    #[schema(max_length = 255)]
    pub key: Option<String>,
    /// A W3C trace id (32 hex digits).
    #[schema(max_length = 255)]
    pub trace_id: Option<String>,
}

/// One event, or an array of 1 to 1000 (all accepted or none).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EventsIn {
    One(EventIn),
    /// 1 to 1000 events.
    Many(Vec<EventIn>),
}

/// The answer for one event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedView {
    pub id: String,
    pub topic: String,
    /// Deliveries made for it (0 for a duplicate).
    pub deliveries: usize,
    /// The same id, topic and payload were accepted before.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// The answer for one event, or for each of a batch in order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum AcceptedBody {
    One(AcceptedView),
    Many(Vec<AcceptedView>),
}

/// A delivery as the admin routes show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// `dlv_` + UUIDv7; also the `Idempotency-Key` receivers get.
    pub id: String,
    pub event_id: String,
    pub webhook_id: String,
    pub topic: String,
    #[schema(example = "pending")]
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Every attempt, oldest first (`GET /v1/deliveries/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts_detail: Option<Vec<AttemptView>>,
}

/// Where a delivery is in its state machine.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Behind the head of its key (`ordering: key`).
    Waiting,
    Pending,
    InFlight,
    Succeeded,
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Pending => "pending",
            Self::InFlight => "in_flight",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
        }
    }

    pub fn of(state: &str) -> Self {
        match state {
            "waiting" => Self::Waiting,
            "in_flight" => Self::InFlight,
            "succeeded" => Self::Succeeded,
            "dead" => Self::Dead,
            _ => Self::Pending,
        }
    }
}

impl DeliveryView {
    pub fn of(d: &DeliveryRow) -> Self {
        Self {
            id: DeliveryId::from_uuid(d.id).to_string(),
            event_id: d.event_id.clone(),
            webhook_id: d.webhook_id.clone(),
            topic: d.topic.clone(),
            status: DeliveryStatus::of(&d.state),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_status_code: d.last_status,
            last_error: d.last_error.clone(),
            created_at: d.created_at,
            updated_at: d.updated_at,
            completed_at: d.completed_at,
            attempts_detail: None,
        }
    }
}

/// One HTTP attempt of a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    /// 1-based.
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    /// `timeout`, `connect`, `http_status`, `redirect`, `blocked_destination`, …
    pub error_kind: Option<String>,
    /// What failed; a URL is named by its origin only.
    pub error: Option<String>,
    /// The first 4 KiB of the receiver's answer.
    pub response_body: Option<String>,
    /// `worker`, or `rescuer` when its lease expired first.
    pub recorded_by: String,
}

impl AttemptView {
    pub fn of(a: &AttemptRow) -> Self {
        Self {
            attempt: a.attempt,
            started_at: a.started_at,
            duration_ms: a.duration_ms,
            status_code: a.status_code,
            error_kind: a.error_kind.clone(),
            error: a.error.clone(),
            response_body: a.response_body.clone(),
            recorded_by: a.recorded_by.clone(),
        }
    }
}

/// A page of deliveries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub data: Vec<DeliveryView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// `POST /v1/deliveries/{id}/replay`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayedView {
    pub id: String,
    /// Always `pending` (or `waiting` at its key's place, shown as pending).
    pub status: DeliveryStatus,
    pub previous_status: DeliveryStatus,
}

/// `POST /v1/deliveries/replay`: at least `webhook` or a time range.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkReplayIn {
    pub webhook: Option<String>,
    /// `dead` (default) or `succeeded`.
    #[schema(pattern = "^(dead|succeeded)$")]
    pub status: Option<String>,
    /// RFC 3339: deliveries finished at or after.
    #[schema(format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339: deliveries finished before.
    #[schema(format = DateTime)]
    pub until: Option<String>,
    /// 1 to 10,000; default 1000.
    #[schema(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkReplayedView {
    pub replayed: u64,
}

/// One audit record.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_id: String,
    pub action: String,
    /// `accepted`, `denied` or `applied`.
    pub outcome: String,
    pub target: Option<String>,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub data: Vec<AuditView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}
