//! Ingest's hand-off: a delivery that may be sent now is leased to this
//! engine in the transaction that stores it and sent as soon as that
//! commits — no wake-up, no claim, no second round trip. Whether it may go
//! is the scheduler's call ([`Scheduler::reserve`](crate::delivery::scheduler::Scheduler::reserve)).

use std::sync::Arc;

use super::Shared;
use super::claim::{SendSlot, spawn_send};
use crate::ingest::{Handoff, Reserved};
use crate::metrics::SendPath;
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

/// A send slot held for one new delivery until it is stored: sent with
/// [`Reservation::send`], or given back when dropped.
pub struct Reservation {
    slot: SendSlot,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("webhook_id", &self.slot.webhook_id)
            .finish_non_exhaustive()
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
        let length = shared.scheduler.reserve(
            &shared.policy.load(),
            webhook_id,
            shared.store.endpoint_version(),
            shared.clock.instant(),
        )?;
        let reservation = Reservation {
            slot: SendSlot::counted(shared, webhook_id),
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
    /// Sends `c`, the delivery stored under this reservation's lease.
    pub fn send(self, c: Claimed) {
        spawn_send(self.slot, c, SendPath::Ingest);
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
