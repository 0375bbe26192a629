//! Application lifecycle: `App::build(config)` loads the policy, connects the
//! store, runs migrations and binds the listener; `run(shutdown)` serves the
//! API and runs the workers until `shutdown` resolves, then drains.
//! Tests call exactly this, on port 0 with a fresh database. The
//! configuration is `config`'s.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::delivery::sender::Sender;
use crate::delivery::ssrf::SsrfGuard;
use crate::delivery::worker;
use crate::http::AppState;
use crate::http::serve::{ServerLimits, connection_cap, raise_descriptor_limit};
use crate::ingest::Ingestor;
use crate::policy::PolicySet;
use crate::reload::Reloader;
use crate::store::{Store, StoreKind};
use crate::telemetry::Telemetry;

mod meters;

/// Everything `serve` needs.
pub use crate::config::Config;
pub use meters::Meters;

/// Longest `run` waits for the background tasks once everything else
/// stopped.
const TASKS_GRACE: Duration = Duration::from_secs(10);

/// Longest the API and the sources wait for the worker's first claim.
const PRIME_WAIT: Duration = Duration::from_secs(5);

/// A built application, bound and migrated, not yet serving.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    state: AppState,
    /// The delivery worker, unless `run_workers` is off.
    worker: Option<worker::Worker>,
    config: Config,
    meters: Meters,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let policy =
            PolicySet::load_file(&config.policy_path).map_err(|e| anyhow::anyhow!("{e}"))?;
        let store = Store::open(&config.database_url, config.db_max_connections)
            .await
            .context("opening the store (DATABASE_URL)")?;
        Self::build_with(config, store, policy).await
    }

    /// Builds around an existing store and policy (tests: a fresh database each).
    pub async fn build_with(
        config: Config,
        store: Store,
        policy: PolicySet,
    ) -> anyhow::Result<Self> {
        store
            .migrate()
            .await
            .context("running database migrations")?;
        let policy = Arc::new(ArcSwap::from_pointee(policy));
        // The guard reads the allow-list of whatever policy is in force.
        let guard = Arc::new(SsrfGuard::following(policy.clone()));
        let sender = Sender::new(guard).context("building the HTTP client")?;
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let meters = Meters::default();
        let telemetry = match &config.otlp {
            Some(otlp) => Telemetry::start(otlp).map_err(|e| anyhow::anyhow!(e))?,
            None => Telemetry::off(),
        };
        let reloader = Arc::new(Reloader::new(
            config.policy_path.clone(),
            policy.clone(),
            store.clone(),
            meters.reload.clone(),
        ));
        let worker = config.run_workers.then(|| {
            worker::Worker::new(
                store.clone(),
                policy.clone(),
                sender,
                meters.delivery.clone(),
                config.worker.clone(),
                telemetry.clone(),
            )
        });
        let dispatcher = worker
            .as_ref()
            .map(|w| Arc::new(w.dispatcher()) as Arc<dyn crate::ingest::Handoff>);
        let ingestor = Ingestor::start(
            store.clone(),
            config.ingest_writers,
            dispatcher,
            meters.ingest.clone(),
        );
        let state = AppState {
            store: store.clone(),
            reloader,
            policy,
            limits: config.limits,
            metrics: meters.engine.clone(),
            http_meters: meters.http.clone(),
            inbound_meters: meters.inbound.clone(),
            delivery_meters: meters.delivery.clone(),
            depth_cache: Arc::default(),
            ready_probe: Arc::default(),
            ingestor,
            sources: crate::sources::Registry::default(),
            telemetry,
            console: crate::http::console::Console::new(config.console),
        };
        Ok(Self {
            listener,
            state,
            worker,
            config,
            meters,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Every subsystem's counters (inbound refusals by reason, API
    /// connections, …) and the registry that renders them.
    pub fn meters(&self) -> Meters {
        self.meters.clone()
    }

    /// What `serve` prints once ready: address, store, a request to try.
    pub fn banner(&self) -> String {
        let store = &self.state.store;
        crate::banner::banner(
            self.local_addr(),
            &store.describe(),
            store.kind() == StoreKind::Sqlite,
            &self.state.policy.load(),
            &self.config.policy_path,
        )
    }

    /// The live policy handle (reload swaps what it points to).
    pub fn policy(&self) -> Arc<ArcSwap<PolicySet>> {
        self.state.policy.clone()
    }

    /// Serves until `shutdown` resolves: stops accepting and claiming, lets
    /// in-flight requests and sends finish (grace period), then returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let cancel = CancellationToken::new();
        // Every background task of the engine, so that `run` returns only
        // once all of them have stopped.
        let tasks = TaskTracker::new();
        let trigger = cancel.clone();
        tasks.spawn(async move {
            tokio::select! {
                () = shutdown => trigger.cancel(),
                () = trigger.cancelled() => {}
            }
        });
        let primed = self.worker.as_ref().map(worker::Worker::primed);
        let worker = self.worker.map(|w| tasks.spawn(w.run(cancel.clone())));
        // Nothing is accepted before the worker's first claim has shown
        // which webhooks have nothing due (see `Worker::primed`): connections
        // wait in the listen queue for those few milliseconds.
        if let Some(primed) = primed {
            tokio::select! {
                () = primed.cancelled() => {}
                () = tokio::time::sleep(PRIME_WAIT) => tracing::warn!(
                    waited_ms = PRIME_WAIT.as_millis() as u64,
                    "the first claim has not finished; serving anyway (new deliveries are left to the claim until it catches up)"
                ),
            }
        }
        let mut sources = None;
        crate::reload::watch::start(
            self.state.reloader.clone(),
            self.config.watch_policy,
            &tasks,
            cancel.clone(),
        );
        if self.config.run_workers {
            tasks.spawn(crate::retention::run(
                self.state.store.clone(),
                self.state.policy.clone(),
                self.meters.retention.clone(),
                cancel.clone(),
            ));
        }
        if self.config.run_sources {
            let pipeline = crate::sources::Pipeline {
                ingestor: self.state.ingestor.clone(),
                store: self.state.store.clone(),
                policy: self.state.policy.clone(),
                meters: self.meters.sources.clone(),
                max_event_bytes: self.state.limits.max_event_bytes,
                telemetry: self.state.telemetry.clone(),
            };
            let supervisor = crate::sources::Supervisor::new(pipeline, self.state.sources.clone());
            sources = Some(tasks.spawn(supervisor.run(cancel.clone())));
        }
        // Descriptors for everything that is not an API connection: the
        // database pool, outbound sends and their idle keep-alives, files.
        let nofile = raise_descriptor_limit();
        let reserved = u64::from(self.config.db_max_connections)
            + if self.config.run_workers {
                2 * u64::from(self.config.worker.max_in_flight)
            } else {
                0
            }
            + 256;
        let limits = ServerLimits {
            max_connections: connection_cap(self.config.server.max_connections, nofile, reserved),
            ..self.config.server
        };
        let connections = self.meters.http.clone();
        let store = &self.state.store;
        if store.kind() == StoreKind::Sqlite {
            tracing::warn!(
                store = %store.describe(),
                "embedded SQLite store: single node only; use PostgreSQL (DATABASE_URL=postgres://…) to run several engines"
            );
        }
        tracing::info!(
            addr = %self.listener.local_addr()?,
            store = %store.describe(),
            max_connections = limits.max_connections,
            "serving"
        );
        let telemetry = self.state.telemetry.clone();
        let app = crate::http::router(self.state);
        crate::http::serve::serve(
            self.listener,
            app,
            limits,
            connections,
            cancel.clone(),
            self.config.worker.shutdown_grace,
        )
        .await;
        if let Some(s) = sources {
            s.await.context("event-bus sources panicked")?;
        }
        if let Some(w) = worker {
            w.await.context("delivery worker panicked")?;
        }
        // The server stops only once `cancel` fired (or it failed): make
        // sure, then wait for the rest (reload, retention).
        cancel.cancel();
        tasks.close();
        if tokio::time::timeout(TASKS_GRACE, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks still running after {TASKS_GRACE:?}; stopping anyway");
        }
        telemetry.shutdown(Duration::from_secs(5)).await;
        // The pool is left open: it may be shared (tests run two engines on
        // one), and process exit closes its connections.
        tracing::info!("stopped");
        Ok(())
    }
}

/// `aion-webhooks serve`: runs until SIGTERM or SIGINT, then exits 0.
pub fn serve_blocking(policy: PathBuf, listen: String) -> anyhow::Result<ExitCode> {
    init_tracing();
    let database_url = database_url()?;
    let config = Config::from_env(database_url, listen, policy)?;
    runtime()?.block_on(async move {
        let app = App::build(config).await?;
        println!("{}", app.banner());
        app.run(shutdown_signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `aion-webhooks migrate`.
pub fn migrate_blocking() -> anyhow::Result<ExitCode> {
    init_tracing();
    let url = database_url()?;
    runtime()?.block_on(async move {
        let store = Store::open(&url, 2)
            .await
            .context("opening the store (DATABASE_URL)")?;
        store.migrate().await?;
        store.close().await;
        anyhow::Ok(())
    })?;
    println!("migrations applied");
    Ok(ExitCode::SUCCESS)
}

/// `DATABASE_URL`, or the embedded SQLite file in the working directory
/// when it is unset or empty (contract §8).
fn database_url() -> anyhow::Result<String> {
    Ok(std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| format!("sqlite://{}", crate::store::DEFAULT_SQLITE_FILE)))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("AION_WEBHOOKS_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("AION_WEBHOOKS_LOG_FORMAT")
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}
