//! `POST /v1/webhooks/{id}/disable` and `/enable` (issue 15, item 3): an
//! admin stops or resumes sending to one endpoint at runtime. Each change is
//! audited and announced on `aion.webhooks.endpoint.disabled|enabled`.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::extract::authorize;
use super::{ApiError, AppState};
use crate::audit::{AuditEntry, Outcome};
use crate::auth::Principal;
use crate::domain::Topic;
use crate::ingest::internal_event;
use crate::rbac::Action;
use crate::store::{EndpointState, EndpointStatus};

pub async fn disable_webhook(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    change(&state, &principal, &id, EndpointStatus::Disabled).await
}

pub async fn enable_webhook(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    change(&state, &principal, &id, EndpointStatus::Active).await
}

async fn change(
    state: &AppState,
    principal: &Principal,
    id: &str,
    to: EndpointStatus,
) -> Result<Json<Value>, ApiError> {
    let (action, word) = match to {
        EndpointStatus::Disabled => (Action::DisableWebhook, "disabled"),
        EndpointStatus::Active => (Action::EnableWebhook, "enabled"),
    };
    authorize(state, principal, action).await?;
    let policy = state.policy.load_full();
    if policy.webhook(id).is_none() {
        return Err(ApiError::NotFound(format!(
            "no webhook {:?} in the policy in force",
            id.chars().take(64).collect::<String>()
        )));
    }
    let now = chrono::Utc::now();
    let wanted = EndpointState {
        status: to,
        reason: "manual".into(),
        since: now,
        changed_by: principal.actor_id.clone(),
    };
    let entry = AuditEntry {
        at: now,
        actor_id: principal.actor_id.clone(),
        action: action.as_str().into(),
        outcome: Outcome::Applied,
        target: Some(id.to_owned()),
        request_id: None,
        source_ip: None,
    };
    let topic =
        Topic::parse(&format!("aion.webhooks.endpoint.{word}")).expect("a valid literal topic");
    let payload = json!({
        "webhook_id": id, "state": to.as_str(), "reason": "manual",
        "since": now, "actor_id": principal.actor_id, "last_error": null,
    });
    let announcement = internal_event(&policy, &topic, Some(id.to_owned()), &payload, now);
    let (row, audit_event) = (entry.row(), entry.event(&policy));
    let (in_force, changed) = state
        .store
        .set_endpoint_state(id, &wanted, (&row, &audit_event), &announcement, now)
        .await?;
    if changed {
        state.metrics.endpoint_transition(id, word);
        tracing::info!(webhook = id, actor = %principal.actor_id, state = to.as_str(), "endpoint state changed");
    }
    let policy_disabled = policy.webhook(id).is_some_and(|w| !w.enabled);
    Ok(Json(json!({
        "id": id,
        "state": in_force.status.as_str(),
        "reason": in_force.reason,
        "since": in_force.since,
        "changed": changed,
        // Runtime state cannot override the policy: a webhook the policy
        // disables stays disabled whatever this says.
        "policy_enabled": !policy_disabled,
    })))
}
