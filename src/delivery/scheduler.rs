//! What may be sent now: the one place that turns this engine's limits into
//! the "webhook → room" list the claim asks for. The claim loop stays claim
//! → spawn → record; a new limit (adaptive concurrency, rate budgets,
//! endpoint state, ordering) is a new input here, not another map beside the
//! loop.
//!
//! Today's limits:
//! - per webhook: at most `max_in_flight_per_webhook` sends at once;
//! - fair share of the engine's slots: every webhook may grow to its equal
//!   share (`max_in_flight / enabled webhooks`); beyond it, webhooks take
//!   only what exceeds a reserve of a quarter of the engine's slots, split
//!   between them. However many webhooks hang or fail, the others always
//!   find free slots.
//!
//! - runtime endpoint state: a webhook disabled at runtime (stored, see
//!   `store::EndpointState`) gets no room, so its deliveries stay pending;
//!   nor does one paused by a `Retry-After` (`throttled`) until then;
//! - adaptive concurrency: each webhook's sends in flight follow its answers
//!   (AIMD, `adaptive`), between 1 and its ceiling (`max_in_flight` in the
//!   policy, else the engine's per-webhook setting).
//!
//! Sharing one claim's rows between webhooks is the store's job (the claim
//! takes due rows round-robin across the listed webhooks), so a webhook's
//! backlog can never sit in front of another's due deliveries.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub mod adaptive;

use adaptive::{AdaptiveLimit, Signal};

use crate::policy::PolicySet;
use crate::store::WebhookSlot;

/// The limits the scheduler applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Sends in flight at once, all webhooks together.
    pub max_in_flight: u32,
    /// Sends in flight at once to one webhook.
    pub max_in_flight_per_webhook: u32,
    /// Added to a webhook's timeout to make a delivery's lease.
    pub lease_margin: Duration,
}

/// Per-webhook sends in flight on this engine, and the rooms they leave.
#[derive(Debug)]
pub struct Scheduler {
    limits: Limits,
    in_flight: Mutex<HashMap<String, u32>>,
    /// Webhooks disabled at runtime, as last read from the store.
    disabled: Mutex<HashSet<String>>,
    /// Rate limits for per-webhook lookups and writes (keyed `what:webhook`).
    memo: Mutex<HashMap<String, Instant>>,
    /// Each webhook's adaptive limit (absent = at its ceiling).
    adaptive: Mutex<HashMap<String, AdaptiveLimit>>,
    /// Webhooks paused by a `Retry-After`, until when.
    paused: Mutex<HashMap<String, Instant>>,
}

impl Scheduler {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            in_flight: Mutex::new(HashMap::new()),
            disabled: Mutex::new(HashSet::new()),
            memo: Mutex::new(HashMap::new()),
            adaptive: Mutex::new(HashMap::new()),
            paused: Mutex::new(HashMap::new()),
        }
    }

    /// A webhook's ceiling of sends in flight.
    fn ceiling(&self, w: &crate::policy::Webhook) -> u32 {
        w.max_in_flight
            .unwrap_or(self.limits.max_in_flight_per_webhook)
            .max(1)
    }

    /// What an attempt to `webhook` said about its capacity.
    pub fn observe(&self, policy: &PolicySet, webhook: &str, signal: Signal, now: Instant) {
        let Some(w) = policy.webhook(webhook) else {
            return;
        };
        let ceiling = self.ceiling(w);
        let mut adaptive = self.adaptive.lock().expect("lock");
        adaptive
            .entry(webhook.to_owned())
            .or_insert_with(|| AdaptiveLimit::new(ceiling))
            .record(signal, ceiling, now);
    }

    /// The sends `webhook` may have in flight now (for metrics and tests).
    pub fn current_limit(&self, policy: &PolicySet, webhook: &str) -> u32 {
        let Some(w) = policy.webhook(webhook) else {
            return 0;
        };
        let ceiling = self.ceiling(w);
        self.adaptive
            .lock()
            .expect("lock")
            .get(webhook)
            .map_or(ceiling, |l| l.current(ceiling))
    }

    /// Sends nothing to `webhook` until `until` (a receiver's `Retry-After`).
    pub fn pause(&self, webhook: &str, until: Instant) {
        let mut paused = self.paused.lock().expect("lock");
        let entry = paused.entry(webhook.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Pauses known from the store (other engines' `Retry-After`s); a
    /// local pause that lasts longer is kept.
    pub fn set_paused(&self, stored: HashMap<String, Instant>) {
        let mut paused = self.paused.lock().expect("lock");
        let now = Instant::now();
        paused.retain(|_, until| *until > now);
        for (webhook, until) in stored {
            let entry = paused.entry(webhook).or_insert(until);
            *entry = (*entry).max(until);
        }
    }

    /// How long until the earliest pause ends, if any is running.
    pub fn next_unpause(&self) -> Option<Duration> {
        let now = Instant::now();
        self.paused
            .lock()
            .expect("lock")
            .values()
            .filter(|until| **until > now)
            .map(|until| until.duration_since(now))
            .min()
    }

    /// True at most once per `every` for `key` (e.g. `failing:hook-a`).
    pub fn due(&self, key: &str, every: Duration) -> bool {
        let mut memo = self.memo.lock().expect("lock");
        let now = Instant::now();
        match memo.get(key) {
            Some(at) if now.duration_since(*at) < every => false,
            _ => {
                memo.insert(key.to_owned(), now);
                true
            }
        }
    }

    /// The webhooks disabled at runtime (replaces the previous set).
    pub fn set_disabled(&self, ids: HashSet<String>) {
        *self.disabled.lock().expect("lock") = ids;
    }

    /// Whether `webhook` may be sent to: enabled in the policy and not
    /// disabled at runtime.
    pub fn is_sendable(&self, policy: &PolicySet, webhook: &str) -> bool {
        policy.webhook(webhook).is_some_and(|w| w.enabled)
            && !self.disabled.lock().expect("lock").contains(webhook)
    }

    /// How many webhooks may be sent to at all.
    pub fn sendable_count(&self, policy: &PolicySet) -> usize {
        sendable(policy, &self.disabled.lock().expect("lock"))
    }

    /// Webhooks the claim may serve now, each with its room, given `free`
    /// engine-wide slots. Disabled webhooks and those without room are left
    /// out: their deliveries stay pending.
    pub fn slots(&self, policy: &PolicySet, free: u32) -> Vec<WebhookSlot> {
        let now = Instant::now();
        let busy = self.in_flight.lock().expect("lock");
        let disabled = self.disabled.lock().expect("lock");
        let paused = self.paused.lock().expect("lock");
        let adaptive = self.adaptive.lock().expect("lock");
        let l = self.limits;
        // Each sendable webhook with its sends in flight and its limit now.
        let enabled: Vec<_> = policy
            .webhooks()
            .iter()
            .filter(|w| w.enabled && !disabled.contains(w.id.as_str()))
            .filter(|w| paused.get(w.id.as_str()).is_none_or(|until| *until <= now))
            .map(|w| {
                let ceiling = self.ceiling(w);
                let limit = adaptive
                    .get(w.id.as_str())
                    .map_or(ceiling, |a| a.current(ceiling));
                (w, busy.get(w.id.as_str()).copied().unwrap_or(0), limit)
            })
            .collect();
        let share =
            (l.max_in_flight / u32::try_from(enabled.len().max(1)).unwrap_or(u32::MAX)).max(1);
        let over_share = enabled.iter().filter(|(_, used, _)| *used >= share).count();
        // What the webhooks past their share may take between them, this claim.
        let excess = free.saturating_sub(l.max_in_flight / 4)
            / u32::try_from(over_share.max(1)).unwrap_or(u32::MAX);
        enabled
            .into_iter()
            .filter_map(|(w, used, limit)| {
                let cap = limit.saturating_sub(used);
                let room = if used < share {
                    cap.min(share - used)
                } else {
                    cap.min(excess)
                };
                (room > 0).then(|| WebhookSlot {
                    webhook_id: w.id.to_string(),
                    room,
                    lease: w.timeout + l.lease_margin,
                })
            })
            .collect()
    }

    /// Starts a send to `webhook` outside the claim (a new delivery sent at
    /// once by the engine that accepted it), if the webhook has room now:
    /// sendable, not paused, under its limit and its fair share. Returns
    /// the lease the delivery is stored under; the send is counted until
    /// [`Scheduler::finished`].
    pub fn try_start(&self, policy: &PolicySet, webhook: &str) -> Option<Duration> {
        let w = policy.webhook(webhook).filter(|w| w.enabled)?;
        let now = Instant::now();
        let mut busy = self.in_flight.lock().expect("lock");
        let disabled = self.disabled.lock().expect("lock");
        let paused = self.paused.lock().expect("lock");
        if disabled.contains(webhook) || paused.get(webhook).is_some_and(|until| *until > now) {
            return None;
        }
        let ceiling = self.ceiling(w);
        let limit = self
            .adaptive
            .lock()
            .expect("lock")
            .get(webhook)
            .map_or(ceiling, |a| a.current(ceiling));
        let sendable = sendable(policy, &disabled);
        let share =
            (self.limits.max_in_flight / u32::try_from(sendable.max(1)).unwrap_or(u32::MAX)).max(1);
        let used = busy.entry(webhook.to_owned()).or_insert(0);
        if *used >= limit.min(share) {
            return None;
        }
        *used += 1;
        Some(w.timeout + self.limits.lease_margin)
    }

    /// A send to `webhook` started.
    pub fn started(&self, webhook: &str) {
        *self
            .in_flight
            .lock()
            .expect("lock")
            .entry(webhook.to_owned())
            .or_insert(0) += 1;
    }

    /// A send to `webhook` ended, however it ended.
    pub fn finished(&self, webhook: &str) {
        if let Some(n) = self.in_flight.lock().expect("lock").get_mut(webhook) {
            *n = n.saturating_sub(1);
        }
    }
}

/// Webhooks enabled in `policy` and not disabled at runtime, counted from
/// the (few) runtime-disabled ones: no scan of every webhook, which matters
/// on the path that sends new deliveries at once.
fn sendable(policy: &PolicySet, disabled: &HashSet<String>) -> usize {
    let off = disabled
        .iter()
        .filter(|id| policy.webhook(id).is_some_and(|w| w.enabled))
        .count();
    policy.enabled_count().saturating_sub(off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_shrinks_a_webhooks_room_and_a_pause_removes_it() {
        let p = policy(&["a", "b"]);
        let s = Scheduler::new(limits(64, 32));
        let t = Instant::now();
        s.observe(&p, "a", Signal::Overload, t);
        s.observe(&p, "a", Signal::Overload, t + adaptive::COOL_DOWN);
        assert_eq!(s.current_limit(&p, "a"), 8);
        let room = |s: &Scheduler| -> HashMap<String, u32> {
            s.slots(&p, 64)
                .into_iter()
                .map(|w| (w.webhook_id, w.room))
                .collect()
        };
        assert_eq!(room(&s)["a"], 8);
        assert_eq!(room(&s)["b"], 32);
        s.pause("b", Instant::now() + Duration::from_secs(60));
        assert!(!room(&s).contains_key("b"), "paused");
        s.set_paused(HashMap::new());
        assert!(
            !room(&s).contains_key("b"),
            "a local pause outlives a refresh"
        );
    }

    #[test]
    fn a_webhook_disabled_at_runtime_gets_no_room() {
        let p = policy(&["a", "b"]);
        let s = Scheduler::new(limits(64, 32));
        s.set_disabled(HashSet::from(["a".to_owned()]));
        let ids: Vec<String> = s.slots(&p, 64).into_iter().map(|w| w.webhook_id).collect();
        assert_eq!(ids, ["b"]);
        assert!(!s.is_sendable(&p, "a"));
        assert!(s.is_sendable(&p, "b"));
        assert_eq!(s.sendable_count(&p), 1);
        s.set_disabled(HashSet::new());
        assert_eq!(s.slots(&p, 64).len(), 2);
    }

    fn policy(ids: &[&str]) -> PolicySet {
        let mut yaml = String::from("version: 1\nwebhooks:\n");
        for id in ids {
            yaml.push_str(&format!(
                "  - id: {id}\n    url: https://{id}.example.com\n    secret: s\n    topics: [x]\n    timeout: 2s\n"
            ));
        }
        PolicySet::parse(&yaml, "t", std::path::Path::new("."), &|_| None).expect("policy")
    }

    fn limits(max: u32, per: u32) -> Limits {
        Limits {
            max_in_flight: max,
            max_in_flight_per_webhook: per,
            lease_margin: Duration::from_secs(5),
        }
    }

    fn rooms(s: &Scheduler, p: &PolicySet, free: u32) -> Vec<(String, u32)> {
        s.slots(p, free)
            .into_iter()
            .map(|w| (w.webhook_id, w.room))
            .collect()
    }

    #[test]
    fn an_idle_engine_offers_every_webhook_its_share() {
        let p = policy(&["a", "b"]);
        let s = Scheduler::new(limits(100, 40));
        assert_eq!(rooms(&s, &p, 100), [("a".into(), 40), ("b".into(), 40)]);
        assert_eq!(s.slots(&p, 100)[0].lease, Duration::from_secs(7));
        let s = Scheduler::new(limits(64, 64));
        assert_eq!(rooms(&s, &p, 64), [("a".into(), 32), ("b".into(), 32)]);
    }

    #[test]
    fn webhooks_past_their_share_split_only_what_exceeds_the_reserve() {
        let p = policy(&["hang1", "hang2", "ok"]);
        let s = Scheduler::new(limits(64, 64));
        // Two hanging webhooks hold 24 each: over their share of 21.
        for _ in 0..24 {
            s.started("hang1");
            s.started("hang2");
        }
        // 16 free = the reserve: only the webhook under its share may grow.
        assert_eq!(rooms(&s, &p, 16), [("ok".into(), 21)]);
        // 20 free: the 4 above the reserve are split between the two.
        assert_eq!(
            rooms(&s, &p, 20),
            [("hang1".into(), 2), ("hang2".into(), 2), ("ok".into(), 21)]
        );
        for _ in 0..24 {
            s.finished("hang1");
        }
        assert_eq!(rooms(&s, &p, 40)[0], ("hang1".into(), 21));
    }

    #[test]
    fn a_full_webhook_gets_no_slot() {
        let p = policy(&["a"]);
        let s = Scheduler::new(limits(100, 2));
        s.started("a");
        s.started("a");
        assert!(s.slots(&p, 98).is_empty());
        s.finished("a");
        assert_eq!(rooms(&s, &p, 99), [("a".into(), 1)]);
    }
}
