//! Application lifecycle: `App::build(config)` loads the policy, connects the
//! store, runs migrations and binds the listener; `run(shutdown)` serves the
//! API and runs the workers until `shutdown` resolves, then drains.
//! Tests call exactly this, on port 0 with a fresh database.
//!
//! Longer than 400 lines until the delivery-core reshape (issue 29) moves
//! the environment parsing into a typed configuration of its own.

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

use crate::delivery::sender::Sender;
use crate::delivery::ssrf::SsrfGuard;
use crate::delivery::worker::{self, WorkerConfig};
use crate::http::serve::{ServerLimits, connection_cap, raise_descriptor_limit};
use crate::http::{AppState, Limits};
use crate::ingest::Ingestor;
use crate::policy::PolicySet;
use crate::reload::Reloader;
use crate::store::{Store, StoreKind};
use crate::telemetry::Telemetry;

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub listen: String,
    pub policy_path: PathBuf,
    pub limits: Limits,
    /// Connection limits of the API listener.
    pub server: ServerLimits,
    pub worker: WorkerConfig,
    /// Run delivery workers in this process (false = API only).
    pub run_workers: bool,
    pub db_max_connections: u32,
    /// Reload the policy when its file changes (SIGHUP and the API reload
    /// it whatever this says).
    pub watch_policy: bool,
    /// Group-commit writers for single-event ingest. Few is better: each
    /// writer's group waits for the statement before it, so groups grow and
    /// commits shrink; two keep one statement in flight while the next fills.
    pub ingest_writers: usize,
    /// Run the policy's event-bus sources in this process.
    pub run_sources: bool,
    /// Export OpenTelemetry spans with OTLP/HTTP (`None` = tracing off).
    pub otlp: Option<crate::telemetry::OtlpConfig>,
    /// The web console's sessions and cookie.
    pub console: crate::http::console::ConsoleConfig,
}

impl Config {
    /// Defaults, overridden by `AION_WEBHOOKS_*` variables where set.
    pub fn from_env(
        database_url: String,
        listen: String,
        policy_path: PathBuf,
    ) -> anyhow::Result<Self> {
        let mut cfg = Self {
            database_url,
            listen,
            policy_path,
            limits: Limits::default(),
            server: ServerLimits::default(),
            worker: WorkerConfig::default(),
            run_workers: true,
            db_max_connections: 16,
            watch_policy: true,
            ingest_writers: 2,
            run_sources: true,
            otlp: crate::telemetry::OtlpConfig::from_env(|name| std::env::var(name).ok()),
            console: crate::http::console::ConsoleConfig::from_env()?,
        };
        let num = |name: &str| -> anyhow::Result<Option<u64>> {
            std::env::var(name)
                .ok()
                .map(|v| {
                    v.parse::<u64>()
                        .with_context(|| format!("{name}={v:?} is not a number"))
                })
                .transpose()
        };
        if let Some(n) = num("AION_WEBHOOKS_MAX_IN_FLIGHT")? {
            cfg.worker.max_in_flight = u32::try_from(n).unwrap_or(u32::MAX).max(1);
        }
        if let Some(n) = num("AION_WEBHOOKS_MAX_IN_FLIGHT_PER_WEBHOOK")? {
            cfg.worker.max_in_flight_per_webhook = u32::try_from(n).unwrap_or(u32::MAX).max(1);
        }
        if let Some(n) = num("AION_WEBHOOKS_INITIAL_IN_FLIGHT")? {
            cfg.worker.initial_in_flight = u32::try_from(n).unwrap_or(u32::MAX).max(1);
        }
        if let Some(n) = num("AION_WEBHOOKS_DB_MAX_CONNECTIONS")? {
            cfg.db_max_connections = u32::try_from(n).unwrap_or(u32::MAX).max(2);
        }
        if let Some(n) = num("AION_WEBHOOKS_INGEST_WRITERS")? {
            cfg.ingest_writers = usize::try_from(n).unwrap_or(1).clamp(1, 64);
        }
        if let Some(n) = num("AION_WEBHOOKS_MAX_EVENT_BYTES")? {
            cfg.limits.max_event_bytes = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = num("AION_WEBHOOKS_MAX_INBOUND_BYTES")? {
            cfg.limits.max_inbound_bytes = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = num("AION_WEBHOOKS_HTTP_HEADER_TIMEOUT_SECS")? {
            cfg.server.header_timeout = Duration::from_secs(n.max(1));
        }
        if let Some(n) = num("AION_WEBHOOKS_HTTP_BODY_TIMEOUT_SECS")? {
            cfg.limits.body_timeout = Duration::from_secs(n.max(1));
        }
        if let Some(n) = num("AION_WEBHOOKS_HTTP_WRITE_TIMEOUT_SECS")? {
            cfg.server.write_timeout = Duration::from_secs(n.max(1));
        }
        if let Some(n) = num("AION_WEBHOOKS_HTTP_MAX_CONNECTIONS")? {
            cfg.server.max_connections = usize::try_from(n).unwrap_or(usize::MAX).max(1);
        }
        if let Some(n) = num("AION_WEBHOOKS_HTTP_MAX_HEADERS")? {
            cfg.server.max_headers = usize::try_from(n).unwrap_or(usize::MAX).clamp(8, 1024);
        }
        if let Some(n) = num("AION_WEBHOOKS_HTTP_MAX_HEADER_BYTES")? {
            cfg.server.max_header_bytes = usize::try_from(n)
                .unwrap_or(usize::MAX)
                .clamp(1024, 1024 * 1024);
        }
        if let Some(n) = num("AION_WEBHOOKS_SHUTDOWN_GRACE_SECS")? {
            cfg.worker.shutdown_grace = Duration::from_secs(n);
        }
        if let Some(n) = num("AION_WEBHOOKS_LEASE_MARGIN_SECS")? {
            cfg.worker.lease_margin = Duration::from_secs(n);
        }
        if let Some(n) = num("AION_WEBHOOKS_RESCUE_INTERVAL_MS")? {
            cfg.worker.rescue_interval = Duration::from_millis(n.max(10));
        }
        if let Some(n) = num("AION_WEBHOOKS_POLL_INTERVAL_MS")? {
            cfg.worker.poll_interval = Duration::from_millis(n.max(1));
        }
        if let Some(n) = num("AION_WEBHOOKS_CLAIM_DEBOUNCE_MS")? {
            cfg.worker.claim_debounce = Duration::from_millis(n.min(1000));
        }
        if let Some(n) = num("AION_WEBHOOKS_COMPLETION_GATHER_MS")? {
            cfg.worker.completion_gather = Duration::from_millis(n.min(1000));
        }
        if let Ok(v) = std::env::var("AION_WEBHOOKS_WATCH_POLICY") {
            cfg.watch_policy = !matches!(v.as_str(), "0" | "false" | "off");
        }
        if let Ok(v) = std::env::var("AION_WEBHOOKS_SOURCES") {
            cfg.run_sources = !matches!(v.as_str(), "0" | "false" | "off");
        }
        if let Ok(v) = std::env::var("AION_WEBHOOKS_WORKERS") {
            cfg.run_workers = !matches!(v.as_str(), "0" | "false" | "off");
        }
        Ok(cfg)
    }
}

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
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let telemetry = match &config.otlp {
            Some(otlp) => Telemetry::start(otlp).map_err(|e| anyhow::anyhow!(e))?,
            None => Telemetry::off(),
        };
        let reloader = Arc::new(Reloader::new(
            config.policy_path.clone(),
            policy.clone(),
            store.clone(),
            metrics.clone(),
        ));
        let worker = config.run_workers.then(|| {
            worker::Worker::new(
                store.clone(),
                policy.clone(),
                sender,
                metrics.clone(),
                config.worker.clone(),
                telemetry.clone(),
            )
        });
        let dispatcher = worker
            .as_ref()
            .map(|w| Arc::new(w.dispatcher()) as Arc<dyn crate::ingest::Handoff>);
        let state = AppState {
            store: store.clone(),
            reloader,
            policy,
            limits: config.limits,
            metrics,
            depth_cache: Arc::default(),
            ready_probe: Arc::default(),
            ingestor: Ingestor::start(store.clone(), config.ingest_writers, dispatcher),
            sources: crate::sources::Registry::default(),
            telemetry,
            console: crate::http::console::Console::new(config.console),
        };
        Ok(Self {
            listener,
            state,
            worker,
            config,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Counters the API keeps (inbound refusals by reason, …).
    pub fn metrics(&self) -> Arc<crate::metrics::Metrics> {
        self.state.metrics.clone()
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
        let trigger = cancel.clone();
        tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });
        let primed = self.worker.as_ref().map(worker::Worker::primed);
        let worker = self.worker.map(|w| tokio::spawn(w.run(cancel.clone())));
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
        tokio::spawn(crate::reload::watch::reload_on_signal(
            self.state.reloader.clone(),
            cancel.clone(),
        ));
        if self.config.watch_policy {
            crate::reload::watch::watch_policy_files(self.state.reloader.clone(), cancel.clone());
        }
        if self.config.run_workers {
            tokio::spawn(crate::retention::run(
                self.state.store.clone(),
                self.state.policy.clone(),
                self.state.metrics.clone(),
                cancel.clone(),
            ));
        }
        if self.config.run_sources {
            let pipeline = crate::sources::Pipeline {
                ingestor: self.state.ingestor.clone(),
                store: self.state.store.clone(),
                policy: self.state.policy.clone(),
                metrics: self.state.metrics.clone(),
                max_event_bytes: self.state.limits.max_event_bytes,
                telemetry: self.state.telemetry.clone(),
            };
            let supervisor = crate::sources::Supervisor::new(pipeline, self.state.sources.clone());
            sources = Some(tokio::spawn(supervisor.run(cancel.clone())));
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
        let metrics = self.state.metrics.clone();
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
            metrics,
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
    let json = std::env::var("AION_WEBHOOKS_LOG_FORMAT").is_ok_and(|v| v == "json");
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
