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

/// Unauthenticated, so it says nothing about the policy beyond "loaded"
/// (its hash would tell an outsider when the configuration changes).
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.store.ping(std::time::Duration::from_secs(1)).await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "database": "ok", "policy": "loaded" })),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "database": "unreachable", "policy": "loaded" })),
        ),
    }
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}
