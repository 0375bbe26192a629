//! Adaptive concurrency per endpoint: AIMD, as TCP's congestion control.
//! Each 2xx adds one send to the limit (up to the ceiling); a sign of
//! overload — `429`, `502`, `503`, `504`, a timeout, a refused or dropped
//! connection — halves it (down to one), at most once per `COOL_DOWN` so one
//! burst of failures in flight together counts as one signal.
//!
//! Why AIMD and not a gradient limiter: the signals receivers give us are
//! explicit (`429`/`503` mean "slow down"), not just latency; AIMD reacts to
//! them at once, needs no latency baseline (a webhook's answer time mixes
//! network and the receiver's own work), and its behaviour is easy to state
//! to operators. Pure: `now` is a parameter.

use std::time::{Duration, Instant};

/// Failures within this time after a decrease do not decrease again.
pub const COOL_DOWN: Duration = Duration::from_millis(250);

/// What an attempt said about the endpoint's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A 2xx.
    Success,
    /// `429`, `502`, `503`, `504`, a timeout or a connection error.
    Overload,
    /// Anything else (a `500`, a `4xx`): says nothing about load.
    Neutral,
}

impl Signal {
    /// Classifies an attempt by its status and whether it failed at the
    /// transport level in a way that suggests overload.
    pub fn of(status: Option<u16>, overloaded_transport: bool) -> Self {
        match status {
            Some(200..=299) => Self::Success,
            Some(429 | 502 | 503 | 504) => Self::Overload,
            Some(_) => Self::Neutral,
            None if overloaded_transport => Self::Overload,
            None => Self::Neutral,
        }
    }
}

/// One endpoint's limit.
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    limit: f64,
    last_decrease: Option<Instant>,
}

impl AdaptiveLimit {
    /// Starts at the ceiling: a healthy endpoint is never slowed down.
    pub fn new(ceiling: u32) -> Self {
        Self {
            limit: f64::from(ceiling.max(1)),
            last_decrease: None,
        }
    }

    /// Sends that may be in flight now.
    pub fn current(&self, ceiling: u32) -> u32 {
        // Truncation is the point: 2.9 allowed sends are 2.
        let limit = self.limit.min(f64::from(ceiling)).max(1.0);
        let whole = limit.floor();
        if whole >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            // In range (checked above) and whole, so the cast is exact.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let n = whole as u32;
            n
        }
    }

    pub fn record(&mut self, signal: Signal, ceiling: u32, now: Instant) {
        let ceiling = f64::from(ceiling.max(1));
        match signal {
            Signal::Success => self.limit = (self.limit + 1.0).min(ceiling),
            Signal::Overload => {
                let cooling = self
                    .last_decrease
                    .is_some_and(|at| now.duration_since(at) < COOL_DOWN);
                if !cooling {
                    self.limit = (self.limit.min(ceiling) / 2.0).max(1.0);
                    self.last_decrease = Some(now);
                }
            }
            Signal::Neutral => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_halves_down_to_one_and_success_climbs_back() {
        let t0 = Instant::now();
        let mut l = AdaptiveLimit::new(64);
        assert_eq!(l.current(64), 64);
        let mut t = t0;
        for want in [32, 16, 8, 4, 2, 1, 1] {
            l.record(Signal::Overload, 64, t);
            assert_eq!(l.current(64), want);
            t += COOL_DOWN;
        }
        for i in 2..=64 {
            l.record(Signal::Success, 64, t);
            assert_eq!(l.current(64), i);
        }
        l.record(Signal::Success, 64, t);
        assert_eq!(l.current(64), 64, "never above the ceiling");
    }

    #[test]
    fn a_burst_of_failures_counts_once_and_neutral_answers_change_nothing() {
        let t0 = Instant::now();
        let mut l = AdaptiveLimit::new(100);
        for i in 0..50 {
            l.record(Signal::Overload, 100, t0 + Duration::from_millis(i));
        }
        assert_eq!(l.current(100), 50);
        l.record(Signal::Neutral, 100, t0 + Duration::from_secs(1));
        assert_eq!(l.current(100), 50);
        // A lower ceiling (a policy change) applies at once.
        assert_eq!(l.current(10), 10);
    }

    #[test]
    fn signals_follow_the_standard_webhooks_advice() {
        assert_eq!(Signal::of(Some(204), false), Signal::Success);
        for s in [429, 502, 503, 504] {
            assert_eq!(Signal::of(Some(s), false), Signal::Overload, "{s}");
        }
        assert_eq!(Signal::of(Some(500), false), Signal::Neutral);
        assert_eq!(Signal::of(Some(404), false), Signal::Neutral);
        assert_eq!(Signal::of(None, true), Signal::Overload);
        assert_eq!(Signal::of(None, false), Signal::Neutral);
    }
}
