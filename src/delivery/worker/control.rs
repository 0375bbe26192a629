//! Endpoint control around the worker's claim → send → record loop: the
//! shared rate-limit tokens a claim takes and gives back, the runtime
//! endpoint states the scheduler is kept up to date with, and what an
//! attempt's answer does to its endpoint (adaptive limit, `Retry-After`
//! pause, disabling on `410` or a long failure streak). The decisions
//! themselves are the scheduler's and `endpoint::transition`'s; this module
//! only feeds them.

use std::time::{Duration, Instant};

use super::Shared;
use crate::delivery::endpoint::{REASON_FAILING, REASON_GONE, Target, Transition, transition};
use crate::delivery::retry::Decision;
use crate::delivery::scheduler::adaptive::Signal;
use crate::delivery::sender::{AttemptReport, ErrorKind};
use crate::policy::{PolicySet, Webhook};
use crate::store::{Claimed, EndpointStatus, WebhookSlot};

/// What one attempt's answer says about its endpoint, acted on: the
/// adaptive limit follows it; a `Retry-After` on 429/503 pauses the
/// endpoint; `410` disables it at once, and failing every attempt for its
/// `disable_after` disables it too.
pub(super) async fn after_attempt(
    shared: &Shared,
    policy: &PolicySet,
    webhook: &Webhook,
    report: &AttemptReport,
    decision: Decision,
) {
    let id = webhook.id.as_str();
    let overloaded_transport = matches!(
        report.error_kind,
        Some(ErrorKind::Timeout | ErrorKind::Connect | ErrorKind::ConnectionClosed)
    );
    shared.scheduler.observe(
        policy,
        id,
        Signal::of(report.status, overloaded_transport),
        Instant::now(),
    );
    shared
        .metrics
        .concurrency_limit(id, shared.scheduler.current_limit(policy, id));
    if let (Some(429 | 503), Some(asked)) = (report.status, report.retry_after) {
        throttle(shared, id, asked.min(webhook.retry.max_interval)).await;
    }
    let error = report.error.as_deref();
    match decision {
        Decision::Gone => disable(shared, policy, id, REASON_GONE, error).await,
        Decision::Retry { .. } | Decision::Dead if keeps_failing(shared, webhook).await => {
            disable(shared, policy, id, REASON_FAILING, error).await;
        }
        Decision::Retry { .. } | Decision::Dead | Decision::Succeeded => {}
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
        .due(&format!("failing:{id}"), FAILING_CHECK_EVERY)
    {
        return false;
    }
    match shared.store.failing_for(id, after, MIN_FAILURES).await {
        Ok(streak) => streak.is_some(),
        Err(e) => {
            tracing::debug!(webhook = id, error = %e, "checking whether the webhook keeps failing failed");
            false
        }
    }
}

/// How often one webhook's failure streak is looked up (at most).
const FAILING_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Failed attempts needed, besides `disable_after`, before a failing
/// webhook is disabled: one slow failure a week is not a dead endpoint.
const MIN_FAILURES: i32 = 3;

/// Pauses `webhook` for `pause`: at once on this engine, and through the
/// store (at most once a second per webhook, for pauses of a second or
/// more) on the others.
async fn throttle(shared: &Shared, webhook: &str, pause: Duration) {
    if pause.is_zero() {
        return;
    }
    shared.scheduler.pause(webhook, Instant::now() + pause);
    if pause >= Duration::from_secs(1)
        && shared
            .scheduler
            .due(&format!("throttle:{webhook}"), Duration::from_secs(1))
        && let Err(e) = shared.store.throttle(webhook, pause).await
    {
        tracing::debug!(webhook, error = %e, "could not share the pause with other engines");
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
    if let Err(e) = transition(&shared.store, policy, &shared.metrics, &t, shared.cfg.now()).await {
        tracing::warn!(webhook, reason, error = %e, "could not disable the webhook; will try again");
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
/// bucket grants; one with none left is paused until its next token.
pub(super) async fn take_rate_tokens(
    shared: &Shared,
    policy: &PolicySet,
    slots: Vec<WebhookSlot>,
) -> (Vec<WebhookSlot>, Vec<RateGrant>) {
    let mut grants = Vec::new();
    let mut kept = Vec::with_capacity(slots.len());
    for mut slot in slots {
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
                shared
                    .scheduler
                    .pause(&slot.webhook_id, Instant::now() + wait);
            }
            // Without a grant nothing is sent: a limit is never exceeded
            // because the database could not be asked.
            Err(e) => {
                tracing::debug!(webhook = %slot.webhook_id, error = %e, "taking rate tokens failed")
            }
        }
    }
    (kept, grants)
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
            tracing::debug!(webhook = %g.webhook, error = %e, "giving back rate tokens failed");
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
                let now = tokio::time::Instant::now().into_std();
                shared.scheduler.set_paused(
                    states
                        .iter()
                        .filter_map(|(id, s)| s.throttled_for.map(|d| (id.clone(), now + d)))
                        .collect(),
                );
                let disabled: Vec<String> = states
                    .into_iter()
                    .filter(|(_, s)| s.status == EndpointStatus::Disabled)
                    .map(|(id, _)| id)
                    .collect();
                shared.metrics.webhooks_disabled(&disabled);
                shared
                    .scheduler
                    .set_disabled(disabled.into_iter().collect());
                self.version = Some(version);
                self.at = Some(tokio::time::Instant::now());
                shared
                    .applied_states
                    .store(version, std::sync::atomic::Ordering::SeqCst);
            }
            // Keep the last known states; the claim's own error handling
            // deals with an unreachable database.
            Err(e) => tracing::debug!(error = %e, "reading endpoint states failed"),
        }
    }
}
