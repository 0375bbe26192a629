//! `POST /v1/webhooks/{id}/disable` and `/enable` (issue 15, item 3): an
//! admin stops or resumes sending to one endpoint at runtime. Each change is
//! audited and announced on `aion.webhooks.endpoint.disabled|enabled`.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;

use super::extract::{ApiPath, Caller, authorize, json_body};
use super::views::{EndpointChangeIn, EndpointView};
use super::{ApiError, AppState, ErrorCode};
use crate::delivery::endpoint::{REASON_MANUAL, Target, Transition, transition};
use crate::rbac::Action;

#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/disable",
    tag = "webhooks",
    summary = "Stop sending to one webhook",
    description = "Runtime state, stored and audited; deliveries of a disabled webhook are kept pending, not sent. The policy's `enabled: false` always wins. An optional body gives a `note` (why), kept while disabled and announced.",
    params(("id" = String, Path, description = "The webhook id")),
    request_body(content = Option<EndpointChangeIn>, content_type = "application/json"),
    responses(
        (status = 200, description = "The state in force now", body = EndpointView),
        (status = 400, description = "Malformed body (`malformed_json`, `incomplete_body`)", body = super::views::ErrorBody),
        (status = 415, description = "Not JSON (`unsupported_media_type`)", body = super::views::ErrorBody),
        (status = 422, description = "The note is too long (`invalid_note`)", body = super::views::ErrorBody),
        (status = 413, description = "Body over 16 KiB (`payload_too_large`)", body = super::views::ErrorBody),
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
    headers: HeaderMap,
    body: Body,
) -> Result<Json<EndpointView>, ApiError> {
    let bytes = json_body(&headers, body, 16 * 1024, state.limits.body_timeout).await?;
    let note = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<EndpointChangeIn>(&bytes)
            .map_err(|e| ApiError::BadRequest {
                code: ErrorCode::MalformedJson,
                message: format!("invalid body: {e}"),
                field: None,
            })?
            .note
    };
    change(&state, &principal, &id, Target::Disabled, note.as_deref())
        .await
        .map(Json)
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
    change(&state, &principal, &id, Target::Enabled, None)
        .await
        .map(Json)
}

/// The longest note an admin may give.
pub const MAX_NOTE_CHARS: usize = 500;

/// Disables or enables webhook `id` for `principal` (the API and the
/// console): authorized, audited, announced.
pub(super) async fn change(
    state: &AppState,
    principal: &Caller,
    id: &str,
    to: Target,
    note: Option<&str>,
) -> Result<EndpointView, ApiError> {
    let action = match to {
        Target::Disabled => Action::DisableWebhook,
        Target::Enabled => Action::EnableWebhook,
    };
    authorize(state, principal, action).await?;
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS) {
        return Err(ApiError::invalid(
            ErrorCode::InvalidNote,
            "note",
            format!("a note holds at most {MAX_NOTE_CHARS} characters"),
        ));
    }
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
        note,
    };
    let (in_force, changed) = transition(
        &state.store,
        &policy,
        &state.delivery_meters,
        &t,
        chrono::Utc::now(),
    )
    .await?;
    Ok(EndpointView {
        id: id.to_owned(),
        state: in_force.status.as_str().to_owned(),
        reason: in_force.reason,
        note: in_force.note,
        since: in_force.since,
        changed,
        // Runtime state cannot override the policy: a webhook the policy
        // disables stays disabled whatever this says.
        policy_enabled,
    })
}
