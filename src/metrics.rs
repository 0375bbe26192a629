//! The engine's metrics, exposed as Prometheus text on `/metrics` (names
//! prefixed `aion_webhooks_`). Labels are bounded: webhook ids from the
//! policy, fixed outcome and state names — never URLs, topics, event ids or
//! tenants. Unauthenticated inbound garbage is counted here and logged at a
//! rate-limited level, never audited (that would let anyone flood the
//! audit log).

mod classic;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::ingest::Accepted;
use crate::policy::schemas::SchemaMode;

/// Why an inbound request ended the way it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundOutcome {
    Accepted,
    Replayed,
    TooLarge,
    NotConfigured,
    SignatureMissing,
    SignatureMalformed,
    SignatureStale,
    SignatureInvalid,
    Unauthenticated,
    NotAllowed,
    MissingRole,
    BadBody,
    KeyReused,
}

impl InboundOutcome {
    pub const ALL: [Self; 13] = [
        Self::Accepted,
        Self::Replayed,
        Self::TooLarge,
        Self::NotConfigured,
        Self::SignatureMissing,
        Self::SignatureMalformed,
        Self::SignatureStale,
        Self::SignatureInvalid,
        Self::Unauthenticated,
        Self::NotAllowed,
        Self::MissingRole,
        Self::BadBody,
        Self::KeyReused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Replayed => "replayed",
            Self::TooLarge => "too_large",
            Self::NotConfigured => "not_configured",
            Self::SignatureMissing => "signature_missing",
            Self::SignatureMalformed => "signature_malformed",
            Self::SignatureStale => "signature_stale",
            Self::SignatureInvalid => "signature_invalid",
            Self::Unauthenticated => "unauthenticated",
            Self::NotAllowed => "not_allowed",
            Self::MissingRole => "missing_role",
            Self::BadBody => "bad_body",
            Self::KeyReused => "key_reused",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

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

/// Where an accepted event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    /// `POST /v1/events`.
    Api,
    /// A dispatched inbound command.
    Inbound,
    /// An event the engine made itself (audit, operations).
    Engine,
    /// An event-bus source (Kafka, NATS).
    Bus,
}

/// What became of one message an event-bus source consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Stored as a new event.
    Created,
    /// Its event was stored before (a redelivery).
    Duplicate,
    /// It could not become an event; recorded in `source_rejects`.
    Rejected,
}

/// How one attempt ended, as counted in `deliveries_finished_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Succeeded,
    Retry,
    Dead,
    Blocked,
}

/// What happened to an API connection; counted in
/// `http_connections_total{event}` (open ones in `http_connections_open`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEvent {
    Opened,
    Closed,
    /// Over the connection cap: answered 503 and closed at once.
    Refused,
    /// `accept` failed (e.g. out of descriptors).
    AcceptFailed,
    /// The request head did not arrive in time (also idle keep-alives).
    HeaderTimeout,
    /// Too many or too large headers: answered 431.
    HeaderTooLarge,
    /// Not HTTP/1.1.
    Malformed,
    /// The body did not arrive in time: answered 408.
    BodyTimeout,
    /// The client stopped reading its response.
    WriteTimeout,
    /// Reset or closed by the client mid-request.
    Aborted,
}

impl ConnectionEvent {
    fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Closed => "closed",
            Self::Refused => "refused",
            Self::AcceptFailed => "accept_failed",
            Self::HeaderTimeout => "header_timeout",
            Self::HeaderTooLarge => "header_too_large",
            Self::Malformed => "malformed",
            Self::BodyTimeout => "body_timeout",
            Self::WriteTimeout => "write_timeout",
            Self::Aborted => "aborted",
        }
    }
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

/// Queue sizes, read from the store (cached for a few seconds).
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueDepth {
    pub pending_due: i64,
    pub pending_scheduled: i64,
    pub waiting: i64,
    pub in_flight: i64,
    pub dead: i64,
    /// Seconds the oldest due delivery has been waiting (0 if none).
    pub oldest_due_seconds: f64,
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
        m.last_reload_success.set(unix_now());
        Self { registry, ..m }
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Metrics {
    pub fn count_inbound(&self, outcome: InboundOutcome) {
        self.inbound
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    pub fn inbound(&self, outcome: InboundOutcome) -> u64 {
        self.inbound
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .get()
    }

    /// True at most once a second per outcome: callers log at warn when it
    /// is, at debug otherwise, so a flood of garbage cannot flood the log.
    pub fn should_log(&self, outcome: InboundOutcome, now_ms: u64) -> bool {
        let slot = &self.last_logged_ms[outcome.index()];
        let last = slot.load(Ordering::Relaxed);
        now_ms.saturating_sub(last) >= 1000
            && slot
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    pub fn events_accepted(&self, source: EventSource, n: u64) {
        let source = match source {
            EventSource::Api => "api",
            EventSource::Inbound => "inbound",
            EventSource::Engine => "engine",
            EventSource::Bus => "bus",
        };
        self.events.get_or_create(&SourceLabel { source }).inc_by(n);
    }

    /// An event failed the schema of entry `pattern` (the entry's topic
    /// pattern: bounded by the policy, whatever topics producers send) in
    /// `mode`.
    pub fn schema_violation(&self, pattern: &str, mode: SchemaMode) {
        self.schema_violations
            .get_or_create(&SchemaLabel {
                topic: pattern.to_owned(),
                mode: mode.as_str(),
            })
            .inc();
    }

    /// What newly stored events met of the event contracts: `warn`-mode
    /// schema violations, and webhooks left out by `min_version`.
    pub fn contracts(&self, answers: &[Accepted]) {
        for a in answers.iter().filter(|a| !a.duplicate) {
            if let Some(pattern) = &a.notes.schema_warned {
                self.schema_violation(pattern, SchemaMode::Warn);
            }
            for webhook in &a.notes.below_min_version {
                self.below_min_version
                    .get_or_create(&WebhookLabel {
                        webhook: webhook.clone(),
                    })
                    .inc();
            }
        }
    }

    /// `n` messages of `source` ended as `outcome`.
    pub fn source_messages(&self, source: &str, outcome: MessageOutcome, n: u64) {
        let outcome = match outcome {
            MessageOutcome::Created => "created",
            MessageOutcome::Duplicate => "duplicate",
            MessageOutcome::Rejected => "rejected",
        };
        self.bus_messages
            .get_or_create(&BusOutcome {
                source: source.to_owned(),
                outcome,
            })
            .inc_by(n);
    }

    pub fn source_lag(&self, source: &str, lag: u64) {
        self.bus_lag
            .get_or_create(&BusLabel {
                source: source.to_owned(),
            })
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
    }

    pub fn source_connected(&self, source: &str, connected: bool) {
        self.bus_connected
            .get_or_create(&BusLabel {
                source: source.to_owned(),
            })
            .set(i64::from(connected));
    }

    /// A removed source's series go away with it.
    pub fn forget_source(&self, source: &str) {
        let label = BusLabel {
            source: source.to_owned(),
        };
        self.bus_lag.remove(&label);
        self.bus_connected.remove(&label);
    }

    /// An attempt is about to be sent.
    pub fn send_started(&self, path: SendPath) {
        let path = match path {
            SendPath::Ingest => "ingest",
            SendPath::Claim => "claim",
        };
        self.sends.get_or_create(&PathLabel { path }).inc();
    }

    /// One attempt to `webhook` ended.
    pub fn attempt(&self, webhook: &str, outcome: AttemptOutcome, took: Duration) {
        let outcome = match outcome {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Dead => "dead",
            AttemptOutcome::Blocked => "blocked",
        };
        self.finished
            .get_or_create(&WebhookOutcome {
                webhook: webhook.to_owned(),
                outcome,
            })
            .inc();
        self.attempt_seconds
            .get_or_create(&WebhookLabel {
                webhook: webhook.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Something happened to an API connection.
    pub fn connection(&self, event: ConnectionEvent) {
        match event {
            ConnectionEvent::Opened => {
                self.connections_open.inc();
            }
            ConnectionEvent::Closed => {
                self.connections_open.dec();
                return;
            }
            _ => {}
        }
        self.connections
            .get_or_create(&EventLabel {
                event: event.as_str(),
            })
            .inc();
    }

    /// How many times `event` happened (tests and diagnostics).
    pub fn connections(&self, event: ConnectionEvent) -> u64 {
        self.connections
            .get_or_create(&EventLabel {
                event: event.as_str(),
            })
            .get()
    }

    /// `webhook`'s runtime state changed to `to` (`disabled`, `enabled`).
    pub fn endpoint_transition(&self, webhook: &str, to: &'static str) {
        self.endpoint_transitions
            .get_or_create(&TransitionLabel {
                webhook: webhook.to_owned(),
                to,
            })
            .inc();
    }

    /// The adaptive concurrency limit of `webhook` on this engine.
    pub fn concurrency_limit(&self, webhook: &str, limit: u32) {
        self.concurrency_limit
            .get_or_create(&WebhookLabel {
                webhook: webhook.to_owned(),
            })
            .set(i64::from(limit));
    }

    /// A policy reload ended: `applied`, `unchanged` or `invalid`.
    pub fn reload(&self, outcome: &'static str) {
        self.reloads.get_or_create(&OutcomeLabel { outcome }).inc();
        match outcome {
            "invalid" => {
                self.last_reload_ok.set(0);
            }
            "applied" => {
                self.last_reload_ok.set(1);
                self.last_reload_success.set(unix_now());
            }
            _ => {
                self.last_reload_ok.set(1);
            }
        }
    }

    pub fn retention_deleted(&self, p: crate::store::Purged) {
        for (kind, n) in [
            ("deliveries", p.deliveries),
            ("attempts", p.attempts),
            ("events", p.events),
            ("source_rejects", p.rejects),
        ] {
            self.retention.get_or_create(&KindLabel { kind }).inc_by(n);
        }
    }

    pub fn set_queue_depth(&self, d: QueueDepth) {
        for (state, n) in [
            ("pending_due", d.pending_due),
            ("pending_scheduled", d.pending_scheduled),
            ("waiting", d.waiting),
            ("in_flight", d.in_flight),
            ("dead", d.dead),
        ] {
            self.depth.get_or_create(&StateLabel { state }).set(n);
        }
        self.oldest_due.set(d.oldest_due_seconds);
    }

    /// Every metric in the classic Prometheus text format (`text/plain;
    /// version=0.0.4`), process figures read now.
    pub fn render_classic(&self) -> String {
        classic::to_classic(&self.render())
    }

    /// Every metric as OpenMetrics text (`application/openmetrics-text;
    /// version=1.0.0`), process figures read now.
    pub fn render(&self) -> String {
        self.read_process();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// RSS, open descriptors and CPU time from `/proc/self` (Linux); left
    /// at their last value elsewhere.
    fn read_process(&self) {
        if let Ok(status) = std::fs::read_to_string("/proc/self/status")
            && let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        {
            self.rss.set(kb * 1024);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds
                .set(i64::try_from(dir.count()).unwrap_or(i64::MAX));
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest)
        {
            // Fields after the command: state is the 1st, utime the 12th, stime the 13th.
            let fields: Vec<&str> = after.split_whitespace().collect();
            let ticks = |i: usize| {
                fields
                    .get(i)
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            // USER_HZ is 100 on every Linux this runs on.
            self.cpu_seconds.set((ticks(11) + ticks(12)) / 100.0);
        }
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
