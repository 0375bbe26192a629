//! The store: every SQL statement in the crate lives below this module, so a
//! second backend (the embedded SQLite default) is an addition here and
//! nowhere else. Callers see plain Rust types, never rows or SQL.
//!
//! Queue discipline (River's): claim due rows with one `UPDATE … WHERE id IN
//! (SELECT … FOR UPDATE SKIP LOCKED)`, commit, send outside any transaction,
//! then record the outcome in one short transaction.
//!
//! Longer than 400 lines until the delivery-core reshape (issue 29) puts
//! the 31 backend methods behind written capability traits: today each is
//! a documented facade over `dispatch!`, and splitting the facade by
//! concern before those traits exist would only move the list around.

mod endpoints;
mod events;
mod inbound;
mod lines;
mod postgres;
mod queries;
mod queue;
mod rate;
mod rejects;
mod sqlite;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

pub use endpoints::{EndpointState, EndpointStatus};
pub use events::{
    EventMeta, EventNotes, IngestError, InsertOutcome, Lease, NewEvent, Recipient, Stored,
    StoredEvent, same_payloads,
};
pub use inbound::{
    AuditListRow, AuditRow, CommandStored, IdempotencyRecord, NewCommand, SignatureRecord,
};
pub use queries::{
    AttemptRow, AuditFilter, DeliveryFilter, DeliveryRow, Purged, QueueDepth, WebhookStats,
};
pub use queue::{AttemptRecord, Claimed, Completion, ReplayFilter, ReplayResult, WebhookSlot};
pub use rate::Grant;
pub use rejects::{NewReject, REJECT_VALUE_BYTES, RejectRow};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A shared write (group commit) failed; every caller in it gets this.
    #[error("database error: {message}")]
    Group {
        unavailable: bool,
        /// A lost deadlock or serialization race: worth trying again.
        transient: bool,
        message: String,
    },
}

impl StoreError {
    /// True when the database could not be reached (as opposed to a query
    /// it refused): the caller answers 503 and retries later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed,
            ) => true,
            // SQLite: I/O error, disk full, cannot open the file.
            StoreError::Database(sqlx::Error::Database(e))
                if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() =>
            {
                e.code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .is_some_and(|c| matches!(c & 0xff, 10 | 13 | 14))
            }
            // 08xxx connection exception, 57P0x shutdown / cannot connect now
            // (what a restarting server answers), 53xxx out of resources.
            StoreError::Database(sqlx::Error::Database(e)) => e.code().is_some_and(|c| {
                c.starts_with("08") || c.starts_with("57P") || c.starts_with("53")
            }),
            StoreError::Group { unavailable, .. } => *unavailable,
            _ => false,
        }
    }

    /// True when the same write may succeed if simply tried again: the
    /// database is unreachable, or the statement lost a deadlock or a
    /// serialization race. Anything else is a property of the data, and
    /// retrying the same rows would fail the same way forever.
    pub fn is_transient(&self) -> bool {
        if self.is_unavailable() {
            return true;
        }
        match self {
            StoreError::Group { transient, .. } => *transient,
            // SQLite: SQLITE_BUSY / SQLITE_LOCKED (and their extended codes).
            StoreError::Database(sqlx::Error::Database(e))
                if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() =>
            {
                e.code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .is_some_and(|c| matches!(c & 0xff, 5 | 6))
            }
            // 40001 serialization failure, 40P01 deadlock, 55P03 lock not available.
            StoreError::Database(sqlx::Error::Database(e)) => e
                .code()
                .is_some_and(|c| matches!(c.as_ref(), "40001" | "40P01" | "55P03")),
            _ => false,
        }
    }
}

/// Text from outside, made storable: PostgreSQL `text` cannot hold U+0000,
/// so each NUL becomes U+FFFD. Everything else is kept as it is.
pub fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Where a delivery is in its life. The one state machine of the queue;
/// who moves a row, and when:
///
/// ```text
/// (ingest)  -> pending     one row per matching webhook, in the event's transaction
/// (ingest)  -> waiting     instead, for a keyed event to an `ordering: key`
///                          webhook: the delivery joins its line (`lines`)
/// (ingest)  -> in_flight   instead, sent at once by the accepting engine
///                          (`Recipient::lease`): lease set, attempts = 1, as
///                          if claimed in the same statement; never in a line
/// waiting   -> pending     the line has no head any more (its head finished,
///                          or it was empty): the lowest order_seq is promoted
/// pending   -> in_flight   claim: due by the database clock, lease set, attempts + 1
/// in_flight -> succeeded   the lease holder records a 2xx
/// in_flight -> pending     the lease holder records a failure with budget left
///                          (due after retry_in); or release: nothing was sent,
///                          attempts - 1, no attempt row; or the rescuer, once
///                          the lease expired (attempt row `lease_expired`)
/// in_flight -> dead        the lease holder records the last attempt's failure
/// pending   -> any         a late real outcome of the attempt the rescuer gave
///                          up, if nobody claimed the delivery since
/// dead | succeeded -> pending   manual replay (budget restarts at replay_base);
///                          `waiting` instead for a delivery in a line
/// ```
///
/// In a line only the head is ever `pending` or `in_flight`: a line sends
/// one delivery at a time, in acceptance order, and its head leaving
/// (`succeeded` or `dead`) lets the next one go. Attempts are append-only
/// rows; a row is never rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Waiting,
    Pending,
    InFlight,
    Succeeded,
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Pending => "pending",
            Self::InFlight => "in_flight",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
        }
    }

    /// `succeeded` or `dead`: the delivery has left the queue (and its line).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Dead)
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "waiting" => Some(Self::Waiting),
            "pending" => Some(Self::Pending),
            "in_flight" => Some(Self::InFlight),
            "succeeded" => Some(Self::Succeeded),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// What every backend shares within this process: the wake-up of local
/// workers after a local write, and the count of local endpoint-state
/// changes.
#[derive(Debug, Default)]
struct Local {
    /// Wakes this process's workers at once after a local ingest; other
    /// engines (PostgreSQL only) hear about it through NOTIFY.
    wake: Arc<Notify>,
    /// Counts this process's endpoint state changes (see `endpoints`).
    endpoint_version: AtomicU64,
}

/// Which database holds the queue.
#[derive(Debug, Clone)]
enum Backend {
    Postgres(postgres::Pg),
    Sqlite(sqlite::Lite),
}

/// Which kind of store runs, for logs and `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Postgres,
    Sqlite,
}

/// The store: one interface over PostgreSQL (several engines on one
/// database) and SQLite (the embedded single-node default). Nothing above
/// this module knows which one runs.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    local: Arc<Local>,
}

/// Calls the same method on whichever backend runs.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* $(,)? )) => {
        match &$self.backend {
            Backend::Postgres(db) => db.$method($($arg),*).await,
            Backend::Sqlite(db) => db.$method($($arg),*).await,
        }
    };
}

/// The file an unset `DATABASE_URL` means: the embedded store in the
/// working directory (contract §8).
pub const DEFAULT_SQLITE_FILE: &str = "aion-webhooks.db";

impl Store {
    /// Opens the store `url` names: `postgres://…` / `postgresql://…`, or
    /// `sqlite://PATH` (`sqlite:PATH`). PostgreSQL connects lazily (the
    /// engine starts, and answers `/readyz` with 503, while the database is
    /// down); SQLite opens the file now, creating it, and holds its lock for
    /// the life of the process so no second engine can share it.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, OpenError> {
        if let Some(path) = sqlite::path_of(url) {
            return Self::open_sqlite(std::path::Path::new(path)).await;
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::connect_lazy(url, max_connections)?);
        }
        Err(OpenError::Url(
            "DATABASE_URL must start with postgres://, postgresql:// or sqlite://".to_owned(),
        ))
    }

    /// The PostgreSQL store, connected lazily.
    pub fn connect_lazy(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let local = Arc::<Local>::default();
        Ok(Self {
            backend: Backend::Postgres(postgres::Pg::connect_lazy(
                url,
                max_connections,
                local.clone(),
            )?),
            local,
        })
    }

    /// Wraps an existing PostgreSQL pool (tests get one per fresh database).
    pub fn from_pool(pool: PgPool) -> Self {
        let local = Arc::<Local>::default();
        Self {
            backend: Backend::Postgres(postgres::Pg::new(pool, local.clone())),
            local,
        }
    }

    /// The SQLite store in `path`, created if missing, locked for this
    /// process.
    pub async fn open_sqlite(path: &std::path::Path) -> Result<Self, OpenError> {
        let local = Arc::<Local>::default();
        Ok(Self {
            backend: Backend::Sqlite(sqlite::Lite::open(path, local.clone()).await?),
            local,
        })
    }

    pub fn kind(&self) -> StoreKind {
        match self.backend {
            Backend::Postgres(_) => StoreKind::Postgres,
            Backend::Sqlite(_) => StoreKind::Sqlite,
        }
    }

    /// Where the data lives, for the start-up log: the SQLite file, or the
    /// PostgreSQL host and database (never credentials).
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Postgres(db) => db.describe(),
            Backend::Sqlite(db) => db.describe(),
        }
    }

    /// Notified whenever this process stored new deliveries.
    pub fn local_wakeups(&self) -> Arc<Notify> {
        self.local.wake.clone()
    }

    /// Bumped by every local endpoint state change, so this process's
    /// worker picks it up at once (other engines re-read the states every
    /// poll interval).
    pub fn endpoint_version(&self) -> u64 {
        self.local
            .endpoint_version
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        dispatch!(self.migrate())
    }

    /// Reachability check for `/readyz`: a down database answers within
    /// `within` instead of after the pool's acquire timeout.
    pub async fn ping(&self, within: Duration) -> Result<(), StoreError> {
        dispatch!(self.ping(within))
    }

    /// A wake-up source for workers: other engines' writes (PostgreSQL's
    /// NOTIFY). Interest is registered before the caller's first claim, so a
    /// notify between claim and wait is not lost. With SQLite there is no
    /// other engine, and it never fires ([`Store::local_wakeups`] covers
    /// this process).
    pub async fn wakeups(&self) -> Result<Wakeups, StoreError> {
        match &self.backend {
            Backend::Postgres(db) => Ok(Wakeups {
                listener: Some(db.listen().await?),
            }),
            Backend::Sqlite(_) => Ok(Wakeups { listener: None }),
        }
    }

    pub async fn close(&self) {
        dispatch!(self.close())
    }

    // Ingest (see `events`).

    /// Stores `events` (all or none) with one delivery per routed webhook.
    /// Callers dedupe ids within one call first.
    pub async fn insert_events(
        &self,
        events: &[NewEvent],
        now: DateTime<Utc>,
    ) -> Result<Stored<Vec<InsertOutcome>>, IngestError> {
        dispatch!(self.insert_events(events, now))
    }

    /// Inserts events of separate requests together — one commit — each
    /// created, a duplicate or a conflict on its own (`None`). Ids must be
    /// distinct within the call.
    pub async fn insert_independent(
        &self,
        events: &[NewEvent],
        now: DateTime<Utc>,
    ) -> Result<Stored<Vec<Option<InsertOutcome>>>, StoreError> {
        dispatch!(self.insert_independent(events, now))
    }

    pub async fn get_event(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        dispatch!(self.get_event(id))
    }

    // The queue's transitions (see `DeliveryState`).

    /// Claims up to `limit` due deliveries of the given webhooks, at most
    /// `room` per webhook, round-robin across webhooks, and leases them to
    /// `worker`. Deliveries of webhooks not listed stay pending.
    pub async fn claim(
        &self,
        slots: &[WebhookSlot],
        limit: u32,
        worker: &str,
    ) -> Result<Vec<Claimed>, StoreError> {
        if slots.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        dispatch!(self.claim(slots, limit, worker))
    }

    /// Records attempts and moves their deliveries on. A completion moves
    /// its delivery only if the delivery is still at that attempt
    /// (`in_flight` under it, or `pending` because the rescuer gave the
    /// lease up and nobody claimed it since); otherwise only the attempt row
    /// is kept. Text from outside is made storable here.
    pub async fn complete(
        &self,
        done: &[Completion],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        dispatch!(self.complete(done, now))
    }

    /// Gives a claimed delivery back untouched: nothing was sent, so no
    /// attempt is recorded and none of its budget is used. Due again after
    /// `retry_in`.
    pub async fn release(
        &self,
        id: Uuid,
        attempt: i32,
        retry_in: Duration,
    ) -> Result<(), StoreError> {
        dispatch!(self.release(id, attempt, retry_in))
    }

    /// Returns deliveries whose lease expired to `pending`, due now,
    /// recording the lost attempt as `lease_expired` (`recorded_by =
    /// rescuer`).
    pub async fn rescue_expired(&self) -> Result<u64, StoreError> {
        dispatch!(self.rescue_expired())
    }

    /// Puts a finished delivery back to `pending` (or `waiting` in its
    /// line), due now, with a fresh budget and the same id, with the audit
    /// row and event in the same transaction.
    pub async fn replay(
        &self,
        id: Uuid,
        audit: Option<(&AuditRow, &NewEvent)>,
        now: DateTime<Utc>,
    ) -> Result<Option<ReplayResult>, StoreError> {
        dispatch!(self.replay(id, audit, now))
    }

    /// Replays every delivery `filter` names (at most `limit`, oldest
    /// first), in one transaction with the audit row and event `audit`
    /// makes from the count.
    pub async fn replay_matching(
        &self,
        filter: &ReplayFilter,
        audit: impl FnOnce(u64) -> (AuditRow, NewEvent),
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        dispatch!(self.replay_matching(filter, audit, now))
    }

    /// How long until the earliest pending delivery of these webhooks falls
    /// due (zero if one is due already).
    pub async fn next_due(&self, webhook_ids: &[&str]) -> Result<Option<Duration>, StoreError> {
        dispatch!(self.next_due(webhook_ids))
    }

    // Admin queries and retention (see `queries`).

    pub async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        dispatch!(self.list_deliveries(filter))
    }

    pub async fn get_delivery(
        &self,
        id: Uuid,
    ) -> Result<Option<(DeliveryRow, Vec<AttemptRow>)>, StoreError> {
        dispatch!(self.get_delivery(id))
    }

    /// Deletes up to `batch` deliveries that finished before their cut-off,
    /// their attempts, and the events they leave with nothing referring to
    /// them. Pending and in-flight rows and audit records are never touched.
    pub async fn purge_finished(
        &self,
        succeeded_before: DateTime<Utc>,
        dead_before: DateTime<Utc>,
        batch: u32,
    ) -> Result<Purged, StoreError> {
        dispatch!(self.purge_finished(succeeded_before, dead_before, batch))
    }

    /// Deliveries by state for `/metrics`, and the age of the oldest due one.
    pub async fn queue_depth(&self) -> Result<QueueDepth, StoreError> {
        dispatch!(self.queue_depth())
    }

    /// Health of the given webhooks, in their order.
    /// Attempts that succeeded and failed in the last `window`, all
    /// webhooks (minute resolution).
    pub async fn recent_outcomes(&self, window: Duration) -> Result<(i64, i64), StoreError> {
        dispatch!(self.recent_outcomes(window))
    }

    pub async fn webhook_stats(
        &self,
        webhook_ids: &[&str],
    ) -> Result<Vec<WebhookStats>, StoreError> {
        dispatch!(self.webhook_stats(webhook_ids))
    }

    // Runtime endpoint state (see `endpoints`).

    /// Every webhook with a stored runtime state (the others are active).
    pub async fn endpoint_states(
        &self,
    ) -> Result<std::collections::HashMap<String, EndpointState>, StoreError> {
        dispatch!(self.endpoint_states())
    }

    /// Pauses `webhook` for `pause` (a receiver's `Retry-After`), unless it
    /// is disabled; a longer pause already in force is kept.
    pub async fn throttle(&self, webhook: &str, pause: Duration) -> Result<(), StoreError> {
        dispatch!(self.throttle(webhook, pause))
    }

    /// Sets `webhook`'s state with its audit record and event, and (on a
    /// real change) `event` announcing it, in one transaction. Returns the
    /// state in force afterwards and whether it changed.
    pub async fn set_endpoint_state(
        &self,
        webhook: &str,
        state: &EndpointState,
        audit: (&AuditRow, &NewEvent),
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<(EndpointState, bool), StoreError> {
        dispatch!(self.set_endpoint_state(webhook, state, audit, event, now))
    }

    /// Whether `webhook` has failed every attempt for at least `after` and
    /// at least `min_failures` times since its last success; with its last
    /// error kind.
    pub async fn failing_for(
        &self,
        webhook: &str,
        after: Duration,
        min_failures: i32,
    ) -> Result<Option<Option<String>>, StoreError> {
        dispatch!(self.failing_for(webhook, after, min_failures))
    }

    /// Takes up to `want` tokens from `webhook`'s bucket (see `rate`).
    pub async fn take_tokens(
        &self,
        webhook: &str,
        rate: f64,
        burst: f64,
        want: u32,
    ) -> Result<Grant, StoreError> {
        dispatch!(self.take_tokens(webhook, rate, burst, want))
    }

    /// Returns `n` unused tokens to `webhook`'s bucket.
    pub async fn give_back_tokens(
        &self,
        webhook: &str,
        n: u32,
        burst: f64,
    ) -> Result<(), StoreError> {
        dispatch!(self.give_back_tokens(webhook, n, burst))
    }

    // Inbound commands and audit (see `inbound`).

    /// Stores an accepted command with its dispatch event, audit row and
    /// event and idempotency record, unless its signature or its
    /// `Idempotency-Key` was seen before.
    pub async fn accept_command(
        &self,
        cmd: &NewCommand,
        audit: &AuditRow,
        audit_event: &NewEvent,
        signature: &SignatureRecord,
        idempotency: Option<&IdempotencyRecord>,
        now: DateTime<Utc>,
    ) -> Result<CommandStored, StoreError> {
        dispatch!(self.accept_command(cmd, audit, audit_event, signature, idempotency, now))
    }

    /// Records an audit entry and emits its event, on their own (denials).
    pub async fn record_audit(
        &self,
        audit: &AuditRow,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        dispatch!(self.record_audit(audit, event, now))
    }

    /// Forgets idempotency keys past their 24 h and inbound signatures past
    /// their tolerance window.
    pub async fn purge_idempotency_keys(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        dispatch!(self.purge_idempotency_keys(now))
    }

    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditListRow>, StoreError> {
        dispatch!(self.list_audit(filter))
    }

    /// Records messages an event-bus source could not turn into events; a
    /// position already recorded for that source is left as it is.
    pub async fn record_rejects(&self, rejects: &[NewReject]) -> Result<(), StoreError> {
        dispatch!(self.record_rejects(rejects))
    }

    /// Deletes up to `batch` rejects recorded before `before`; returns how many.
    pub async fn purge_rejects(
        &self,
        before: DateTime<Utc>,
        batch: u32,
    ) -> Result<u64, StoreError> {
        dispatch!(self.purge_rejects(before, batch))
    }

    /// A source's rejects, newest first, with ids below `before` if given.
    pub async fn list_rejects(
        &self,
        source_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RejectRow>, StoreError> {
        dispatch!(self.list_rejects(source_id, before, limit))
    }
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Url(String),
    /// Another process holds the SQLite file.
    #[error(
        "{path} is in use by another aion-webhooks process (pid {holder}); SQLite is single-node: \
         stop that engine, or use PostgreSQL to run several"
    )]
    Locked { path: String, holder: String },
    /// The SQLite file cannot be used: why, in words (no error chain: the
    /// reason is the whole story).
    #[error("cannot use {path}: {reason}")]
    File { path: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Notifications that new deliveries are due. A hint only: workers also poll.
#[derive(Debug)]
pub struct Wakeups {
    listener: Option<sqlx::postgres::PgListener>,
}

impl Wakeups {
    /// Waits for the next notification. Reconnects (and re-listens) by itself
    /// after a lost connection; an error means the database is unreachable.
    pub async fn recv(&mut self) -> Result<(), StoreError> {
        let Some(listener) = self.listener.as_mut() else {
            return std::future::pending().await;
        };
        listener.recv().await?;
        // One claim serves every notification that has piled up meanwhile.
        while listener.next_buffered().is_some() {}
        Ok(())
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn clamp_i32(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
