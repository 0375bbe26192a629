//! The retry schedule of contract §3: what happens to a delivery after one
//! attempt, and when its next attempt is due.
//!
//! Pure on purpose — no async, no I/O, no clock reads, no randomness: `now`
//! and `jitter` are parameters, so the worker's decisions are reproducible in
//! tests. This module does not send anything, record attempts, or know about
//! the store; it only turns (policy, attempt count, outcome) into a
//! [`Decision`].

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};

use crate::policy::RetryPolicy;

/// How one attempt ended, as far as the schedule cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// Any 2xx.
    Success,
    /// HTTP 410: the receiver says the endpoint is gone for good.
    Gone,
    /// Timeout, connection error, blocked destination, or any other non-2xx
    /// (3xx included, since redirects are never followed).
    Failure,
}

/// What to do with the delivery next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Succeeded,
    Retry {
        at: DateTime<Utc>,
    },
    Dead,
    /// `410 Gone`: the endpoint itself is gone. The webhook is disabled and
    /// the delivery kept pending, to be sent again if it is enabled.
    Gone,
}

/// Jitter spreads the delay by ±20%, so receivers that failed together are
/// not hit again by a synchronized wave of retries.
const JITTER_SPREAD: f64 = 0.2;
/// The jitter factor is applied in integer parts-per-million so the scaled
/// delay is exact and cannot overflow (see [`scale`]).
const PPM: u128 = 1_000_000;
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Decides the fate of a delivery after an attempt.
///
/// `attempts_made` counts every attempt already made in this delivery's
/// budget, including the one that just finished (values below 1 are treated
/// as 1). `jitter` is in `[-1, 1]` (clamped; NaN counts as 0) and scales the
/// backoff by `1 + 0.2 × jitter`. A `retry_after` from the receiver is
/// honoured as a lower bound, itself capped at `max_interval` so a receiver
/// cannot park a delivery for years.
pub fn decide(
    policy: &RetryPolicy,
    attempts_made: u32,
    result: AttemptResult,
    retry_after: Option<Duration>,
    now: DateTime<Utc>,
    jitter: f64,
) -> Decision {
    match result {
        AttemptResult::Success => Decision::Succeeded,
        AttemptResult::Gone => Decision::Gone,
        AttemptResult::Failure => {
            // A policy of 0 attempts would mean "never send", which the policy
            // compiler refuses; treat it as 1 rather than retrying forever.
            if attempts_made >= policy.max_attempts.max(1) {
                return Decision::Dead;
            }
            let mut delay = backoff(policy, attempts_made, jitter);
            if let Some(asked) = retry_after {
                delay = delay.max(asked.min(policy.max_interval));
            }
            Decision::Retry {
                at: add_saturating(now, delay),
            }
        }
    }
}

/// The delay before attempt `attempts_made + 1`:
/// `min(initial_interval × 2^(n-1), max_interval)`, scaled by `1 + 0.2 × jitter`.
///
/// Saturates instead of overflowing for any `n`, and with `jitter = 0` it is
/// exactly the un-jittered schedule (no float rounding), so it is monotone
/// in `n`.
pub fn backoff(policy: &RetryPolicy, attempts_made: u32, jitter: f64) -> Duration {
    let cap = policy.max_interval.as_nanos();
    let doublings = attempts_made.max(1) - 1;
    // u128 nanoseconds hold any Duration (< 2^94 ns); a shift of 34+ doublings
    // on top of that could overflow, so anything that does is simply the cap.
    let initial = policy.initial_interval.as_nanos();
    let base = if initial == 0 {
        0
    } else {
        1u128
            .checked_shl(doublings)
            .and_then(|factor| initial.checked_mul(factor))
            .map_or(cap, |nanos| nanos.min(cap))
    };
    scale(base, jitter)
}

/// `nanos × (1 + 0.2 × jitter)`, computed in parts per million.
fn scale(nanos: u128, jitter: f64) -> Duration {
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(-1.0, 1.0)
    };
    // In [800_000, 1_200_000]: the cast cannot truncate or go negative.
    let factor_ppm = (PPM as f64 * (1.0 + JITTER_SPREAD * jitter)).round() as u128;
    // At most 2^94 × 1.2e6 < 2^115: no overflow.
    from_nanos_saturating(nanos * factor_ppm / PPM)
}

fn from_nanos_saturating(nanos: u128) -> Duration {
    match u64::try_from(nanos / NANOS_PER_SEC) {
        Ok(secs) => Duration::new(secs, (nanos % NANOS_PER_SEC) as u32),
        Err(_) => Duration::MAX,
    }
}

/// `now + delay`, pinned to the latest representable instant instead of
/// panicking for absurd policies (e.g. `max_interval` of centuries).
fn add_saturating(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(delay)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Parses a `Retry-After` header value (RFC 9110 §10.2.3): delta-seconds or
/// an HTTP-date. A date in the past means "now" (zero). Anything else —
/// empty, negative, fractional, garbage — is `None`, i.e. ignored.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // A number too large for u64 is still clearly "a long time"; the
        // caller caps it at max_interval anyway.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(value)?;
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// IMF-fixdate, plus the two obsolete forms RFC 9110 says recipients must
/// still accept (RFC 850 and asctime), all of which are in GMT.
fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(date) = DateTime::parse_from_rfc2822(value) {
        return Some(date.with_timezone(&Utc));
    }
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
        .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(initial: u64, max: u64, attempts: u32) -> RetryPolicy {
        RetryPolicy {
            initial_interval: Duration::from_secs(initial),
            max_interval: Duration::from_secs(max),
            max_attempts: attempts,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn retry_delay(decision: Decision) -> Duration {
        match decision {
            Decision::Retry { at } => (at - now()).to_std().unwrap(),
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn backoff_doubles_from_the_initial_interval_up_to_the_cap() {
        let p = policy(10, 300, 15);
        let secs: Vec<u64> = (1..=7).map(|n| backoff(&p, n, 0.0).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn jitter_scales_by_twenty_percent_either_way() {
        let p = policy(10, 300, 15);
        assert_eq!(backoff(&p, 1, 1.0), Duration::from_secs(12));
        assert_eq!(backoff(&p, 1, -1.0), Duration::from_secs(8));
        assert_eq!(backoff(&p, 1, 0.5), Duration::from_secs(11));
    }

    #[test]
    fn out_of_range_and_nan_jitter_are_tamed() {
        let p = policy(10, 300, 15);
        assert_eq!(backoff(&p, 1, 7.0), Duration::from_secs(12));
        assert_eq!(backoff(&p, 1, f64::NEG_INFINITY), Duration::from_secs(8));
        assert_eq!(backoff(&p, 1, f64::NAN), Duration::from_secs(10));
    }

    #[test]
    fn huge_attempt_counts_and_intervals_saturate() {
        let p = policy(u64::MAX, u64::MAX, u32::MAX);
        assert_eq!(backoff(&p, u32::MAX, 0.0), Duration::from_secs(u64::MAX));
        assert_eq!(backoff(&p, u32::MAX, 1.0), Duration::MAX);
        let d = decide(&p, 3, AttemptResult::Failure, None, now(), 1.0);
        assert_eq!(
            d,
            Decision::Retry {
                at: DateTime::<Utc>::MAX_UTC
            }
        );
        assert_eq!(
            backoff(&policy(1, 60, 5), u32::MAX, 0.0),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn success_succeeds_and_gone_disables_at_once() {
        let p = policy(1, 60, 5);
        assert_eq!(
            decide(&p, 1, AttemptResult::Success, None, now(), 0.0),
            Decision::Succeeded
        );
        assert_eq!(
            decide(&p, 1, AttemptResult::Gone, None, now(), 0.0),
            Decision::Gone
        );
    }

    #[test]
    fn failure_retries_until_the_budget_is_spent() {
        let p = policy(1, 60, 3);
        assert_eq!(
            retry_delay(decide(&p, 1, AttemptResult::Failure, None, now(), 0.0)).as_secs(),
            1
        );
        assert_eq!(
            retry_delay(decide(&p, 2, AttemptResult::Failure, None, now(), 0.0)).as_secs(),
            2
        );
        assert_eq!(
            decide(&p, 3, AttemptResult::Failure, None, now(), 0.0),
            Decision::Dead
        );
        // A single-attempt budget never retries.
        assert_eq!(
            decide(
                &policy(1, 60, 1),
                1,
                AttemptResult::Failure,
                None,
                now(),
                0.0
            ),
            Decision::Dead
        );
    }

    #[test]
    fn retry_after_is_a_floor_capped_at_max_interval() {
        let p = policy(1, 60, 5);
        let asked = |secs| {
            decide(
                &p,
                1,
                AttemptResult::Failure,
                Some(Duration::from_secs(secs)),
                now(),
                0.0,
            )
        };
        assert_eq!(retry_delay(asked(30)).as_secs(), 30);
        assert_eq!(
            retry_delay(asked(0)).as_secs(),
            1,
            "a short Retry-After does not shorten the backoff"
        );
        assert_eq!(retry_delay(asked(86_400)).as_secs(), 60);
    }

    #[test]
    fn retry_after_parses_delta_seconds() {
        assert_eq!(
            parse_retry_after("120", now()),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now()), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now()),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["", "-5", "1.5", "soon", "+3", "12 s"] {
            assert_eq!(parse_retry_after(bad, now()), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_parses_http_dates_and_past_dates_are_zero() {
        // now() is 2023-11-14T22:13:20Z.
        let in_90s = "Tue, 14 Nov 2023 22:14:50 GMT";
        assert_eq!(
            parse_retry_after(in_90s, now()),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Tuesday, 14-Nov-23 22:14:50 GMT", now()),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Tue Nov 14 22:14:50 2023", now()),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now()),
            Some(Duration::ZERO)
        );
    }

    fn arb_policy() -> impl Strategy<Value = RetryPolicy> {
        (0u64..=10_000_000_000, 0u64..=100_000_000_000, 1u32..=1000).prop_map(
            |(init_ms, max_ms, attempts)| RetryPolicy {
                initial_interval: Duration::from_millis(init_ms),
                max_interval: Duration::from_millis(max_ms),
                max_attempts: attempts,
            },
        )
    }

    fn arb_result() -> impl Strategy<Value = AttemptResult> {
        prop_oneof![
            Just(AttemptResult::Success),
            Just(AttemptResult::Gone),
            Just(AttemptResult::Failure)
        ]
    }

    /// `max_interval × 1.2`, exactly (a float multiply rounds down by a few ns).
    fn max_jittered(p: &RetryPolicy) -> Duration {
        from_nanos_saturating(p.max_interval.as_nanos() * 6 / 5)
    }

    proptest! {
        #[test]
        fn unjittered_backoff_is_monotone(p in arb_policy(), n in 1u32..200) {
            prop_assert!(backoff(&p, n, 0.0) <= backoff(&p, n + 1, 0.0));
        }

        #[test]
        fn backoff_never_exceeds_max_interval_plus_jitter(p in arb_policy(), n in any::<u32>(), j in any::<f64>()) {
            prop_assert!(backoff(&p, n, j) <= max_jittered(&p));
        }

        #[test]
        fn jittered_backoff_stays_within_twenty_percent(p in arb_policy(), n in 1u32..100, j in -1.0f64..=1.0) {
            let base = backoff(&p, n, 0.0).as_secs_f64();
            let got = backoff(&p, n, j).as_secs_f64();
            prop_assert!(got >= base * 0.8 - 1e-6 && got <= base * 1.2 + 1e-6);
        }

        #[test]
        fn retry_is_never_sooner_than_capped_retry_after(
            p in arb_policy(), n in 1u32..100, j in any::<f64>(), ra_ms in 0u64..1_000_000_000_000,
        ) {
            let ra = Duration::from_millis(ra_ms);
            if let Decision::Retry { at } = decide(&p, n, AttemptResult::Failure, Some(ra), now(), j) {
                prop_assert!((at - now()).to_std().unwrap() >= ra.min(p.max_interval));
            }
        }

        #[test]
        fn without_retry_after_the_delay_is_bounded(p in arb_policy(), n in 1u32..100, j in any::<f64>()) {
            if let Decision::Retry { at } = decide(&p, n, AttemptResult::Failure, None, now(), j) {
                prop_assert!((at - now()).to_std().unwrap() <= max_jittered(&p));
            }
        }

        #[test]
        fn no_retry_once_the_budget_is_spent(
            p in arb_policy(), extra in 0u32..1000, r in arb_result(), ra in proptest::option::of(0u64..100_000),
        ) {
            let n = p.max_attempts.saturating_add(extra);
            let d = decide(&p, n, r, ra.map(Duration::from_secs), now(), 0.0);
            let retried = matches!(d, Decision::Retry { .. });
            prop_assert!(!retried, "retried after {} of {} attempts", n, p.max_attempts);
        }

        #[test]
        fn gone_is_always_gone(p in arb_policy(), n in any::<u32>(), j in any::<f64>(), ra in proptest::option::of(any::<u64>())) {
            let d = decide(&p, n, AttemptResult::Gone, ra.map(Duration::from_secs), now(), j);
            prop_assert_eq!(d, Decision::Gone);
        }
    }
}
