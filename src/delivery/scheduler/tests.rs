use super::*;

pub(super) fn policy(ids: &[&str]) -> PolicySet {
    policy_with(ids, "")
}

/// A policy of webhooks `ids`, each with `extra` (YAML lines, indented
/// four spaces) added.
pub(super) fn policy_with(ids: &[&str], extra: &str) -> PolicySet {
    policy_of(ids.iter().map(|id| (*id, extra)))
}

/// A policy of the given webhooks, each with its extra YAML lines.
pub(super) fn policy_of<'a>(hooks: impl IntoIterator<Item = (&'a str, &'a str)>) -> PolicySet {
    let mut yaml = String::from("version: 1\nwebhooks:\n");
    for (id, extra) in hooks {
        yaml.push_str(&format!(
            "  - id: {id}\n    url: https://{id}.example.com\n    secret: s\n    topics: [x]\n    timeout: 2s\n{extra}"
        ));
    }
    PolicySet::parse(&yaml, "t", std::path::Path::new("."), &|_| None).expect("policy")
}

pub(super) fn limits(max: u32, per: u32, initial: u32) -> Limits {
    Limits {
        max_in_flight: max,
        max_in_flight_per_webhook: per,
        initial_in_flight: initial,
        claim_batch: max,
        lease_margin: Duration::from_secs(5),
    }
}

fn rooms(s: &Scheduler, p: &PolicySet, now: Instant) -> Vec<(String, u32)> {
    let plan = s.plan_claim(p, now).expect("free slots");
    s.cancel_claim(&plan);
    plan.slots
        .into_iter()
        .map(|w| (w.webhook_id, w.room))
        .collect()
}

/// Claims `n` rows for `webhook` (as if the store returned them).
fn take(s: &Scheduler, p: &PolicySet, webhook: &str, n: usize, now: Instant) -> Taken {
    let plan = s.plan_claim(p, now).expect("free slots");
    s.claimed(p, &plan, std::iter::repeat_n(webhook, n), now)
}

const FAST: Duration = Duration::from_millis(2);

#[test]
fn a_fresh_webhook_starts_at_its_initial_limit() {
    let p = policy(&["a"]);
    let s = Scheduler::new(limits(1024, 256, 8));
    let t = Instant::now();
    assert_eq!(rooms(&s, &p, t), [("a".into(), 8)]);
    // The policy's initial_in_flight wins, under the ceiling.
    let p = policy_with(&["a"], "    initial_in_flight: 20\n    max_in_flight: 16\n");
    assert_eq!(rooms(&s, &p, t), [("a".into(), 16)]);
}

#[test]
fn fast_answers_grow_the_room_up_to_the_ceiling() {
    let p = policy(&["a"]);
    let s = Scheduler::new(limits(1024, 64, 8));
    let t0 = Instant::now();
    assert_eq!(take(&s, &p, "a", 8, t0).sent, 8);
    assert!(rooms(&s, &p, t0).is_empty(), "all 8 in flight");
    let t = t0 + Duration::from_secs(1);
    for _ in 0..8 {
        s.finished("a", t);
        s.observe(&p, "a", Signal::Success, FAST, t);
    }
    assert_eq!(rooms(&s, &p, t), [("a".into(), 16)]);
    for _ in 0..100 {
        s.observe(&p, "a", Signal::Success, FAST, t);
    }
    assert_eq!(rooms(&s, &p, t), [("a".into(), 64)]);
}

#[test]
fn overload_shrinks_a_webhooks_room_and_a_pause_removes_it() {
    let p = policy(&["a", "b"]);
    let s = Scheduler::new(limits(64, 32, 32));
    let t = Instant::now();
    s.observe(&p, "a", Signal::Overload, FAST, t);
    s.observe(&p, "a", Signal::Overload, FAST, t + adaptive::COOL_DOWN);
    assert_eq!(s.current_limit(&p, "a"), 8);
    let room = |s: &Scheduler, t| -> HashMap<String, u32> { rooms(s, &p, t).into_iter().collect() };
    assert_eq!(room(&s, t)["a"], 8);
    assert_eq!(room(&s, t)["b"], 32);
    s.pause("b", t + Duration::from_secs(60), t);
    assert!(!room(&s, t).contains_key("b"), "paused");
    s.apply_states(&p, 1, [], t);
    assert!(
        !room(&s, t).contains_key("b"),
        "a local pause outlives a refresh"
    );
    assert!(room(&s, t + Duration::from_secs(61)).contains_key("b"));
    assert_eq!(s.next_unpause(t), Some(Duration::from_secs(60)));
}

#[test]
fn a_webhook_disabled_at_runtime_gets_no_room() {
    let p = policy(&["a", "b"]);
    let s = Scheduler::new(limits(64, 32, 32));
    let t = Instant::now();
    let disabled = AppliedState {
        webhook: "a".into(),
        disabled: true,
        paused_for: None,
    };
    s.apply_states(&p, 1, [disabled], t);
    let ids: Vec<String> = rooms(&s, &p, t).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["b"]);
    assert!(!s.is_sendable(&p, "a"));
    assert!(s.is_sendable(&p, "b"));
    assert_eq!(s.sendable_count(&p), 1);
    s.apply_states(&p, 2, [], t);
    assert_eq!(rooms(&s, &p, t).len(), 2);
}

#[test]
fn an_idle_engine_offers_every_webhook_its_share() {
    let p = policy(&["a", "b"]);
    let t = Instant::now();
    let s = Scheduler::new(limits(100, 40, 40));
    assert_eq!(rooms(&s, &p, t), [("a".into(), 40), ("b".into(), 40)]);
    let plan = s.plan_claim(&p, t).expect("free");
    assert_eq!(plan.slots[0].lease, Duration::from_secs(7));
    let s = Scheduler::new(limits(64, 64, 64));
    assert_eq!(rooms(&s, &p, t), [("a".into(), 32), ("b".into(), 32)]);
}

#[test]
fn webhooks_past_their_share_split_only_what_exceeds_the_reserve() {
    let p = policy(&["hang1", "hang2", "ok"]);
    let s = Scheduler::new(limits(64, 64, 64));
    let t = Instant::now();
    // Two hanging webhooks hold 24 each (over their share of 21) and
    // something else holds 0..: 48 busy, 16 free = the reserve.
    let plan = s.plan_claim(&p, t).expect("free");
    let rows = std::iter::repeat_n("hang1", 21).chain(std::iter::repeat_n("hang2", 21));
    s.claimed(&p, &plan, rows, t);
    let plan = s.plan_claim(&p, t).expect("free");
    let rows = std::iter::repeat_n("hang1", 3).chain(std::iter::repeat_n("hang2", 3));
    s.claimed(&p, &plan, rows, t);
    assert_eq!(s.in_flight("hang1"), 24);
    // 16 free = the reserve: only the webhook under its share may grow.
    assert_eq!(rooms(&s, &p, t), [("ok".into(), 21)]);
    // 20 free, both still past their share: the 4 above the reserve are
    // split between the two.
    for _ in 0..2 {
        s.finished("hang1", t);
        s.finished("hang2", t);
    }
    assert_eq!(
        rooms(&s, &p, t),
        [("hang1".into(), 2), ("hang2".into(), 2), ("ok".into(), 21)]
    );
}

#[test]
fn a_full_engine_plans_no_claim_and_a_cancelled_claim_frees_its_slots() {
    let p = policy(&["a"]);
    let s = Scheduler::new(limits(4, 4, 4));
    let t = Instant::now();
    let plan = s.plan_claim(&p, t).expect("free");
    assert_eq!(plan.limit, 4);
    assert!(s.plan_claim(&p, t).is_none(), "slots held for the claim");
    s.cancel_claim(&plan);
    assert_eq!(s.free_slots(), 4);
}

#[test]
fn rows_beyond_the_claims_limit_get_no_slot() {
    let p = policy(&["a"]);
    let s = Scheduler::new(limits(4, 4, 4));
    let t = Instant::now();
    let taken = take(&s, &p, "a", 6, t);
    assert_eq!((taken.sent, taken.full, taken.saturated), (4, true, true));
    assert_eq!(s.in_flight("a"), 4);
    assert_eq!(s.free_slots(), 0);
}

#[test]
fn only_a_caught_up_webhook_sends_new_deliveries_at_once() {
    let p = policy(&["a", "limited"]);
    let s = Scheduler::new(limits(64, 32, 8));
    let t = Instant::now();
    assert_eq!(s.reserve(&p, "a", 0, t), None, "no claim has run yet");
    s.apply_states(&p, 0, [], t);
    assert_eq!(s.reserve(&p, "a", 0, t), None, "not known to be caught up");
    // A claim that comes back short: caught up.
    let taken = take(&s, &p, "a", 0, t);
    assert!(!taken.full);
    assert_eq!(s.reserve(&p, "a", 0, t), Some(Duration::from_secs(7)));
    assert_eq!(s.in_flight("a"), 1);
    assert_eq!(s.reserve(&p, "a", 1, t), None, "a newer endpoint state");
    s.queued("a");
    assert_eq!(s.reserve(&p, "a", 0, t), None, "left to the claim");
    take(&s, &p, "a", 0, t);
    for _ in 0..7 {
        assert!(s.reserve(&p, "a", 0, t).is_some());
    }
    assert_eq!(s.reserve(&p, "a", 0, t), None, "at its initial limit");
    s.finished("a", t);
    assert!(s.reserve(&p, "a", 0, t).is_some());
    s.close();
    s.finished("a", t);
    assert_eq!(s.reserve(&p, "a", 0, t), None, "shutting down");
}

#[test]
fn a_rate_limited_webhook_is_never_sent_at_once() {
    let p = policy_with(&["a"], "    rate_limit: 10/s\n");
    let s = Scheduler::new(limits(64, 32, 8));
    let t = Instant::now();
    s.apply_states(&p, 0, [], t);
    take(&s, &p, "a", 0, t);
    assert_eq!(s.reserve(&p, "a", 0, t), None);
}

#[test]
fn a_webhook_idle_for_a_minute_starts_slow_again() {
    let p = policy(&["a"]);
    let s = Scheduler::new(limits(1024, 256, 8));
    let t0 = Instant::now();
    take(&s, &p, "a", 1, t0); // first sent to at t0
    s.finished("a", t0);
    let t = t0 + Duration::from_secs(5);
    for _ in 0..300 {
        s.observe(&p, "a", Signal::Success, FAST, t);
    }
    assert_eq!(s.current_limit(&p, "a"), 256);
    take(&s, &p, "a", 1, t);
    s.finished("a", t);
    let later = t + adaptive::IDLE_RESTART;
    // The first claim after idle is sized by the initial limit.
    assert_eq!(rooms(&s, &p, later), [("a".into(), 8)]);
    assert_eq!(s.current_limit(&p, "a"), 8);
}

#[test]
fn chores_are_rate_limited_per_webhook() {
    let p = policy(&["a", "b"]);
    let s = Scheduler::new(limits(64, 32, 8));
    let t = Instant::now();
    take(&s, &p, "a", 1, t);
    take(&s, &p, "b", 1, t);
    assert!(s.chore("a", Chore::FailingCheck, t));
    assert!(!s.chore("a", Chore::FailingCheck, t + Duration::from_millis(500)));
    assert!(s.chore("b", Chore::FailingCheck, t));
    assert!(s.chore("a", Chore::SharePause, t), "another chore");
    assert!(s.chore("a", Chore::FailingCheck, t + CHORE_EVERY));
    // Short pauses are not shared; long ones once a second.
    assert!(!s.pause("b", t + Duration::from_millis(300), t));
    assert!(s.pause("b", t + Duration::from_secs(5), t));
    assert!(!s.pause("b", t + Duration::from_secs(5), t));
}
