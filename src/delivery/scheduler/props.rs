//! Property tests: random sequences of claims, sends at once, answers,
//! pauses, endpoint-state changes and passing time, against a model that
//! knows only which sends are in flight. After every step:
//! - a paused or disabled webhook was given no room and no reservation;
//! - no webhook was given room beyond its limit, nor, past its fair share,
//!   beyond its part of what exceeds the reserve; no reservation went past
//!   its limit or share;
//! - every row a claim returned was either counted as sent or handed back
//!   (the plan's slots are free again), and the counts match the model;
//! - once every send has finished, every slot is free (nothing leaks).

use proptest::prelude::*;

use super::tests::{limits, policy_of};
use super::*;

const HOOKS: [&str; 4] = ["a", "b", "c", "limited"];

#[derive(Debug, Clone)]
enum Op {
    /// A claim; the store returns up to `fill` of each webhook's room.
    Claim {
        fill: Vec<u32>,
    },
    Reserve(usize),
    /// Finishes the send at this index of those in flight (if any).
    Finish(usize),
    Observe(usize, u8, u16),
    Pause(usize, u16),
    Disable(Vec<bool>, u16),
    Queued(usize),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    let hook = 0..HOOKS.len();
    prop_oneof![
        3 => prop::collection::vec(0u32..40, HOOKS.len()).prop_map(|fill| Op::Claim { fill }),
        3 => hook.clone().prop_map(Op::Reserve),
        4 => any::<usize>().prop_map(Op::Finish),
        3 => (hook.clone(), 0u8..3, 0u16..3000).prop_map(|(h, s, l)| Op::Observe(h, s, l)),
        1 => (hook.clone(), 0u16..3000).prop_map(|(h, ms)| Op::Pause(h, ms)),
        1 => (prop::collection::vec(prop::bool::weighted(0.25), HOOKS.len()), 0u16..2000)
            .prop_map(|(d, p)| Op::Disable(d, p)),
        1 => hook.clone().prop_map(Op::Queued),
        2 => (0u16..2000).prop_map(Op::Advance),
    ]
}

struct Model {
    /// Webhooks of the sends in flight, one entry each.
    sends: Vec<&'static str>,
    disabled: HashSet<&'static str>,
    paused_until: HashMap<&'static str, Instant>,
}

impl Model {
    fn used(&self, w: &str) -> u32 {
        u32::try_from(self.sends.iter().filter(|s| **s == w).count()).expect("few")
    }
    fn blocked(&self, w: &str, now: Instant) -> bool {
        self.disabled.contains(w) || self.paused_until.get(w).is_some_and(|u| *u > now)
    }
}

fn run(ops: Vec<Op>, max: u32, per: u32, initial: u32) -> Result<(), TestCaseError> {
    // The last one is rate limited.
    let p = policy_of(HOOKS.map(|w| {
        (
            w,
            if w == "limited" {
                "    rate_limit: 100/s\n"
            } else {
                ""
            },
        )
    }));
    let s = Scheduler::new(limits(max, per, initial));
    let mut now = Instant::now();
    let mut m = Model {
        sends: Vec::new(),
        disabled: HashSet::new(),
        paused_until: HashMap::new(),
    };
    let mut version = 0u64;
    s.apply_states(&p, version, [], now);
    for op in ops {
        match op {
            Op::Claim { fill } => {
                let Some(plan) = s.plan_claim(&p, now) else {
                    prop_assert_eq!(m.sends.len() as u32, max, "no plan only when full");
                    continue;
                };
                let free = max - m.sends.len() as u32;
                prop_assert_eq!(plan.limit, free.min(max));
                let share = rooms::share(max, HOOKS.iter().filter(|w| !m.blocked(w, now)).count());
                let over = HOOKS
                    .iter()
                    .filter(|w| !m.blocked(w, now) && m.used(w) >= share)
                    .count() as u32;
                let mut rows = Vec::new();
                for slot in &plan.slots {
                    let w = HOOKS
                        .iter()
                        .find(|h| **h == slot.webhook_id)
                        .expect("known");
                    prop_assert!(!m.blocked(w, now), "{w} is blocked but got room");
                    let used = m.used(w);
                    prop_assert!(
                        used + slot.room <= s.current_limit(&p, w),
                        "room past the limit"
                    );
                    if used >= share {
                        let excess = free.saturating_sub(max / 4) / over.max(1);
                        prop_assert!(slot.room <= excess, "past its share beyond the excess");
                    }
                    let i = HOOKS.iter().position(|h| h == w).expect("known");
                    for _ in 0..fill[i].min(slot.room) {
                        rows.push(*w);
                    }
                }
                rows.truncate(plan.limit as usize + 2); // a store returning too many
                let taken = s.claimed(&p, &plan, rows.iter().copied(), now);
                prop_assert!(taken.sent <= rows.len());
                prop_assert!(taken.sent <= plan.limit as usize);
                m.sends.extend(rows.iter().take(taken.sent));
            }
            Op::Reserve(i) => {
                let w = HOOKS[i];
                let used = m.used(w);
                if s.reserve(&p, w, version, now).is_some() {
                    prop_assert!(!m.blocked(w, now), "{w} is blocked but was reserved");
                    prop_assert!(w != "limited", "a rate-limited webhook went at once");
                    prop_assert!(used < s.current_limit(&p, w), "reserved past the limit");
                    let share =
                        rooms::share(max, HOOKS.iter().filter(|w| !m.blocked(w, now)).count());
                    prop_assert!(used < share, "reserved past its share");
                    prop_assert!((m.sends.len() as u32) < max, "reserved with no free slot");
                    m.sends.push(w);
                }
            }
            Op::Finish(i) => {
                if !m.sends.is_empty() {
                    let w = m.sends.swap_remove(i % m.sends.len());
                    s.finished(w, now);
                }
            }
            Op::Observe(i, signal, ms) => {
                let signal =
                    [Signal::Success, Signal::Overload, Signal::Neutral][usize::from(signal)];
                s.observe(
                    &p,
                    HOOKS[i],
                    signal,
                    Duration::from_millis(u64::from(ms)),
                    now,
                );
            }
            Op::Pause(i, ms) => {
                let until = now + Duration::from_millis(u64::from(ms));
                s.pause(HOOKS[i], until, now);
                let e = m.paused_until.entry(HOOKS[i]).or_insert(until);
                *e = (*e).max(until);
            }
            Op::Disable(flags, ms) => {
                version += 1;
                let states: Vec<AppliedState> = HOOKS
                    .iter()
                    .zip(&flags)
                    .map(|(w, d)| AppliedState {
                        webhook: (*w).to_owned(),
                        disabled: *d,
                        paused_for: (ms > 1000).then(|| Duration::from_millis(u64::from(ms))),
                    })
                    .collect();
                s.apply_states(&p, version, states, now);
                m.disabled = HOOKS
                    .iter()
                    .zip(&flags)
                    .filter(|(_, d)| **d)
                    .map(|(w, _)| *w)
                    .collect();
                if ms > 1000 {
                    for w in HOOKS {
                        let until = now + Duration::from_millis(u64::from(ms));
                        let e = m.paused_until.entry(w).or_insert(until);
                        *e = (*e).max(until);
                    }
                }
            }
            Op::Queued(i) => s.queued(HOOKS[i]),
            Op::Advance(ms) => now += Duration::from_millis(u64::from(ms)),
        }
        for w in HOOKS {
            prop_assert_eq!(s.in_flight(w), m.used(w), "{} in flight", w);
        }
        prop_assert_eq!(s.free_slots(), max - m.sends.len() as u32);
    }
    for w in std::mem::take(&mut m.sends) {
        s.finished(w, now);
    }
    prop_assert_eq!(s.free_slots(), max, "a slot leaked");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn the_scheduler_keeps_its_promises(
        ops in prop::collection::vec(op(), 1..120),
        max in 1u32..80,
        per in 1u32..40,
        initial in 1u32..16,
    ) {
        run(ops, max, per, initial)?;
    }
}
