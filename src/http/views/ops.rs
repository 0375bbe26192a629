//! Bodies of the operations routes: webhooks and their state, the policy
//! and its reloads, event-bus sources and their rejects, and the probes.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// A webhook from the policy with its runtime state and counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    /// The URL's origin only (`https://hooks.example.com/…`): a path or
    /// query may hold a credential.
    pub url: String,
    pub topics: Vec<String>,
    /// `enabled:` in the policy.
    pub enabled: bool,
    /// `active`, `throttled` or `disabled`.
    pub state: String,
    /// `policy`, `manual`, `gone`, `failing`, `throttled`; null when active.
    pub state_reason: Option<String>,
    /// While disabled by an admin: their note.
    pub state_note: Option<String>,
    pub state_since: Option<DateTime<Utc>>,
    pub throttled_until: Option<DateTime<Utc>>,
    /// `aion`, `standard` or `both`.
    pub signature: String,
    pub pending: i64,
    pub waiting: i64,
    pub in_flight: i64,
    pub dead: i64,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_error_kind: Option<String>,
    pub attempts_last_hour: i64,
    /// Null when there was no attempt in the last hour.
    pub success_rate_last_hour: Option<f64>,
    /// When the client certificate of the webhook's `tls:` expires; null
    /// without one.
    pub client_cert_expires_at: Option<DateTime<Utc>>,
    /// Whether it expires within 14 days (renew it: an expired one makes
    /// the policy invalid).
    pub client_cert_expires_soon: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub data: Vec<WebhookView>,
}

/// A webhook's runtime state after `disable` or `enable`.
/// The optional body of `POST /v1/webhooks/{id}/disable`.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointChangeIn {
    /// Why, in at most 500 characters; kept while disabled.
    pub note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    pub id: String,
    /// `active`, `throttled` or `disabled`.
    pub state: String,
    pub reason: String,
    /// The admin's note, while disabled by one.
    pub note: Option<String>,
    pub since: DateTime<Utc>,
    /// Whether this call changed anything.
    pub changed: bool,
    /// The policy's `enabled:`; runtime state cannot override a policy
    /// that disables the webhook.
    pub policy_enabled: bool,
}

/// `GET /v1/policy`. Never a secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyView {
    pub retention: RetentionView,
    /// SHA-256 of the policy file in force.
    pub sha256: String,
    pub loaded_at: DateTime<Utc>,
    /// The policy file's path.
    pub source: String,
    /// How many webhooks it has.
    pub webhooks: usize,
    pub last_reload: Option<LastReloadView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionView {
    pub succeeded_seconds: u64,
    pub dead_seconds: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LastReloadView {
    pub at: DateTime<Utc>,
    /// `applied`, `unchanged` or `invalid`.
    pub outcome: String,
    /// Every problem of a refused file, `file:line:column: path: message`.
    pub errors: Vec<String>,
}

/// `POST /v1/policy/reload` when the file is valid.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReloadView {
    /// `applied` or `unchanged`.
    pub outcome: String,
    pub sha256: String,
    /// With `applied`: the hash before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_sha256: Option<String>,
    /// With `applied`: webhooks added, removed and changed (by id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<DiffView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DiffView {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

/// An event-bus source and what it has done since it started.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceView {
    pub id: String,
    /// `kafka` or `nats`.
    pub kind: String,
    pub enabled: bool,
    /// `consuming`, `paused`, `disconnected` or `disabled`; absent until
    /// the source has started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    pub connected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Messages behind, in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
    /// Per partition (Kafka) or pending and unacknowledged (NATS).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub lag_detail: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_created: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejects: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<DateTime<Utc>>,
    /// `envelope` or `raw`.
    pub format: String,
    /// Where it reads from, without credentials (URLs by their origin).
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SourceList {
    pub data: Vec<SourceView>,
}

/// A message a source could not turn into an event.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectView {
    pub id: i64,
    pub source_id: String,
    /// `kafka:<topic>:<p>:<o>` or `nats:<stream>:<seq>`.
    pub position: String,
    pub reason: String,
    /// The first 4 KiB of the message, as text.
    pub value: String,
    pub value_bytes: i64,
    pub truncated: bool,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RejectPage {
    pub data: Vec<RejectView>,
    pub next_cursor: Option<String>,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// `GET /readyz`: the database (asked at most once a second) and the
/// policy; each source's state is shown but does not decide readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    /// `ok` or `unreachable`.
    pub database: String,
    /// Always `loaded`.
    pub policy: String,
    /// Source id → `consuming`, `paused`, `disconnected` or `disabled`.
    pub sources: std::collections::BTreeMap<String, String>,
}

/// An inbound command (contract §4).
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandIn {
    /// An action of the policy's allow-list.
    #[schema(example = "approve_kernel_proposal")]
    pub action: String,
    /// The action's parameters: a JSON object.
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
}

/// An accepted command (the same answer again for a repeated
/// `Idempotency-Key` or signed message).
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandAccepted {
    /// `cmd_` + UUIDv7.
    pub command_id: String,
    pub action: String,
    /// Always `accepted`.
    pub status: String,
}

/// `POST /v1/webhooks/{id}/test`: the test delivery's first attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestSendView {
    /// The test delivery (`dlv_…`), stored like any other: see
    /// `GET /v1/deliveries/{id}`.
    pub delivery_id: String,
    /// `succeeded` or `failed`; `pending` when no attempt finished within
    /// the wait (the webhook is throttled or at its limits): the delivery
    /// stays queued and is sent in its turn.
    pub outcome: String,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Why the attempt failed; null when it succeeded.
    pub error: Option<String>,
    /// The failure's kind (`timeout`, `connect`, `auth`, `http_status`, …).
    pub error_kind: Option<String>,
    pub duration_ms: Option<u64>,
}
