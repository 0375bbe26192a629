//! The store: every SQL statement in the crate lives below this module, so a
//! second backend (the embedded SQLite default) is an addition here and
//! nowhere else. Callers see plain Rust types, never rows or SQL.
//!
//! Queue discipline (River's): claim due rows with one `UPDATE … WHERE id IN
//! (SELECT … FOR UPDATE SKIP LOCKED)`, commit, send outside any transaction,
//! then record the outcome in one short transaction.

mod endpoints;
mod events;
mod inbound;
mod lines;
mod queries;
mod queue;
mod rate;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::Notify;

pub use endpoints::{EndpointState, EndpointStatus};
pub use events::{
    IngestError, InsertOutcome, Lease, NewEvent, Recipient, Stored, StoredEvent, same_payloads,
};
pub use inbound::{
    AuditListRow, AuditRow, CommandStored, IdempotencyRecord, NewCommand, SignatureRecord,
};
pub use queries::{AttemptRow, DeliveryFilter, DeliveryRow, Purged, WebhookStats};
pub use queue::{AttemptRecord, Claimed, Completion, ReplayFilter, ReplayResult, WebhookSlot};
pub use rate::Grant;

/// Channel the ingest transaction notifies on commit; workers LISTEN on it.
const WAKE_CHANNEL: &str = "aion_deliveries";

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

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    /// Wakes this process's workers at once after a local ingest; other
    /// engines hear about it through NOTIFY.
    local_wake: Arc<Notify>,
    /// Counts this process's endpoint state changes (see `endpoints`).
    endpoint_version: Arc<std::sync::atomic::AtomicU64>,
}

impl Store {
    /// Connects lazily: the engine starts (and answers `/readyz` with 503)
    /// even while the database is down.
    pub fn connect_lazy(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let mut options: PgConnectOptions = url.parse()?;
        // Operators (and tests) tell the engine's sessions apart in
        // `pg_stat_activity`; a name in the URL wins.
        if options.get_application_name().is_none() {
            options = options.application_name("aion-webhooks");
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            local_wake: Arc::default(),
            endpoint_version: Arc::default(),
        })
    }

    /// Wraps an existing pool (tests get one per fresh database).
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            local_wake: Arc::default(),
            endpoint_version: Arc::default(),
        }
    }

    /// Notified whenever this process stored new deliveries.
    pub fn local_wakeups(&self) -> Arc<Notify> {
        self.local_wake.clone()
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations").run(&self.pool).await?;
        Ok(())
    }

    /// Reachability check for `/readyz`: a down database answers within
    /// `within` instead of after the pool's acquire timeout.
    pub async fn ping(&self, within: Duration) -> Result<(), StoreError> {
        match tokio::time::timeout(within, sqlx::query("SELECT 1").execute(&self.pool)).await {
            Ok(result) => result.map(|_| ()).map_err(Into::into),
            Err(_) => Err(StoreError::Database(sqlx::Error::PoolTimedOut)),
        }
    }

    /// A wake-up source for workers. Interest is registered before the
    /// caller's first claim, so a notify between claim and wait is not lost.
    pub async fn wakeups(&self) -> Result<Wakeups, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(WAKE_CHANNEL).await?;
        Ok(Wakeups { listener })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Notifications that new deliveries are due. A hint only: workers also poll.
#[derive(Debug)]
pub struct Wakeups {
    listener: PgListener,
}

impl Wakeups {
    /// Waits for the next notification. Reconnects (and re-listens) by itself
    /// after a lost connection; an error means the database is unreachable.
    pub async fn recv(&mut self) -> Result<(), StoreError> {
        self.listener.recv().await?;
        // One claim serves every notification that has piled up meanwhile.
        while self.listener.next_buffered().is_some() {}
        Ok(())
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn clamp_i32(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
