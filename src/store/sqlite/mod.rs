//! The SQLite backend: the embedded single-node store, the default when
//! `DATABASE_URL` is unset.
//!
//! One file, one engine. The process holds an exclusive lock on
//! `<file>.lock` for its whole life, so a second engine on the same file
//! refuses to start instead of sharing or corrupting it. Every write goes
//! through one connection (a pool of one, the connection kept between
//! writes: see `writer`): writes are serialized in the process, so there
//! are no lock waits, no `SQLITE_BUSY` between our own writers, and the row
//! locks, `SKIP LOCKED` and advisory locks of the PostgreSQL backend have
//! nothing to do. Reads (admin queries, metrics) use
//! their own connections and see the last commit (WAL).
//!
//! Durability: WAL with `synchronous=FULL` by default, so an accepted event
//! survives power loss; `AION_WEBHOOKS_SQLITE_SYNCHRONOUS=normal` trades that
//! for speed (a crash of the process still loses nothing; a power cut may
//! lose the last commits).
//!
//! Clock: times are the engine's clock, in milliseconds since the epoch.
//! With one engine there is no other clock to disagree with.

mod endpoints;
mod events;
mod inbound;
mod overview;
mod queries;
mod queue;
mod rate;
mod rejects;
mod replay;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{OpenError, StoreError};
use crate::store::contract::Lifecycle;

/// The path in a `sqlite://PATH` or `sqlite:PATH` URL (query options
/// after `?` are not supported and are cut off).
pub(super) fn path_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    Some(rest.split('?').next().unwrap_or(rest))
}

#[derive(Debug, Clone)]
pub(super) struct Lite {
    /// The one write connection, kept between writes.
    write: Arc<writer::Writer>,
    read: SqlitePool,
    path: PathBuf,
    /// Held (locked) for the life of the process.
    _lock: Arc<std::fs::File>,
}

impl Lite {
    pub(super) async fn open(path: &Path) -> Result<Self, OpenError> {
        let unusable = |reason: String| OpenError::File {
            path: path.display().to_string(),
            reason,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(unusable(format!(
                "its directory {} does not exist",
                dir.display()
            )));
        }
        if path.is_dir() {
            return Err(unusable("it is a directory".to_owned()));
        }
        let lock = lock(path)?;
        let synchronous = match std::env::var("AION_WEBHOOKS_SQLITE_SYNCHRONOUS")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "normal" => SqliteSynchronous::Normal,
            _ => SqliteSynchronous::Full,
        };
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .statement_cache_capacity(256);
        // No check on hand-out (see `writer`): a file connection has no
        // peer to lose.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(writer::WAIT)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(|e| unusable(reason(&e)))?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .acquire_timeout(writer::WAIT)
            .connect_lazy_with(options.create_if_missing(false));
        Ok(Self {
            write: Arc::new(writer::Writer::new(write)),
            read,
            path: path.to_owned(),
            _lock: Arc::new(lock),
        })
    }

    pub(super) fn describe(&self) -> String {
        format!("SQLite file {}", self.path.display())
    }
}

/// Takes the exclusive lock that makes this process the file's only engine,
/// and writes its pid into the lock file for the next one's error message.
fn lock(path: &Path) -> Result<std::fs::File, OpenError> {
    use std::io::{Read, Seek, Write};
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let shown = path.display().to_string();
    let file_error = |e: std::io::Error| OpenError::File {
        path: PathBuf::from(&lock_path).display().to_string(),
        reason: e.to_string(),
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(file_error)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(OpenError::Locked {
                path: shown,
                holder: if holder.is_empty() {
                    "unknown".to_owned()
                } else {
                    holder.chars().take(20).collect()
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(file_error(e)),
    }
    file.set_len(0).map_err(file_error)?;
    file.rewind().map_err(file_error)?;
    write!(file, "{}", std::process::id()).map_err(file_error)?;
    Ok(file)
}

/// Most rows in one multi-row statement: a power of two, with at most 12
/// parameters a row well under SQLite's 32,766.
const ROWS_PER_STATEMENT: usize = 512;

/// Splits `items` into runs whose lengths are powers of two, at most `max`
/// (a power of two), largest first: 37 rows are statements of 32, 4 and 1.
/// Multi-row statements then come in a few shapes, each prepared once and
/// kept in the connection's statement cache, instead of one shape per batch
/// size.
fn shaped<T>(mut items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    debug_assert!(max.is_power_of_two());
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let n = max.min(1 << items.len().ilog2());
        let (head, rest) = items.split_at(n);
        items = rest;
        Some(head)
    })
}

/// Why SQLite refused to open a file, in words.
fn reason(e: &sqlx::Error) -> String {
    match e.as_database_error() {
        // SQLITE_NOTADB, SQLITE_CORRUPT.
        Some(db) if matches!(db.code().as_deref(), Some("26" | "11")) => format!(
            "it is not an SQLite database, or it is damaged ({})",
            db.message()
        ),
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    }
}

/// Milliseconds since the epoch, as stored.
fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A stored time.
fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn after(now: i64, d: Duration) -> i64 {
    now.saturating_add(super::millis(d))
}

fn now_ms() -> i64 {
    ms(Utc::now())
}

impl Lifecycle for Lite {
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut w = self.write.take().await?;
        sqlx::migrate!("./migrations/sqlite").run(&mut *w).await?;
        w.done();
        Ok(())
    }

    async fn ping(&self, within: Duration) -> Result<(), StoreError> {
        match tokio::time::timeout(within, sqlx::query("SELECT 1").execute(&self.read)).await {
            Ok(result) => result.map(|_| ()).map_err(Into::into),
            Err(_) => Err(StoreError::Database(sqlx::Error::PoolTimedOut)),
        }
    }

    async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_statements_come_in_power_of_two_shapes() {
        let sizes = |n: usize, max: usize| -> Vec<usize> {
            let items: Vec<usize> = (0..n).collect();
            let runs: Vec<&[usize]> = shaped(&items, max).collect();
            let flat: Vec<usize> = runs.concat();
            assert_eq!(flat, items, "every item once, in order");
            runs.iter().map(|r| r.len()).collect()
        };
        assert_eq!(sizes(0, 512), Vec::<usize>::new());
        assert_eq!(sizes(1, 512), [1]);
        assert_eq!(sizes(37, 512), [32, 4, 1]);
        assert_eq!(sizes(1200, 512), [512, 512, 128, 32, 16]);
    }

    #[test]
    fn urls_name_their_file() {
        assert_eq!(
            path_of("sqlite://aion-webhooks.db"),
            Some("aion-webhooks.db")
        );
        assert_eq!(
            path_of("sqlite:/var/lib/a.db?mode=rwc"),
            Some("/var/lib/a.db")
        );
        assert_eq!(path_of("postgres://x/y"), None);
    }
}
