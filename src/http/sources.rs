//! `GET /v1/sources` and `GET /v1/sources/{id}/rejects` (contract §6, §9).
//! Role `admin`. Credentials are never shown.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::{invalid, parse_limit};
use super::extract::{Caller, authorize};
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

pub async fn list_sources(
    State(state): State<AppState>,
    principal: Caller,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &principal, Action::ListSources).await?;
    let policy = state.policy.load();
    let data: Vec<Value> = policy
        .sources()
        .iter()
        .map(|s| {
            let mut v = match state.sources.get(&s.id) {
                Some(status) => status.view(),
                // Not started (yet): the supervisor picks a reload up within 250 ms.
                None => json!({ "id": s.id, "kind": s.kind.as_str(), "enabled": s.enabled, "connected": false }),
            };
            v["format"] = json!(s.format.as_str());
            v["config"] = config_json(s);
            v
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

#[derive(Debug, Deserialize)]
pub struct RejectsQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn list_rejects(
    State(state): State<AppState>,
    principal: Caller,
    Path(id): Path<String>,
    Query(q): Query<RejectsQuery>,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(json!({ "data": rows, "next_cursor": next })))
}
