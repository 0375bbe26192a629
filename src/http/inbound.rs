//! `POST /webhooks/inbound` (contract §4): reads the raw body under the
//! inbound limit, hands bytes and headers to the use case, maps the result.

use std::net::SocketAddr;

use axum::Extension;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::extract::read_body;
use super::{ApiError, AppState, ErrorCode};
use crate::audit::RequestContext;
use crate::inbound::InboundOutcome;
use crate::inbound::{InboundError, InboundRequest, handle};

#[utoipa::path(
    post,
    path = "/webhooks/inbound",
    tag = "inbound",
    summary = "A signed command from an external system",
    description = "Checked in this order, each with a JSON error and no side effect: body too large `413`; missing, malformed, stale or invalid signature `401`; missing or invalid credentials `401`; action not in the allow-list `403`; caller lacks a role the action needs `403`; malformed body or params not an object `400`/`422`. Accepted commands are stored and dispatched as an event on `command.<action>`, and audited.",
    request_body(content = super::views::CommandIn, content_type = "application/json"),
    params(
        ("X-Aion-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex>`: HMAC-SHA256 with the inbound secret over `<t>.<raw body>`; one `v1=` per secret tried"),
        ("Idempotency-Key" = Option<String>, Header, description = "At most 255 characters: the same key with the same body within 24 h returns the first answer without dispatching again"),
    ),
    responses(
        (status = 202, description = "Accepted and dispatched", body = super::views::CommandAccepted),
        (status = 400, description = "Not JSON (`malformed_json`) or a bad `Idempotency-Key` (`invalid_idempotency_key`)", body = super::views::ErrorBody),
        (status = 401, description = "Signature missing, malformed, stale or invalid (`signature_*`), or credentials missing or invalid (`unauthorized`)", body = super::views::ErrorBody),
        (status = 403, description = "Action not in the allow-list (`action_not_allowed`) or a role missing (`forbidden`)", body = super::views::ErrorBody),
        (status = 404, description = "Inbound commands are not configured on this engine", body = super::views::ErrorBody),
        (status = 408, description = "The body did not arrive in time", body = super::views::ErrorBody),
        (status = 409, description = "The same `Idempotency-Key` with another body (`idempotency_key_reused`)", body = super::views::ErrorBody),
        (status = 413, description = "Body too large", body = super::views::ErrorBody),
        (status = 422, description = "The body's fields are invalid (`invalid_command`)", body = super::views::ErrorBody),
        (status = 503, description = "The database is unavailable; retry later", body = super::views::ErrorBody),
    ),
    security(("api_key" = []), ("jwt" = []))
)]
pub async fn post_inbound(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(context): Extension<RequestContext>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut span = state.telemetry.span(
        "inbound command",
        opentelemetry::trace::SpanKind::Server,
        headers.get("traceparent").and_then(|v| v.to_str().ok()),
        Vec::new,
    );
    let result = async {
        let bytes = read_body(
            body,
            state.limits.max_inbound_bytes,
            state.limits.body_timeout,
        ).await.map_err(|e| {
            if matches!(e, ApiError::PayloadTooLarge(_)) {
                state.inbound_meters.count(InboundOutcome::TooLarge);
            }
            e
        })?;
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let request = InboundRequest {
            body: &bytes,
            signature: text("x-aion-signature"),
            authorization: text(AUTHORIZATION.as_str()),
            idempotency_key: text("idempotency-key"),
            request_id: context.request_id,
            source_ip: context.source_ip.or_else(|| Some(peer.ip().to_string())),
        };
        let policy = state.policy.load_full();
        match handle(&state.store, &policy, &request, chrono::Utc::now()).await {
            Ok(answer) => {
                state.inbound_meters.count(answer.outcome);
                span.set(opentelemetry::KeyValue::new("aion.inbound.outcome", answer.outcome.as_str()));
                if answer.outcome == InboundOutcome::Accepted {
                    state.ingestor.meters().events_accepted(crate::ingest::EventSource::Inbound, 1);
                }
                let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::ACCEPTED);
                Ok((status, [(header::CONTENT_TYPE, "application/json")], answer.body).into_response())
            }
            Err(e) => {
                if let Some(outcome) = e.outcome() {
                    state.inbound_meters.count(outcome);
                    span.set(opentelemetry::KeyValue::new("aion.inbound.outcome", outcome.as_str()));
                    let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
                    if state.inbound_meters.should_log(outcome, now_ms) {
                        tracing::warn!(reason = outcome.as_str(), peer = %peer.ip(), error = %e, "inbound request refused");
                    } else {
                        tracing::debug!(reason = outcome.as_str(), peer = %peer.ip(), "inbound request refused");
                    }
                }
                Err(map_error(e))
            }
        }
    }
    .await;
    let response = result.unwrap_or_else(IntoResponse::into_response);
    let status = response.status();
    span.set(opentelemetry::KeyValue::new(
        "http.response.status_code",
        i64::from(status.as_u16()),
    ));
    if !status.is_success() {
        span.fail(format!("answered {status}"));
    }
    span.end();
    response
}

fn map_error(e: InboundError) -> ApiError {
    let message = e.to_string();
    match e {
        InboundError::NotConfigured => ApiError::NotFound(message),
        InboundError::SignatureMissing => {
            ApiError::unauthorized(ErrorCode::SignatureMissing, message)
        }
        InboundError::SignatureMalformed(_) => {
            ApiError::unauthorized(ErrorCode::SignatureMalformed, message)
        }
        InboundError::SignatureStale => ApiError::unauthorized(ErrorCode::SignatureStale, message),
        InboundError::SignatureInvalid => {
            ApiError::unauthorized(ErrorCode::SignatureInvalid, message)
        }
        InboundError::Unauthenticated(a) => ApiError::Unauthorized(a),
        InboundError::NotAllowed(_) => ApiError::forbidden(ErrorCode::ActionNotAllowed, message),
        InboundError::MissingRole { .. } => ApiError::forbidden(ErrorCode::Forbidden, message),
        InboundError::MalformedJson(_) => ApiError::BadRequest {
            code: ErrorCode::MalformedJson,
            message,
            field: None,
        },
        InboundError::InvalidBody { field, .. } => ApiError::Unprocessable {
            code: ErrorCode::InvalidCommand,
            message,
            field: Some(field.into()),
        },
        InboundError::InvalidIdempotencyKey => ApiError::BadRequest {
            code: ErrorCode::InvalidIdempotencyKey,
            message,
            field: Some("Idempotency-Key".into()),
        },
        InboundError::KeyReused => ApiError::Conflict {
            code: ErrorCode::IdempotencyKeyReused,
            message,
        },
        InboundError::Store(s) => s.into(),
    }
}
