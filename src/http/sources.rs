//! `GET /v1/sources` and `GET /v1/sources/{id}/rejects` (contract §6, §9).
//! Role `admin`. Credentials are never shown.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::{invalid, parse_limit};
use super::extract::{ApiPath, ApiQuery, Caller, authorize};
use super::views::{RejectPage, RejectView, SourceList, SourceView};
use super::{ApiError, AppState};
use crate::domain::redact::url_list_origins;
use crate::policy::sources::{Source, SourceKind};
use crate::rbac::Action;

/// Where a source reads from, without its credentials.
fn config_json(s: &Source) -> Value {
    match &s.kind {
        SourceKind::Kafka(k) => json!({
            "brokers": k.brokers, "group": k.group, "topics": k.topics,
            "tls": k.tls.is_some(), "sasl": k.sasl.as_ref().map(|s| s.mechanism.as_str()),
        }),
        SourceKind::Nats(n) => json!({
            "url": url_list_origins(&n.url), "stream": n.stream, "consumer": n.consumer, "subjects": n.subjects,
        }),
    }
}

#[utoipa::path(
    get,
    path = "/v1/sources",
    tag = "sources",
    summary = "Event-bus sources and what they have done",
    responses(
        (status = 200, description = "Each source of the policy", body = SourceList),
        (status = 401, description = "Missing or invalid credentials (`unauthorized`)", body = super::views::ErrorBody),
        (status = 403, description = "The caller's roles do not allow this (`forbidden`; audited)", body = super::views::ErrorBody),
    ),
    security(("api_key" = []), ("jwt" = []))
)]
pub async fn list_sources(
    State(state): State<AppState>,
    principal: Caller,
) -> Result<Json<SourceList>, ApiError> {
    authorize(&state, &principal, Action::ListSources).await?;
    let policy = state.policy.load();
    let data = policy
        .sources()
        .iter()
        .map(|s| {
            let base = SourceView {
                id: s.id.clone(),
                kind: s.kind.as_str().to_owned(),
                enabled: s.enabled,
                state: None,
                connected: false,
                paused: None,
                lag: None,
                lag_detail: None,
                consumed: None,
                events_created: None,
                duplicates: None,
                rejects: None,
                last_error: None,
                last_error_at: None,
                format: s.format.as_str().to_owned(),
                config: config_json(s),
            };
            // Not started (yet): the supervisor picks a reload up within 250 ms.
            let Some(status) = state.sources.get(&s.id) else {
                return base;
            };
            let n = status.snapshot();
            let (last_error_at, last_error) = n.last_error.unzip();
            SourceView {
                kind: n.kind.to_owned(),
                enabled: n.enabled,
                state: Some(n.state.to_owned()),
                connected: n.connected,
                paused: Some(n.paused),
                lag: Some(n.lag_total),
                lag_detail: serde_json::to_value(&n.lag).ok(),
                consumed: Some(n.consumed),
                events_created: Some(n.events_created),
                duplicates: Some(n.duplicates),
                rejects: Some(n.rejects),
                last_error,
                last_error_at,
                ..base
            }
        })
        .collect();
    Ok(Json(SourceList { data }))
}

#[derive(Debug, Default, Deserialize)]
pub struct RejectsQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/sources/{id}/rejects",
    tag = "sources",
    summary = "Messages a source could not turn into events, newest first",
    params(
        ("id" = String, Path, description = "The source id"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, pattern = "^[1-9][0-9]{0,17}$", description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page", body = RejectPage),
        (status = 400, description = "Malformed request or query (`malformed_json`, `invalid_query`, `incomplete_body`)", body = super::views::ErrorBody),
        (status = 401, description = "Missing or invalid credentials (`unauthorized`)", body = super::views::ErrorBody),
        (status = 403, description = "The caller's roles do not allow this (`forbidden`; audited)", body = super::views::ErrorBody),
        (status = 404, description = "Not found (`not_found`)", body = super::views::ErrorBody),
        (status = 503, description = "The database is unavailable; retry later (`unavailable`)", body = super::views::ErrorBody),
    ),
    security(("api_key" = []), ("jwt" = []))
)]
pub async fn list_rejects(
    State(state): State<AppState>,
    principal: Caller,
    ApiPath(id): ApiPath,
    ApiQuery(q): ApiQuery<RejectsQuery>,
) -> Result<Json<RejectPage>, ApiError> {
    authorize(&state, &principal, Action::ListSources).await?;
    let limit = parse_limit(q.limit.as_deref())?;
    let before =
        match q.cursor.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(c) => Some(c.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                invalid("cursor", format!("{c:?} is not a cursor from this list"))
            })?),
        };
    let rows = state.store.list_rejects(&id, before, limit).await?;
    let known = state.policy.load().sources().iter().any(|s| s.id == id);
    if rows.is_empty() && !known && before.is_none() {
        return Err(ApiError::NotFound(format!("no source {id:?}")));
    }
    let next = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    let data = rows
        .into_iter()
        .map(|r| RejectView {
            id: r.id,
            source_id: r.source_id,
            position: r.position,
            reason: r.reason,
            value: r.value,
            value_bytes: r.value_bytes,
            truncated: r.truncated,
            at: r.at,
        })
        .collect();
    Ok(Json(RejectPage {
        data,
        next_cursor: next,
    }))
}
