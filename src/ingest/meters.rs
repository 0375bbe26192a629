//! What ingest counts: events stored, by where they came from (counted
//! once, in [`store_events`](super::store_events), whether they came over
//! HTTP or a bus), schema violations, and events a webhook's `min_version`
//! left out.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::{Registry, WebhookLabel};
use crate::policy::schemas::SchemaMode;

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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SchemaLabel {
    topic: String,
    mode: &'static str,
}

/// Ingest's families; see the module documentation.
#[derive(Debug, Default)]
pub struct Meters {
    events: Family<SourceLabel, Counter>,
    schema_violations: Family<SchemaLabel, Counter>,
    below_min_version: Family<WebhookLabel, Counter>,
    filtered_out: Family<WebhookLabel, Counter>,
}

impl Meters {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "events_accepted",
            "Events stored, by where they came from",
            m.events.clone(),
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
        registry.register(
            "events_filtered",
            "Events a webhook's topics matched but its filter refused, by webhook",
            m.filtered_out.clone(),
        );
        m
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

    /// A new event left `webhook` out: its `filter:` refused it.
    pub fn filtered_out(&self, webhook: &str) {
        self.filtered_out
            .get_or_create(&WebhookLabel {
                webhook: webhook.to_owned(),
            })
            .inc();
    }

    /// A new event left `webhook` out: below its `min_version`.
    pub fn below_min_version(&self, webhook: &str) {
        self.below_min_version
            .get_or_create(&WebhookLabel {
                webhook: webhook.to_owned(),
            })
            .inc();
    }
}
