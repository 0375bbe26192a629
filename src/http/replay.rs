//! `POST /v1/deliveries/replay` (contract §6): finished deliveries back to
//! `pending` in bulk, each keeping its id (so its `Idempotency-Key`), in one
//! transaction with one audit record for the call.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{Caller, authorize, json_body};
use super::{ApiError, AppState};
use crate::audit::Outcome;
use crate::rbac::Action;
use crate::store::{DeliveryState, ReplayFilter};

pub const DEFAULT_LIMIT: u32 = 1000;
pub const MAX_LIMIT: u32 = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkReplay {
    webhook: Option<String>,
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid("invalid_replay", field, message)
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

pub async fn bulk_replay(
    State(state): State<AppState>,
    principal: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &principal, Action::BulkReplay).await?;
    let bytes = json_body(&headers, body, 64 * 1024, state.limits.body_timeout).await?;
    let req: BulkReplay = serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest {
        code: "malformed_json",
        message: format!("invalid replay request: {e}"),
        field: None,
    })?;
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
                    code: "webhook_disabled",
                    message: format!("webhook {id:?} is disabled; enable it before replaying"),
                });
            }
            None => {
                return Err(ApiError::Conflict {
                    code: "webhook_unknown",
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
    Ok(Json(json!({ "replayed": replayed })))
}
