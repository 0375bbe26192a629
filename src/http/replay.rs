//! `POST /v1/deliveries/replay` (contract §6): finished deliveries back to
//! `pending` in bulk, each keeping its id (so its `Idempotency-Key`), in one
//! transaction with one audit record for the call.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::views::{BulkReplayIn, BulkReplayedView};

use super::extract::{Caller, authorize, json_body};
use super::{ApiError, AppState, ErrorCode};
use crate::audit::Outcome;
use crate::rbac::Action;
use crate::store::{DeliveryState, ReplayFilter};

pub const DEFAULT_LIMIT: u32 = 1000;
pub const MAX_LIMIT: u32 = 10_000;

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(ErrorCode::InvalidReplay, field, message)
}

fn time(field: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| invalid(field, format!("{t:?} is not an RFC 3339 time: {e}")))
        })
        .transpose()
}

#[utoipa::path(
    post,
    path = "/v1/deliveries/replay",
    tag = "deliveries",
    summary = "Replay finished deliveries by filter",
    description = "At least `webhook` or a time range. One transaction, one audit record.",
    request_body(content = BulkReplayIn, content_type = "application/json"),
    responses(
        (status = 200, description = "How many were replayed", body = BulkReplayedView),
        (status = 400, description = "Malformed request or query (`malformed_json`, `invalid_query`, `incomplete_body`)", body = super::views::ErrorBody),
        (status = 401, description = "Missing or invalid credentials (`unauthorized`)", body = super::views::ErrorBody),
        (status = 403, description = "The caller's roles do not allow this (`forbidden`; audited)", body = super::views::ErrorBody),
        (status = 408, description = "The body did not arrive in time (`request_timeout`)", body = super::views::ErrorBody),
        (status = 409, description = "The webhook is disabled (`webhook_disabled`) or not in the policy (`webhook_unknown`)", body = super::views::ErrorBody),
        (status = 413, description = "Body too large (`payload_too_large`)", body = super::views::ErrorBody),
        (status = 415, description = "Content-Type is not JSON (`unsupported_media_type`)", body = super::views::ErrorBody),
        (status = 422, description = "An invalid filter (`invalid_replay`)", body = super::views::ErrorBody),
        (status = 503, description = "The database is unavailable; retry later (`unavailable`)", body = super::views::ErrorBody),
    ),
    security(("api_key" = []), ("jwt" = []))
)]
pub async fn bulk_replay(
    State(state): State<AppState>,
    principal: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<BulkReplayedView>, ApiError> {
    authorize(&state, &principal, Action::BulkReplay).await?;
    let bytes = json_body(&headers, body, 64 * 1024, state.limits.body_timeout).await?;
    let req: BulkReplayIn = serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest {
        code: ErrorCode::MalformedJson,
        message: format!("invalid replay request: {e}"),
        field: None,
    })?;
    replay_by_filter(&state, &principal, req).await.map(Json)
}

/// Replays the finished deliveries `req` names, for `principal` (the API
/// and the console): validated, one transaction, one audit record.
pub(super) async fn replay_by_filter(
    state: &AppState,
    principal: &Caller,
    req: BulkReplayIn,
) -> Result<BulkReplayedView, ApiError> {
    authorize(state, principal, Action::BulkReplay).await?;
    let since = time("since", req.since.as_deref())?;
    let until = time("until", req.until.as_deref())?;
    if req.webhook.is_none() && since.is_none() && until.is_none() {
        return Err(invalid(
            "webhook",
            "name a `webhook` or a time range (`since`, `until`), or both",
        ));
    }
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        return Err(invalid("until", "`until` must be after `since`"));
    }
    let status = match req.status.as_deref() {
        None | Some("dead") => DeliveryState::Dead,
        Some("succeeded") => DeliveryState::Succeeded,
        Some(other) => {
            return Err(invalid(
                "status",
                format!("status {other:?} cannot be replayed; use dead or succeeded"),
            ));
        }
    };
    let limit = req.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(invalid("limit", format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let policy = state.policy.load_full();
    if let Some(id) = &req.webhook {
        match policy.webhook(id) {
            Some(w) if w.enabled => {}
            Some(_) => {
                return Err(ApiError::Conflict {
                    code: ErrorCode::WebhookDisabled,
                    message: format!("webhook {id:?} is disabled; enable it before replaying"),
                });
            }
            None => {
                return Err(ApiError::Conflict {
                    code: ErrorCode::WebhookUnknown,
                    message: format!("webhook {id:?} is not in the policy in force"),
                });
            }
        }
    }
    let filter = ReplayFilter {
        webhook_id: req.webhook.clone(),
        state: status,
        since,
        until,
        limit,
    };
    let now = Utc::now();
    let described = json!({
        "webhook": req.webhook, "status": status.as_str(), "since": since, "until": until, "limit": limit,
    });
    let replayed = state
        .store
        .replay_matching(
            &filter,
            |count| {
                let entry = principal.audit(
                    now,
                    "bulk_replay",
                    Outcome::Applied,
                    Some(described.to_string()),
                );
                let mut extra = serde_json::Map::new();
                extra.insert("filter".into(), described.clone());
                extra.insert("replayed".into(), json!(count));
                (entry.row(), entry.event_with(&policy, extra))
            },
            now,
        )
        .await?;
    tracing::info!(actor = %principal.actor_id, replayed, filter = %described, "bulk replay");
    Ok(BulkReplayedView { replayed })
}
