//! Admin endpoints needed to operate the queue: deliveries (list, show with
//! attempts, replay), events, webhooks with counts. Role `admin`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::extract::{ApiPath, ApiQuery, Caller, authorize};
use super::views::{
    AttemptView, AuditPage, AuditView, DeliveryPage, DeliveryStatus, DeliveryView, ReplayedView,
    WebhookList, WebhookView,
};
use super::{ApiError, AppState, ErrorCode};
use crate::audit::Outcome;
use crate::domain::DeliveryId;
use crate::rbac::Action;
use crate::store::{AuditFilter, DeliveryFilter, DeliveryState, EndpointStatus, ReplayResult};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub status: Option<String>,
    pub webhook: Option<String>,
    pub topic: Option<String>,
    pub event_id: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

pub(super) fn invalid(field: &str, message: String) -> ApiError {
    ApiError::BadRequest {
        code: ErrorCode::InvalidQuery,
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

/// `since=`/`until=` (RFC 3339) as the lowest id of that millisecond:
/// delivery ids are UUIDv7, ordered by creation time.
fn time_bound(field: &str, value: Option<&str>) -> Result<Option<uuid::Uuid>, ApiError> {
    let Some(text) = value.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let at = chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|e| invalid(field, format!("{text:?} is not an RFC 3339 time: {e}")))?;
    let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    Ok(Some(
        uuid::Builder::from_unix_timestamp_millis(ms, &[0; 10]).into_uuid(),
    ))
}

fn parse_id(id: &str) -> Result<DeliveryId, ApiError> {
    DeliveryId::parse(id).map_err(|e| ApiError::NotFound(e.to_string()))
}

#[utoipa::path(
    get,
    path = "/v1/deliveries",
    tag = "deliveries",
    summary = "Deliveries, newest first",
    params(
        ("status" = Option<DeliveryStatus>, Query, description = "Only deliveries in this state"),
        ("webhook" = Option<String>, Query, description = "Only this webhook's"),
        ("topic" = Option<String>, Query, description = "Only this topic's"),
        ("event_id" = Option<String>, Query, description = "Only this event's"),
        ("since" = Option<String>, Query, format = DateTime, description = "RFC 3339: created at or after"),
        ("until" = Option<String>, Query, format = DateTime, description = "RFC 3339: created before"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, pattern = "^dlv_[0-9a-f]{32}$", description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page", body = DeliveryPage),
        (status = 400, description = "Malformed request or query (`malformed_json`, `invalid_query`, `incomplete_body`)", body = super::views::ErrorBody),
        (status = 401, description = "Missing or invalid credentials (`unauthorized`)", body = super::views::ErrorBody),
        (status = 403, description = "The caller's roles do not allow this (`forbidden`; audited)", body = super::views::ErrorBody),
        (status = 503, description = "The database is unavailable; retry later (`unavailable`)", body = super::views::ErrorBody),
    ),
    security(("api_key" = []), ("jwt" = []))
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    principal: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
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
    let after = time_bound("since", q.since.as_deref())?;
    let until = time_bound("until", q.until.as_deref())?;
    let before = match (before, until) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let filter = DeliveryFilter {
        state: state_filter,
        webhook_id: q.webhook.filter(|s| !s.is_empty()),
        event_id: q.event_id.filter(|s| !s.is_empty()),
        topic: q.topic.filter(|s| !s.is_empty()),
        before,
        after,
        limit,
    };
    let rows = state.store.list_deliveries(&filter).await?;
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| DeliveryId::from_uuid(r.id).to_string()))
        .flatten();
    Ok(Json(DeliveryPage {
        data: rows.iter().map(DeliveryView::of).collect(),
        next_cursor,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/deliveries/{id}",
    tag = "deliveries",
    summary = "One delivery with every attempt",
    params(("id" = String, Path, description = "The delivery id (`dlv_…`)")),
    responses(
        (status = 200, description = "The delivery and `attempts_detail`", body = DeliveryView),
        (status = 401, description = "Missing or invalid credentials (`unauthorized`)", body = super::views::ErrorBody),
        (status = 403, description = "The caller's roles do not allow this (`forbidden`; audited)", body = super::views::ErrorBody),
        (status = 404, description = "Not found (`not_found`)", body = super::views::ErrorBody),
        (status = 503, description = "The database is unavailable; retry later (`unavailable`)", body = super::views::ErrorBody),
    ),
    security(("api_key" = []), ("jwt" = []))
)]
pub async fn get_delivery(
    State(state): State<AppState>,
    principal: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<DeliveryView>, ApiError> {
    authorize(&state, &principal, Action::GetDelivery).await?;
    let id = parse_id(&id)?;
    let (row, attempts) = state
        .store
        .get_delivery(id.uuid())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no delivery {id}")))?;
    let mut view = DeliveryView::of(&row);
    view.attempts_detail = Some(attempts.iter().map(AttemptView::of).collect());
    Ok(Json(view))
}

#[utoipa::path(
    post,
    path = "/v1/deliveries/{id}/replay",
    tag = "deliveries",
    summary = "Send a finished delivery again",
    description = "A `dead` or `succeeded` delivery back to `pending` (to `waiting` at its place in its key's line with `ordering: key`), same id, so the same `Idempotency-Key`. Audited.",
    params(("id" = String, Path, description = "The delivery id (`dlv_…`)")),
    responses(
        (status = 202, description = "Replayed", body = ReplayedView),
        (status = 401, description = "Missing or invalid credentials (`unauthorized`)", body = super::views::ErrorBody),
        (status = 403, description = "The caller's roles do not allow this (`forbidden`; audited)", body = super::views::ErrorBody),
        (status = 404, description = "Not found (`not_found`)", body = super::views::ErrorBody),
        (status = 409, description = "Not finished (`not_replayable`)", body = super::views::ErrorBody),
        (status = 503, description = "The database is unavailable; retry later (`unavailable`)", body = super::views::ErrorBody),
    ),
    security(("api_key" = []), ("jwt" = []))
)]
pub async fn replay_delivery(
    State(state): State<AppState>,
    principal: Caller,
    ApiPath(id): ApiPath,
) -> Result<(StatusCode, Json<ReplayedView>), ApiError> {
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
            code: ErrorCode::NotReplayable,
            message: format!(
                "delivery {id} is {}; only dead or succeeded deliveries can be replayed",
                s.as_str()
            ),
        }),
        Some(ReplayResult::Replayed(previous)) => {
            tracing::info!(delivery = %id, actor = %principal.actor_id, previous = previous.as_str(), "delivery replayed");
            Ok((
                StatusCode::ACCEPTED,
                Json(ReplayedView {
                    id: id.to_string(),
                    status: DeliveryStatus::Pending,
                    previous_status: DeliveryStatus::of(previous.as_str()),
                }),
            ))
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    summary = "The policy's webhooks with state and counts",
    responses(
        (status = 200, description = "Every webhook of the policy in force", body = WebhookList),
        (status = 401, description = "Missing or invalid credentials (`unauthorized`)", body = super::views::ErrorBody),
        (status = 403, description = "The caller's roles do not allow this (`forbidden`; audited)", body = super::views::ErrorBody),
        (status = 503, description = "The database is unavailable; retry later (`unavailable`)", body = super::views::ErrorBody),
    ),
    security(("api_key" = []), ("jwt" = []))
)]
pub async fn list_webhooks(
    State(state): State<AppState>,
    principal: Caller,
) -> Result<Json<WebhookList>, ApiError> {
    authorize(&state, &principal, Action::ListWebhooks).await?;
    let policy = state.policy.load_full();
    let ids: Vec<&str> = policy.webhooks().iter().map(|w| w.id.as_str()).collect();
    let stats = state.store.webhook_stats(&ids).await?;
    let runtime = state.store.endpoint_states().await?;
    let data: Vec<WebhookView> = policy
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
            let note = stored.filter(|_| w.enabled).and_then(|r| r.note.clone());
            let throttled_until = stored.and_then(|r| r.throttled_until);
            let cert_expiry = w
                .route
                .tls
                .as_ref()
                .and_then(|t| Some(t.identity.as_ref()?.not_after));
            WebhookView {
                id: w.id.to_string(),
                url: crate::domain::redact::url_origin(&w.url),
                topics: w.topics.iter().map(|t| t.as_str().to_owned()).collect(),
                enabled: w.enabled,
                state: st.to_owned(),
                state_reason: reason,
                state_note: note,
                state_since: since,
                throttled_until,
                signature: w.signature.as_str().to_owned(),
                pending: s.pending,
                waiting: s.waiting,
                in_flight: s.in_flight,
                dead: s.dead,
                last_success_at: s.last_success_at,
                last_failure_at: s.last_failure_at,
                last_error_kind: s.last_error_kind,
                attempts_last_hour: attempts,
                success_rate_last_hour: rate,
                client_cert_expires_at: cert_expiry,
                client_cert_expires_soon: cert_expiry
                    .is_some_and(|at| at - chrono::Utc::now() < CERT_WARNING),
            }
        })
        .collect();
    Ok(Json(WebhookList { data }))
}

/// How long before a client certificate expires the webhook shows it.
const CERT_WARNING: chrono::TimeDelta = chrono::TimeDelta::days(14);

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "audit",
    summary = "The audit log, newest first",
    params(
        ("actor" = Option<String>, Query, description = "Only this actor's records"),
        ("action" = Option<String>, Query, description = "Only this action's records (`replay_delivery`, `disable_webhook`, `console_sign_in`, …)"),
        ("since" = Option<String>, Query, format = DateTime, description = "RFC 3339: records at or after"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, pattern = "^[0-9]{1,19}$", description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "Records", body = AuditPage),
        (status = 400, description = "Malformed request or query (`malformed_json`, `invalid_query`, `incomplete_body`)", body = super::views::ErrorBody),
        (status = 401, description = "Missing or invalid credentials (`unauthorized`)", body = super::views::ErrorBody),
        (status = 403, description = "The caller's roles do not allow this (`forbidden`; audited)", body = super::views::ErrorBody),
        (status = 503, description = "The database is unavailable; retry later (`unavailable`)", body = super::views::ErrorBody),
    ),
    security(("api_key" = []), ("jwt" = []))
)]
pub async fn list_audit(
    State(state): State<AppState>,
    principal: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
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
    let before = match q.cursor.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid("cursor", format!("{c:?} is not a cursor")))?,
        ),
    };
    let filter = AuditFilter {
        actor: q.actor.filter(|s| !s.is_empty()),
        action: q.action.filter(|s| !s.is_empty()),
        since,
        before,
        limit,
    };
    let rows = state.store.list_audit(&filter).await?;
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    let data = rows
        .into_iter()
        .map(|r| AuditView {
            id: r.id,
            at: r.at,
            actor_id: r.actor_id,
            action: r.action,
            outcome: r.outcome,
            target: r.target,
            request_id: r.request_id,
            source_ip: r.source_ip,
        })
        .collect();
    Ok(Json(AuditPage { data, next_cursor }))
}
