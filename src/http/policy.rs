//! `GET /v1/policy` and `POST /v1/policy/reload` (contract §6, role
//! `admin`). Secrets are never shown: only hashes, counts and error
//! positions (an error message names a variable, never its value).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::extract::{Caller, authorize};
use super::{ApiError, AppState};
use crate::rbac::Action;
use crate::reload::{Reloaded, Trigger, error_lines};

pub async fn get_policy(
    State(state): State<AppState>,
    principal: Caller,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &principal, Action::GetPolicy).await?;
    let s = state.reloader.status();
    let retention = state.policy.load().retention();
    Ok(Json(json!({
        "retention": {
            "succeeded_seconds": retention.succeeded.as_secs(),
            "dead_seconds": retention.dead.as_secs(),
        },
        "sha256": s.sha256,
        "loaded_at": s.loaded_at,
        "source": s.source.display().to_string(),
        "webhooks": s.webhooks,
        "last_reload": s.last_reload,
    })))
}

pub async fn reload_policy(
    State(state): State<AppState>,
    principal: Caller,
) -> Result<Json<Value>, ApiError> {
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
        }) => Ok(Json(json!({
            "outcome": "applied", "sha256": sha256, "old_sha256": old_sha256, "diff": diff,
        }))),
        Ok(Reloaded::Unchanged { sha256 }) => {
            Ok(Json(json!({ "outcome": "unchanged", "sha256": sha256 })))
        }
        Err(errors) => Err(ApiError::PolicyInvalid {
            message: format!(
                "the policy file has {} error(s); the policy in force is unchanged",
                errors.errors.len()
            ),
            errors: error_lines(&errors),
        }),
    }
}
