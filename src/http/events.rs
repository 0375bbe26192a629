//! `POST /v1/events` (contract §2) and `GET /v1/events/{id}` (§6).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::extract::{ApiPath, Caller, authorize, json_body};
use super::views::{AcceptedBody, AcceptedView};
use super::{ApiError, AppState, ErrorCode};
use crate::ingest::{IngestFailure, Trace, ingest};
use crate::policy::schemas::SchemaMode;
use crate::rbac::Action;

#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    summary = "Publish one event or a batch",
    description = "Role `publisher`. One event object, or an array of 1 to 1000 (one transaction: all accepted or none). Each accepted event is stored and fanned out to one delivery per matching webhook. The same id again with the same topic and payload is a duplicate (no new deliveries); with another topic or payload, `409 event_conflict`.",
    request_body(content = super::views::EventsIn, content_type = "application/json"),
    params(("traceparent" = Option<String>, Header, description = "W3C trace context; the event's spans join this trace")),
    responses(
        (status = 202, description = "Accepted: the answer for the event, or for each of the batch in order", body = super::views::AcceptedBody),
        (status = 200, description = "Every event was a duplicate: nothing new stored", body = super::views::AcceptedBody),
        (status = 400, description = "Malformed request or query (`malformed_json`, `invalid_query`, `incomplete_body`)", body = super::views::ErrorBody),
        (status = 401, description = "Missing or invalid credentials (`unauthorized`)", body = super::views::ErrorBody),
        (status = 403, description = "The caller's roles do not allow this (`forbidden`; audited)", body = super::views::ErrorBody),
        (status = 408, description = "The body did not arrive in time (`request_timeout`)", body = super::views::ErrorBody),
        (status = 409, description = "The same id with another topic or payload (`event_conflict`)", body = super::views::ErrorBody),
        (status = 413, description = "Body too large (`payload_too_large`)", body = super::views::ErrorBody),
        (status = 415, description = "Content-Type is not JSON (`unsupported_media_type`)", body = super::views::ErrorBody),
        (status = 422, description = "An invalid field (`invalid_event`, `field` names it) or a payload failing its topic's schema (`schema_violation`, with `violations`)", body = super::views::ErrorBody),
        (status = 503, description = "The database is unavailable; retry later (`unavailable`)", body = super::views::ErrorBody),
    ),
    security(("api_key" = []), ("jwt" = []))
)]
pub async fn post_events(
    State(state): State<AppState>,
    principal: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&state, &principal, Action::PublishEvents).await?;
    let bytes = json_body(
        &headers,
        body,
        state.limits.max_body_bytes,
        state.limits.body_timeout,
    )
    .await?;
    let policy = state.policy.load_full();
    let (answers, batch) = ingest(
        &state.ingestor,
        &policy,
        &bytes,
        state.limits.max_event_bytes,
        chrono::Utc::now(),
        Trace {
            telemetry: &state.telemetry,
            traceparent: headers.get("traceparent").and_then(|v| v.to_str().ok()),
        },
    )
    .await
    .map_err(|e| match e {
        IngestFailure::MalformedJson(_) => ApiError::BadRequest {
            code: ErrorCode::MalformedJson,
            message: e.to_string(),
            field: None,
        },
        IngestFailure::Invalid { ref field, .. } => {
            let field = (!field.is_empty()).then(|| field.clone());
            ApiError::Unprocessable {
                code: ErrorCode::InvalidEvent,
                message: e.to_string(),
                field,
            }
        }
        IngestFailure::TooLarge { message } => ApiError::PayloadTooLarge(message),
        IngestFailure::ReservedTopic { field, message } => ApiError::ForbiddenCode {
            code: ErrorCode::ReservedTopic,
            message,
            field: Some(field),
        },
        IngestFailure::ReservedSource { field, message } => ApiError::ForbiddenCode {
            code: ErrorCode::ReservedSource,
            message,
            field: Some(field),
        },
        IngestFailure::SchemaViolation {
            ref field,
            ref pattern,
            ..
        } => {
            state
                .ingestor
                .meters()
                .schema_violation(pattern, SchemaMode::Enforce);
            let message = e.to_string();
            let IngestFailure::SchemaViolation { violations, .. } = e else {
                unreachable!("matched above")
            };
            ApiError::SchemaViolation {
                message,
                field: field.clone(),
                violations,
            }
        }
        IngestFailure::Conflict { .. } => ApiError::Conflict {
            code: ErrorCode::EventConflict,
            message: e.to_string(),
        },
        IngestFailure::Store(s) => s.into(),
    })?;
    let status = if answers.iter().all(|a| a.duplicate) {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let mut views = answers.into_iter().map(|a| AcceptedView {
        id: a.id,
        topic: a.topic,
        deliveries: a.deliveries,
        duplicate: a.duplicate,
    });
    let body = if batch {
        AcceptedBody::Many(views.collect())
    } else {
        AcceptedBody::One(views.next().ok_or_else(|| ApiError::BadRequest {
            code: ErrorCode::MalformedJson,
            message: "no event in the request".into(),
            field: None,
        })?)
    };
    Ok((status, Json(body)).into_response())
}

/// A stored event as `GET /v1/events/{id}` shows it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub(crate) id: String,
    pub(crate) topic: String,
    pub(crate) occurred_at: chrono::DateTime<chrono::Utc>,
    pub(crate) received_at: chrono::DateTime<chrono::Utc>,
    pub(crate) tenant_id: Option<String>,
    pub(crate) source: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) trace_id: Option<String>,
    /// `event_version` as the producer wrote it (an integer or a string).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub(crate) version: Option<Box<serde_json::value::RawValue>>,
    /// The violations of its topic's schema, when accepted in `warn` mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<super::views::ViolationView>>)]
    pub(crate) schema_errors: Option<Box<serde_json::value::RawValue>>,
    /// The W3C traceparent its delivery attempts are parented on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) traceparent: Option<String>,
    /// Embedded as stored, byte for byte: a payload nested deeper than a
    /// parser's recursion limit, or holding `1e400`, reads back as posted.
    #[schema(value_type = serde_json::Value)]
    pub(crate) payload: Box<serde_json::value::RawValue>,
}

#[utoipa::path(
    get,
    path = "/v1/events/{id}",
    tag = "events",
    summary = "A stored event",
    params(("id" = String, Path, description = "The event id")),
    responses(
        (status = 200, description = "The event, its payload as stored", body = EventView),
        (status = 401, description = "Missing or invalid credentials (`unauthorized`)", body = super::views::ErrorBody),
        (status = 403, description = "The caller's roles do not allow this (`forbidden`; audited)", body = super::views::ErrorBody),
        (status = 404, description = "Not found (`not_found`)", body = super::views::ErrorBody),
        (status = 503, description = "The database is unavailable; retry later (`unavailable`)", body = super::views::ErrorBody),
    ),
    security(("api_key" = []), ("jwt" = []))
)]
pub async fn get_event(
    State(state): State<AppState>,
    principal: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<EventView>, ApiError> {
    authorize(&state, &principal, Action::GetEvent).await?;
    let e = state
        .store
        .get_event(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such event".into()))?;
    // Ingest stores only valid JSON; anything else is shown as a string.
    let payload = serde_json::value::RawValue::from_string(e.payload).unwrap_or_else(|err| {
        serde_json::value::to_raw_value(&err.to_string()).unwrap_or_default()
    });
    Ok(Json(EventView {
        id: e.id,
        topic: e.topic,
        occurred_at: e.occurred_at,
        received_at: e.received_at,
        tenant_id: e.tenant_id,
        source: e.source,
        key: e.key,
        trace_id: e.trace_id,
        version: e
            .meta
            .version
            .and_then(|v| serde_json::value::RawValue::from_string(v).ok()),
        schema_errors: e
            .meta
            .schema_errors
            .and_then(|v| serde_json::value::RawValue::from_string(v).ok()),
        traceparent: e.meta.traceparent,
        payload,
    }))
}
