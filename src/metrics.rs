//! In-process counters, ready for the Prometheus endpoint: refusals of the
//! inbound endpoint by reason, accepted and replayed commands. Unauthenticated
//! garbage is counted here and logged at a rate-limited level, never audited
//! (that would let anyone flood the audit log).

use std::sync::atomic::{AtomicU64, Ordering};

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

/// Counters shared by every request handler.
#[derive(Debug, Default)]
pub struct Metrics {
    inbound: [AtomicU64; 13],
    /// Unix milliseconds of the last warn-level log per outcome.
    last_logged_ms: [AtomicU64; 13],
}

impl Metrics {
    pub fn count_inbound(&self, outcome: InboundOutcome) {
        self.inbound[outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn inbound(&self, outcome: InboundOutcome) -> u64 {
        self.inbound[outcome.index()].load(Ordering::Relaxed)
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
