//! What policy reloads count: reloads by outcome, whether the last one
//! succeeded, and when the policy in force was loaded.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::{OutcomeLabel, Registry, WebhookLabel, unix_now};
use crate::policy::PolicySet;

/// Reload's families; see the module documentation.
#[derive(Debug, Default)]
pub struct Meters {
    reloads: Family<OutcomeLabel, Counter>,
    last_ok: Gauge,
    last_success: Gauge<f64, AtomicU64>,
    cert_expiry: Family<WebhookLabel, Gauge<f64, AtomicU64>>,
}

impl Meters {
    /// Registered as at start: the policy loaded then is the last success.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "policy_reloads",
            "Policy reloads by outcome",
            m.reloads.clone(),
        );
        registry.register(
            "policy_last_reload_successful",
            "1 if the last policy reload succeeded (or none was tried), 0 if it was refused",
            m.last_ok.clone(),
        );
        registry.register(
            "policy_last_reload_success_timestamp_seconds",
            "Unix time the policy in force was loaded",
            m.last_success.clone(),
        );
        registry.register(
            "webhook_client_cert_expiry_timestamp_seconds",
            "Unix time the client certificate of a webhook's tls: expires",
            m.cert_expiry.clone(),
        );
        m.last_ok.set(1);
        m.last_success.set(unix_now());
        m
    }

    /// The policy in force changed (or was loaded at start): the client
    /// certificates' expiry, webhooks without one dropped.
    pub fn policy_in_force(&self, policy: &PolicySet) {
        self.cert_expiry.clear();
        for w in policy.webhooks() {
            if let Some(id) = w.route.tls.as_ref().and_then(|t| t.identity.as_ref()) {
                self.client_cert_expiry(w.id.as_str(), id.not_after.timestamp() as f64);
            }
        }
    }

    /// Webhook `webhook`'s client certificate expires at Unix time `at`.
    pub fn client_cert_expiry(&self, webhook: &str, at: f64) {
        let label = WebhookLabel {
            webhook: webhook.to_owned(),
        };
        self.cert_expiry.get_or_create(&label).set(at);
    }

    /// A policy reload ended: `applied`, `unchanged` or `invalid`.
    pub fn reload(&self, outcome: &'static str) {
        self.reloads.get_or_create(&OutcomeLabel { outcome }).inc();
        match outcome {
            "invalid" => {
                self.last_ok.set(0);
            }
            "applied" => {
                self.last_ok.set(1);
                self.last_success.set(unix_now());
            }
            _ => {
                self.last_ok.set(1);
            }
        }
    }
}
