//! Connections kept between hot-path statements.
//!
//! sqlx's pool checks a connection with a round trip (`Sync` →
//! `ReadyForQuery`) when it hands it out and again, in a task of its own,
//! when it takes it back. For a one-statement ingest or outcome that is three
//! round trips and three wake-ups on each side where one is the work; at
//! light load those checks were most of what an event cost (see
//! docs/src/performance/log.md). So the statements on the delivery path — ingest, claim,
//! outcomes — take their connection from a small stack of connections that
//! just finished a statement successfully, and put it back when they finish
//! one; anything else goes through the pool as before.
//!
//! What keeps this safe:
//! - only a connection whose last statement succeeded, less than [`FRESH`]
//!   ago, is reused; an older one goes back to the pool (which checks it),
//! - a statement that fails, or a future dropped mid-statement, drops its
//!   connection the ordinary way: the pool checks it, and discards it if
//!   it is broken,
//! - the pool itself checks (pings) only connections idle for [`FRESH`] or
//!   longer when it hands them out (`before_acquire`), since the check on
//!   the way back already vouched for the others,
//! - the stack holds at most a quarter of the pool, so the rest of the
//!   engine always finds connections,
//! - when the store closes, the stack is emptied first (the pool's `close`
//!   waits for every connection to come back).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

/// How long after its last successful statement a connection is reused
/// without a check.
pub(super) const FRESH: Duration = Duration::from_secs(1);

/// The stack of connections that just finished a statement.
#[derive(Debug)]
pub(super) struct Hot {
    held: Mutex<Vec<(PoolConnection<Postgres>, Instant)>>,
    max: usize,
}

impl Hot {
    /// A stack for `pool`: at most a quarter of its connections.
    pub(super) fn for_pool(pool: &PgPool) -> Self {
        let max = (pool.options().get_max_connections() / 4) as usize;
        Self {
            held: Mutex::new(Vec::with_capacity(max)),
            max,
        }
    }

    /// A connection that finished a statement within [`FRESH`], else one
    /// from the pool.
    pub(super) async fn take<'a>(&'a self, pool: &'a PgPool) -> Result<HotConn<'a>, sqlx::Error> {
        let reused = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            // Newest last: when the top one is stale, all below it are too,
            // and they go back to the pool, which checks them.
            match held.pop() {
                Some((conn, at)) if at.elapsed() < FRESH => Some(conn),
                Some(stale) => {
                    let older: Vec<_> = held.drain(..).collect();
                    drop((stale, older));
                    None
                }
                None => None,
            }
        };
        let conn = match reused {
            Some(conn) => conn,
            None => pool.acquire().await?,
        };
        Ok(HotConn {
            conn: Some(conn),
            hot: self,
            pool,
        })
    }

    /// Empties the stack (before the pool closes).
    pub(super) fn clear(&self) {
        let drained: Vec<_> = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        drop(drained);
    }
}

/// A connection from [`Hot::take`]. [`HotConn::done`] after a successful
/// statement puts it back on the stack; dropped otherwise, it returns to the
/// pool the ordinary way.
pub(super) struct HotConn<'a> {
    conn: Option<PoolConnection<Postgres>>,
    hot: &'a Hot,
    pool: &'a PgPool,
}

impl HotConn<'_> {
    /// The statement succeeded: keep the connection for the next one.
    pub(super) fn done(mut self) {
        let Some(conn) = self.conn.take() else { return };
        if self.pool.is_closed() {
            return; // dropped: the pool closes it
        }
        let mut held = self.hot.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.len() < self.hot.max {
            held.push((conn, Instant::now()));
        }
    }
}

impl std::ops::Deref for HotConn<'_> {
    type Target = sqlx::PgConnection;

    fn deref(&self) -> &Self::Target {
        self.conn.as_ref().expect("present until done")
    }
}

impl std::ops::DerefMut for HotConn<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.conn.as_mut().expect("present until done")
    }
}

/// The pool's check on hand-out, only for connections idle [`FRESH`] or
/// longer (see the module doc).
pub(super) fn check_if_idle(
    conn: &mut sqlx::PgConnection,
    meta: sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'_, Result<bool, sqlx::Error>> {
    Box::pin(async move {
        if meta.idle_for >= FRESH {
            sqlx::Connection::ping(conn).await?;
        }
        Ok(true)
    })
}
