//! Ingest's hand-off: a delivery that may be sent now is leased to this
//! engine in the transaction that stores it and sent as soon as that
//! commits — no wake-up, no claim, no second round trip. Whether it may go
//! is the scheduler's call ([`Scheduler::reserve`]); one whose webhook is
//! only at its limit is held in memory and sent when the limit has room
//! ([`Scheduler::promise`], the scheduler's `line`).
//!
//! [`Scheduler::reserve`]: crate::delivery::scheduler::Scheduler::reserve
//! [`Scheduler::promise`]: crate::delivery::scheduler::Scheduler::promise

use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use super::claim::{SendSlot, spawn_send};
use crate::delivery::meters::SendPath;
use crate::delivery::scheduler::Pumped;
use crate::ingest::{Handoff, Reserved};
use crate::store::{Claimed, Lease};

/// Ingest's way to the worker (see the module documentation).
#[derive(Clone)]
pub struct Dispatcher {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("holder", &self.shared.holder)
            .finish_non_exhaustive()
    }
}

/// A send slot (or a hold) for one new delivery until it is stored: sent
/// (or held) with [`Reservation::send`], or given back when dropped.
pub struct Reservation(Kind);

enum Kind {
    Now(SendSlot),
    Held(Promise),
}

/// A hold the scheduler promised; given back when dropped unused.
struct Promise {
    shared: Arc<Shared>,
    webhook_id: String,
    used: bool,
}

impl Drop for Promise {
    fn drop(&mut self) {
        if !self.used {
            self.shared.scheduler.unpromise(&self.webhook_id);
        }
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (webhook_id, held) = match &self.0 {
            Kind::Now(slot) => (&slot.webhook_id, false),
            Kind::Held(p) => (&p.webhook_id, true),
        };
        f.debug_struct("Reservation")
            .field("webhook_id", webhook_id)
            .field("held", &held)
            .finish_non_exhaustive()
    }
}

/// Starts what the scheduler let go (each already counted in flight) and
/// hands back to the queue what it held too long or at shutdown: pending
/// again, due now, the attempt not counted.
pub(super) fn run_pumped(shared: &Arc<Shared>, pumped: Pumped) {
    for c in pumped.start {
        spawn_send(
            SendSlot::counted(shared, &c.webhook_id),
            c,
            SendPath::Ingest,
        );
    }
    if !pumped.hand_back.is_empty() {
        let owner = shared.clone();
        shared.sends.spawn(async move {
            hand_back(&owner, pumped.hand_back).await;
        });
    }
}

/// Puts held deliveries back in the queue, due now, a few at a time and
/// within the shutdown grace. One that fails (or is not reached in time)
/// stays leased and is rescued when its lease expires: delayed, not lost.
pub(super) async fn hand_back(shared: &Shared, held: Vec<Claimed>) {
    use futures::StreamExt;
    let n = held.len();
    let all = futures::stream::iter(held).for_each_concurrent(8, |c| async move {
        if let Err(e) = shared.store.release(c.id, c.attempt, Duration::ZERO).await {
            tracing::warn!(delivery = %c.id, error = %e.chain(), "a held delivery could not be handed back; it is rescued when its lease expires");
        }
    });
    if tokio::time::timeout(shared.cfg.shutdown_grace, all)
        .await
        .is_err()
    {
        tracing::warn!(
            held = n,
            "handing held deliveries back took longer than the shutdown grace; the rest are rescued when their leases expire"
        );
    }
}

impl Dispatcher {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// A send slot for a new delivery to `webhook_id`, and the lease to
    /// store it under; `None` leaves the delivery to the claim. The caller
    /// leaves deliveries that join a line alone.
    pub fn reserve(&self, webhook_id: &str) -> Option<(Reservation, Lease)> {
        let shared = &self.shared;
        let policy = shared.policy.load();
        let (version, now) = (shared.store.endpoint_version(), shared.clock.instant());
        let (reservation, length) =
            match shared.scheduler.reserve(&policy, webhook_id, version, now) {
                Some(length) => (
                    Reservation(Kind::Now(SendSlot::counted(shared, webhook_id))),
                    length,
                ),
                None => {
                    let length = shared
                        .scheduler
                        .promise(&policy, webhook_id, version, now)?;
                    let promise = Promise {
                        shared: shared.clone(),
                        webhook_id: webhook_id.to_owned(),
                        used: false,
                    };
                    (Reservation(Kind::Held(promise)), length)
                }
            };
        let lease = Lease {
            holder: shared.holder.clone(),
            length,
        };
        Some((reservation, lease))
    }

    /// New deliveries to `webhook_id` were left to the claim: until a
    /// claim has caught up with them, later ones are too.
    pub fn queued(&self, webhook_id: &str) {
        self.shared.scheduler.queued(webhook_id);
    }
}

impl Reservation {
    /// Sends `c`, the delivery stored under this reservation's lease (or
    /// holds it until its webhook has room).
    pub fn send(self, c: Claimed) {
        match self.0 {
            Kind::Now(slot) => spawn_send(slot, c, SendPath::Ingest),
            Kind::Held(mut promise) => {
                promise.used = true;
                let shared = &promise.shared;
                let pumped =
                    shared
                        .scheduler
                        .hold(&shared.policy.load(), c, shared.clock.instant());
                run_pumped(shared, pumped);
            }
        }
    }
}

impl Handoff for Dispatcher {
    fn reserve(&self, webhook_id: &str) -> Option<(Box<dyn Reserved>, Lease)> {
        Dispatcher::reserve(self, webhook_id)
            .map(|(r, lease)| (Box::new(r) as Box<dyn Reserved>, lease))
    }

    fn queued(&self, webhook_id: &str) {
        Dispatcher::queued(self, webhook_id);
    }
}

impl Reserved for Reservation {
    fn send(self: Box<Self>, c: Claimed) {
        Reservation::send(*self, c);
    }
}
