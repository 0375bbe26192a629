//! Unauthenticated probes: `/healthz` (process up), `/readyz` (database
//! reachable and policy loaded).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use super::{ApiError, AppState};

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// How long one database probe answers `/readyz` for.
const PROBE_TTL: Duration = Duration::from_secs(1);

/// The last database probe of `/readyz`. Anyone may ask `/readyz`, as
/// often as they like; the database is asked at most once a second (one
/// probe at a time: callers meanwhile wait for its answer), so a probe
/// flood costs no database work beside ingest and delivery.
#[derive(Debug, Default)]
pub struct ReadyProbe {
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl ReadyProbe {
    /// Whether the database answered, asking it only when the last answer
    /// is older than [`PROBE_TTL`].
    pub async fn database_ok(&self, store: &crate::store::Store) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, ok)) = *last
            && at.elapsed() < PROBE_TTL
        {
            return ok;
        }
        let ok = store.ping(Duration::from_secs(1)).await.is_ok();
        *last = Some((Instant::now(), ok));
        ok
    }
}

/// Unauthenticated, so it says nothing about the policy beyond "loaded"
/// (its hash would tell an outsider when the configuration changes). The
/// database's answer may be up to a second old ([`ReadyProbe`]).
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
    if state.ready_probe.database_ok(&state.store).await {
        (
            StatusCode::OK,
            Json(
                json!({ "status": "ready", "database": "ok", "policy": "loaded", "sources": sources }),
            ),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({ "status": "not_ready", "database": "unreachable", "policy": "loaded", "sources": sources }),
            ),
        )
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
