//! Unauthenticated probes: `/healthz` (process up), `/readyz` (database
//! reachable and policy loaded).

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

use super::views::{Health, Readiness};
use std::time::{Duration, Instant};

use super::{ApiError, AppState};

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "probes",
    summary = "The process is up",
    responses((status = 200, description = "Up", body = Health)),
    security(())
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
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
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "probes",
    summary = "The database is reachable and the policy loaded",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "The database is unreachable", body = Readiness),
    ),
    security(())
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    // Each source: `consuming`, `paused` (its batch cannot be stored: the
    // database is down), `disconnected` (broker unreachable) or `disabled`.
    // A source's broker does not decide readiness: the API still serves.
    let sources = state
        .sources
        .all()
        .iter()
        .map(|s| (s.id().to_owned(), s.state().to_owned()))
        .collect();
    let database_ok = state.ready_probe.database_ok(&state.store).await;
    state.metrics.database_reached(database_ok);
    let (status, word, database) = if database_ok {
        (StatusCode::OK, "ready", "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready", "unreachable")
    };
    (
        status,
        Json(Readiness {
            status: word.into(),
            database: database.into(),
            policy: "loaded".into(),
            sources,
        }),
    )
}

/// Prometheus metrics (no auth, contract §6), in the format the scraper
/// asks for: OpenMetrics when its `Accept` prefers it (Prometheus does),
/// else the classic text format — each with its own `Content-Type`, so
/// the scraper parses what it gets as what it is. The queue depth is a few
/// counts through partial indexes, read at most every 5 s however often
/// this is scraped.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "probes",
    summary = "Prometheus metrics",
    description = "OpenMetrics when the `Accept` header prefers it, else the classic text format.",
    responses((status = 200, description = "Every metric", content(
        (String = "text/plain; version=0.0.4"),
        (String = "application/openmetrics-text; version=1.0.0"),
    ))),
    security(())
)]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    let stale = {
        let mut last = state.depth_cache.lock().expect("lock");
        let stale = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
        if stale {
            *last = Some(Instant::now());
        }
        stale
    };
    if stale {
        match state.store.queue_depth().await {
            Ok(depth) => state
                .metrics
                .set_queue_depth(&depth.by_state(), depth.oldest_due_seconds),
            Err(e) => {
                state.metrics.database_reached(false);
                tracing::debug!(error = %e.chain(), "queue depth for /metrics unavailable");
            }
        }
    }
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if prefers_openmetrics(accept) {
        ([(CONTENT_TYPE, OPENMETRICS)], state.metrics.render())
    } else {
        ([(CONTENT_TYPE, CLASSIC)], state.metrics.render_classic())
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header ranks OpenMetrics (any version we can answer
/// with 1.0.0: unversioned, 0.0.1 or 1.0.0) above the classic text format.
/// Ties go to OpenMetrics, which names itself explicitly; no `Accept`, or
/// `*/*` alone, gets the classic text.
fn prefers_openmetrics(accept: &str) -> bool {
    let (mut openmetrics, mut classic) = (0.0_f32, 0.0_f32);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1.0_f32;
        let mut version = None;
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.trim().parse().unwrap_or(0.0),
                    "version" => version = Some(v.trim().to_owned()),
                    _ => {}
                }
            }
        }
        match media.as_str() {
            "application/openmetrics-text"
                if version
                    .as_deref()
                    .is_none_or(|v| v == "1.0.0" || v == "0.0.1") =>
            {
                openmetrics = openmetrics.max(q);
            }
            "text/plain" | "*/*" | "text/*" => classic = classic.max(q),
            _ => {}
        }
    }
    openmetrics > 0.0 && openmetrics >= classic
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

#[cfg(test)]
mod tests {
    use super::prefers_openmetrics;

    #[test]
    fn the_accept_header_picks_the_format() {
        // Prometheus 2.x/3.x scrape headers.
        assert!(prefers_openmetrics(
            "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        ));
        assert!(prefers_openmetrics("application/openmetrics-text"));
        assert!(!prefers_openmetrics(""));
        assert!(!prefers_openmetrics("*/*"));
        assert!(!prefers_openmetrics("text/plain;version=0.0.4"));
        assert!(!prefers_openmetrics(
            "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"
        ));
        assert!(!prefers_openmetrics(
            "application/openmetrics-text;version=2.0.0"
        ));
        assert!(!prefers_openmetrics("application/openmetrics-text;q=0"));
    }
}
