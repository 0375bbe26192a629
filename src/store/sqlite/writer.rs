//! The one write connection, kept between writes.
//!
//! sqlx's pool checks a connection with a round trip to its thread when it
//! hands it out, and again, in a task of its own, when it takes it back; the
//! next writer waits for that second check, since the write pool has one
//! connection. On SQLite every round trip is a hop to the connection's thread
//! and back (two thread wake-ups), and a write of one statement is three
//! (`BEGIN`, the statement, `COMMIT`): the two checks and the spawned task
//! made it five, on the one connection every write waits for. So the store's
//! writes take the connection from a slot behind an async lock and put it
//! back when they finish (the PostgreSQL backend's `hot` module does the same
//! for its delivery path).
//!
//! What keeps this safe:
//! - a write that fails, or a future dropped mid-write, drops its connection
//!   the ordinary way: the pool checks it (which also runs the rollback a
//!   dropped transaction queued) before anyone gets it again, and the next
//!   writer takes it from the pool;
//! - the slot holds the pool's only connection, so every write goes through
//!   [`Writer::take`]: the pool itself is not reachable from outside;
//! - a write waits for the connection at most as long as it waited for the
//!   pool before ([`WAIT`]), slot and pool together;
//! - [`Writer::close`] empties the slot before the pool closes (the pool's
//!   `close` waits for every connection to come back).
//!
//! SQLite connections are files, not sockets: nothing can break one between
//! two writes that a check would find, which is why the pool's check on
//! hand-out is off for both of the store's pools.

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{Mutex, MutexGuard};

/// Longest a write waits for the connection, as the pool's acquire timeout.
pub(super) const WAIT: Duration = Duration::from_secs(30);

/// The write connection's slot.
#[derive(Debug)]
pub(super) struct Writer {
    pool: SqlitePool,
    slot: Mutex<Option<PoolConnection<Sqlite>>>,
}

impl Writer {
    /// A slot over `pool` (a pool of one connection), empty until the first
    /// write.
    pub(super) fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            slot: Mutex::new(None),
        }
    }

    /// The write connection, once the writes before are done: from the slot
    /// when the last write finished cleanly, else from the pool.
    /// Waits at most [`WAIT`] in all, for the slot and then, when it is
    /// empty, for the pool.
    pub(super) async fn take(&self) -> Result<Held<'_>, sqlx::Error> {
        let held = async {
            let mut slot = self.slot.lock().await;
            let conn = match slot.take() {
                Some(conn) => conn,
                None => self.pool.acquire().await?,
            };
            Ok(Held {
                slot,
                conn: Some(conn),
            })
        };
        tokio::time::timeout(WAIT, held)
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    /// Empties the slot, then closes the pool.
    pub(super) async fn close(&self) {
        let held = self.slot.lock().await.take();
        drop(held);
        self.pool.close().await;
    }
}

/// The write connection while one write uses it. [`Held::done`] after the
/// write succeeded puts it back in the slot; dropped otherwise, it goes back
/// to the pool, which checks it.
pub(super) struct Held<'a> {
    slot: MutexGuard<'a, Option<PoolConnection<Sqlite>>>,
    conn: Option<PoolConnection<Sqlite>>,
}

impl Held<'_> {
    /// A transaction on the connection; [`Held::done`] after its commit.
    pub(super) async fn begin(&mut self) -> Result<sqlx::Transaction<'_, Sqlite>, sqlx::Error> {
        sqlx::Connection::begin(&mut **self).await
    }

    /// The write succeeded: keep the connection for the next one.
    pub(super) fn done(mut self) {
        *self.slot = self.conn.take();
    }
}

impl std::ops::Deref for Held<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &Self::Target {
        self.conn.as_ref().expect("present until done")
    }
}

impl std::ops::DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.conn.as_mut().expect("present until done")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    async fn writer(dir: &tempfile::TempDir) -> Writer {
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("w.db"))
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .unwrap();
        let w = Writer::new(pool);
        let mut c = w.take().await.unwrap();
        sqlx::query("CREATE TABLE t (v INTEGER PRIMARY KEY)")
            .execute(&mut *c)
            .await
            .unwrap();
        c.done();
        w
    }

    async fn rows(w: &Writer) -> Vec<i64> {
        let mut c = w.take().await.unwrap();
        let v = sqlx::query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(&mut *c)
            .await
            .unwrap();
        c.done();
        v
    }

    /// One write as the store makes it: take, begin, insert `v`, then
    /// `between` (where a write may wait, or be cancelled), commit, done.
    async fn insert(w: &Writer, v: i64, between: impl std::future::Future<Output = ()>) {
        let mut c = w.take().await.unwrap();
        let mut tx = c.begin().await.unwrap();
        sqlx::query("INSERT INTO t VALUES (?1)")
            .bind(v)
            .execute(&mut *tx)
            .await
            .unwrap();
        between.await;
        tx.commit().await.unwrap();
        c.done();
    }

    #[tokio::test]
    async fn a_finished_write_keeps_the_connection_out_of_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(&dir).await;
        // Held in the slot, not idle in the pool: the pool's check on
        // return never ran for it.
        assert_eq!(w.pool.num_idle(), 0);
        assert!(w.slot.lock().await.is_some());
        insert(&w, 1, async {}).await;
        assert_eq!(rows(&w).await, [1]);
        assert!(w.slot.lock().await.is_some());
    }

    #[tokio::test]
    async fn a_failed_write_gives_the_connection_back_to_the_pool_and_the_next_one_works() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(&dir).await;
        let mut c = w.take().await.unwrap();
        let err = sqlx::query("INSERT INTO nowhere VALUES (1)")
            .execute(&mut *c)
            .await;
        assert!(err.is_err());
        drop(c); // as `?` would
        assert!(w.slot.lock().await.is_none(), "not kept after a failure");
        insert(&w, 2, async {}).await;
        assert_eq!(rows(&w).await, [2]);
    }

    #[tokio::test]
    async fn a_write_dropped_mid_transaction_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(&dir).await;
        // A request cancelled inside its transaction: the future is dropped
        // after its insert, before its commit.
        let cancelled = tokio::time::timeout(
            Duration::from_millis(100),
            insert(&w, 3, std::future::pending()),
        )
        .await;
        assert!(cancelled.is_err());
        // The next write gets the connection back from the pool, rolled
        // back, and can write the same row.
        insert(&w, 3, async {}).await;
        assert_eq!(rows(&w).await, [3]);
    }

    #[tokio::test]
    async fn writes_wait_their_turn_and_close_does_not_wait_for_the_slot() {
        let dir = tempfile::tempdir().unwrap();
        let w = std::sync::Arc::new(writer(&dir).await);
        let tasks: Vec<_> = (10..20)
            .map(|v| {
                let w = w.clone();
                tokio::spawn(async move { insert(&w, v, tokio::task::yield_now()).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(rows(&w).await, (10..20).collect::<Vec<i64>>());
        // The connection sits in the slot; closing must not hang on it.
        tokio::time::timeout(Duration::from_secs(5), w.close())
            .await
            .expect("close returns");
        assert!(w.pool.is_closed());
    }
}
