//! Held sends (`line`): a webhook at its limit holds new deliveries and
//! sends them, oldest first, as room frees; within its ceiling and the
//! engine's bound; handed back when held too long or at shutdown.

use super::line::{HOLD_FOR, HOLD_PATIENCE};
use super::tests::{limits, policy_with};
use super::*;
use crate::store::Claimed;

fn delivery(webhook: &str, n: u32) -> Claimed {
    Claimed {
        id: uuid::Uuid::now_v7(),
        event_id: format!("e{n}"),
        webhook_id: webhook.into(),
        attempt: 1,
        replay_base: 0,
        topic: "x".into(),
        body: Vec::new(),
        trace_id: None,
        traceparent: None,
        in_line: false,
        key: None,
    }
}

/// A scheduler whose webhook `a` (initial limit 2, ceiling 4) has caught up.
fn caught_up(max: u32) -> (Scheduler, PolicySet, Instant) {
    let p = policy_with(&["a"], "    initial_in_flight: 2\n    max_in_flight: 4\n");
    let s = Scheduler::new(limits(max, 256, 8));
    let t = Instant::now();
    s.apply_states(&p, 0, [], t);
    let plan = s.plan_claim(&p, t).expect("free slots");
    s.claimed(&p, &plan, std::iter::empty(), t);
    (s, p, t)
}

#[test]
fn past_its_limit_a_webhook_holds_new_deliveries_and_sends_them_in_order_as_room_frees() {
    let (s, p, t) = caught_up(64);
    let send = Duration::from_secs(2 + 5);
    assert_eq!(s.reserve(&p, "a", 0, t), Some(send));
    assert_eq!(s.reserve(&p, "a", 0, t), Some(send));
    assert_eq!(s.reserve(&p, "a", 0, t), None, "at its limit of 2");
    assert_eq!(s.promise(&p, "a", 0, t), Some(send + HOLD_FOR));
    assert_eq!(s.promise(&p, "a", 0, t), Some(send + HOLD_FOR));
    assert_eq!(
        s.promise(&p, "a", 0, t),
        None,
        "2 in flight + 2 held = its ceiling"
    );
    let (first, second) = (delivery("a", 1), delivery("a", 2));
    let first_id = first.id;
    assert!(s.hold(&p, first, t).start.is_empty(), "no room yet");
    assert!(s.hold(&p, second, t).start.is_empty());
    assert_eq!(s.held("a"), 2);
    // The claim leaves the webhook alone while it holds deliveries.
    let plan = s.plan_claim(&p, t).expect("free slots");
    assert!(plan.slots.iter().all(|w| w.room == 0), "{plan:?}");
    s.cancel_claim(&plan);
    // A send ends: the oldest held delivery goes, counted in flight.
    s.finished("a", t);
    let pumped = s.pump(&p, t);
    assert_eq!(
        pumped.start.iter().map(|c| c.id).collect::<Vec<_>>(),
        [first_id]
    );
    assert_eq!((s.in_flight("a"), s.held("a")), (2, 1));
    // Room under the limit, but one is still held: a new delivery does not
    // overtake it.
    s.finished("a", t);
    s.finished("a", t);
    assert_eq!(s.reserve(&p, "a", 0, t), None);
    assert_eq!(s.pump(&p, t).start.len(), 1);
    assert_eq!(s.held("a"), 0);
    assert!(
        s.reserve(&p, "a", 0, t).is_some(),
        "nothing held: at once again"
    );
}

#[test]
fn a_hold_given_back_unused_frees_its_place() {
    let (s, p, t) = caught_up(64);
    s.reserve(&p, "a", 0, t);
    s.reserve(&p, "a", 0, t);
    assert!(s.promise(&p, "a", 0, t).is_some());
    assert_eq!(s.held("a"), 1);
    s.unpromise("a");
    assert_eq!(s.held("a"), 0);
    s.finished("a", t);
    assert!(s.reserve(&p, "a", 0, t).is_some(), "no line left behind");
}

#[test]
fn held_too_long_or_at_shutdown_a_delivery_is_handed_back() {
    let (s, p, t) = caught_up(64);
    s.reserve(&p, "a", 0, t);
    s.reserve(&p, "a", 0, t);
    s.promise(&p, "a", 0, t);
    s.hold(&p, delivery("a", 1), t);
    assert!(
        s.pump(&p, t + HOLD_FOR - Duration::from_millis(1))
            .hand_back
            .is_empty()
    );
    let late = s.pump(&p, t + HOLD_FOR);
    assert_eq!((late.start.len(), late.hand_back.len()), (0, 1));
    assert_eq!(s.held("a"), 0);

    s.promise(&p, "a", 0, t);
    s.hold(&p, delivery("a", 2), t);
    s.promise(&p, "a", 0, t);
    s.close();
    assert_eq!(
        s.promise(&p, "a", 0, t),
        None,
        "nothing held once shutting down"
    );
    s.finished("a", t);
    assert!(
        s.pump(&p, t).start.is_empty(),
        "nothing starts once shutting down"
    );
    assert_eq!(s.drain().len(), 1);
    // The hold still being stored comes back when it is.
    let back = s.hold(&p, delivery("a", 3), t);
    assert_eq!((back.start.len(), back.hand_back.len()), (0, 1));
    assert_eq!(s.held("a"), 0);
}

#[test]
fn the_engine_holds_no_more_than_its_own_max_in_flight() {
    let p = policy_with(&["a", "b"], "    initial_in_flight: 1\n");
    let s = Scheduler::new(limits(4, 256, 8));
    let t = Instant::now();
    s.apply_states(&p, 0, [], t);
    let plan = s.plan_claim(&p, t).expect("free slots");
    s.claimed(&p, &plan, std::iter::empty(), t);
    for w in ["a", "b"] {
        assert!(s.reserve(&p, w, 0, t).is_some());
    }
    let held = (0..10)
        .filter(|i| {
            s.promise(&p, if i % 2 == 0 { "a" } else { "b" }, 0, t)
                .is_some()
        })
        .count();
    assert_eq!(held, 4);
}

#[test]
fn a_webhook_whose_held_deliveries_wait_too_long_leaves_new_ones_to_the_queue() {
    let (s, p, t) = caught_up(64);
    s.reserve(&p, "a", 0, t);
    s.reserve(&p, "a", 0, t);
    s.promise(&p, "a", 0, t);
    s.hold(&p, delivery("a", 1), t);
    assert!(s.promise(&p, "a", 0, t).is_some(), "still keeping up");
    s.unpromise("a");
    // A send ends only after more than HOLD_PATIENCE: the held one goes,
    // and the webhook is no longer caught up.
    let later = t + HOLD_PATIENCE + Duration::from_millis(1);
    s.finished("a", later);
    assert_eq!(s.pump(&p, later).start.len(), 1);
    assert_eq!(s.promise(&p, "a", 0, later), None);
    s.finished("a", later);
    assert_eq!(s.reserve(&p, "a", 0, later), None, "left to the claim");
    // Once a claim comes back short, it is caught up again.
    let plan = s.plan_claim(&p, later).expect("free slots");
    assert!(plan.slots.iter().any(|w| w.webhook_id == "a" && w.room > 0));
    s.claimed(&p, &plan, std::iter::empty(), later);
    assert!(s.reserve(&p, "a", 0, later).is_some());
}
