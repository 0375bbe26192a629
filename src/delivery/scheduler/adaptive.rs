//! Adaptive concurrency per endpoint: slow start, then AIMD, as TCP's
//! congestion control.
//!
//! - **Slow start.** A webhook starts at its `initial_in_flight` (8 unless
//!   the policy says otherwise), not at its ceiling, so a receiver that
//!   has never heard from this engine is not met by hundreds of requests at
//!   once. Each 2xx that came back fast adds one send, so the limit doubles
//!   per round trip while answers stay fast — and never faster than
//!   doubling every [`GROWTH_PERIOD`], however fast the receiver answers:
//!   in its first 100 ms a fresh webhook has at most `4 × initial` sends in
//!   flight. Sends to one webhook are also its connections (HTTP/1.1 sends
//!   one request per connection at a time), so this bounds how fast new
//!   connections to a receiver are opened.
//! - **Congestion avoidance.** Once the endpoint has shown where its
//!   limit is (the first decrease below), growth is one send per round trip
//!   (per `limit` fast 2xx), not per answer, as TCP Reno after `ssthresh`.
//! - **Back off.** A sign of overload — `429`, `502`, `503`, `504`, a
//!   timeout, a refused or dropped connection — halves the limit (down to
//!   one); a 2xx that took more than [`LATENCY_TOLERANCE`] times the
//!   webhook's recent fastest answer plus [`LATENCY_SLACK`] (half a second)
//!   shrinks it by a tenth. Each at most once per [`COOL_DOWN`], so one burst of failures
//!   in flight together counts as one signal.
//! - **Overdue sends.** A send still unanswered when an answer would be
//!   slow ([`AdaptiveLimit::slow_after`]) counts as overload, once; each
//!   time its wait doubles after that the limit halves again, but where
//!   growth slows does not move, and its answer, when it comes, counts for
//!   nothing more ([`AdaptiveLimit::overdue`]; the worker watches,
//!   `worker/control.rs`). This is the sign a
//!   receiver with a small accept queue gives: beyond the queue its kernel
//!   drops the SYN (or the handshake's last ACK), the connection waits for
//!   a resend a second or more later, and while new sends keep the queue
//!   full the resends are dropped too — such a send gives no answer to
//!   learn from until it times out.
//! - **Idle restart.** A webhook with nothing sent for [`IDLE_RESTART`]
//!   starts slow again, as TCP does after idle (RFC 2861): a receiver that
//!   scaled down meanwhile is not flooded by a sudden backlog.
//!
//! Why AIMD and not a pure gradient limiter: the signals receivers give us
//! are mostly explicit (`429`/`503` mean "slow down"); AIMD reacts to them at
//! once and its behaviour is easy to state to operators. Latency (an
//! overdue send) is a second signal. Pure: `now` is a parameter.

use std::time::{Duration, Instant};

/// Failures within this time after a decrease do not decrease again.
pub const COOL_DOWN: Duration = Duration::from_millis(250);
/// The limit at most doubles once per this period.
pub const GROWTH_PERIOD: Duration = Duration::from_millis(50);
/// A 2xx slower than this many times the recent fastest one is a sign of
/// load.
pub const LATENCY_TOLERANCE: f64 = 3.0;
/// ... plus this much. Large on purpose: an engine under heavy load sees
/// every answer slower (its own queueing, a shared CPU), by up to a few
/// hundred milliseconds, and that must not shrink a healthy receiver's
/// limit (measured: with 50 ms here, the load tool's scenario (b) fell to
/// 0.38× and stayed claim-driven). A receiver whose accept queue overflows
/// makes a connection wait a SYN retransmit, a second or more: that counts.
pub const LATENCY_SLACK: Duration = Duration::from_millis(500);
/// How long the fastest answer is remembered: the baseline follows a
/// receiver whose normal speed changes.
pub const BASELINE_WINDOW: Duration = Duration::from_secs(30);
/// After this long with nothing sent, a webhook starts slow again.
pub const IDLE_RESTART: Duration = Duration::from_secs(60);
/// Shrink factor for a slow answer.
const SLOW_FACTOR: f64 = 0.9;

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
    initial: f64,
    /// Set by the first decrease: below it the limit grows per answer
    /// (slow start), at or above it per round trip.
    threshold: Option<f64>,
    /// Fast 2xx since the last increase in congestion avoidance.
    acked: u32,
    /// The first send (or the restart after idle): the doubling gate counts
    /// from here; before it the gate is the initial limit.
    started: Option<Instant>,
    last_decrease: Option<Instant>,
    /// The fastest 2xx of the previous window, and of this one.
    baseline: Option<Duration>,
    window_fastest: Option<Duration>,
    window_start: Instant,
}

impl AdaptiveLimit {
    /// A fresh endpoint: `initial` sends (at least one).
    pub fn new(initial: u32, now: Instant) -> Self {
        let initial = f64::from(initial.max(1));
        Self {
            limit: initial,
            initial,
            threshold: None,
            acked: 0,
            started: None,
            last_decrease: None,
            baseline: None,
            window_fastest: None,
            window_start: now,
        }
    }

    /// Sends that may be in flight now, under `ceiling`.
    pub fn current(&self, ceiling: u32) -> u32 {
        whole(self.limit.min(f64::from(ceiling)).max(1.0))
    }

    /// A send starts: the first one starts the doubling gate's clock.
    pub fn sending(&mut self, now: Instant) {
        self.started.get_or_insert(now);
    }

    /// Starts slow again (after [`IDLE_RESTART`] with nothing sent).
    pub fn restart(&mut self, now: Instant) {
        self.limit = self.limit.min(self.initial);
        self.started = Some(now);
        // The receiver may have changed while idle: learn its speed anew.
        self.baseline = None;
        self.window_fastest = None;
        self.window_start = now;
    }

    /// The most the limit may be at `now`: `initial × 2^(t / GROWTH_PERIOD)`.
    fn gate(&self, now: Instant) -> f64 {
        let Some(started) = self.started else {
            return self.initial;
        };
        let periods =
            now.saturating_duration_since(started).as_secs_f64() / GROWTH_PERIOD.as_secs_f64();
        // Past 2^30 the gate no longer binds (ceilings are at most 10,000).
        self.initial * periods.min(30.0).exp2()
    }

    /// How long an answer may take before it is slow: [`LATENCY_TOLERANCE`]
    /// times the endpoint's recent fastest answer plus [`LATENCY_SLACK`];
    /// `None` before its first fast answer. A send still unanswered by then
    /// is overdue (`Scheduler::overdue_after`).
    pub fn slow_after(&self) -> Option<Duration> {
        self.baseline
            .map(|fast| fast.mul_f64(LATENCY_TOLERANCE) + LATENCY_SLACK)
    }

    /// Takes one attempt's answer into account; `latency` is how long it
    /// took.
    pub fn record(&mut self, signal: Signal, latency: Duration, ceiling: u32, now: Instant) {
        let ceiling = f64::from(ceiling.max(1));
        match signal {
            Signal::Success => {
                let slow = self.slow_after().is_some_and(|slow| latency > slow);
                self.note_latency(latency, now);
                if slow {
                    self.decrease(SLOW_FACTOR, ceiling, now);
                } else if self.threshold.is_none_or(|t| self.limit < t) {
                    self.limit = (self.limit + 1.0).min(ceiling).min(self.gate(now)).max(1.0);
                } else {
                    self.acked += 1;
                    if f64::from(self.acked) >= self.limit.floor() {
                        self.acked = 0;
                        self.limit = (self.limit + 1.0).min(ceiling).max(1.0);
                    }
                }
            }
            Signal::Overload => self.decrease(0.5, ceiling, now),
            Signal::Neutral => {}
        }
    }

    /// A send has gone unanswered past [`AdaptiveLimit::slow_after`]
    /// (`first`), or its wait has doubled again since. The first time it
    /// counts as overload — the limit halves and growth past it slows, as
    /// after a loss; each later time the limit halves again but the point
    /// where growth slows stays, as TCP's retransmission timeout resets
    /// the window but not the threshold a second time: once answers come
    /// back the limit climbs back to it per answer.
    pub fn overdue(&mut self, first: bool, ceiling: u32, now: Instant) {
        self.cut(0.5, f64::from(ceiling.max(1)), now, first);
    }

    fn decrease(&mut self, factor: f64, ceiling: f64, now: Instant) {
        self.cut(factor, ceiling, now, true);
    }

    /// Multiplies the limit by `factor` (at least one send), unless within
    /// [`COOL_DOWN`] of the last cut; `threshold`: growth turns slow from
    /// the new limit on.
    fn cut(&mut self, factor: f64, ceiling: f64, now: Instant, threshold: bool) {
        let cooling = self
            .last_decrease
            .is_some_and(|at| now.saturating_duration_since(at) < COOL_DOWN);
        if !cooling {
            self.limit = (self.limit.min(ceiling) * factor).max(1.0);
            if threshold {
                self.threshold = Some(self.limit);
            }
            self.acked = 0;
            self.last_decrease = Some(now);
        }
    }

    fn note_latency(&mut self, latency: Duration, now: Instant) {
        if now.saturating_duration_since(self.window_start) >= BASELINE_WINDOW {
            self.baseline = self.window_fastest.or(self.baseline);
            self.window_fastest = None;
            self.window_start = now;
        }
        self.window_fastest = Some(self.window_fastest.map_or(latency, |f| f.min(latency)));
        // The first answers set the baseline at once.
        self.baseline = Some(self.baseline.map_or(latency, |b| b.min(latency)));
    }
}

/// `x` (at least 1, finite or not) as a whole number of sends.
fn whole(x: f64) -> u32 {
    let floor = x.floor();
    if floor >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        // In range (checked above, and at least 1), so the cast is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = floor as u32;
        n
    }
}

#[cfg(test)]
#[path = "adaptive_tests.rs"]
mod tests;
