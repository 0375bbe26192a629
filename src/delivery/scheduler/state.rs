//! The runtime endpoint state the scheduler applies — disabled webhooks
//! and pauses, as read from the store or learnt from answers — the rate
//! limits on per-webhook chores, and a webhook's book-keeping (a fresh one,
//! the restart after idle, sends overdue for an answer). Part of
//! [`Scheduler`]; here to keep
//! each file readable.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::adaptive::{AdaptiveLimit, IDLE_RESTART};
use super::{Book, Hook, Scheduler};
use crate::policy::PolicySet;
use crate::policy::Webhook;

/// What an endpoint's stored runtime state says, for [`Scheduler::apply_states`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedState {
    pub webhook: String,
    pub disabled: bool,
    /// Paused (another engine's `Retry-After`) for this much longer.
    pub paused_for: Option<Duration>,
}

/// Rate limits on per-webhook side work the worker does after an attempt.
#[derive(Debug, Clone, Copy)]
pub enum Chore {
    /// Looking up whether the webhook failed every attempt for its
    /// `disable_after`.
    FailingCheck,
    /// Telling other engines about a pause.
    SharePause,
}

/// How often a [`Chore`] is done for one webhook (at most).
pub const CHORE_EVERY: Duration = Duration::from_secs(1);

impl Scheduler {
    /// How long a send to `webhook` may go unanswered before it is overdue
    /// (`adaptive::AdaptiveLimit::slow_after`): then, and each time its wait
    /// has doubled, the worker calls [`Scheduler::overdue`]. `None` before
    /// the webhook's first fast answer on this engine.
    pub fn overdue_after(&self, webhook: &str) -> Option<Duration> {
        self.book().hooks.get(webhook)?.limit.slow_after()
    }

    /// A send to `webhook` is overdue (`first`), or still, its wait doubled
    /// (`adaptive::AdaptiveLimit::overdue`); returns the webhook's limit now.
    pub fn overdue(&self, policy: &PolicySet, webhook: &str, first: bool, now: Instant) -> u32 {
        let Some(w) = policy.webhook(webhook) else {
            return 0;
        };
        let ceiling = self.ceiling(w);
        let mut book = self.book();
        let Some(hook) = book.hooks.get_mut(webhook) else {
            return 0;
        };
        hook.limit.overdue(first, ceiling, now);
        hook.limit.current(ceiling)
    }

    /// Sends nothing to `webhook` until `until` (a receiver's
    /// `Retry-After`, an empty rate bucket). Returns whether to tell other
    /// engines now: pauses of a second or more, at most once per
    /// [`CHORE_EVERY`] per webhook.
    pub fn pause(&self, webhook: &str, until: Instant, now: Instant) -> bool {
        let mut book = self.book();
        let entry = book.paused.entry(webhook.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
        until.saturating_duration_since(now) >= Duration::from_secs(1)
            && self.chore_due(&mut book, webhook, Chore::SharePause, now)
    }

    /// Whether `chore` is due for `webhook` (at most once per
    /// [`CHORE_EVERY`]); if so, it counts as done now.
    pub fn chore(&self, webhook: &str, chore: Chore, now: Instant) -> bool {
        self.chore_due(&mut self.book(), webhook, chore, now)
    }

    pub(super) fn chore_due(
        &self,
        book: &mut Book,
        webhook: &str,
        chore: Chore,
        now: Instant,
    ) -> bool {
        let Some(hook) = book.hooks.get_mut(webhook) else {
            return false;
        };
        let last = match chore {
            Chore::FailingCheck => &mut hook.failing_checked,
            Chore::SharePause => &mut hook.pause_shared,
        };
        if last.is_some_and(|at| now.saturating_duration_since(at) < CHORE_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// The store's runtime endpoint states, as of `version`: disabled
    /// webhooks get no room; pauses known to other engines apply here too
    /// (a local pause that lasts longer is kept). Webhooks gone from the
    /// policy with nothing in flight are forgotten.
    pub fn apply_states(
        &self,
        policy: &PolicySet,
        version: u64,
        states: impl IntoIterator<Item = AppliedState>,
        now: Instant,
    ) {
        let mut book = self.book();
        book.paused.retain(|_, until| *until > now);
        let mut disabled = HashSet::new();
        for s in states {
            if let Some(d) = s.paused_for {
                let until = now + d;
                let entry = book.paused.entry(s.webhook.clone()).or_insert(until);
                *entry = (*entry).max(until);
            }
            if s.disabled {
                disabled.insert(s.webhook);
            }
        }
        book.disabled = disabled;
        book.hooks
            .retain(|id, h| h.in_flight > 0 || policy.webhook(id).is_some());
        book.applied = Some(version);
    }

    /// Whether a new delivery to `webhook` may skip the claim at all: not
    /// shut down, the store's endpoint states up to date, enabled, not
    /// disabled or paused, and no rate limit (its tokens are the claim's).
    pub(super) fn open_for(
        &self,
        book: &Book,
        policy: &PolicySet,
        webhook: &str,
        endpoint_version: u64,
        now: Instant,
    ) -> bool {
        policy.webhook(webhook).is_some_and(|w| {
            w.enabled
                && w.rate_limit.is_none()
                && !book.closed
                && book.applied == Some(endpoint_version)
                && !book.disabled.contains(webhook)
                && !is_paused(&book.paused, webhook, now)
        })
    }

    /// How long until the earliest pause ends, if any is running.
    pub fn next_unpause(&self, now: Instant) -> Option<Duration> {
        self.book()
            .paused
            .values()
            .filter(|until| **until > now)
            .map(|until| until.duration_since(now))
            .min()
    }

    /// Whether `webhook` may be sent to: enabled in the policy and not
    /// disabled at runtime (a pause does not count: it is short).
    pub fn is_sendable(&self, policy: &PolicySet, webhook: &str) -> bool {
        policy.webhook(webhook).is_some_and(|w| w.enabled)
            && !self.book().disabled.contains(webhook)
    }

    /// How many webhooks may be sent to at all.
    pub fn sendable_count(&self, policy: &PolicySet) -> usize {
        sendable(policy, &self.book().disabled)
    }

    /// Sendable webhooks not paused now, counted from the (few) disabled
    /// and paused ones: no scan of every webhook, which matters on the path
    /// that sends new deliveries at once.
    pub(super) fn unpaused(&self, book: &Book, policy: &PolicySet, now: Instant) -> usize {
        let paused = book
            .paused
            .iter()
            .filter(|(id, until)| {
                **until > now
                    && !book.disabled.contains(id.as_str())
                    && policy.webhook(id).is_some_and(|w| w.enabled)
            })
            .count();
        sendable(policy, &book.disabled).saturating_sub(paused)
    }
}

pub(super) fn is_paused(paused: &HashMap<String, Instant>, webhook: &str, now: Instant) -> bool {
    paused.get(webhook).is_some_and(|until| *until > now)
}

/// Webhooks enabled in `policy` and not disabled at runtime.
pub(super) fn sendable(policy: &PolicySet, disabled: &HashSet<String>) -> usize {
    let off = disabled
        .iter()
        .filter(|id| policy.webhook(id).is_some_and(|w| w.enabled))
        .count();
    policy.enabled_count().saturating_sub(off)
}

impl Scheduler {
    pub(super) fn fresh(&self, w: &Webhook, now: Instant) -> Hook {
        Hook {
            limit: AdaptiveLimit::new(self.initial(w), now),
            ..self.fresh_default(now)
        }
    }

    pub(super) fn fresh_default(&self, now: Instant) -> Hook {
        Hook {
            in_flight: 0,
            limit: AdaptiveLimit::new(self.limits.initial_in_flight, now),
            caught_up: false,
            last_active: now,
            failing_checked: None,
            pause_shared: None,
        }
    }
}

/// A webhook with nothing sent for [`IDLE_RESTART`] starts slow again,
/// before its room is computed (so an idle webhook's first claim is not
/// sized by its old limit).
pub(super) fn restart_if_idle(hook: &mut Hook, now: Instant) {
    if hook.in_flight == 0 && now.saturating_duration_since(hook.last_active) >= IDLE_RESTART {
        hook.limit.restart(now);
        hook.last_active = now;
    }
}
