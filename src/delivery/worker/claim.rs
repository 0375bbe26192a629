//! The claim service: ask the scheduler which webhooks may be served and
//! how much, take their due deliveries from the store, start a send for
//! each; then sleep until something may have changed (a wake-up from the
//! store, a freed slot, a pause ending, the next due retry, the poll
//! interval).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Shared, attempt, control};
use crate::delivery::meters::SendPath;
use crate::store::{Claimed, Wakeups, WebhookSlot};

/// Sends `c` on a task of its own, in `slot` (which the scheduler already
/// counts).
pub(super) fn spawn_send(slot: SendSlot, c: Claimed, path: SendPath) {
    slot.shared.meters.send_started(path);
    let tasks = slot.shared.sends.clone();
    tasks.spawn(async move {
        let shared = &slot.shared;
        let outcome = tokio::select! {
            done = attempt::deliver(shared, c) => done,
            () = shared.hard_stop.cancelled() => None,
        };
        // Handed over even once the grace period is over: the receiver got
        // the request, so its outcome is worth recording. This ends at once
        // if the completer is gone (the channel closed).
        if let Some(outcome) = outcome {
            shared.completions.send(outcome).await;
        }
        drop(slot);
    });
}

/// A send's slot, counted by the scheduler: given back when dropped —
/// after its send, however the send task ends (a panic included), or unsent.
pub(super) struct SendSlot {
    shared: Arc<Shared>,
    pub(super) webhook_id: String,
}

impl SendSlot {
    /// A slot the scheduler has already counted for `webhook_id`.
    pub(super) fn counted(shared: &Arc<Shared>, webhook_id: &str) -> Self {
        Self {
            shared: shared.clone(),
            webhook_id: webhook_id.to_owned(),
        }
    }
}

impl Drop for SendSlot {
    fn drop(&mut self) {
        let shared = &self.shared;
        let now = shared.clock.instant();
        shared.scheduler.finished(&self.webhook_id, now);
        // Held deliveries first: they are ahead of the queue.
        pump(shared);
        shared.slot_freed.notify_one();
    }
}

pub(super) async fn run(shared: &Arc<Shared>, shutdown: &CancellationToken) {
    let mut wakeups: Option<Wakeups> = None;
    let local = shared.store.local_wakeups();
    let mut backoff = Duration::from_millis(100);
    let mut states = control::StateRefresh::default();
    while !shutdown.is_cancelled() {
        states.refresh(shared).await;
        // Held deliveries whose pause ended, or held too long.
        pump(shared);
        if wakeups.is_none() {
            // Interest is registered before the claim, so no notify is missed.
            wakeups = shared.store.wakeups().await.ok();
        }
        let policy = shared.policy.load_full();
        // The plan holds the engine slots the claim may fill, so every
        // claimed delivery has one: were they taken after, the ingest path
        // could fill them meanwhile and a claimed delivery would wait out
        // its lease (tens of seconds) for the rescue.
        let Some(mut plan) = shared.scheduler.plan_claim(&policy, shared.clock.instant()) else {
            tokio::select! {
                () = shared.slot_freed.notified() => {}
                () = shutdown.cancelled() => break,
            }
            tokio::time::sleep(shared.cfg.claim_debounce).await;
            continue;
        };
        let grants = control::take_rate_tokens(shared, &policy, &mut plan.slots).await;
        let claimed = shared
            .store
            .claim(&plan.slots, plan.limit, &shared.cfg.id)
            .await;
        shared.primed.cancel();
        let claimed = match claimed {
            Ok(c) => {
                backoff = Duration::from_millis(100);
                control::give_back_rate_tokens(shared, &grants, &c).await;
                c
            }
            Err(e) => {
                shared.scheduler.cancel_claim(&plan);
                pump(shared);
                tracing::warn!(error = %e.chain(), retry_in_ms = backoff.as_millis() as u64, "claim failed");
                wakeups = None;
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let taken = shared.scheduler.claimed(
            &policy,
            &plan,
            claimed.iter().map(|c| c.webhook_id.as_str()),
            shared.clock.instant(),
        );
        // The claim's unused slots are free again: held deliveries first.
        pump(shared);
        for (i, c) in claimed.into_iter().enumerate() {
            if i >= taken.sent {
                // Not expected: a claim returns at most `limit` rows.
                tracing::warn!(delivery = %c.id, "the claim returned more rows than its limit; this one is rescued when its lease expires");
                continue;
            }
            spawn_send(SendSlot::counted(shared, &c.webhook_id), c, SendPath::Claim);
        }
        if taken.full {
            continue;
        }
        let mut wait = next_wait(shared, &plan.slots).await;
        // A pause (rate limit, Retry-After) ending sooner wakes the loop.
        if let Some(unpause) = shared.scheduler.next_unpause(shared.clock.instant()) {
            wait = wait.min(unpause.max(Duration::from_millis(1)));
        }
        // A webhook without room, or one that filled its room and may have
        // more due: a freed slot (or a grown limit) is worth a new claim.
        let starved =
            taken.saturated || plan.slots.len() < shared.scheduler.sendable_count(&policy);
        tokio::select! {
            r = recv(&mut wakeups) => if r.is_err() { wakeups = None; },
            () = local.notified() => {}
            () = tokio::time::sleep(wait) => {}
            () = shared.slot_freed.notified(), if starved => {}
            () = shutdown.cancelled() => break,
        }
        tokio::time::sleep(shared.cfg.claim_debounce).await;
    }
}

/// Starts the held deliveries that may go now, hands back those held too
/// long.
fn pump(shared: &Arc<Shared>) {
    let pumped = shared
        .scheduler
        .pump(&shared.policy.load(), shared.clock.instant());
    super::dispatch::run_pumped(shared, pumped);
}

async fn recv(wakeups: &mut Option<Wakeups>) -> Result<(), ()> {
    match wakeups {
        Some(w) => w.recv().await.map_err(|_| ()),
        None => std::future::pending().await,
    }
}

/// Sleep until the next scheduled retry, but no longer than the poll interval.
async fn next_wait(shared: &Shared, slots: &[WebhookSlot]) -> Duration {
    let poll = shared.cfg.poll_interval;
    let ids: Vec<&str> = slots.iter().map(|s| s.webhook_id.as_str()).collect();
    match shared.store.next_due(&ids).await {
        Ok(Some(wait)) => wait.clamp(Duration::from_millis(5), poll),
        _ => poll,
    }
}
