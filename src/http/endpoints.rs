//! `POST /v1/webhooks/{id}/disable` and `/enable` (issue 15, item 3): an
//! admin stops or resumes sending to one endpoint at runtime. Each change is
//! audited and announced on `aion.webhooks.endpoint.disabled|enabled`.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::extract::{Caller, authorize};
use super::{ApiError, AppState};
use crate::delivery::endpoint::{REASON_MANUAL, Target, Transition, transition};
use crate::rbac::Action;

pub async fn disable_webhook(
    State(state): State<AppState>,
    principal: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    change(&state, &principal, &id, Target::Disabled).await
}

pub async fn enable_webhook(
    State(state): State<AppState>,
    principal: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    change(&state, &principal, &id, Target::Enabled).await
}

async fn change(
    state: &AppState,
    principal: &Caller,
    id: &str,
    to: Target,
) -> Result<Json<Value>, ApiError> {
    let action = match to {
        Target::Disabled => Action::DisableWebhook,
        Target::Enabled => Action::EnableWebhook,
    };
    authorize(state, principal, action).await?;
    let policy = state.policy.load_full();
    let Some(webhook) = policy.webhook(id) else {
        return Err(ApiError::NotFound(format!(
            "no webhook {:?} in the policy in force",
            id.chars().take(64).collect::<String>()
        )));
    };
    let policy_enabled = webhook.enabled;
    let t = Transition {
        webhook: id,
        to,
        reason: REASON_MANUAL,
        actor: &principal.actor_id,
        request: &principal.request,
        last_error: None,
    };
    let (in_force, changed) = transition(
        &state.store,
        &policy,
        &state.metrics,
        &t,
        chrono::Utc::now(),
    )
    .await?;
    Ok(Json(json!({
        "id": id,
        "state": in_force.status.as_str(),
        "reason": in_force.reason,
        "since": in_force.since,
        "changed": changed,
        // Runtime state cannot override the policy: a webhook the policy
        // disables stays disabled whatever this says.
        "policy_enabled": policy_enabled,
    })))
}
