//! What delivery counts: sends started (by path), attempts by outcome and
//! their duration, runtime endpoint transitions, each webhook's adaptive
//! limit, and which webhooks are disabled now. Registered by the wiring,
//! recorded by the worker.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::metrics::{Registry, WebhookLabel};

/// How a send came to start: leased at ingest and sent at once (or held
/// until its webhook had room), or claimed from the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendPath {
    Ingest,
    Claim,
}

/// How one attempt ended, as counted in `deliveries_finished_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Succeeded,
    Retry,
    Dead,
    Blocked,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabel {
    path: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookOutcome {
    webhook: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookKind {
    webhook: String,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabel {
    webhook: String,
    to: &'static str,
}

type HistogramFamily = Family<WebhookLabel, Histogram, fn() -> Histogram>;

fn attempt_histogram() -> Histogram {
    // 5 ms to ~41 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Delivery's families; see the module documentation.
#[derive(Debug)]
pub struct Meters {
    sends: Family<PathLabel, Counter>,
    finished: Family<WebhookOutcome, Counter>,
    errors: Family<WebhookKind, Counter>,
    attempt_seconds: HistogramFamily,
    transitions: Family<TransitionLabel, Counter>,
    limit: Family<WebhookLabel, Gauge>,
    disabled: Family<WebhookLabel, Gauge>,
    /// The webhooks `disabled` shows now.
    disabled_shown: Mutex<BTreeSet<String>>,
}

impl Meters {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            sends: Family::default(),
            finished: Family::default(),
            errors: Family::default(),
            attempt_seconds: Family::new_with_constructor(attempt_histogram),
            transitions: Family::default(),
            limit: Family::default(),
            disabled: Family::default(),
            disabled_shown: Mutex::default(),
        };
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
            "attempt_errors",
            "Failed delivery attempts by webhook and error kind (timeout, connect, auth, http_status, blocked_destination, …)",
            m.errors.clone(),
        );
        registry.register(
            "attempt_duration_seconds",
            "Duration of delivery attempts, by webhook",
            m.attempt_seconds.clone(),
        );
        registry.register(
            "webhook_disabled",
            "1 for each webhook disabled at runtime (by an admin, a 410 Gone, or failing for its disable_after); absent otherwise",
            m.disabled.clone(),
        );
        registry.register(
            "endpoint_transitions",
            "Runtime endpoint state changes, by webhook and new state (disabled, enabled)",
            m.transitions.clone(),
        );
        registry.register(
            "webhook_concurrency_limit",
            "Sends this engine may have in flight to each webhook now (adaptive, AIMD)",
            m.limit.clone(),
        );
        m
    }

    /// An attempt to `webhook` failed with error kind `kind`.
    pub fn attempt_error(&self, webhook: &str, kind: &'static str) {
        let label = WebhookKind {
            webhook: webhook.to_owned(),
            kind,
        };
        self.errors.get_or_create(&label).inc();
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

    /// `webhook`'s runtime state changed to `to` (`disabled`, `enabled`).
    pub fn endpoint_transition(&self, webhook: &str, to: &'static str) {
        self.transitions
            .get_or_create(&TransitionLabel {
                webhook: webhook.to_owned(),
                to,
            })
            .inc();
    }

    /// The adaptive concurrency limit of `webhook` on this engine.
    pub fn concurrency_limit(&self, webhook: &str, limit: u32) {
        self.limit
            .get_or_create(&WebhookLabel {
                webhook: webhook.to_owned(),
            })
            .set(i64::from(limit));
    }

    /// The webhooks disabled at runtime now: each shows as 1, the others
    /// not at all. Only changes are applied, so a scrape never sees a
    /// webhook that stays disabled missing for a moment.
    pub fn webhooks_disabled(&self, ids: &[String]) {
        let now: BTreeSet<String> = ids.iter().cloned().collect();
        let mut shown = self
            .disabled_shown
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for gone in shown.difference(&now) {
            self.disabled.remove(&WebhookLabel {
                webhook: gone.clone(),
            });
        }
        for id in now.difference(&shown) {
            self.disabled
                .get_or_create(&WebhookLabel {
                    webhook: id.clone(),
                })
                .set(1);
        }
        *shown = now;
    }
}
