//! Console pages over the policy and the engine's state: overview,
//! webhooks (with enable/disable), sources, policy (with reload), audit log.
//! Each calls the JSON API's use case with the signed-in operator, so the
//! same RBAC, audit records and announcements apply.

use askama::Template;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Redirect, Response};
use serde::Deserialize;

use super::ConsoleError;
use super::operator::{Operator, form};
use super::view::{Chrome, percent, query, render, when};
use crate::delivery::endpoint::Target;
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::views::{AuditView, PolicyView, RejectView, SourceView, WebhookView};
use crate::http::{AppState, admin, endpoints, policy, sources};

type Page = Result<Response, ConsoleError>;

#[derive(Template)]
#[template(path = "console/overview.html")]
struct Overview {
    chrome: Chrome,
    depth: crate::store::QueueDepth,
    per_second: String,
    success: String,
    attention: Vec<WebhookView>,
    webhooks: usize,
    policy_sha: String,
    policy_loaded: String,
}

/// How far back the overview's rate and success ratio look.
const RECENT: std::time::Duration = std::time::Duration::from_secs(300);

/// Whether a webhook needs an operator's eye.
fn needs_attention(w: &WebhookView) -> bool {
    w.state != "active"
        || w.dead > 0
        || w.success_rate_last_hour.is_some_and(|r| r < 0.95)
        || matches!((w.last_failure_at, w.last_success_at), (Some(f), s) if s.is_none_or(|s| f > s))
}

/// `GET /console`.
pub async fn overview(State(state): State<AppState>, op: Operator) -> Page {
    let depth = state
        .store
        .queue_depth()
        .await
        .map_err(crate::http::ApiError::from)?;
    let (ok, failed) = state
        .store
        .recent_outcomes(RECENT)
        .await
        .map_err(crate::http::ApiError::from)?;
    let all = admin::list_webhooks(State(state.clone()), op.caller.clone())
        .await?
        .0
        .data;
    let attempts = ok + failed;
    let status = state.reloader.status();
    render(&Overview {
        chrome: Chrome::of(&op, "overview"),
        depth,
        per_second: format!("{:.1}", attempts as f64 / RECENT.as_secs_f64()),
        success: percent((attempts > 0).then(|| ok as f64 / attempts as f64)),
        webhooks: all.len(),
        attention: all.into_iter().filter(needs_attention).collect(),
        policy_sha: status.sha256.chars().take(12).collect(),
        policy_loaded: when(&status.loaded_at),
    })
}

#[derive(Template)]
#[template(path = "console/webhooks.html")]
struct Webhooks {
    chrome: Chrome,
    webhooks: Vec<WebhookView>,
}

/// `GET /console/webhooks`.
pub async fn webhooks(State(state): State<AppState>, op: Operator) -> Page {
    let webhooks = admin::list_webhooks(State(state.clone()), op.caller.clone())
        .await?
        .0
        .data;
    render(&Webhooks {
        chrome: Chrome::of(&op, "webhooks"),
        webhooks,
    })
}

#[derive(Debug, Deserialize)]
pub struct NoteForm {
    #[serde(default)]
    note: String,
}

async fn change(state: AppState, op: Operator, id: String, to: Target, note: &str) -> Page {
    let view = endpoints::change(&state, &op.caller, &id, to, Some(note)).await?;
    let text = match (view.changed, to) {
        (true, Target::Disabled) => format!("Webhook {id} disabled."),
        (true, Target::Enabled) => format!("Webhook {id} enabled."),
        (false, _) => format!("Webhook {id} was already {}.", view.state),
    };
    op.flash(&state, true, text);
    Ok(see_other("/console/webhooks"))
}

/// `POST /console/webhooks/{id}/disable` (`note` required).
pub async fn disable(
    State(state): State<AppState>,
    op: Operator,
    ApiPath(id): ApiPath,
    headers: HeaderMap,
    body: Body,
) -> Page {
    let f: NoteForm = form(&state, &op, &headers, body).await?;
    if f.note.trim().is_empty() {
        op.flash(&state, false, "Say why you disable the webhook.");
        return Ok(see_other("/console/webhooks"));
    }
    change(state, op, id, Target::Disabled, &f.note).await
}

/// `POST /console/webhooks/{id}/enable`.
pub async fn enable(
    State(state): State<AppState>,
    op: Operator,
    ApiPath(id): ApiPath,
    headers: HeaderMap,
    body: Body,
) -> Page {
    let f: NoteForm = form(&state, &op, &headers, body).await?;
    change(state, op, id, Target::Enabled, &f.note).await
}

/// A redirect after a form (303: the next request is a GET).
pub fn see_other(to: &str) -> Response {
    use axum::response::IntoResponse;
    let mut r = Redirect::to(to).into_response();
    *r.status_mut() = axum::http::StatusCode::SEE_OTHER;
    r
}

#[derive(Template)]
#[template(path = "console/sources.html")]
struct Sources {
    chrome: Chrome,
    sources: Vec<SourceView>,
    selected: String,
    rejects: Vec<RejectView>,
    next: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SourcesQuery {
    source: Option<String>,
    cursor: Option<String>,
}

/// `GET /console/sources[?source=ID]`: every source, and one's rejects.
pub async fn sources(
    State(state): State<AppState>,
    op: Operator,
    ApiQuery(q): ApiQuery<SourcesQuery>,
) -> Page {
    let list = sources::list_sources(State(state.clone()), op.caller.clone())
        .await?
        .0
        .data;
    let selected = q.source.filter(|s| !s.is_empty()).unwrap_or_default();
    let (rejects, next) = if selected.is_empty() {
        (Vec::new(), None)
    } else {
        let query_in = sources::RejectsQuery {
            limit: None,
            cursor: q.cursor,
        };
        let page = sources::list_rejects(
            State(state.clone()),
            op.caller.clone(),
            ApiPath(selected.clone()),
            ApiQuery(query_in),
        )
        .await?
        .0;
        let next = page
            .next_cursor
            .map(|c| query(&[("source", &selected), ("cursor", &c)]));
        (page.data, next)
    };
    render(&Sources {
        chrome: Chrome::of(&op, "sources"),
        sources: list,
        selected,
        rejects,
        next,
    })
}

#[derive(Template)]
#[template(path = "console/policy.html")]
struct Policy {
    chrome: Chrome,
    policy: PolicyView,
}

/// `GET /console/policy`.
pub async fn policy(State(state): State<AppState>, op: Operator) -> Page {
    let view = policy::get_policy(State(state.clone()), op.caller.clone())
        .await?
        .0;
    render(&Policy {
        chrome: Chrome::of(&op, "policy"),
        policy: view,
    })
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

/// `POST /console/policy/reload`: the result as a flash message.
pub async fn reload(
    State(state): State<AppState>,
    op: Operator,
    headers: HeaderMap,
    body: Body,
) -> Page {
    let _: Empty = form(&state, &op, &headers, body).await?;
    match policy::reload_policy(State(state.clone()), op.caller.clone()).await {
        Ok(view) => {
            let v = view.0;
            let text = match v.diff {
                Some(d) if v.outcome == "applied" => format!(
                    "Policy reloaded: {} (added {}, removed {}, changed {}).",
                    v.sha256.chars().take(12).collect::<String>(),
                    d.added.len(),
                    d.removed.len(),
                    d.changed.len()
                ),
                _ => format!("Policy {}: nothing changed.", v.outcome),
            };
            op.flash(&state, true, text);
        }
        Err(crate::http::ApiError::PolicyInvalid { message, errors }) => {
            op.flash(&state, false, format!("{message}\n{}", errors.join("\n")));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(see_other("/console/policy"))
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct Audit {
    chrome: Chrome,
    actor: String,
    action: String,
    records: Vec<AuditView>,
    next: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditFilterQuery {
    actor: Option<String>,
    action: Option<String>,
    cursor: Option<String>,
}

/// `GET /console/audit?actor=&action=&cursor=`.
pub async fn audit(
    State(state): State<AppState>,
    op: Operator,
    ApiQuery(q): ApiQuery<AuditFilterQuery>,
) -> Page {
    let actor = q.actor.unwrap_or_default();
    let action = q.action.unwrap_or_default();
    let query_in = admin::AuditQuery {
        actor: Some(actor.clone()),
        action: Some(action.clone()),
        since: None,
        limit: None,
        cursor: q.cursor,
    };
    let page = admin::list_audit(State(state.clone()), op.caller.clone(), ApiQuery(query_in))
        .await?
        .0;
    let next = page
        .next_cursor
        .map(|c| query(&[("actor", &actor), ("action", &action), ("cursor", &c)]));
    render(&Audit {
        chrome: Chrome::of(&op, "audit"),
        actor,
        action,
        records: page.data,
        next,
    })
}
