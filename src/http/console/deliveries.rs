//! Console pages over deliveries: search (keyset-paged, newest first), one
//! delivery with its attempts, replay; dead letters with bulk replay by
//! filter; an event with its payload.

use askama::Template;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::{DateTime, NaiveDateTime};
use serde::Deserialize;

use super::ConsoleError;
use super::operator::{Operator, form};
use super::pages::see_other;
use super::view::{Chrome, indent_json, path_escape, query, render};
use crate::http::events::{self, EventView};
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::views::{BulkReplayIn, DeliveryView};
use crate::http::{ApiError, AppState, ErrorCode, admin, replay};

type Page = Result<axum::response::Response, ConsoleError>;

/// The search form's fields (also the dead letters' filter).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Search {
    #[serde(default)]
    pub webhook: String,
    #[serde(default)]
    pub topic: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub event_id: String,
    /// RFC 3339, or a `datetime-local` value read as UTC.
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub cursor: String,
}

/// A time field of a form: RFC 3339, or `YYYY-MM-DDTHH:MM[:SS]` in UTC
/// (what a browser's `datetime-local` input sends). Empty is none.
fn time(field: &str, value: &str) -> Result<Option<String>, ConsoleError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if DateTime::parse_from_rfc3339(v).is_ok() {
        return Ok(Some(v.to_owned()));
    }
    [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(v, f).ok())
    .map(|t| Some(t.and_utc().to_rfc3339()))
    .ok_or_else(|| {
        ConsoleError::Api(ApiError::BadRequest {
            code: ErrorCode::InvalidQuery,
            message: format!("{field}: {v:?} is not a time (use 2026-12-06T20:15 or RFC 3339)"),
            field: Some(field.to_owned()),
        })
    })
}

fn some(s: &str) -> Option<String> {
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}

#[derive(Template)]
#[template(path = "console/deliveries.html")]
struct Deliveries {
    chrome: Chrome,
    search: Search,
    rows: Vec<DeliveryView>,
    next: Option<String>,
    dead_letters: bool,
}

/// One page of deliveries matching `s` (`status` forced to dead for the
/// dead letters), and the query of the next page.
async fn page(
    state: &AppState,
    op: &Operator,
    s: &Search,
    status: &str,
) -> Result<(Vec<DeliveryView>, Option<String>), ConsoleError> {
    let q = admin::ListQuery {
        status: some(status),
        webhook: some(&s.webhook),
        topic: some(&s.topic),
        event_id: some(&s.event_id),
        since: time("since", &s.since)?,
        until: time("until", &s.until)?,
        limit: None,
        cursor: some(&s.cursor),
    };
    let page = admin::list_deliveries(State(state.clone()), op.caller.clone(), ApiQuery(q))
        .await?
        .0;
    let next = page.next_cursor.map(|c| {
        query(&[
            ("webhook", &s.webhook),
            ("topic", &s.topic),
            ("status", status),
            ("event_id", &s.event_id),
            ("since", &s.since),
            ("until", &s.until),
            ("cursor", &c),
        ])
    });
    Ok((page.data, next))
}

/// `GET /console/deliveries?webhook=&topic=&status=&event_id=&since=&until=&cursor=`.
pub async fn list(
    State(state): State<AppState>,
    op: Operator,
    ApiQuery(s): ApiQuery<Search>,
) -> Page {
    let (rows, next) = page(&state, &op, &s, &s.status.clone()).await?;
    render(&Deliveries {
        chrome: Chrome::of(&op, "deliveries"),
        search: s,
        rows,
        next,
        dead_letters: false,
    })
}

/// `GET /console/dead?webhook=&topic=&since=&until=&cursor=`.
pub async fn dead(
    State(state): State<AppState>,
    op: Operator,
    ApiQuery(mut s): ApiQuery<Search>,
) -> Page {
    s.status = "dead".into();
    let (rows, next) = page(&state, &op, &s, "dead").await?;
    render(&Deliveries {
        chrome: Chrome::of(&op, "dead"),
        search: s,
        rows,
        next,
        dead_letters: true,
    })
}

#[derive(Template)]
#[template(path = "console/delivery.html")]
struct Delivery {
    chrome: Chrome,
    d: DeliveryView,
    attempts: Vec<crate::http::views::AttemptView>,
    event_link: String,
    replayable: bool,
}

/// `GET /console/deliveries/{id}`: the delivery and every attempt.
pub async fn show(State(state): State<AppState>, op: Operator, path: ApiPath) -> Page {
    let mut d = admin::get_delivery(State(state.clone()), op.caller.clone(), path)
        .await?
        .0;
    let attempts = d.attempts_detail.take().unwrap_or_default();
    let replayable = matches!(d.status.as_str(), "dead" | "succeeded");
    render(&Delivery {
        chrome: Chrome::of(&op, "deliveries"),
        event_link: format!("/console/events/{}", path_escape(&d.event_id)),
        d,
        attempts,
        replayable,
    })
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

/// `POST /console/deliveries/{id}/replay`.
pub async fn replay(
    State(state): State<AppState>,
    op: Operator,
    ApiPath(id): ApiPath,
    headers: HeaderMap,
    body: Body,
) -> Page {
    let _: Empty = form(&state, &op, &headers, body).await?;
    let back = format!("/console/deliveries/{}", path_escape(&id));
    match admin::replay_delivery(State(state.clone()), op.caller.clone(), ApiPath(id.clone())).await
    {
        Ok(_) => op.flash(
            &state,
            true,
            format!("Delivery {id} replayed: pending again."),
        ),
        Err(e @ ApiError::Conflict { .. }) => op.flash(&state, false, e.to_string()),
        Err(e) => return Err(e.into()),
    }
    Ok(see_other(&back))
}

/// The bulk replay form.
#[derive(Debug, Deserialize)]
pub struct BulkForm {
    #[serde(default)]
    webhook: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    limit: String,
}

/// `POST /console/dead/replay`: dead deliveries back to pending by filter.
pub async fn bulk_replay(
    State(state): State<AppState>,
    op: Operator,
    headers: HeaderMap,
    body: Body,
) -> Page {
    let f: BulkForm = form(&state, &op, &headers, body).await?;
    let limit = match some(&f.limit) {
        None => None,
        Some(l) => Some(l.parse::<u32>().map_err(|_| {
            ConsoleError::Api(ApiError::invalid(
                ErrorCode::InvalidReplay,
                "limit",
                format!("limit {l:?} is not a number"),
            ))
        })?),
    };
    let req = BulkReplayIn {
        webhook: some(&f.webhook),
        status: Some("dead".into()),
        since: time("since", &f.since)?,
        until: time("until", &f.until)?,
        limit,
    };
    let back = format!(
        "/console/dead?{}",
        query(&[
            ("webhook", &f.webhook),
            ("since", &f.since),
            ("until", &f.until)
        ])
    );
    match replay::replay_by_filter(&state, &op.caller, req).await {
        Ok(v) => op.flash(
            &state,
            true,
            format!("{} dead deliveries replayed.", v.replayed),
        ),
        Err(e @ (ApiError::Unprocessable { .. } | ApiError::Conflict { .. })) => {
            op.flash(&state, false, e.to_string());
        }
        Err(e) => return Err(e.into()),
    }
    Ok(see_other(&back))
}

#[derive(Template)]
#[template(path = "console/event.html")]
struct Event {
    chrome: Chrome,
    e: EventView,
    payload: String,
    truncated: bool,
    version: Option<String>,
    schema_errors: Option<String>,
    deliveries: String,
}

/// Shown of a payload at most (the rest through the API).
const SHOWN_BYTES: usize = 256 * 1024;

/// `GET /console/events/{id}`: payload (as text), version, schema marks,
/// trace.
pub async fn event(State(state): State<AppState>, op: Operator, ApiPath(id): ApiPath) -> Page {
    let e = events::get_event(State(state.clone()), op.caller.clone(), ApiPath(id.clone()))
        .await?
        .0;
    // Indented, never re-serialized: key order, duplicate keys and numbers
    // beyond 64 bits show as the producer wrote them.
    let pretty = indent_json(e.payload.get());
    let truncated = pretty.len() > SHOWN_BYTES;
    let mut payload = pretty;
    if truncated {
        let mut cut = SHOWN_BYTES;
        while !payload.is_char_boundary(cut) {
            cut -= 1;
        }
        payload.truncate(cut);
    }
    render(&Event {
        chrome: Chrome::of(&op, "deliveries"),
        version: e.version.as_ref().map(|v| v.get().to_owned()),
        schema_errors: e.schema_errors.as_ref().map(|v| v.get().to_owned()),
        deliveries: format!("/console/deliveries?{}", query(&[("event_id", &id)])),
        payload,
        truncated,
        e,
    })
}
