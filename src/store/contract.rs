//! The store's written contract: what every backend provides, one
//! capability trait each, implemented once per backend in the file of the
//! same name (`postgres/queue.rs`, `sqlite/queue.rs`, …). Both backends
//! pass the same suite (`tests/it`, every test on both stores); the facade
//! ([`Store`](super::Store)) adds what is common — guards on empty input —
//! and picks the backend.
//!
//! Crate-private: `async fn` in a trait cannot promise `Send` futures to
//! outside callers; inside the crate the facade calls each backend's
//! concrete method, whose future is known to be `Send`.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

#[allow(unused_imports)] // named by the documentation
use super::DeliveryState;
use super::{
    AttemptRow, AuditFilter, AuditListRow, AuditRow, Claimed, CommandStored, Completion,
    DeliveryFilter, DeliveryRow, EndpointState, Grant, IdempotencyRecord, IngestError,
    InsertOutcome, NewCommand, NewEvent, NewReject, Purged, QueueDepth, RejectRow, ReplayFilter,
    ReplayResult, SignatureRecord, StoreError, Stored, StoredEvent, WebhookSlot, WebhookStats,
};

/// Opening is the backend's own (`Pg::connect_lazy`, `Lite::open`); then the schema, a reachability check and closing.
///
/// Implemented in `postgres/mod.rs` and `sqlite/mod.rs`.
pub(crate) trait Lifecycle {
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Reachability check for `/readyz`: a down database answers within
    /// `within` instead of after the pool's acquire timeout.
    async fn ping(&self, within: Duration) -> Result<(), StoreError>;

    async fn close(&self);
}

/// Ingest: events and their deliveries, written in one statement per call.
///
/// Implemented in `postgres/events.rs` and `sqlite/events.rs`.
pub(crate) trait Events {
    /// Stores `events` (all or none) with one delivery per routed webhook.
    /// Callers dedupe ids within one call first.
    async fn insert_events(
        &self,
        events: &[NewEvent],
        now: DateTime<Utc>,
    ) -> Result<Stored<Vec<InsertOutcome>>, IngestError>;

    /// Inserts events of separate requests together — one commit — each
    /// created, a duplicate or a conflict on its own (`None`). Ids must be
    /// distinct within the call.
    async fn insert_independent(
        &self,
        events: &[NewEvent],
        now: DateTime<Utc>,
    ) -> Result<Stored<Vec<Option<InsertOutcome>>>, StoreError>;

    async fn get_event(&self, id: &str) -> Result<Option<StoredEvent>, StoreError>;
}

/// The queue's transitions (see [`DeliveryState`]): claim (`FOR UPDATE SKIP LOCKED` on PostgreSQL), complete, release and rescue (replay is [`Replay`]). A transition applies only to the delivery at the attempt the caller holds, so a late or repeated call never moves a row twice.
///
/// Implemented in `postgres/queue.rs` and `sqlite/queue.rs`.
pub(crate) trait Queue {
    /// Claims up to `limit` due deliveries of the given webhooks, at most
    /// `room` per webhook, round-robin across webhooks, and leases them to
    /// `worker`. Deliveries of webhooks not listed stay pending.
    async fn claim(
        &self,
        slots: &[WebhookSlot],
        limit: u32,
        worker: &str,
    ) -> Result<Vec<Claimed>, StoreError>;

    /// Records attempts and moves their deliveries on. A completion moves
    /// its delivery only if the delivery is still at that attempt
    /// (`in_flight` under it, or `pending` because the rescuer gave the
    /// lease up and nobody claimed it since); otherwise only the attempt row
    /// is kept. Text from outside is made storable here. Returns how many
    /// line heads it promoted (deliveries it made due).
    async fn complete(&self, done: &[Completion], now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Gives a claimed delivery back untouched: nothing was sent, so no
    /// attempt is recorded and none of its budget is used. Due again after
    /// `retry_in`.
    async fn release(&self, id: Uuid, attempt: i32, retry_in: Duration) -> Result<(), StoreError>;

    /// Returns deliveries whose lease expired to `pending`, due now,
    /// recording the lost attempt as `lease_expired` (`recorded_by =
    /// rescuer`).
    async fn rescue_expired(&self) -> Result<u64, StoreError>;

    /// How long until the earliest pending delivery of these webhooks falls
    /// due (zero if one is due already).
    async fn next_due(&self, webhook_ids: &[&str]) -> Result<Option<Duration>, StoreError>;
}

/// Runtime endpoint state (`active`, `throttled`, `disabled`), shared by every engine on the database.
///
/// Implemented in `postgres/endpoints.rs` and `sqlite/endpoints.rs`.
pub(crate) trait Endpoints {
    /// Every webhook with a stored runtime state (the others are active).
    async fn endpoint_states(&self) -> Result<HashMap<String, EndpointState>, StoreError>;

    /// Pauses `webhook` for `pause` (a receiver's `Retry-After`), unless it
    /// is disabled; a longer pause already in force is kept.
    async fn throttle(&self, webhook: &str, pause: Duration) -> Result<(), StoreError>;

    /// Sets `webhook`'s state with its audit record and event, and (on a
    /// real change) `event` announcing it, in one transaction. Returns the
    /// state in force afterwards and whether it changed.
    async fn set_endpoint_state(
        &self,
        webhook: &str,
        state: &EndpointState,
        audit: (&AuditRow, &NewEvent),
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<(EndpointState, bool), StoreError>;

    /// Whether `webhook` has failed every attempt for at least `after` and
    /// at least `min_failures` times since its last success; with its last
    /// error kind.
    async fn failing_for(
        &self,
        webhook: &str,
        after: Duration,
        min_failures: i32,
    ) -> Result<Option<Option<String>>, StoreError>;
}

/// Replay: a finished delivery back into the queue, with its audit record,
/// by id or by filter.
///
/// Implemented in `postgres/replay.rs` and `sqlite/replay.rs`.
pub(crate) trait Replay {
    /// Puts a finished delivery back to `pending` (or `waiting` in its
    /// line), due now, with a fresh budget and the same id, with the audit
    /// row and event in the same transaction.
    async fn replay(
        &self,
        id: Uuid,
        audit: Option<(&AuditRow, &NewEvent)>,
        now: DateTime<Utc>,
    ) -> Result<Option<ReplayResult>, StoreError>;

    /// Replays every delivery `filter` names (at most `limit`, oldest
    /// first), in one transaction with the audit row and event `audit`
    /// makes from the count.
    async fn replay_matching(
        &self,
        filter: &ReplayFilter,
        audit: impl FnOnce(u64) -> (AuditRow, NewEvent),
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
}

/// One token bucket per rate-limited webhook, refilled by the database's clock, shared by every engine.
///
/// Implemented in `postgres/rate.rs` and `sqlite/rate.rs`.
pub(crate) trait RateLimits {
    /// Takes up to `want` tokens from `webhook`'s bucket (see `rate`).
    async fn take_tokens(
        &self,
        webhook: &str,
        rate: f64,
        burst: f64,
        want: u32,
    ) -> Result<Grant, StoreError>;

    /// Returns `n` unused tokens to `webhook`'s bucket.
    async fn give_back_tokens(&self, webhook: &str, n: u32, burst: f64) -> Result<(), StoreError>;
}

/// Inbound commands, audit records and their replay protection.
///
/// Implemented in `postgres/inbound.rs` and `sqlite/inbound.rs`.
pub(crate) trait Audit {
    /// Stores an accepted command with its dispatch event, audit row and
    /// event and idempotency record, unless its signature or its
    /// `Idempotency-Key` was seen before.
    async fn accept_command(
        &self,
        cmd: &NewCommand,
        audit: &AuditRow,
        audit_event: &NewEvent,
        signature: &SignatureRecord,
        idempotency: Option<&IdempotencyRecord>,
        now: DateTime<Utc>,
    ) -> Result<CommandStored, StoreError>;

    /// Records an audit entry and emits its event, on their own (denials).
    async fn record_audit(
        &self,
        audit: &AuditRow,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Forgets idempotency keys past their 24 h and inbound signatures past
    /// their tolerance window.
    async fn purge_idempotency_keys(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditListRow>, StoreError>;
}

/// Admin queries and retention.
///
/// Implemented in `postgres/queries.rs` and `sqlite/queries.rs`.
pub(crate) trait Queries {
    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRow>, StoreError>;

    async fn get_delivery(
        &self,
        id: Uuid,
    ) -> Result<Option<(DeliveryRow, Vec<AttemptRow>)>, StoreError>;

    /// Deletes up to `batch` deliveries that finished before their cut-off,
    /// their attempts, and the events they leave with nothing referring to
    /// them. Pending and in-flight rows and audit records are never touched.
    async fn purge_finished(
        &self,
        succeeded_before: DateTime<Utc>,
        dead_before: DateTime<Utc>,
        batch: u32,
    ) -> Result<Purged, StoreError>;

    /// Deliveries by state for `/metrics`, and the age of the oldest due one.
    async fn queue_depth(&self) -> Result<QueueDepth, StoreError>;

    async fn webhook_stats(&self, webhook_ids: &[&str]) -> Result<Vec<WebhookStats>, StoreError>;
}

/// Figures for the console's overview.
///
/// Implemented in `postgres/overview.rs` and `sqlite/overview.rs`.
pub(crate) trait Overview {
    /// Health of the given webhooks, in their order.
    /// Attempts that succeeded and failed in the last `window`, all
    /// webhooks (minute resolution).
    async fn recent_outcomes(&self, window: Duration) -> Result<(i64, i64), StoreError>;
}

/// Messages event-bus sources could not turn into events.
///
/// Implemented in `postgres/rejects.rs` and `sqlite/rejects.rs`.
pub(crate) trait Rejects {
    /// Records messages an event-bus source could not turn into events; a
    /// position already recorded for that source is left as it is.
    async fn record_rejects(&self, rejects: &[NewReject]) -> Result<(), StoreError>;

    /// Deletes up to `batch` rejects recorded before `before`; returns how many.
    async fn purge_rejects(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, StoreError>;

    /// A source's rejects, newest first, with ids below `before` if given.
    async fn list_rejects(
        &self,
        source_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RejectRow>, StoreError>;
}

/// Everything a backend provides.
pub(crate) trait Backend:
    Lifecycle + Events + Queue + Replay + Endpoints + RateLimits + Audit + Queries + Overview + Rejects
{
}

impl<
    T: Lifecycle
        + Events
        + Queue
        + Replay
        + Endpoints
        + RateLimits
        + Audit
        + Queries
        + Overview
        + Rejects,
> Backend for T
{
}

/// Both backends keep the whole contract.
const _: fn() = || {
    fn backend<T: Backend>() {}
    backend::<super::postgres::Pg>();
    backend::<super::sqlite::Lite>();
};
