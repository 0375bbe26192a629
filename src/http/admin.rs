//! Admin endpoints needed to operate the queue: deliveries (list, show with
//! attempts, replay), events, webhooks with counts. Role `admin`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{Caller, authorize};
use super::{ApiError, AppState};
use crate::audit::Outcome;
use crate::domain::DeliveryId;
use crate::rbac::Action;
use crate::store::{
    AttemptRow, DeliveryFilter, DeliveryRow, DeliveryState, EndpointStatus, ReplayResult,
};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    webhook: Option<String>,
    topic: Option<String>,
    event_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn delivery_json(d: &DeliveryRow) -> Value {
    json!({
        "id": DeliveryId::from_uuid(d.id),
        "event_id": d.event_id,
        "webhook_id": d.webhook_id,
        "topic": d.topic,
        "status": d.state,
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at,
        "last_status_code": d.last_status,
        "last_error": d.last_error,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
        "completed_at": d.completed_at,
    })
}

fn attempt_json(a: &AttemptRow) -> Value {
    json!({
        "attempt": a.attempt,
        "started_at": a.started_at,
        "duration_ms": a.duration_ms,
        "status_code": a.status_code,
        "error_kind": a.error_kind,
        "error": a.error,
        "response_body": a.response_body,
        "recorded_by": a.recorded_by,
    })
}

pub(super) fn invalid(field: &str, message: String) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_query",
        message,
        field: Some(field.into()),
    }
}

/// `limit=`: absent or empty means the default; otherwise 1 to MAX_LIMIT.
pub(super) fn parse_limit(limit: Option<&str>) -> Result<u32, ApiError> {
    match limit.filter(|s| !s.is_empty()) {
        None => Ok(DEFAULT_LIMIT),
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| invalid("limit", format!("limit must be 1 to {MAX_LIMIT}"))),
    }
}

fn parse_id(id: &str) -> Result<DeliveryId, ApiError> {
    DeliveryId::parse(id).map_err(|e| ApiError::NotFound(e.to_string()))
}

pub async fn list_deliveries(
    State(state): State<AppState>,
    principal: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &principal, Action::ListDeliveries).await?;
    let state_filter = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(DeliveryState::parse(s).ok_or_else(|| {
            invalid(
                "status",
                format!(
                    "unknown status {s:?}; expected waiting, pending, in_flight, succeeded or dead"
                ),
            )
        })?),
    };
    let limit = parse_limit(q.limit.as_deref())?;
    let before = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            DeliveryId::parse(c)
                .map_err(|e| invalid("cursor", e.to_string()))?
                .uuid(),
        ),
    };
    let filter = DeliveryFilter {
        state: state_filter,
        webhook_id: q.webhook.filter(|s| !s.is_empty()),
        event_id: q.event_id.filter(|s| !s.is_empty()),
        topic: q.topic.filter(|s| !s.is_empty()),
        before,
        limit,
    };
    let rows = state.store.list_deliveries(&filter).await?;
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| DeliveryId::from_uuid(r.id).to_string()))
        .flatten();
    Ok(Json(json!({
        "data": rows.iter().map(delivery_json).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    })))
}

pub async fn get_delivery(
    State(state): State<AppState>,
    principal: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &principal, Action::GetDelivery).await?;
    let id = parse_id(&id)?;
    let (row, attempts) = state
        .store
        .get_delivery(id.uuid())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no delivery {id}")))?;
    let mut body = delivery_json(&row);
    body["attempts_detail"] = json!(attempts.iter().map(attempt_json).collect::<Vec<_>>());
    Ok(Json(body))
}

pub async fn replay_delivery(
    State(state): State<AppState>,
    principal: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authorize(&state, &principal, Action::ReplayDelivery).await?;
    let id = parse_id(&id)?;
    let now = chrono::Utc::now();
    let entry = principal.audit(
        now,
        "replay_delivery",
        Outcome::Applied,
        Some(id.to_string()),
    );
    let policy = state.policy.load_full();
    let (row, event) = (entry.row(), entry.event(&policy));
    match state
        .store
        .replay(id.uuid(), Some((&row, &event)), now)
        .await?
    {
        None => Err(ApiError::NotFound(format!("no delivery {id}"))),
        Some(ReplayResult::NotFinished(s)) => Err(ApiError::Conflict {
            code: "not_replayable",
            message: format!(
                "delivery {id} is {}; only dead or succeeded deliveries can be replayed",
                s.as_str()
            ),
        }),
        Some(ReplayResult::Replayed(previous)) => {
            tracing::info!(delivery = %id, actor = %principal.actor_id, previous = previous.as_str(), "delivery replayed");
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({ "id": id, "status": "pending", "previous_status": previous })),
            ))
        }
    }
}

/// A stored event as `GET /v1/events/{id}` shows it.
#[derive(serde::Serialize)]
pub struct EventView {
    id: String,
    topic: String,
    occurred_at: chrono::DateTime<chrono::Utc>,
    received_at: chrono::DateTime<chrono::Utc>,
    tenant_id: Option<String>,
    source: Option<String>,
    key: Option<String>,
    trace_id: Option<String>,
    /// `event_version` as the producer wrote it (an integer or a string).
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<Box<serde_json::value::RawValue>>,
    /// The violations of its topic's schema, when accepted in `warn` mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    schema_errors: Option<Box<serde_json::value::RawValue>>,
    /// The W3C traceparent its delivery attempts are parented on.
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
    /// Embedded as stored, byte for byte: a payload nested deeper than a
    /// parser's recursion limit, or holding `1e400`, reads back as posted.
    payload: Box<serde_json::value::RawValue>,
}

pub async fn get_event(
    State(state): State<AppState>,
    principal: Caller,
    Path(id): Path<String>,
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

pub async fn list_webhooks(
    State(state): State<AppState>,
    principal: Caller,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &principal, Action::ListWebhooks).await?;
    let policy = state.policy.load_full();
    let ids: Vec<&str> = policy.webhooks().iter().map(|w| w.id.as_str()).collect();
    let stats = state.store.webhook_stats(&ids).await?;
    let runtime = state.store.endpoint_states().await?;
    let data: Vec<Value> = policy
        .webhooks()
        .iter()
        .zip(stats)
        .map(|(w, s)| {
            let attempts = s.succeeded_last_hour + s.failed_last_hour;
            let rate = (attempts > 0).then(|| s.succeeded_last_hour as f64 / attempts as f64);
            // The policy's `enabled: false` wins over the runtime state.
            let stored = runtime.get(w.id.as_str());
            let (st, reason, since) = match stored {
                _ if !w.enabled => ("disabled", Some("policy".to_owned()), None),
                Some(r) if r.status != EndpointStatus::Active => {
                    (r.status.as_str(), Some(r.reason.clone()), Some(r.since))
                }
                Some(r) => ("active", None, Some(r.since)),
                None => ("active", None, None),
            };
            let throttled_until = stored.and_then(|r| r.throttled_until);
            json!({
                "id": w.id, "url": crate::domain::redact::url_origin(&w.url), "topics": w.topics, "enabled": w.enabled,
                "state": st, "state_reason": reason, "state_since": since,
                "throttled_until": throttled_until,
                "signature": w.signature.as_str(),
                "pending": s.pending, "waiting": s.waiting, "in_flight": s.in_flight, "dead": s.dead,
                "last_success_at": s.last_success_at, "last_failure_at": s.last_failure_at,
                "last_error_kind": s.last_error_kind,
                "attempts_last_hour": attempts, "success_rate_last_hour": rate,
            })
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    actor: Option<String>,
    since: Option<String>,
    limit: Option<String>,
}

pub async fn list_audit(
    State(state): State<AppState>,
    principal: Caller,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &principal, Action::ListAudit).await?;
    let since = match q.since.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|e| invalid("since", format!("{s:?} is not an RFC 3339 time: {e}")))?
                .with_timezone(&chrono::Utc),
        ),
    };
    let limit = parse_limit(q.limit.as_deref())?;
    let rows = state
        .store
        .list_audit(q.actor.as_deref().filter(|s| !s.is_empty()), since, limit)
        .await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "at": r.at, "actor_id": r.actor_id, "action": r.action, "outcome": r.outcome,
                "target": r.target, "request_id": r.request_id, "source_ip": r.source_ip,
            })
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}
