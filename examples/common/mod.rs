//! Shared by the benchmark tools: a fresh database for one run.

use std::future::Future;

use anyhow::Context;
use sqlx::Connection;

/// Creates `<prefix>_<pid>` on the server `DATABASE_URL` names (default
/// `postgres://postgres@127.0.0.1:5432/postgres`), runs `body` with its URL,
/// and drops it afterwards, whatever `body` returned.
pub async fn with_fresh_database<F, Fut>(prefix: &str, body: F) -> anyhow::Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let server = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = format!("{prefix}_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .context("connecting to DATABASE_URL")?;
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await?;
    let base = server
        .rsplit_once('/')
        .map_or(server.as_str(), |(base, _)| base);
    let result = body(format!("{base}/{db}")).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    result
}

/// A running engine: its base URL, and the way to stop it and wait.
pub struct Engine {
    pub base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Engine {
    /// Builds the real `App` on `config.database_url` and serves it.
    pub async fn start(
        config: aion_webhooks::app::Config,
        policy: aion_webhooks::policy::PolicySet,
    ) -> anyhow::Result<Self> {
        let store = aion_webhooks::store::Store::connect_lazy(
            &config.database_url,
            config.db_max_connections,
        )?;
        let app = aion_webhooks::app::App::build_with(config, store, policy).await?;
        let base = format!("http://{}", app.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async move {
            let _ = stopped.await;
        }));
        Ok(Self { base, stop, task })
    }

    /// Graceful shutdown; returns once the engine has stopped.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await?
    }
}
