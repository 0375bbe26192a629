//! What the event-bus sources count: messages by outcome, lag, and whether
//! each source is connected (its events are counted by ingest).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::Registry;

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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceOutcome {
    source: String,
    outcome: &'static str,
}

/// The sources' families; see the module documentation.
#[derive(Debug, Default)]
pub struct Meters {
    messages: Family<SourceOutcome, Counter>,
    lag: Family<SourceLabel, Gauge>,
    connected: Family<SourceLabel, Gauge>,
}

impl Meters {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "source_messages",
            "Messages consumed from event-bus sources, by source and outcome (created, duplicate, rejected)",
            m.messages.clone(),
        );
        registry.register(
            "source_lag_messages",
            "Messages on the bus not yet consumed and committed, by source (Kafka: summed over partitions; NATS: pending + unacknowledged)",
            m.lag.clone(),
        );
        registry.register(
            "source_connected",
            "1 if the source is connected to its broker, else 0",
            m.connected.clone(),
        );
        m
    }

    /// `n` messages of `source` ended as `outcome`.
    pub fn source_messages(&self, source: &str, outcome: MessageOutcome, n: u64) {
        let outcome = match outcome {
            MessageOutcome::Created => "created",
            MessageOutcome::Duplicate => "duplicate",
            MessageOutcome::Rejected => "rejected",
        };
        self.messages
            .get_or_create(&SourceOutcome {
                source: source.to_owned(),
                outcome,
            })
            .inc_by(n);
    }

    pub fn source_lag(&self, source: &str, lag: u64) {
        self.lag
            .get_or_create(&SourceLabel {
                source: source.to_owned(),
            })
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
    }

    pub fn source_connected(&self, source: &str, connected: bool) {
        self.connected
            .get_or_create(&SourceLabel {
                source: source.to_owned(),
            })
            .set(i64::from(connected));
    }

    /// A removed source's series go away with it.
    pub fn forget_source(&self, source: &str) {
        let label = SourceLabel {
            source: source.to_owned(),
        };
        self.lag.remove(&label);
        self.connected.remove(&label);
    }
}
