//! `POST /v1/events` (contract §2).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::extract::{Caller, authorize, json_body};
use super::{ApiError, AppState};
use crate::ingest::{IngestFailure, Trace, ingest};
use crate::metrics::EventSource;
use crate::policy::schemas::SchemaMode;
use crate::rbac::Action;

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
            code: "malformed_json",
            message: e.to_string(),
            field: None,
        },
        IngestFailure::Invalid { ref field, .. } => {
            let field = (!field.is_empty()).then(|| field.clone());
            ApiError::Unprocessable {
                code: "invalid_event",
                message: e.to_string(),
                field,
            }
        }
        IngestFailure::TooLarge { message } => ApiError::PayloadTooLarge(message),
        IngestFailure::ReservedTopic { field, message } => ApiError::ForbiddenCode {
            code: "reserved_topic",
            message,
            field: Some(field),
        },
        IngestFailure::ReservedSource { field, message } => ApiError::ForbiddenCode {
            code: "reserved_source",
            message,
            field: Some(field),
        },
        IngestFailure::SchemaViolation {
            ref field,
            ref pattern,
            ..
        } => {
            state.metrics.schema_violation(pattern, SchemaMode::Enforce);
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
            code: "event_conflict",
            message: e.to_string(),
        },
        IngestFailure::Store(s) => s.into(),
    })?;
    let created = answers.iter().filter(|a| !a.duplicate).count() as u64;
    state.metrics.events_accepted(EventSource::Api, created);
    state.metrics.contracts(&answers);
    let status = if answers.iter().all(|a| a.duplicate) {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(if batch {
        (status, Json(answers)).into_response()
    } else {
        (status, Json(&answers[0])).into_response()
    })
}
