//! Whether a delivery may be sent now: the one object that answers it.
//!
//! It owns every piece of runtime delivery state per webhook, behind one
//! lock: sends in flight, the adaptive limit (slow start, AIMD), a pause
//! until (a `Retry-After`, an empty rate bucket), the runtime endpoint state
//! (disabled), whether the webhook has caught up with its backlog (only then
//! is a new delivery sent at once), and the engine's slots, in flight and
//! held for a running claim. It reads no clock — `now` is a parameter — and
//! does no I/O, so its rules are unit- and property-tested without a
//! runtime or a database (`tests.rs`, `props.rs`).
//!
//! The worker asks it three questions:
//! - [`Scheduler::plan_claim`]: which webhooks the claim may serve now, each
//!   with its room (fair share, `rooms`); the plan holds the engine slots
//!   the claim may fill until [`Scheduler::claimed`] or
//!   [`Scheduler::cancel_claim`];
//! - [`Scheduler::reserve`]: whether a new delivery may be sent at once, by
//!   the engine that accepted it, without a claim — or, when only its
//!   webhook's limit is in the way, [`Scheduler::promise`]: held in memory
//!   and sent as soon as the limit has room (`line`);
//! - [`Scheduler::observe`]: what an attempt's answer says about its
//!   endpoint.
//!
//! Sharing one claim's rows between webhooks is the store's job (the claim
//! takes due rows round-robin across the listed webhooks), so a webhook's
//! backlog can never sit in front of another's due deliveries.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub mod adaptive;
mod line;
mod rooms;
mod state;

pub use line::Pumped;
pub use state::{AppliedState, CHORE_EVERY, Chore};
use state::{is_paused, restart_if_idle};

use adaptive::{AdaptiveLimit, Signal};
use rooms::Candidate;

use crate::policy::{PolicySet, Webhook};
use crate::store::WebhookSlot;

/// The limits the scheduler applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Sends in flight at once, all webhooks together.
    pub max_in_flight: u32,
    /// Sends in flight at once to one webhook (its ceiling unless the
    /// policy gives it `max_in_flight`).
    pub max_in_flight_per_webhook: u32,
    /// Where a webhook's limit starts (unless the policy gives it
    /// `initial_in_flight`): see `adaptive`.
    pub initial_in_flight: u32,
    /// Most deliveries taken by one claim.
    pub claim_batch: u32,
    /// Added to a webhook's timeout to make a delivery's lease.
    pub lease_margin: Duration,
}

/// Engine slots held for one claim, and the webhooks it may serve.
#[derive(Debug)]
pub struct ClaimPlan {
    /// Each webhook with its room; the caller may narrow it (rate tokens)
    /// or drop webhooks before claiming.
    pub slots: Vec<WebhookSlot>,
    /// Most rows the claim may return: the engine slots held for it.
    pub limit: u32,
}

/// Rows a claim returned, as [`Scheduler::claimed`] took them.
#[derive(Debug, PartialEq, Eq)]
pub struct Taken {
    /// The first `sent` rows hold a slot and are sent.
    pub sent: usize,
    /// Whether the claim came back full (more may be due).
    pub full: bool,
    /// Whether some webhook filled its room (it may have more due).
    pub saturated: bool,
}

/// Runtime state of one webhook on this engine.
#[derive(Debug)]
struct Hook {
    in_flight: u32,
    limit: AdaptiveLimit,
    /// Nothing was due at the last claim: new deliveries may go at once.
    caught_up: bool,
    last_active: Instant,
    failing_checked: Option<Instant>,
    pause_shared: Option<Instant>,
}

#[derive(Debug, Default)]
struct Book {
    hooks: HashMap<String, Hook>,
    /// Disabled at runtime, as last read from the store.
    disabled: HashSet<String>,
    /// Paused until (kept apart from `hooks`: few, and counted often).
    paused: HashMap<String, Instant>,
    /// Engine slots in use: sends in flight and reservations.
    busy: u32,
    /// Engine slots held for running claims.
    held: u32,
    /// No more sends at once (shutdown began).
    closed: bool,
    /// The store's endpoint-state version last applied.
    applied: Option<u64>,
    /// Deliveries held until their webhook has room (`line`), by webhook.
    lines: HashMap<String, line::Line>,
    /// Held and promised, all webhooks together.
    lined: u32,
}

/// The scheduler; see the module documentation.
#[derive(Debug)]
pub struct Scheduler {
    limits: Limits,
    book: Mutex<Book>,
}

impl Scheduler {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            book: Mutex::new(Book::default()),
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // The book is consistent after every method (no panics while held),
        // so a poisoned lock still holds good state.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A webhook's ceiling of sends in flight.
    fn ceiling(&self, w: &Webhook) -> u32 {
        w.max_in_flight
            .unwrap_or(self.limits.max_in_flight_per_webhook)
            .max(1)
    }

    fn initial(&self, w: &Webhook) -> u32 {
        w.initial_in_flight
            .unwrap_or(self.limits.initial_in_flight)
            .clamp(1, self.ceiling(w))
    }

    /// The webhooks the claim may serve now, each with its room, and the
    /// engine slots held for it; `None` when every slot is taken.
    pub fn plan_claim(&self, policy: &PolicySet, now: Instant) -> Option<ClaimPlan> {
        let mut book = self.book();
        let free = self.free(&book);
        if free == 0 {
            return None;
        }
        let limit = free.min(self.limits.claim_batch.max(1));
        let book = &mut *book;
        let enabled: Vec<&Webhook> = policy
            .webhooks()
            .iter()
            .filter(|w| w.enabled && !book.disabled.contains(w.id.as_str()))
            .filter(|w| !is_paused(&book.paused, w.id.as_str(), now))
            .collect();
        let candidates: Vec<Candidate> = enabled
            .iter()
            .map(|w| {
                // Held deliveries are ahead of the webhook's queue: while
                // it holds some, the claim leaves it alone (the pump starts
                // them under the same rule as a send at once).
                let held = book.lines.get(w.id.as_str()).map_or(0, line::Line::len);
                let (in_flight, limit) = match book.hooks.get_mut(w.id.as_str()) {
                    Some(h) => {
                        restart_if_idle(h, now);
                        (h.in_flight, h.limit.current(self.ceiling(w)))
                    }
                    None => (0, self.initial(w)),
                };
                Candidate {
                    used: in_flight.saturating_add(held),
                    limit: if held > 0 { 0 } else { limit },
                }
            })
            .collect();
        let rooms = rooms::rooms(self.limits.max_in_flight, free, enabled.len(), &candidates);
        let slots = enabled
            .iter()
            .zip(rooms)
            .filter(|(_, room)| *room > 0)
            .map(|(w, room)| WebhookSlot {
                webhook_id: w.id.to_string(),
                room,
                lease: w.timeout + self.limits.lease_margin,
            })
            .collect();
        book.held += limit;
        Some(ClaimPlan { slots, limit })
    }

    /// The rows a claim under `plan` returned (their webhook ids, in
    /// order): the first [`Taken::sent`] now count as sends in flight, the
    /// plan's other slots are free again, and each webhook of the plan
    /// that got fewer rows than its room has caught up.
    pub fn claimed<'a>(
        &self,
        policy: &PolicySet,
        plan: &ClaimPlan,
        rows: impl IntoIterator<Item = &'a str>,
        now: Instant,
    ) -> Taken {
        let mut book = self.book();
        book.held = book.held.saturating_sub(plan.limit);
        let mut got: HashMap<&str, u32> = HashMap::new();
        let mut sent = 0usize;
        let mut total = 0u32;
        for webhook in rows {
            total = total.saturating_add(1);
            *got.entry(webhook).or_default() += 1;
            if total <= plan.limit {
                self.start(&mut book, policy, webhook, now);
                sent += 1;
            }
        }
        let full = total >= plan.limit;
        let mut saturated = false;
        for slot in &plan.slots {
            let n = got.get(slot.webhook_id.as_str()).copied().unwrap_or(0);
            saturated |= n >= slot.room;
            let caught_up = !full && n < slot.room;
            if let Some(h) = book.hooks.get_mut(&slot.webhook_id) {
                h.caught_up = caught_up;
            } else if caught_up && let Some(w) = policy.webhook(&slot.webhook_id) {
                let hook = self.fresh(w, now);
                book.hooks
                    .insert(slot.webhook_id.clone(), Hook { caught_up, ..hook });
            }
        }
        Taken {
            sent,
            full,
            saturated,
        }
    }

    /// The claim under `plan` failed: its slots are free again.
    pub fn cancel_claim(&self, plan: &ClaimPlan) {
        let mut book = self.book();
        book.held = book.held.saturating_sub(plan.limit);
    }

    /// A slot for a new delivery to `webhook`, sent at once by the engine
    /// that accepted it: the lease to store it under, or `None` to leave it
    /// to the claim. Only when every limit the claim obeys allows it now
    /// (not shut down, the store's endpoint states up to date, enabled, not
    /// disabled or paused, under its adaptive limit and fair share, a free
    /// engine slot), it has no rate limit (its tokens are the claim's), and
    /// it had nothing due at the last claim — a new event never overtakes a
    /// backlog, nor a held delivery. Counted as in flight until
    /// [`Scheduler::finished`].
    pub fn reserve(
        &self,
        policy: &PolicySet,
        webhook: &str,
        endpoint_version: u64,
        now: Instant,
    ) -> Option<Duration> {
        let w = policy.webhook(webhook)?;
        let mut book = self.book();
        if !self.open_for(&book, policy, webhook, endpoint_version, now)
            || self.free(&book) == 0
            || book.lines.contains_key(webhook)
        {
            return None;
        }
        let share = rooms::share(self.limits.max_in_flight, self.unpaused(&book, policy, now));
        let hook = book.hooks.get_mut(webhook)?;
        restart_if_idle(hook, now);
        if !hook.caught_up
            || !rooms::may_start(hook.in_flight, hook.limit.current(self.ceiling(w)), share)
        {
            return None;
        }
        self.start(&mut book, policy, webhook, now);
        Some(w.timeout + self.limits.lease_margin)
    }

    /// Counts one send to `webhook` as started.
    fn start(&self, book: &mut Book, policy: &PolicySet, webhook: &str, now: Instant) {
        book.busy = book.busy.saturating_add(1);
        let hook = match book.hooks.get_mut(webhook) {
            Some(h) => h,
            None => {
                let hook = match policy.webhook(webhook) {
                    Some(w) => self.fresh(w, now),
                    None => self.fresh_default(now),
                };
                book.hooks.entry(webhook.to_owned()).or_insert(hook)
            }
        };
        restart_if_idle(hook, now);
        hook.limit.sending(now);
        hook.in_flight += 1;
        hook.last_active = now;
    }

    /// A send to `webhook` ended, however it ended (or a reservation was
    /// given back unsent).
    pub fn finished(&self, webhook: &str, now: Instant) {
        let mut book = self.book();
        if let Some(h) = book.hooks.get_mut(webhook)
            && h.in_flight > 0
        {
            h.in_flight -= 1;
            h.last_active = now;
            book.busy = book.busy.saturating_sub(1);
        }
    }

    /// New deliveries to `webhook` were left to the claim: until a claim
    /// has caught up with them, later ones are too.
    pub fn queued(&self, webhook: &str) {
        if let Some(h) = self.book().hooks.get_mut(webhook) {
            h.caught_up = false;
        }
    }

    /// No more sends at once (shutdown began); claims are unaffected.
    pub fn close(&self) {
        self.book().closed = true;
    }

    /// What an attempt to `webhook` said about its capacity (its answer's
    /// signal and how long it took); returns the webhook's limit now.
    pub fn observe(
        &self,
        policy: &PolicySet,
        webhook: &str,
        signal: Signal,
        latency: Duration,
        now: Instant,
    ) -> u32 {
        let Some(w) = policy.webhook(webhook) else {
            return 0;
        };
        let ceiling = self.ceiling(w);
        let mut book = self.book();
        let hook = book
            .hooks
            .entry(webhook.to_owned())
            .or_insert_with(|| self.fresh(w, now));
        hook.limit.record(signal, latency, ceiling, now);
        hook.limit.current(ceiling)
    }

    /// The sends `webhook` may have in flight now (for metrics and tests).
    pub fn current_limit(&self, policy: &PolicySet, webhook: &str) -> u32 {
        let Some(w) = policy.webhook(webhook) else {
            return 0;
        };
        self.book()
            .hooks
            .get(webhook)
            .map_or(self.initial(w), |h| h.limit.current(self.ceiling(w)))
    }

    /// Sends to `webhook` in flight on this engine now.
    pub fn in_flight(&self, webhook: &str) -> u32 {
        self.book().hooks.get(webhook).map_or(0, |h| h.in_flight)
    }

    /// Engine slots free now (neither in flight nor held for a claim).
    pub fn free_slots(&self) -> u32 {
        self.free(&self.book())
    }

    fn free(&self, book: &Book) -> u32 {
        self.limits
            .max_in_flight
            .saturating_sub(book.busy)
            .saturating_sub(book.held)
    }
}

#[cfg(test)]
mod line_tests;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
