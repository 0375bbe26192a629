//! Tests for `adaptive`.

use super::*;

const FAST: Duration = Duration::from_millis(5);

#[test]
fn a_fresh_endpoint_starts_at_its_initial_limit_and_doubles_per_round_trip() {
    let t0 = Instant::now();
    let mut l = AdaptiveLimit::new(8, t0);
    assert_eq!(l.current(256), 8);
    // Before any send the gate stays shut, however long ago it was made.
    l.record(Signal::Success, FAST, 256, t0 + Duration::from_secs(9));
    assert_eq!(l.current(256), 8);
    l.sending(t0);
    // Eight answers 50 ms later: 16 (the gate allows 16 at 50 ms).
    let t = t0 + GROWTH_PERIOD;
    for _ in 0..8 {
        l.record(Signal::Success, FAST, 256, t);
    }
    assert_eq!(l.current(256), 16);
    // However fast the answers, no more than the gate at that time.
    for _ in 0..100 {
        l.record(Signal::Success, FAST, 256, t);
    }
    assert_eq!(l.current(256), 16);
    let t = t0 + 2 * GROWTH_PERIOD;
    for _ in 0..100 {
        l.record(Signal::Success, FAST, 256, t);
    }
    assert_eq!(l.current(256), 32);
    let t = t0 + Duration::from_secs(1);
    for _ in 0..1000 {
        l.record(Signal::Success, FAST, 256, t);
    }
    assert_eq!(l.current(256), 256, "up to the ceiling, never above");
    assert_eq!(l.current(10), 10, "a lower ceiling applies at once");
}

#[test]
fn overload_halves_down_to_one_and_success_climbs_back_one_per_round_trip() {
    let t0 = Instant::now();
    let mut l = AdaptiveLimit::new(64, t0);
    let mut t = t0;
    for want in [32, 16, 8, 4, 2, 1, 1] {
        l.record(Signal::Overload, FAST, 64, t);
        assert_eq!(l.current(64), want);
        t += COOL_DOWN;
    }
    // Past the threshold (1): one more send per `limit` answers.
    for k in 1..64 {
        for _ in 0..k - 1 {
            l.record(Signal::Success, FAST, 64, t);
        }
        assert_eq!(l.current(64), k, "not yet");
        l.record(Signal::Success, FAST, 64, t);
        assert_eq!(l.current(64), k + 1);
    }
}

#[test]
fn below_the_threshold_growth_is_per_answer_again() {
    let t0 = Instant::now();
    let mut l = AdaptiveLimit::new(8, t0);
    l.sending(t0);
    let t = t0 + Duration::from_secs(1);
    for _ in 0..56 {
        l.record(Signal::Success, FAST, 256, t);
    }
    assert_eq!(l.current(256), 64);
    l.record(Signal::Overload, FAST, 256, t); // threshold 32
    assert_eq!(l.current(256), 32);
    for _ in 0..32 {
        l.record(Signal::Success, FAST, 256, t);
    }
    assert_eq!(l.current(256), 33, "one round trip, one more");
}

#[test]
fn a_burst_of_failures_counts_once_and_neutral_answers_change_nothing() {
    let t0 = Instant::now();
    let mut l = AdaptiveLimit::new(100, t0);
    for i in 0..50 {
        l.record(Signal::Overload, FAST, 100, t0 + Duration::from_millis(i));
    }
    assert_eq!(l.current(100), 50);
    l.record(Signal::Neutral, FAST, 100, t0 + Duration::from_secs(1));
    assert_eq!(l.current(100), 50);
}

#[test]
fn rising_latency_shrinks_the_limit_and_fast_jitter_does_not() {
    let t0 = Instant::now();
    let mut l = AdaptiveLimit::new(100, t0);
    l.record(Signal::Success, Duration::from_millis(50), 100, t0);
    assert_eq!(l.current(100), 100);
    // Within tolerance: 3 × 50 + 500 = 650 ms.
    l.record(Signal::Success, Duration::from_millis(640), 100, t0);
    assert_eq!(l.current(100), 100);
    l.record(Signal::Success, Duration::from_millis(1200), 100, t0);
    assert_eq!(l.current(100), 90);
    // One decrease per cool-down.
    l.record(Signal::Success, Duration::from_millis(1200), 100, t0);
    assert_eq!(l.current(100), 90);
    let later = t0 + COOL_DOWN;
    l.record(Signal::Success, Duration::from_millis(1200), 100, later);
    assert_eq!(l.current(100), 81);
    // A 1 ms receiver answering in 300 ms under a loaded engine is not
    // slow.
    let mut l = AdaptiveLimit::new(100, t0);
    l.record(Signal::Success, Duration::from_millis(1), 100, t0);
    l.record(Signal::Success, Duration::from_millis(300), 100, t0);
    assert_eq!(l.current(100), 100);
}

#[test]
fn the_baseline_follows_a_receiver_that_became_slower() {
    let t0 = Instant::now();
    let mut l = AdaptiveLimit::new(100, t0);
    l.record(Signal::Success, Duration::from_millis(10), 100, t0);
    let slow = Duration::from_millis(1500);
    // Two windows of 500 ms answers: the baseline is now 500 ms.
    let mut t = t0;
    for _ in 0..3 {
        t += BASELINE_WINDOW;
        l.record(Signal::Success, slow, 100, t);
    }
    let before = l.current(100);
    l.record(Signal::Success, slow, 100, t + COOL_DOWN);
    assert!(l.current(100) >= before, "1.5 s is normal now");
}

#[test]
fn a_restart_after_idle_starts_slow_again() {
    let t0 = Instant::now();
    let mut l = AdaptiveLimit::new(8, t0);
    l.sending(t0);
    let t = t0 + Duration::from_secs(2);
    for _ in 0..300 {
        l.record(Signal::Success, FAST, 256, t);
    }
    assert_eq!(l.current(256), 256);
    let t = t + IDLE_RESTART;
    l.restart(t);
    assert_eq!(l.current(256), 8);
    for _ in 0..100 {
        l.record(Signal::Success, FAST, 256, t);
    }
    assert_eq!(l.current(256), 8, "the gate counts from the restart");
}

#[test]
fn a_send_is_overdue_when_its_answer_would_be_slow() {
    let t0 = Instant::now();
    let mut l = AdaptiveLimit::new(8, t0);
    assert_eq!(l.slow_after(), None, "nothing known before an answer");
    l.record(Signal::Success, Duration::from_millis(50), 256, t0);
    assert_eq!(l.slow_after(), Some(Duration::from_millis(650)));
    // Failures teach nothing about the endpoint's speed.
    l.record(Signal::Overload, Duration::from_millis(1), 256, t0);
    assert_eq!(l.slow_after(), Some(Duration::from_millis(650)));
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

#[test]
fn an_overdue_send_halves_once_as_a_loss_then_without_moving_the_threshold() {
    let t0 = Instant::now();
    let mut l = AdaptiveLimit::new(64, t0);
    l.overdue(true, 256, t0);
    assert_eq!(l.current(256), 32, "the first time: overload");
    let mut t = t0 + COOL_DOWN;
    for want in [16, 8, 4] {
        l.overdue(false, 256, t);
        assert_eq!(l.current(256), want, "its wait doubled again");
        // Within the cool-down, nothing more.
        l.overdue(false, 256, t);
        assert_eq!(l.current(256), want);
        t += COOL_DOWN;
    }
    // Answers again: back to the threshold (32) one per answer, then one
    // per round trip.
    for _ in 0..28 {
        l.record(Signal::Success, FAST, 256, t);
    }
    assert_eq!(l.current(256), 32);
    for _ in 0..31 {
        l.record(Signal::Success, FAST, 256, t);
    }
    assert_eq!(l.current(256), 32, "past the threshold: per round trip");
    l.record(Signal::Success, FAST, 256, t);
    assert_eq!(l.current(256), 33);
}
