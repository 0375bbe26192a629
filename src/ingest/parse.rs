//! Turning input into events: a request body or a bus message is parsed
//! and validated into [`NewEvent`]s routed through the policy in force;
//! the engine's own events too. Pure: no I/O (the fuzz target drives it).

use crate::domain::derived_id::{DERIVED_ID_PREFIXES, is_derived_id};
use crate::domain::reserved::claims_engine_source;
use crate::domain::{ENGINE_SOURCE, EventId, EventVersion, ReservedNamespace, Topic};
use crate::policy::PolicySet;
use crate::store::{EventMeta, EventNotes, NewEvent};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::body::{Envelope, render_body};
use super::fanout::recipients;
use super::schema::check_schema;
use super::{API, IngestFailure, MAX_BATCH, Origin};
use crate::policy::filter::Subject;

/// One event as producers send it; aliases keep existing producers working.
#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(alias = "event_type", alias = "type", alias = "event_name")]
    topic: Option<String>,
    #[serde(alias = "event_id")]
    id: Option<String>,
    #[serde(alias = "data", borrow, default, deserialize_with = "present")]
    payload: Option<&'a RawValue>,
    #[serde(alias = "timestamp")]
    occurred_at: Option<String>,
    #[serde(alias = "version", borrow, default)]
    event_version: Option<&'a RawValue>,
    tenant_id: Option<String>,
    source: Option<String>,
    key: Option<String>,
    trace_id: Option<String>,
}

/// `payload: null` is a payload (JSON null), not a missing one.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Parses and validates a body into events routed through `policy`, and
/// whether it was a batch. Pure: no I/O (the fuzz target drives it).
pub fn parse(
    body: &[u8],
    policy: &PolicySet,
    max_event_bytes: usize,
    now: DateTime<Utc>,
) -> Result<(Vec<NewEvent>, bool), IngestFailure> {
    let malformed = |e: serde_json::Error| IngestFailure::MalformedJson(e.to_string());
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let (raws, batch): (Vec<&RawValue>, bool) = match first {
        Some(b'[') => (serde_json::from_slice(body).map_err(malformed)?, true),
        Some(b'{') => (
            vec![serde_json::from_slice(body).map_err(malformed)?],
            false,
        ),
        Some(_) => {
            return Err(IngestFailure::Invalid {
                field: String::new(),
                message: "the body must be one event object or an array of them".into(),
            });
        }
        None => return Err(IngestFailure::MalformedJson("the body is empty".into())),
    };
    if batch && !(1..=MAX_BATCH).contains(&raws.len()) {
        return Err(IngestFailure::Invalid {
            field: String::new(),
            message: format!("a batch holds 1 to {MAX_BATCH} events, got {}", raws.len()),
        });
    }
    raws.iter()
        .enumerate()
        .map(|(i, raw)| {
            let prefix = if batch {
                format!("[{i}].")
            } else {
                String::new()
            };
            event(raw, &prefix, policy, max_event_bytes, now, API)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|events| (events, batch))
}

/// One event object (an API event or a bus envelope), validated and routed.
pub fn event(
    raw: &RawValue,
    prefix: &str,
    policy: &PolicySet,
    max_event_bytes: usize,
    now: DateTime<Utc>,
    origin: Origin<'_>,
) -> Result<NewEvent, IngestFailure> {
    let invalid = |field: &str, message: String| IngestFailure::Invalid {
        field: format!("{prefix}{field}"),
        message,
    };
    if raw.get().len() > max_event_bytes {
        return Err(IngestFailure::TooLarge {
            message: format!(
                "event {prefix}is {} bytes; the limit is {max_event_bytes}",
                raw.get().len()
            ),
        });
    }
    if !raw.get().starts_with('{') {
        return Err(invalid("", "each event must be a JSON object".into()));
    }
    let w: WireEvent<'_> =
        serde_json::from_str(raw.get()).map_err(|e| invalid("", format!("invalid event: {e}")))?;
    build(w, prefix, policy, now, origin)
}

/// A bus message's whole value as the payload (`format: raw`, contract §9):
/// the topic and key come from the bus, the id from `origin`.
pub fn raw_event(
    value: &RawValue,
    topic: &str,
    key: Option<String>,
    policy: &PolicySet,
    max_event_bytes: usize,
    now: DateTime<Utc>,
    origin: Origin<'_>,
) -> Result<NewEvent, IngestFailure> {
    if value.get().len() > max_event_bytes {
        return Err(IngestFailure::TooLarge {
            message: format!(
                "the message is {} bytes; the event limit is {max_event_bytes}",
                value.get().len()
            ),
        });
    }
    let w = WireEvent {
        topic: Some(topic.to_owned()),
        id: None,
        payload: Some(value),
        occurred_at: None,
        event_version: None,
        tenant_id: None,
        source: None,
        key,
        trace_id: None,
    };
    build(w, "", policy, now, origin)
}

/// Validates the fields of one event and routes it.
fn build(
    w: WireEvent<'_>,
    prefix: &str,
    policy: &PolicySet,
    now: DateTime<Utc>,
    origin: Origin<'_>,
) -> Result<NewEvent, IngestFailure> {
    let invalid = |field: &str, message: String| IngestFailure::Invalid {
        field: format!("{prefix}{field}"),
        message,
    };
    let topic_text = w
        .topic
        .ok_or_else(|| invalid("topic", "`topic` is required".into()))?;
    let topic = Topic::parse(&topic_text)
        .map_err(|e| invalid("topic", format!("invalid topic {topic_text:?}: {e}")))?;
    if let Some(ns) = ReservedNamespace::of(&topic)
        && !(origin.allow_audit && ns == ReservedNamespace::Audit)
    {
        return Err(IngestFailure::ReservedTopic {
            field: format!("{prefix}topic"),
            message: format!(
                "topic {topic} is in the reserved namespace `{}`: only the engine writes it",
                ns.pattern()
            ),
        });
    }
    if w.source.as_deref().is_some_and(claims_engine_source) {
        return Err(IngestFailure::ReservedSource {
            field: format!("{prefix}source"),
            message: format!("`source: {ENGINE_SOURCE}` is reserved for the engine's own events"),
        });
    }
    let id = match w.id.as_deref().or(origin.default_id) {
        Some(id) if is_derived_id(id) && origin.derived_id != Some(id) => {
            return Err(invalid(
                "id",
                format!(
                    "ids starting with {} are derived by the event-bus sources from a message's position; choose another id",
                    DERIVED_ID_PREFIXES.join(" or ")
                ),
            ));
        }
        Some(id) => EventId::parse(id).map_err(|e| invalid("id", e.to_string()))?,
        None => EventId::generate(),
    };
    let source = w
        .source
        .or_else(|| origin.default_source.map(str::to_owned));
    let payload = w
        .payload
        .ok_or_else(|| invalid("payload", "`payload` is required (any JSON value)".into()))?;
    // Duplicate member names and exponents beyond exact comparison are
    // refused here; everything else is stored and sent byte for byte.
    crate::domain::payload::check(payload.get())
        .map_err(|e| invalid("payload", format!("invalid payload: {e}")))?;
    let occurred_at = match w.occurred_at {
        Some(t) => DateTime::parse_from_rfc3339(&t)
            .map_err(|e| invalid("occurred_at", format!("{t:?} is not an RFC 3339 time: {e}")))?
            .with_timezone(&Utc),
        None => now,
    };
    for (name, value) in [
        ("tenant_id", &w.tenant_id),
        ("source", &source),
        ("key", &w.key),
        ("trace_id", &w.trace_id),
    ] {
        if value.as_ref().is_some_and(|v| v.len() > 255) {
            return Err(invalid(name, format!("`{name}` is at most 255 bytes")));
        }
        // NUL cannot be stored (and would fail every event sharing the
        // write); other control characters have no business in an id.
        if value
            .as_ref()
            .is_some_and(|v| v.chars().any(char::is_control))
        {
            return Err(invalid(
                name,
                format!("`{name}` must not contain control characters (NUL, newline, …)"),
            ));
        }
    }
    let version = match w.event_version {
        Some(raw) if raw.get().trim() != "null" => {
            Some(EventVersion::from_json(raw.get()).map_err(|e| invalid("event_version", e))?)
        }
        _ => None,
    };
    let warned = check_schema(policy, &topic, version.as_ref(), payload, prefix)?;
    let fanout = recipients(
        policy,
        &topic,
        Subject {
            payload: payload.get(),
            tenant_id: w.tenant_id.as_deref(),
            source: source.as_deref(),
            key: w.key.as_deref(),
            version: version.as_ref().map(|v| v.json()),
            topic: topic.as_str(),
        },
        version.as_ref(),
    );
    let body = render_body(
        Envelope {
            id: id.as_str(),
            topic: topic.as_str(),
            occurred_at,
            version: version.as_ref(),
            tenant_id: &w.tenant_id,
            source: &source,
            key: &w.key,
            trace_id: &w.trace_id,
        },
        payload,
    );
    Ok(NewEvent {
        id: id.to_string(),
        topic: topic.to_string(),
        payload: payload.get().to_owned(),
        body,
        occurred_at,
        tenant_id: w.tenant_id,
        source,
        key: w.key,
        trace_id: w.trace_id,
        meta: EventMeta {
            version: version.map(|v| v.json().to_owned()),
            schema_errors: warned.as_ref().map(|w| w.errors.clone()),
            traceparent: None,
        },
        webhooks: fanout.to,
        notes: EventNotes {
            below_min_version: fanout.below_min_version,
            filtered_out: fanout.filtered_out,
            schema_warned: warned.map(|w| w.pattern),
        },
    })
}

/// An event the engine itself emits (command dispatch, audit), routed
/// through the policy like any producer's event.
pub fn internal_event(
    policy: &PolicySet,
    topic: &Topic,
    key: Option<String>,
    payload: &serde_json::Value,
    now: DateTime<Utc>,
) -> NewEvent {
    let mut event = engine_event(topic, key, payload, now);
    let subject = Subject {
        payload: &event.payload,
        tenant_id: None,
        source: event.source.as_deref(),
        key: event.key.as_deref(),
        version: None,
        topic: topic.as_str(),
    };
    let fanout = recipients(policy, topic, subject, None);
    event.webhooks = fanout.to;
    event.notes = EventNotes {
        below_min_version: fanout.below_min_version,
        filtered_out: fanout.filtered_out,
        schema_warned: None,
    };
    event
}

/// An event of the engine's own (`source: aion-webhooks`), not yet routed:
/// no recipients.
pub(super) fn engine_event(
    topic: &Topic,
    key: Option<String>,
    payload: &serde_json::Value,
    now: DateTime<Utc>,
) -> NewEvent {
    let id = EventId::generate();
    let payload_text = payload.to_string();
    let raw: Box<RawValue> = RawValue::from_string(payload_text.clone())
        .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON"));
    let source = Some(ENGINE_SOURCE.to_owned());
    let body = render_body(
        Envelope {
            id: id.as_str(),
            topic: topic.as_str(),
            occurred_at: now,
            version: None,
            tenant_id: &None,
            source: &source,
            key: &key,
            trace_id: &None,
        },
        &raw,
    );
    NewEvent {
        id: id.to_string(),
        topic: topic.to_string(),
        payload: payload_text,
        body,
        occurred_at: now,
        tenant_id: None,
        source,
        key,
        trace_id: None,
        meta: EventMeta::default(),
        webhooks: Vec::new(),
        notes: EventNotes::default(),
    }
}
