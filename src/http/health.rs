//! Unauthenticated probes: `/healthz` (process up), `/readyz` (database
//! reachable and policy loaded).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{ApiError, AppState};

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Unauthenticated, so it says nothing about the policy beyond "loaded"
/// (its hash would tell an outsider when the configuration changes).
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    // Each source: `consuming`, `paused` (its batch cannot be stored: the
    // database is down), `disconnected` (broker unreachable) or `disabled`.
    // A source's broker does not decide readiness: the API still serves.
    let sources: serde_json::Map<String, Value> = state
        .sources
        .all()
        .iter()
        .map(|s| (s.id().to_owned(), json!(s.state())))
        .collect();
    match state.store.ping(std::time::Duration::from_secs(1)).await {
        Ok(()) => (
            StatusCode::OK,
            Json(
                json!({ "status": "ready", "database": "ok", "policy": "loaded", "sources": sources }),
            ),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({ "status": "not_ready", "database": "unreachable", "policy": "loaded", "sources": sources }),
            ),
        ),
    }
}

/// Prometheus text (no auth, contract §6). The queue depth is a few
/// counts through partial indexes, read at most every 5 s however often
/// this is scraped.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let stale = {
        let mut last = state.depth_cache.lock().expect("lock");
        let stale = last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(5));
        if stale {
            *last = Some(std::time::Instant::now());
        }
        stale
    };
    if stale {
        match state.store.queue_depth().await {
            Ok(depth) => state.metrics.set_queue_depth(depth),
            Err(e) => tracing::debug!(error = %e, "queue depth for /metrics unavailable"),
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}
