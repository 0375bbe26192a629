//! `GET /v1/policy` and `POST /v1/policy/reload` (contract §6, role
//! `admin`). Secrets are never shown: only hashes, counts and error
//! positions (an error message names a variable, never its value).

use axum::Json;
use axum::extract::State;

use super::extract::{Caller, authorize};
use super::views::{DiffView, LastReloadView, PolicyView, ReloadView, RetentionView};
use super::{ApiError, AppState};
use crate::rbac::Action;
use crate::reload::{Reloaded, Trigger, error_lines};

#[utoipa::path(
    get,
    path = "/v1/policy",
    tag = "policy",
    summary = "The policy in force and its last reload",
    responses(
        (status = 200, description = "Hashes, counts, and the last reload (never a secret)", body = PolicyView),
        (status = 401, description = "Missing or invalid credentials (`unauthorized`)", body = super::views::ErrorBody),
        (status = 403, description = "The caller's roles do not allow this (`forbidden`; audited)", body = super::views::ErrorBody),
    ),
    security(("api_key" = []), ("jwt" = []))
)]
pub async fn get_policy(
    State(state): State<AppState>,
    principal: Caller,
) -> Result<Json<PolicyView>, ApiError> {
    authorize(&state, &principal, Action::GetPolicy).await?;
    let s = state.reloader.status();
    let retention = state.policy.load().retention();
    Ok(Json(PolicyView {
        retention: RetentionView {
            succeeded_seconds: retention.succeeded.as_secs(),
            dead_seconds: retention.dead.as_secs(),
        },
        sha256: s.sha256,
        loaded_at: s.loaded_at,
        source: s.source.display().to_string(),
        webhooks: s.webhooks,
        last_reload: s.last_reload.map(|l| LastReloadView {
            at: l.at,
            outcome: l.outcome.to_owned(),
            errors: l.errors,
        }),
    }))
}

#[utoipa::path(
    post,
    path = "/v1/policy/reload",
    tag = "policy",
    summary = "Reload the policy file now",
    description = "Reads and validates the file and every file it reads; a valid, changed policy is swapped in whole and audited. Runs to the end even if the client goes away.",
    responses(
        (status = 200, description = "`applied` with the diff, or `unchanged`", body = ReloadView),
        (status = 401, description = "Missing or invalid credentials (`unauthorized`)", body = super::views::ErrorBody),
        (status = 403, description = "The caller's roles do not allow this (`forbidden`; audited)", body = super::views::ErrorBody),
        (status = 422, description = "The file is invalid (`policy_invalid`, with every error); the policy in force stays", body = super::views::ErrorBody),
    ),
    security(("api_key" = []), ("jwt" = []))
)]
pub async fn reload_policy(
    State(state): State<AppState>,
    principal: Caller,
) -> Result<Json<ReloadView>, ApiError> {
    authorize(&state, &principal, Action::ReloadPolicy).await?;
    match state
        .reloader
        .reload(Trigger::Api(
            principal.actor_id.clone(),
            principal.request.clone(),
        ))
        .await
    {
        Ok(Reloaded::Applied {
            old_sha256,
            sha256,
            diff,
        }) => Ok(Json(ReloadView {
            outcome: "applied".into(),
            sha256,
            old_sha256: Some(old_sha256),
            diff: Some(DiffView {
                added: diff.added,
                removed: diff.removed,
                changed: diff.changed,
            }),
        })),
        Ok(Reloaded::Unchanged { sha256 }) => Ok(Json(ReloadView {
            outcome: "unchanged".into(),
            sha256,
            old_sha256: None,
            diff: None,
        })),
        Err(errors) => Err(ApiError::PolicyInvalid {
            message: format!(
                "the policy file has {} error(s); the policy in force is unchanged",
                errors.errors.len()
            ),
            errors: error_lines(&errors),
        }),
    }
}
