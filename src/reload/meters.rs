//! What policy reloads count: reloads by outcome, whether the last one
//! succeeded, and when the policy in force was loaded.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::{OutcomeLabel, Registry, unix_now};

/// Reload's families; see the module documentation.
#[derive(Debug, Default)]
pub struct Meters {
    reloads: Family<OutcomeLabel, Counter>,
    last_ok: Gauge,
    last_success: Gauge<f64, AtomicU64>,
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
        m.last_ok.set(1);
        m.last_success.set(unix_now());
        m
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
