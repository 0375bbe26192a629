//! Endpoint control around the worker's services: the shared rate-limit
//! tokens a claim takes and gives back, the runtime endpoint states the
//! scheduler is kept up to date with, and what an attempt decided about its
//! endpoint (adaptive limit, `Retry-After` pause, disabling on `410` or a
//! long failure streak), and sends overdue for an answer. The decisions themselves are `outcome::next`'s,
//! the scheduler's and `endpoint::transition`'s; this module acts on them.

use std::time::Duration;

use super::Shared;
use crate::delivery::endpoint::{REASON_FAILING, REASON_GONE, Target, Transition, transition};
use crate::delivery::outcome::{EndpointEffect, Next};
use crate::delivery::scheduler::adaptive::Signal;
use crate::delivery::scheduler::{AppliedState, Chore};
use crate::delivery::sender::AttemptReport;
use crate::policy::{PolicySet, Webhook};
use crate::store::{Claimed, EndpointStatus, WebhookSlot};

/// What one attempt decided about its endpoint (`outcome::next`), acted
/// on: the adaptive limit follows the answer; a `Retry-After` on 429/503
/// pauses the endpoint; `410` disables it at once, and failing every
/// attempt for its `disable_after` disables it too.
pub(super) async fn after_attempt(
    shared: &Shared,
    policy: &PolicySet,
    webhook: &Webhook,
    report: &AttemptReport,
    next: &Next,
    overdue: bool,
) {
    let id = webhook.id.as_str();
    let now = shared.clock.instant();
    // An overdue send was counted while it waited.
    let signal = if overdue {
        Signal::Neutral
    } else {
        next.signal
    };
    let limit = shared
        .scheduler
        .observe(policy, id, signal, report.duration, now);
    shared.meters.concurrency_limit(id, limit);
    if let Some(pause) = next.pause {
        throttle(shared, id, pause).await;
    }
    let error = report.error.as_deref();
    match next.endpoint {
        EndpointEffect::DisableGone => disable(shared, policy, id, REASON_GONE, error).await,
        EndpointEffect::CheckFailing if keeps_failing(shared, webhook).await => {
            disable(shared, policy, id, REASON_FAILING, error).await;
        }
        EndpointEffect::CheckFailing | EndpointEffect::Keep => {}
    }
}

/// Awaits `sending`, a send to `webhook`, and meanwhile tells the
/// scheduler it is overdue once it has gone unanswered for as long as a
/// slow answer takes, and again each time its wait doubles
/// (`Scheduler::overdue_after`, `Scheduler::overdue`). Also returns whether
/// it was ever overdue: then its answer says nothing more about load.
pub(super) async fn watch_overdue<F: Future>(
    shared: &Shared,
    policy: &PolicySet,
    webhook: &str,
    sending: F,
) -> (F::Output, bool) {
    let Some(first) = shared.scheduler.overdue_after(webhook) else {
        return (sending.await, false);
    };
    let mut sending = std::pin::pin!(sending);
    let mut waited = Duration::ZERO;
    let mut next = first;
    loop {
        tokio::select! {
            biased;
            output = &mut sending => return (output, !waited.is_zero()),
            () = tokio::time::sleep(next.saturating_sub(waited)) => {
                let now = shared.clock.instant();
                let limit = shared.scheduler.overdue(policy, webhook, waited.is_zero(), now);
                shared.meters.concurrency_limit(webhook, limit);
                waited = next;
                next = next.saturating_mul(2);
            }
        }
    }
}

/// Whether `webhook` has failed every attempt for its `disable_after`
/// (looked up at most once a second per webhook while it fails).
async fn keeps_failing(shared: &Shared, webhook: &Webhook) -> bool {
    let Some(after) = webhook.disable_after else {
        return false;
    };
    let id = webhook.id.as_str();
    if !shared
        .scheduler
        .chore(id, Chore::FailingCheck, shared.clock.instant())
    {
        return false;
    }
    match shared.store.failing_for(id, after, MIN_FAILURES).await {
        Ok(streak) => streak.is_some(),
        Err(e) => {
            tracing::debug!(webhook = id, error = %e.chain(), "checking whether the webhook keeps failing failed");
            false
        }
    }
}

/// Failed attempts needed, besides `disable_after`, before a failing
/// webhook is disabled: one slow failure a week is not a dead endpoint.
const MIN_FAILURES: i32 = 3;

/// Pauses `webhook` for `pause`: at once on this engine, and through the
/// store (at most once a second per webhook, for pauses of a second or
/// more) on the others.
async fn throttle(shared: &Shared, webhook: &str, pause: Duration) {
    let now = shared.clock.instant();
    if shared.scheduler.pause(webhook, now + pause, now)
        && let Err(e) = shared.store.throttle(webhook, pause).await
    {
        tracing::debug!(webhook, error = %e.chain(), "could not share the pause with other engines");
    }
}

/// Disables `webhook` on the engine's own authority. A failure is logged:
/// the next failure tries again.
async fn disable(
    shared: &Shared,
    policy: &PolicySet,
    webhook: &str,
    reason: &str,
    error: Option<&str>,
) {
    let t = Transition {
        webhook,
        to: Target::Disabled,
        reason,
        actor: crate::domain::ENGINE_SOURCE,
        request: &crate::audit::RequestContext::default(),
        last_error: error,
        note: None,
    };
    if let Err(e) = transition(
        &shared.store,
        policy,
        &shared.meters,
        &t,
        shared.clock.now(),
    )
    .await
    {
        tracing::warn!(webhook, reason, error = %e.chain(), "could not disable the webhook; will try again");
    }
}

/// Tokens taken for one rate-limited webhook before a claim.
pub(super) struct RateGrant {
    webhook: String,
    granted: u32,
    burst: f64,
}

/// The bucket of a webhook limited to `rate` attempts a second holds a
/// tenth of a second's worth (at least one): any one-second window then
/// sees at most `rate + burst` attempts.
fn burst_of(rate: f64) -> f64 {
    (rate / 10.0).max(1.0)
}

/// Narrows each rate-limited webhook's room to the tokens its shared
/// bucket grants; one with none left is dropped from `slots` and paused
/// until its next token.
pub(super) async fn take_rate_tokens(
    shared: &Shared,
    policy: &PolicySet,
    slots: &mut Vec<WebhookSlot>,
) -> Vec<RateGrant> {
    let mut grants = Vec::new();
    let mut kept = Vec::with_capacity(slots.len());
    for mut slot in std::mem::take(slots) {
        let Some(rate) = policy.webhook(&slot.webhook_id).and_then(|w| w.rate_limit) else {
            kept.push(slot);
            continue;
        };
        let burst = burst_of(rate);
        match shared
            .store
            .take_tokens(&slot.webhook_id, rate, burst, slot.room)
            .await
        {
            Ok(g) if g.granted > 0 => {
                slot.room = slot.room.min(g.granted);
                grants.push(RateGrant {
                    webhook: slot.webhook_id.clone(),
                    granted: g.granted,
                    burst,
                });
                kept.push(slot);
            }
            Ok(g) => {
                let wait =
                    Duration::try_from_secs_f64(g.next_in).unwrap_or(Duration::from_millis(10));
                let now = shared.clock.instant();
                // Not shared: the bucket itself is.
                let _ = shared.scheduler.pause(&slot.webhook_id, now + wait, now);
            }
            // Without a grant nothing is sent: a limit is never exceeded
            // because the database could not be asked.
            Err(e) => {
                tracing::debug!(webhook = %slot.webhook_id, error = %e.chain(), "taking rate tokens failed")
            }
        }
    }
    *slots = kept;
    grants
}

/// Returns the tokens a claim did not use (fewer rows were due than granted).
pub(super) async fn give_back_rate_tokens(
    shared: &Shared,
    grants: &[RateGrant],
    claimed: &[Claimed],
) {
    for g in grants {
        let used = claimed.iter().filter(|c| c.webhook_id == g.webhook).count();
        let unused = g
            .granted
            .saturating_sub(u32::try_from(used).unwrap_or(u32::MAX));
        if unused > 0
            && let Err(e) = shared
                .store
                .give_back_tokens(&g.webhook, unused, g.burst)
                .await
        {
            tracing::debug!(webhook = %g.webhook, error = %e.chain(), "giving back rate tokens failed");
        }
    }
}

/// Keeps the scheduler's view of runtime endpoint state fresh: at once
/// after a change made through this process, and every poll interval for
/// changes made through other engines.
#[derive(Default)]
pub(super) struct StateRefresh {
    version: Option<u64>,
    at: Option<tokio::time::Instant>,
}

impl StateRefresh {
    pub(super) async fn refresh(&mut self, shared: &Shared) {
        let version = shared.store.endpoint_version();
        let stale = self
            .at
            .is_none_or(|at| at.elapsed() >= shared.cfg.poll_interval);
        if self.version == Some(version) && !stale {
            return;
        }
        match shared.store.endpoint_states().await {
            Ok(states) => {
                let disabled: Vec<String> = states
                    .iter()
                    .filter(|(_, s)| s.status == EndpointStatus::Disabled)
                    .map(|(id, _)| id.clone())
                    .collect();
                shared.meters.webhooks_disabled(&disabled);
                let applied = states.into_iter().map(|(webhook, s)| AppliedState {
                    webhook,
                    disabled: s.status == EndpointStatus::Disabled,
                    paused_for: s.throttled_for,
                });
                let policy = shared.policy.load();
                let now = shared.clock.instant();
                shared
                    .scheduler
                    .apply_states(&policy, version, applied, now);
                self.version = Some(version);
                self.at = Some(tokio::time::Instant::now());
            }
            // Keep the last known states; the claim's own error handling
            // deals with an unreachable database.
            Err(e) => tracing::debug!(error = %e.chain(), "reading endpoint states failed"),
        }
    }
}
