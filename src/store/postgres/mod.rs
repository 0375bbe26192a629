//! The PostgreSQL backend: several engines on one database.
//!
//! Queue discipline (River's): claim due rows with one `UPDATE … WHERE id IN
//! (SELECT … FOR UPDATE SKIP LOCKED)`, commit, send outside any transaction,
//! then record the outcome in one short statement. Other engines hear about
//! new work through `LISTEN/NOTIFY`; lines are serialized by advisory locks.

mod endpoints;
mod events;
mod hot;
mod inbound;
mod lines;
mod overview;
mod queries;
mod queue;
mod rate;
mod rejects;
mod replay;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use super::StoreError;
use crate::store::contract::Lifecycle;

/// Channel the ingest transaction notifies on commit; workers LISTEN on it.
const WAKE_CHANNEL: &str = "aion_deliveries";

#[derive(Debug, Clone)]
pub(super) struct Pg {
    pool: PgPool,
    /// Connections kept between the delivery path's statements.
    hot: Arc<hot::Hot>,
}

impl Pg {
    pub(super) fn new(pool: PgPool) -> Self {
        let hot = Arc::new(hot::Hot::for_pool(&pool));
        Self { pool, hot }
    }

    pub(super) fn connect_lazy(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let mut options: PgConnectOptions = url.parse()?;
        // Operators (and tests) tell the engine's sessions apart in
        // `pg_stat_activity`; a name in the URL wins.
        if options.get_application_name().is_none() {
            options = options.application_name("aion-webhooks");
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            // Checked on hand-out only after a second idle (see `hot`).
            .test_before_acquire(false)
            .before_acquire(hot::check_if_idle)
            .connect_lazy_with(options);
        Ok(Self::new(pool))
    }

    pub(super) fn describe(&self) -> String {
        let o = self.pool.connect_options();
        format!(
            "PostgreSQL at {}:{}/{}",
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or("postgres")
        )
    }

    pub(super) async fn listen(&self) -> Result<PgListener, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(WAKE_CHANNEL).await?;
        Ok(listener)
    }
}

impl Lifecycle for Pg {
    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn ping(&self, within: Duration) -> Result<(), StoreError> {
        match tokio::time::timeout(within, sqlx::query("SELECT 1").execute(&self.pool)).await {
            Ok(result) => result.map(|_| ()).map_err(Into::into),
            Err(_) => Err(StoreError::Database(sqlx::Error::PoolTimedOut)),
        }
    }

    async fn close(&self) {
        self.hot.clear();
        self.pool.close().await;
    }
}
