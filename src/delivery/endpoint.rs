//! Endpoint state transitions (issue 15, items 3 and 4): one way to disable
//! or enable a webhook, whoever decides it — an admin through the API, or
//! the engine itself when an endpoint answers `410 Gone` or has failed
//! every attempt for its `disable_after`. Each real change is stored with
//! its audit record and announced on `aion.webhooks.endpoint.disabled` /
//! `.enabled`, in one transaction, and counted.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::Meters;
use crate::audit::{AuditEntry, Outcome, RequestContext};
use crate::domain::Topic;
use crate::ingest::internal_event;
use crate::policy::PolicySet;
use crate::store::{EndpointState, EndpointStatus, Store, StoreError};

/// Why the engine disabled a webhook on its own.
pub const REASON_GONE: &str = "gone";
pub const REASON_FAILING: &str = "failing";
/// An admin's call.
pub const REASON_MANUAL: &str = "manual";

/// What a transition asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Disabled,
    /// Active again (a throttle pause ends by itself, not through this).
    Enabled,
}

/// A requested change of one webhook's state.
#[derive(Debug, Clone, Copy)]
pub struct Transition<'a> {
    pub webhook: &'a str,
    pub to: Target,
    pub reason: &'a str,
    /// Who decided: an admin's actor id, or the engine (`aion-webhooks`).
    pub actor: &'a str,
    /// The request that asked for it (empty for the engine's own calls).
    pub request: &'a RequestContext,
    /// The last error seen from the endpoint, for the announcement.
    pub last_error: Option<&'a str>,
    /// An admin's note on why (kept while disabled, announced).
    pub note: Option<&'a str>,
}

/// Applies `t`: returns the state in force afterwards and whether it
/// changed (asking for the state a webhook already has records nothing).
pub async fn transition(
    store: &Store,
    policy: &PolicySet,
    meters: &Meters,
    t: &Transition<'_>,
    now: DateTime<Utc>,
) -> Result<(EndpointState, bool), StoreError> {
    let (action, word, status) = match t.to {
        Target::Disabled => ("disable_webhook", "disabled", EndpointStatus::Disabled),
        Target::Enabled => ("enable_webhook", "enabled", EndpointStatus::Active),
    };
    let wanted = EndpointState {
        status,
        reason: t.reason.to_owned(),
        since: now,
        changed_by: t.actor.to_owned(),
        throttled_until: None,
        throttled_for: None,
        note: t.note.map(str::to_owned),
    };
    let entry = AuditEntry {
        at: now,
        actor_id: t.actor.to_owned(),
        action: action.into(),
        outcome: Outcome::Applied,
        target: Some(t.webhook.to_owned()),
        request_id: t.request.request_id.clone(),
        source_ip: t.request.source_ip.clone(),
    };
    let topic =
        Topic::parse(&format!("aion.webhooks.endpoint.{word}")).expect("a valid literal topic");
    let payload = json!({
        "webhook_id": t.webhook, "state": status.as_str(), "reason": t.reason,
        "since": now, "actor_id": t.actor, "last_error": t.last_error, "note": t.note,
    });
    let announcement = internal_event(policy, &topic, Some(t.webhook.to_owned()), &payload, now);
    let (row, audit_event) = (entry.row(), entry.event(policy));
    let (in_force, changed) = store
        .set_endpoint_state(t.webhook, &wanted, (&row, &audit_event), &announcement, now)
        .await?;
    if changed {
        meters.endpoint_transition(t.webhook, word);
        tracing::warn!(
            webhook = t.webhook,
            actor = t.actor,
            reason = t.reason,
            state = status.as_str(),
            "endpoint state changed"
        );
    }
    Ok((in_force, changed))
}
