//! The engine's metrics, exposed as Prometheus text on `/metrics` (names
//! prefixed `aion_webhooks_`). A leaf: it knows no other module. Each
//! subsystem defines and registers its own families in the one
//! [`Registry`] (`delivery::Meters`, `ingest::Meters`, `inbound::Meters`,
//! `http::Meters`, `sources::Meters`, `reload::Meters`,
//! `retention::Meters`; the wiring in `app` builds them) and records its
//! own counts; what is here is the engine's own: the version, the process's
//! figures, the queue's depth and whether the database answered, and the
//! rendering. Labels are bounded: webhook ids from the policy, fixed outcome
//! and state names — never URLs, topics, event ids or tenants.

mod classic;
mod process;

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Metric;

/// A label of one webhook id (bounded by the policy).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabel {
    pub webhook: String,
}

/// A label of one fixed outcome name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// Where every family is registered, once, at start.
#[derive(Debug)]
pub struct Registry(prometheus_client::registry::Registry);

impl Default for Registry {
    fn default() -> Self {
        Self(prometheus_client::registry::Registry::with_prefix(
            "aion_webhooks",
        ))
    }
}

impl Registry {
    /// Registers `metric` as `aion_webhooks_<name>` with its help text.
    pub fn register(&mut self, name: &str, help: &str, metric: impl Metric) {
        self.0.register(name, help, metric);
    }
}

/// The registry, once every subsystem has registered, with the engine's
/// own figures; renders `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    depth: Family<StateLabel, Gauge>,
    oldest_due: Gauge<f64, AtomicU64>,
    database_up: Gauge,
    process: process::Figures,
}

impl Metrics {
    /// Adds the engine's own families to `registry`.
    pub fn new(mut registry: Registry) -> Self {
        let m = Self {
            depth: Family::default(),
            oldest_due: Gauge::default(),
            database_up: Gauge::default(),
            process: process::Figures::register(&mut registry),
            registry: Registry::default(),
        };
        registry.register(
            "queue_depth",
            "Deliveries by state (pending_due, pending_scheduled, waiting, in_flight, dead)",
            m.depth.clone(),
        );
        registry.register(
            "oldest_due_delivery_age_seconds",
            "How long the oldest due delivery has waited",
            m.oldest_due.clone(),
        );
        registry.register(
            "database_up",
            "1 if the last query for /metrics (queue depth, every 5 s at most) or /readyz reached the database, else 0",
            m.database_up.clone(),
        );
        let build = Family::<VersionLabel, Gauge>::default();
        build
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The running version", build);
        m.database_up.set(1);
        Self { registry, ..m }
    }

    /// Deliveries by queue state (`pending_due`, `pending_scheduled`,
    /// `waiting`, `in_flight`, `dead`), and how long the oldest due one has
    /// waited.
    pub fn set_queue_depth(&self, by_state: &[(&'static str, i64)], oldest_due_seconds: f64) {
        for &(state, n) in by_state {
            self.depth.get_or_create(&StateLabel { state }).set(n);
        }
        self.oldest_due.set(oldest_due_seconds);
        self.database_up.set(1);
    }

    /// Whether the database answered the last probe or depth query.
    pub fn database_reached(&self, up: bool) {
        self.database_up.set(i64::from(up));
    }

    /// Every metric in the classic Prometheus text format (`text/plain;
    /// version=0.0.4`), process figures read now.
    pub fn render_classic(&self) -> String {
        classic::to_classic(&self.render())
    }

    /// Every metric as OpenMetrics text (`application/openmetrics-text;
    /// version=1.0.0`), process figures read now.
    pub fn render(&self) -> String {
        self.process.read();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry.0).is_err() {
            out.clear();
        }
        out
    }
}

/// Seconds since the Unix epoch, for timestamp gauges.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
