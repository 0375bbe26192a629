//! What one attempt means, decided once: the retry schedule's decision and
//! the attempt's answer, under the webhook's policy, give the delivery's
//! next state and due delay, the outcome counted in metrics, what the
//! answer says about the endpoint's capacity, a pause the receiver asked
//! for, and what happens to the endpoint. Pure: the worker acts on the
//! result (scheduler, store, metrics); nothing here does I/O or reads a
//! clock.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::meters::AttemptOutcome;
use super::retry::Decision;
use super::scheduler::adaptive::Signal;
use super::sender::{AttemptReport, ErrorKind};
use crate::policy::Webhook;
use crate::store::DeliveryState;

/// What happens to the endpoint after this attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointEffect {
    /// Nothing.
    Keep,
    /// `410 Gone`: disable it at once.
    DisableGone,
    /// A failure: disable it if every attempt failed for its
    /// `disable_after` (a lookup in the store, rate limited).
    CheckFailing,
}

/// Everything one attempt decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    /// `Succeeded`, `Pending` (again after `retry_in`) or `Dead`.
    pub state: DeliveryState,
    /// With `Pending`: how long from the database's now until the retry.
    pub retry_in: Option<Duration>,
    /// As counted in metrics.
    pub outcome: AttemptOutcome,
    /// For the endpoint's adaptive limit.
    pub signal: Signal,
    /// Send nothing to the endpoint for this long (`Retry-After` on a
    /// `429`/`503`, capped at the retry policy's `max_interval`).
    pub pause: Option<Duration>,
    pub endpoint: EndpointEffect,
}

/// The consequences of an attempt that ended with `report`, decided as
/// `decision` at `decided_at`.
pub fn next(
    webhook: &Webhook,
    report: &AttemptReport,
    decision: Decision,
    decided_at: DateTime<Utc>,
) -> Next {
    let overloaded_transport = matches!(
        report.error_kind,
        Some(ErrorKind::Timeout | ErrorKind::Connect | ErrorKind::ConnectionClosed)
    );
    let pause = match (report.status, report.retry_after) {
        (Some(429 | 503), Some(asked)) if !asked.is_zero() => {
            Some(asked.min(webhook.retry.max_interval))
        }
        _ => None,
    };
    let (state, retry_in, outcome, endpoint) = match decision {
        Decision::Succeeded => (
            DeliveryState::Succeeded,
            None,
            AttemptOutcome::Succeeded,
            EndpointEffect::Keep,
        ),
        Decision::Retry { at } => (
            DeliveryState::Pending,
            // The store anchors the delay to the database's clock.
            Some((at - decided_at).to_std().unwrap_or(Duration::ZERO)),
            if report.error_kind == Some(ErrorKind::BlockedDestination) {
                AttemptOutcome::Blocked
            } else {
                AttemptOutcome::Retry
            },
            EndpointEffect::CheckFailing,
        ),
        Decision::Dead => (
            DeliveryState::Dead,
            None,
            AttemptOutcome::Dead,
            EndpointEffect::CheckFailing,
        ),
        // Kept pending for when the webhook is enabled again; the delay only
        // matters if disabling failed, so a `410` is not hammered.
        Decision::Gone => (
            DeliveryState::Pending,
            Some(webhook.retry.initial_interval),
            AttemptOutcome::Retry,
            EndpointEffect::DisableGone,
        ),
    };
    Next {
        state,
        retry_in,
        outcome,
        // A broker's acknowledgement (no status, no error) is a success.
        signal: match (report.status, report.error_kind) {
            (None, None) => Signal::Success,
            (status, _) => Signal::of(status, overloaded_transport),
        },
        pause,
        endpoint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySet;

    fn webhook() -> Webhook {
        let yaml = "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secret: s\n    topics: [x]\n    retry: { initial_interval: 2s, max_interval: 1m, max_attempts: 3 }\n";
        let p = PolicySet::parse(yaml, "t", std::path::Path::new("."), &|_| None).expect("policy");
        p.webhook("a").expect("a").clone()
    }

    fn report(
        status: Option<u16>,
        kind: Option<ErrorKind>,
        retry_after: Option<u64>,
    ) -> AttemptReport {
        AttemptReport {
            started_at: Utc::now(),
            duration: Duration::from_millis(5),
            status,
            error_kind: kind,
            error: None,
            response_body: None,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn each_decision_gives_its_state_outcome_and_endpoint_effect() {
        let w = webhook();
        let now = Utc::now();
        let ok = next(&w, &report(Some(200), None, None), Decision::Succeeded, now);
        assert_eq!(
            (ok.state, ok.retry_in, ok.outcome),
            (DeliveryState::Succeeded, None, AttemptOutcome::Succeeded)
        );
        assert_eq!(
            (ok.signal, ok.endpoint, ok.pause),
            (Signal::Success, EndpointEffect::Keep, None)
        );

        let at = now + chrono::TimeDelta::seconds(4);
        let retry = next(
            &w,
            &report(Some(500), Some(ErrorKind::HttpStatus), None),
            Decision::Retry { at },
            now,
        );
        assert_eq!(retry.state, DeliveryState::Pending);
        assert_eq!(retry.retry_in, Some(Duration::from_secs(4)));
        assert_eq!(
            (retry.outcome, retry.signal),
            (AttemptOutcome::Retry, Signal::Neutral)
        );
        assert_eq!(retry.endpoint, EndpointEffect::CheckFailing);

        let blocked = next(
            &w,
            &report(None, Some(ErrorKind::BlockedDestination), None),
            Decision::Retry { at },
            now,
        );
        assert_eq!(blocked.outcome, AttemptOutcome::Blocked);

        let dead = next(
            &w,
            &report(None, Some(ErrorKind::Timeout), None),
            Decision::Dead,
            now,
        );
        assert_eq!(
            (dead.state, dead.outcome, dead.signal),
            (DeliveryState::Dead, AttemptOutcome::Dead, Signal::Overload)
        );

        let gone = next(
            &w,
            &report(Some(410), Some(ErrorKind::HttpStatus), None),
            Decision::Gone,
            now,
        );
        assert_eq!(
            (gone.state, gone.retry_in),
            (DeliveryState::Pending, Some(Duration::from_secs(2)))
        );
        assert_eq!(gone.endpoint, EndpointEffect::DisableGone);
    }

    #[test]
    fn a_retry_after_on_429_or_503_pauses_capped_at_max_interval() {
        let w = webhook();
        let now = Utc::now();
        let at = now + chrono::TimeDelta::seconds(30);
        let d = Decision::Retry { at };
        let throttled = next(
            &w,
            &report(Some(429), Some(ErrorKind::HttpStatus), Some(30)),
            d,
            now,
        );
        assert_eq!(throttled.pause, Some(Duration::from_secs(30)));
        assert_eq!(throttled.signal, Signal::Overload);
        let long = next(
            &w,
            &report(Some(503), Some(ErrorKind::HttpStatus), Some(3600)),
            d,
            now,
        );
        assert_eq!(
            long.pause,
            Some(Duration::from_secs(60)),
            "capped at max_interval"
        );
        let other = next(
            &w,
            &report(Some(500), Some(ErrorKind::HttpStatus), Some(30)),
            d,
            now,
        );
        assert_eq!(other.pause, None, "only 429 and 503 pause");
        // A retry in the past (clock skew) is due at once.
        let past = next(
            &w,
            &report(Some(500), None, None),
            Decision::Retry {
                at: now - chrono::TimeDelta::seconds(1),
            },
            now,
        );
        assert_eq!(past.retry_in, Some(Duration::ZERO));
    }
}
