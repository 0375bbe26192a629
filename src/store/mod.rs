//! The store: every SQL statement in the crate lives below this module, so a
//! second backend (the embedded SQLite default) is an addition here and
//! nowhere else. Callers see plain Rust types, never rows or SQL.
//!
//! Queue discipline (River's): claim due rows with one `UPDATE … WHERE id IN
//! (SELECT … FOR UPDATE SKIP LOCKED)`, commit, send outside any transaction,
//! then record the outcome in one short transaction.
//!
//! What every backend provides is written down as capability traits in
//! `contract` (events, queue, endpoints, rate limits, audit, queries,
//! overview, rejects, lifecycle), implemented once per backend in the file
//! of the same name; [`Store`] is the facade that picks the backend and adds
//! what is common.

mod contract;
mod endpoints;
mod error;
mod events;
mod facade;
mod health;
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

use sqlx::PgPool;
use tokio::sync::Notify;

pub use crate::domain::DeliveryState;
pub use endpoints::{EndpointState, EndpointStatus};
pub use error::{StoreError, storable};
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

/// What the facade keeps for this process, whichever backend runs: the
/// wake-up of local workers after a local write, and the count of local
/// endpoint-state changes.
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
            backend: Backend::Postgres(postgres::Pg::connect_lazy(url, max_connections)?),
            local,
        })
    }

    /// Wraps an existing PostgreSQL pool (tests get one per fresh database).
    pub fn from_pool(pool: PgPool) -> Self {
        let local = Arc::<Local>::default();
        Self {
            backend: Backend::Postgres(postgres::Pg::new(pool)),
            local,
        }
    }

    /// The SQLite store in `path`, created if missing, locked for this
    /// process.
    pub async fn open_sqlite(path: &std::path::Path) -> Result<Self, OpenError> {
        let local = Arc::<Local>::default();
        Ok(Self {
            backend: Backend::Sqlite(sqlite::Lite::open(path).await?),
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
