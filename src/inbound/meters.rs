//! What inbound counts: requests by outcome (refusals by reason). Garbage
//! from unauthenticated senders is counted here and logged at a
//! rate-limited level, never audited (that would let anyone flood the
//! audit log).

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::{OutcomeLabel, Registry};

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

/// Inbound's family, and when each outcome was last logged at warn.
#[derive(Debug, Default)]
pub struct Meters {
    requests: Family<OutcomeLabel, Counter>,
    /// Unix milliseconds of the last warn-level log per outcome.
    last_logged_ms: [AtomicU64; InboundOutcome::ALL.len()],
}

impl Meters {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "inbound_requests",
            "Inbound command requests by outcome (refusals by reason)",
            m.requests.clone(),
        );
        m
    }

    pub fn count(&self, outcome: InboundOutcome) {
        self.requests
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// How many requests ended as `outcome` (tests and diagnostics).
    pub fn counted(&self, outcome: InboundOutcome) -> u64 {
        self.requests
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_outcome_and_rate_limits_logging() {
        let m = Meters::register(&mut Registry::default());
        m.count(InboundOutcome::SignatureInvalid);
        m.count(InboundOutcome::SignatureInvalid);
        assert_eq!(m.counted(InboundOutcome::SignatureInvalid), 2);
        assert_eq!(m.counted(InboundOutcome::Accepted), 0);
        assert!(m.should_log(InboundOutcome::SignatureInvalid, 10_000));
        assert!(!m.should_log(InboundOutcome::SignatureInvalid, 10_500));
        assert!(m.should_log(InboundOutcome::SignatureInvalid, 11_000));
        assert!(m.should_log(InboundOutcome::Unauthenticated, 10_500));
        let names: std::collections::HashSet<_> =
            InboundOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(names.len(), InboundOutcome::ALL.len());
    }
}
