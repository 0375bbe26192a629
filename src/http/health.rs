//! Unauthenticated probes: `/healthz` (process up), `/readyz` (database
//! reachable and policy loaded).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, AppState};

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let policy = state.policy.load();
    match state.store.ping(std::time::Duration::from_secs(1)).await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "database": "ok", "policy_sha256": policy.sha256() })),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({ "status": "not_ready", "database": "unreachable", "policy_sha256": policy.sha256() }),
            ),
        ),
    }
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}
