//! The engine's metrics, exposed as Prometheus text on `/metrics` (names
//! prefixed `aion_webhooks_`). Labels are bounded: webhook ids from the
//! policy, fixed outcome and state names — never URLs, topics, event ids or
//! tenants. Unauthenticated inbound garbage is counted here and logged at a
//! rate-limited level, never audited (that would let anyone flood the
//! audit log).

mod classic;
#[cfg(test)]
mod deploy_tests;
mod kinds;
mod record;

pub use kinds::{AttemptOutcome, ConnectionEvent, EventSource, InboundOutcome, MessageOutcome};
use record::unix_now;

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::policy::schemas::SchemaMode;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabel {
    path: &'static str,
}

/// How a send came to start: leased at ingest and sent at once, or claimed
/// from the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendPath {
    Ingest,
    Claim,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookOutcome {
    webhook: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SchemaLabel {
    topic: String,
    mode: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BusLabel {
    source: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BusOutcome {
    source: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabel {
    webhook: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

type HistogramFamily = Family<WebhookLabel, Histogram, fn() -> Histogram>;

fn attempt_histogram() -> Histogram {
    // 5 ms to ~41 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabel {
    webhook: String,
    to: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

/// Everything the engine counts; one per process, shared by all tasks.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    inbound: Family<OutcomeLabel, Counter>,
    /// Unix milliseconds of the last warn-level log per outcome.
    last_logged_ms: [AtomicU64; 13],
    events: Family<SourceLabel, Counter>,
    sends: Family<PathLabel, Counter>,
    finished: Family<WebhookOutcome, Counter>,
    attempt_seconds: HistogramFamily,
    reloads: Family<OutcomeLabel, Counter>,
    last_reload_ok: Gauge,
    last_reload_success: Gauge<f64, AtomicU64>,
    depth: Family<StateLabel, Gauge>,
    oldest_due: Gauge<f64, AtomicU64>,
    database_up: Gauge,
    webhook_disabled: Family<WebhookLabel, Gauge>,
    /// The webhooks `webhook_disabled` shows now.
    disabled_shown: std::sync::Mutex<std::collections::BTreeSet<String>>,
    retention: Family<KindLabel, Counter>,
    rss: Gauge,
    open_fds: Gauge,
    cpu_seconds: Gauge<f64, AtomicU64>,
    connections: Family<EventLabel, Counter>,
    connections_open: Gauge,
    endpoint_transitions: Family<TransitionLabel, Counter>,
    concurrency_limit: Family<WebhookLabel, Gauge>,
    bus_messages: Family<BusOutcome, Counter>,
    bus_lag: Family<BusLabel, Gauge>,
    bus_connected: Family<BusLabel, Gauge>,
    schema_violations: Family<SchemaLabel, Counter>,
    below_min_version: Family<WebhookLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("aion_webhooks");
        let m = Self {
            inbound: Family::default(),
            last_logged_ms: Default::default(),
            events: Family::default(),
            sends: Family::default(),
            finished: Family::default(),
            attempt_seconds: Family::new_with_constructor(attempt_histogram),
            reloads: Family::default(),
            last_reload_ok: Gauge::default(),
            last_reload_success: Gauge::default(),
            depth: Family::default(),
            oldest_due: Gauge::default(),
            database_up: Gauge::default(),
            webhook_disabled: Family::default(),
            disabled_shown: std::sync::Mutex::default(),
            retention: Family::default(),
            rss: Gauge::default(),
            open_fds: Gauge::default(),
            cpu_seconds: Gauge::default(),
            connections: Family::default(),
            connections_open: Gauge::default(),
            endpoint_transitions: Family::default(),
            concurrency_limit: Family::default(),
            bus_messages: Family::default(),
            bus_lag: Family::default(),
            bus_connected: Family::default(),
            schema_violations: Family::default(),
            below_min_version: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "inbound_requests",
            "Inbound command requests by outcome (refusals by reason)",
            m.inbound.clone(),
        );
        registry.register(
            "events_accepted",
            "Events stored, by where they came from",
            m.events.clone(),
        );
        registry.register(
            "sends_started",
            "Delivery attempts started, by path: ingest (sent at once by the accepting engine) or claim",
            m.sends.clone(),
        );
        registry.register(
            "deliveries_finished",
            "Delivery attempts by webhook and outcome (succeeded, retry, dead, blocked)",
            m.finished.clone(),
        );
        registry.register(
            "attempt_duration_seconds",
            "Duration of delivery attempts, by webhook",
            m.attempt_seconds.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policy reloads by outcome",
            m.reloads.clone(),
        );
        registry.register(
            "policy_last_reload_successful",
            "1 if the last policy reload succeeded (or none was tried), 0 if it was refused",
            m.last_reload_ok.clone(),
        );
        registry.register(
            "policy_last_reload_success_timestamp_seconds",
            "Unix time the policy in force was loaded",
            m.last_reload_success.clone(),
        );
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
            "webhook_disabled",
            "1 for each webhook disabled at runtime (by an admin, a 410 Gone, or failing for its disable_after); absent otherwise",
            m.webhook_disabled.clone(),
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
        registry.register(
            "retention_deleted",
            "Rows the retention task deleted (deliveries, attempts, events)",
            m.retention.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory",
            m.rss.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors",
            m.open_fds.clone(),
        );
        registry.register(
            "process_cpu_seconds",
            "CPU time used (user + system)",
            m.cpu_seconds.clone(),
        );
        registry.register(
            "http_connections",
            "API connections by event: opened, refused (over the cap), header_timeout, body_timeout, write_timeout, header_too_large, malformed, aborted, accept_failed",
            m.connections.clone(),
        );
        registry.register(
            "http_connections_open",
            "API connections open now",
            m.connections_open.clone(),
        );
        registry.register(
            "endpoint_transitions",
            "Runtime endpoint state changes, by webhook and new state (disabled, enabled)",
            m.endpoint_transitions.clone(),
        );
        registry.register(
            "webhook_concurrency_limit",
            "Sends this engine may have in flight to each webhook now (adaptive, AIMD)",
            m.concurrency_limit.clone(),
        );
        registry.register(
            "source_messages",
            "Messages consumed from event-bus sources, by source and outcome (created, duplicate, rejected)",
            m.bus_messages.clone(),
        );
        registry.register(
            "source_lag_messages",
            "Messages on the bus not yet consumed and committed, by source (Kafka: summed over partitions; NATS: pending + unacknowledged)",
            m.bus_lag.clone(),
        );
        registry.register(
            "source_connected",
            "1 if the source is connected to its broker, else 0",
            m.bus_connected.clone(),
        );
        registry.register(
            "schema_violations",
            "Events whose payload failed their topic's JSON Schema, by the schema entry's topic pattern and mode (enforce: refused; warn: accepted and marked)",
            m.schema_violations.clone(),
        );
        registry.register(
            "events_below_min_version",
            "Events a webhook's topics matched but not delivered to it because their event_version is below its min_version, by webhook",
            m.below_min_version.clone(),
        );
        m.last_reload_ok.set(1);
        m.database_up.set(1);
        m.last_reload_success.set(unix_now());
        Self { registry, ..m }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_outcome_and_rate_limits_logging() {
        let m = Metrics::default();
        m.count_inbound(InboundOutcome::SignatureInvalid);
        m.count_inbound(InboundOutcome::SignatureInvalid);
        assert_eq!(m.inbound(InboundOutcome::SignatureInvalid), 2);
        assert_eq!(m.inbound(InboundOutcome::Accepted), 0);
        assert!(m.should_log(InboundOutcome::SignatureInvalid, 10_000));
        assert!(!m.should_log(InboundOutcome::SignatureInvalid, 10_500));
        assert!(m.should_log(InboundOutcome::SignatureInvalid, 11_000));
        assert!(m.should_log(InboundOutcome::Unauthenticated, 10_500));
        let names: std::collections::HashSet<_> =
            InboundOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(names.len(), InboundOutcome::ALL.len());
    }
}
