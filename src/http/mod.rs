//! The HTTP API: one route table, the extractors, the error mapping.
//! Handlers extract, call a use case, map the result; no SQL here.

mod admin;
mod code;
pub mod console;
mod endpoints;
mod error;
mod events;
mod extract;
mod health;
mod inbound;
mod meters;
pub mod openapi;
mod policy;
mod replay;
pub mod serve;
mod sources;
mod test_send;
pub mod views;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

pub use code::ErrorCode;
pub use error::ApiError;
pub use health::ReadyProbe;
pub use meters::{ConnectionEvent, Meters};

use crate::audit::RequestContext;
use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use crate::policy::PolicySet;
use crate::store::Store;

/// Size limits for request bodies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// One event's JSON, in bytes (413 beyond).
    pub max_event_bytes: usize,
    /// One request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// One inbound command body, in bytes (413 beyond).
    pub max_inbound_bytes: usize,
    /// A whole request body must arrive within this (408 beyond).
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_event_bytes: 1024 * 1024,
            max_body_bytes: 16 * 1024 * 1024,
            max_inbound_bytes: 256 * 1024,
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub reloader: Arc<crate::reload::Reloader>,
    pub policy: Arc<ArcSwap<PolicySet>>,
    pub limits: Limits,
    /// The registry and the engine's own figures (`/metrics`).
    pub metrics: Arc<Metrics>,
    /// What the listener counts (connections).
    pub http_meters: Arc<Meters>,
    /// Inbound requests by outcome.
    pub inbound_meters: Arc<crate::inbound::Meters>,
    /// Endpoint transitions (an admin's disable or enable).
    pub delivery_meters: Arc<crate::delivery::Meters>,
    /// When the queue depth for `/metrics` was last read.
    pub depth_cache: Arc<std::sync::Mutex<Option<Instant>>>,
    /// `/readyz`'s last database probe: at most one a second, whatever the
    /// rate of unauthenticated probes.
    pub ready_probe: Arc<ReadyProbe>,
    pub ingestor: Ingestor,
    /// The event-bus sources' status (empty without `sources:`).
    pub sources: crate::sources::Registry,
    /// OpenTelemetry spans (a no-op when tracing is off).
    pub telemetry: crate::telemetry::Telemetry,
    /// The web console's sessions.
    pub console: Arc<console::Console>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(events::post_events))
        .route("/v1/events/{id}", get(events::get_event))
        .route("/v1/deliveries", get(admin::list_deliveries))
        .route("/v1/deliveries/replay", post(replay::bulk_replay))
        .route("/v1/deliveries/{id}", get(admin::get_delivery))
        .route("/v1/deliveries/{id}/replay", post(admin::replay_delivery))
        .route("/v1/webhooks", get(admin::list_webhooks))
        .route(
            "/v1/webhooks/{id}/disable",
            post(endpoints::disable_webhook),
        )
        .route("/v1/webhooks/{id}/enable", post(endpoints::enable_webhook))
        .route("/v1/webhooks/{id}/test", post(test_send::test_webhook))
        .route("/v1/audit", get(admin::list_audit))
        .route("/v1/sources", get(sources::list_sources))
        .route("/v1/sources/{id}/rejects", get(sources::list_rejects))
        .route("/v1/policy", get(policy::get_policy))
        .route("/v1/policy/reload", post(policy::reload_policy))
        .route("/webhooks/inbound", post(inbound::post_inbound))
        .route("/v1/openapi.json", get(openapi::openapi_json))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .merge(console::routes())
        .fallback(health::not_found)
        // Bodies are read with our own limit so a 413 is JSON like every error.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            state.http_meters.clone(),
            log_requests,
        ))
        .with_state(state)
}

/// One span and one log line per request; the cause chain of a 5xx is
/// logged here, once. The path is logged, never the query string (it may
/// carry anything) nor any header. A body that did not arrive in time is
/// counted, not logged: slow clients come in floods.
///
/// Every request gets an id — the caller's `X-Request-Id` (at most 128
/// visible characters), else `req_<UUIDv7>` — answered in `X-Request-Id`
/// and carried with the peer's address to the audit records the request
/// causes ([`RequestContext`]).
async fn log_requests(
    axum::extract::State(meters): axum::extract::State<Arc<Meters>>,
    mut req: Request,
    next: Next,
) -> Response {
    use tracing::Instrument;
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().chars().take(128).collect::<String>())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("req_{}", uuid::Uuid::now_v7().simple()));
    let source_ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    req.extensions_mut().insert(RequestContext {
        request_id: Some(request_id.clone()),
        source_ip,
    });
    let span = tracing::info_span!("request", %method, %path, request_id);
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    if let Ok(value) = axum::http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let _entered = span.enter();
    let status = response.status();
    let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    if status == axum::http::StatusCode::REQUEST_TIMEOUT {
        meters.connection(ConnectionEvent::BodyTimeout);
        tracing::debug!(%method, %path, status = status.as_u16(), us, "request body too slow");
    } else if let Some(detail) = response.extensions().get::<error::ErrorChain>() {
        tracing::error!(%method, %path, status = status.as_u16(), us, error = %detail.0, "request failed");
    } else if status.is_client_error() {
        tracing::info!(%method, %path, status = status.as_u16(), us, "request refused");
    } else {
        tracing::debug!(%method, %path, status = status.as_u16(), us, "request");
    }
    response
}
