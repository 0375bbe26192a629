//! `POST /v1/webhooks/{id}/disable` and `/enable` (issue 15, item 3): an
//! admin stops or resumes sending to one endpoint at runtime. Each change is
//! audited and announced on `aion.webhooks.endpoint.disabled|enabled`.

use axum::Json;
use axum::extract::State;

use super::extract::{ApiPath, Caller, authorize};
use super::views::EndpointView;
use super::{ApiError, AppState};
use crate::delivery::endpoint::{REASON_MANUAL, Target, Transition, transition};
use crate::rbac::Action;

#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/disable",
    tag = "webhooks",
    summary = "Stop sending to one webhook",
    description = "Runtime state, stored and audited; deliveries of a disabled webhook are kept pending, not sent. The policy's `enabled: false` always wins.",
    params(("id" = String, Path, description = "The webhook id")),
    responses(
        (status = 200, description = "The state in force now", body = EndpointView),
        (status = 401, description = "Missing or invalid credentials (`unauthorized`)", body = super::views::ErrorBody),
        (status = 403, description = "The caller's roles do not allow this (`forbidden`; audited)", body = super::views::ErrorBody),
        (status = 404, description = "Not found (`not_found`)", body = super::views::ErrorBody),
        (status = 503, description = "The database is unavailable; retry later (`unavailable`)", body = super::views::ErrorBody),
    ),
    security(("api_key" = []), ("jwt" = []))
)]
pub async fn disable_webhook(
    State(state): State<AppState>,
    principal: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<EndpointView>, ApiError> {
    change(&state, &principal, &id, Target::Disabled).await
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/enable",
    tag = "webhooks",
    summary = "Resume sending to one webhook",
    description = "Runtime state, stored and audited; deliveries of a disabled webhook are kept pending, not sent. The policy's `enabled: false` always wins.",
    params(("id" = String, Path, description = "The webhook id")),
    responses(
        (status = 200, description = "The state in force now", body = EndpointView),
        (status = 401, description = "Missing or invalid credentials (`unauthorized`)", body = super::views::ErrorBody),
        (status = 403, description = "The caller's roles do not allow this (`forbidden`; audited)", body = super::views::ErrorBody),
        (status = 404, description = "Not found (`not_found`)", body = super::views::ErrorBody),
        (status = 503, description = "The database is unavailable; retry later (`unavailable`)", body = super::views::ErrorBody),
    ),
    security(("api_key" = []), ("jwt" = []))
)]
pub async fn enable_webhook(
    State(state): State<AppState>,
    principal: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<EndpointView>, ApiError> {
    change(&state, &principal, &id, Target::Enabled).await
}

async fn change(
    state: &AppState,
    principal: &Caller,
    id: &str,
    to: Target,
) -> Result<Json<EndpointView>, ApiError> {
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
    Ok(Json(EndpointView {
        id: id.to_owned(),
        state: in_force.status.as_str().to_owned(),
        reason: in_force.reason,
        since: in_force.since,
        changed,
        // Runtime state cannot override the policy: a webhook the policy
        // disables stays disabled whatever this says.
        policy_enabled,
    }))
}
