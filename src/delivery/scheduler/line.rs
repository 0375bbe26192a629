//! Held sends: new deliveries the engine accepted while their webhook was
//! at its limit, kept in memory (leased to this engine) and sent the moment
//! the limit has room — a send ends, the limit grows — instead of being left
//! to the claim.
//!
//! Why: slow start keeps a fresh webhook's limit low (8) for its first few
//! round trips. Were the deliveries past that limit left to the claim, the
//! webhook would fall behind its ingest at once and stay claim-driven for
//! the rest of a burst (every delivery one more write and one more read;
//! measured: the load tool's fan-out scenario at 0.62× of sending at once).
//! Held, they keep the ingest path's speed and still reach the receiver no
//! faster than its limit allows.
//!
//! Bounds: a webhook's sends in flight plus held never pass its ceiling
//! (`max_in_flight`), and the engine holds at most its own `max_in_flight`
//! in all, so memory is bounded as for sends in flight. A held delivery's
//! lease is longer by [`HOLD_FOR`]; one still held that long is handed back
//! to the queue (due at once, its attempt not counted), so the lease never
//! runs out under a send. Order: a webhook's held deliveries go first in,
//! first out, and a new delivery is never sent at once past a held one.
//! At shutdown, held deliveries are handed back.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::state::is_paused;
use super::{Book, Scheduler, rooms};
use crate::policy::PolicySet;
use crate::store::Claimed;

/// The longest a delivery is held before it is handed back to the queue;
/// its lease is this much longer than a send's.
pub const HOLD_FOR: Duration = Duration::from_secs(10);
/// A webhook whose held deliveries wait longer than this before they go
/// is not keeping up: its new deliveries are left to the queue (it is no
/// longer caught up) until a claim catches up, so its due retries, which
/// only the claim takes, are not kept waiting behind a line that new events
/// keep full.
pub const HOLD_PATIENCE: Duration = Duration::from_secs(1);

/// One webhook's held deliveries, oldest first, with when each must be
/// handed back; and the holds promised to ingest calls still storing.
#[derive(Debug, Default)]
pub(super) struct Line {
    items: VecDeque<(Claimed, Instant)>,
    promised: u32,
}

impl Line {
    /// Held and promised.
    pub(super) fn len(&self) -> u32 {
        u32::try_from(self.items.len())
            .unwrap_or(u32::MAX)
            .saturating_add(self.promised)
    }
}

/// What [`Scheduler::pump`] (or [`Scheduler::hold`]) decided: deliveries to
/// send now (each already counted in flight), and deliveries to hand back
/// to the queue (held too long, or the engine is shutting down).
#[derive(Debug, Default)]
pub struct Pumped {
    pub start: Vec<Claimed>,
    pub hand_back: Vec<Claimed>,
}

impl Scheduler {
    /// A hold for a new delivery to `webhook` that may not go at once only
    /// because its webhook is at its limit (or the engine's slots are
    /// full): the lease to store it under, or `None` to leave it to the
    /// claim. The same conditions as [`Scheduler::reserve`] otherwise, and
    /// room under the bounds in the module documentation.
    pub fn promise(
        &self,
        policy: &PolicySet,
        webhook: &str,
        endpoint_version: u64,
        now: Instant,
    ) -> Option<Duration> {
        let w = policy.webhook(webhook)?;
        let mut book = self.book();
        if !self.open_for(&book, policy, webhook, endpoint_version, now)
            || book.lined >= self.limits.max_in_flight
        {
            return None;
        }
        let ceiling = self.ceiling(w);
        let in_flight = match book.hooks.get(webhook) {
            Some(h) if h.caught_up => h.in_flight,
            _ => return None,
        };
        let held = book.lines.get(webhook).map_or(0, Line::len);
        if in_flight.saturating_add(held) >= ceiling {
            return None;
        }
        book.lines.entry(webhook.to_owned()).or_default().promised += 1;
        book.lined += 1;
        Some(w.timeout + self.limits.lease_margin + HOLD_FOR)
    }

    /// The delivery a [`Scheduler::promise`] was for, now stored: held,
    /// and whatever may go now returned.
    pub fn hold(&self, policy: &PolicySet, c: Claimed, now: Instant) -> Pumped {
        let mut guard = self.book();
        let book = &mut *guard;
        let line = book.lines.entry(c.webhook_id.clone()).or_default();
        line.promised = line.promised.saturating_sub(1);
        if book.closed {
            book.lined = book.lined.saturating_sub(1);
            return Pumped {
                start: Vec::new(),
                hand_back: vec![c],
            };
        }
        line.items.push_back((c, now + HOLD_FOR));
        self.pump_book(book, policy, now)
    }

    /// A promise given back unused (the delivery was not stored, or was a
    /// duplicate).
    pub fn unpromise(&self, webhook: &str) {
        let mut guard = self.book();
        let book = &mut *guard;
        if let Some(line) = book.lines.get_mut(webhook)
            && line.promised > 0
        {
            line.promised -= 1;
            book.lined = book.lined.saturating_sub(1);
            if line.len() == 0 {
                book.lines.remove(webhook);
            }
        }
    }

    /// Held deliveries that may go now (room under their webhook's limit
    /// and share, a free engine slot, not paused or disabled), and those
    /// held too long.
    pub fn pump(&self, policy: &PolicySet, now: Instant) -> Pumped {
        let mut book = self.book();
        if book.lined == 0 {
            return Pumped::default();
        }
        self.pump_book(&mut book, policy, now)
    }

    /// Every held delivery, handed back (shutdown: [`Scheduler::close`]
    /// first, so nothing more is held).
    pub fn drain(&self) -> Vec<Claimed> {
        let mut book = self.book();
        let mut out = Vec::new();
        for line in book.lines.values_mut() {
            out.extend(line.items.drain(..).map(|(c, _)| c));
        }
        book.lines.retain(|_, l| l.promised > 0);
        book.lined = book.lines.values().map(|l| l.promised).sum();
        out
    }

    /// Held and promised deliveries of `webhook`.
    #[cfg(test)]
    pub fn held(&self, webhook: &str) -> u32 {
        self.book().lines.get(webhook).map_or(0, Line::len)
    }

    fn pump_book(&self, book: &mut Book, policy: &PolicySet, now: Instant) -> Pumped {
        let mut out = Pumped::default();
        let share = rooms::share(self.limits.max_in_flight, self.unpaused(book, policy, now));
        let ids: Vec<String> = book.lines.keys().cloned().collect();
        for id in ids {
            let Some(line) = book.lines.get_mut(&id) else {
                continue;
            };
            let mut lagging = false;
            while line.items.front().is_some_and(|(_, by)| *by <= now) {
                if let Some((c, _)) = line.items.pop_front() {
                    out.hand_back.push(c);
                    book.lined = book.lined.saturating_sub(1);
                    lagging = true;
                }
            }
            let sendable = policy.webhook(&id).filter(|w| {
                w.enabled && !book.disabled.contains(&id) && !is_paused(&book.paused, &id, now)
            });
            if let Some(w) = sendable.filter(|_| !book.closed) {
                let ceiling = self.ceiling(w);
                loop {
                    let room = self.free(book) > 0
                        && book.hooks.get(&id).is_some_and(|h| {
                            rooms::may_start(h.in_flight, h.limit.current(ceiling), share)
                        });
                    let next = match book.lines.get_mut(&id) {
                        Some(line) if room => line.items.pop_front(),
                        _ => None,
                    };
                    let Some((c, by)) = next else { break };
                    lagging |= now + HOLD_FOR > by + HOLD_PATIENCE;
                    book.lined = book.lined.saturating_sub(1);
                    self.start(book, policy, &id, now);
                    out.start.push(c);
                }
            }
            if lagging && let Some(h) = book.hooks.get_mut(&id) {
                h.caught_up = false;
            }
            if book.lines.get(&id).is_some_and(|l| l.len() == 0) {
                book.lines.remove(&id);
            }
        }
        out
    }
}
