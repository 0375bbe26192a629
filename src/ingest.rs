//! Ingest use case (contract §2): a request body → validated events, each
//! routed through the current policy and stored with its deliveries in one
//! transaction. No HTTP types here; the handler maps [`IngestFailure`].

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::domain::reserved::claims_engine_source;
use crate::domain::{ENGINE_SOURCE, EventId, EventVersion, ReservedNamespace, Topic};
use crate::policy::PolicySet;
use crate::policy::schemas::{SchemaMode, Violation};
use crate::store::{EventMeta, IngestError, InsertOutcome, NewEvent, Recipient, StoreError};
use crate::telemetry::{Telemetry, TraceSpan};
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;

mod group;

pub use group::Ingestor;

/// At most this many events in one batch.
pub const MAX_BATCH: usize = 1000;

/// Why a body was refused. `index` is the event's position in a batch.
#[derive(Debug, thiserror::Error)]
pub enum IngestFailure {
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("{message}")]
    Invalid { field: String, message: String },
    #[error("{message}")]
    TooLarge { message: String },
    /// A topic in a namespace only the engine writes (contract §1).
    #[error("{message}")]
    ReservedTopic { field: String, message: String },
    /// `source` claims to be the engine (contract §1).
    #[error("{message}")]
    ReservedSource { field: String, message: String },
    #[error("event {id:?} already exists with a different topic or payload")]
    Conflict { id: String },
    /// The payload fails its topic's schema (`mode: enforce`).
    #[error("{}", schema_message(topic, file, violations))]
    SchemaViolation {
        field: String,
        topic: String,
        file: String,
        violations: Vec<Violation>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where events come from, and what that way in may do differently from the
/// API: a bus source supplies the id and `source` an envelope leaves out,
/// and may be allowed the platform's audit topics (contract §1, §9).
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    /// The event id when the event names none (a message's position).
    pub default_id: Option<&'a str>,
    /// The `source` when the event names none (the source's id).
    pub default_source: Option<&'a str>,
    /// Whether `aion.audit.**` is accepted.
    pub allow_audit: bool,
}

/// The HTTP API: ids generated, no default source, no reserved topics.
pub const API: Origin<'static> = Origin {
    default_id: None,
    default_source: None,
    allow_audit: false,
};

/// The answer for one event.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Accepted {
    pub id: String,
    pub topic: String,
    pub deliveries: usize,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// For the metrics, not the answer: webhooks left out by `min_version`.
    #[serde(skip)]
    pub below_min_version: Vec<String>,
    /// For the metrics: accepted with `schema_errors` (`mode: warn`).
    #[serde(skip)]
    pub schema_warned: bool,
}

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

/// Where an ingest call's trace comes from: the tracer, and the request's
/// W3C `traceparent` header if it sent one.
#[derive(Debug, Clone, Copy)]
pub struct Trace<'a> {
    pub telemetry: &'a Telemetry,
    pub traceparent: Option<&'a str>,
}

/// Parses, validates, routes and stores the events in `body`.
/// Returns the answers in request order and whether the body was a batch.
pub async fn ingest(
    ingestor: &Ingestor,
    policy: &PolicySet,
    body: &[u8],
    max_event_bytes: usize,
    now: DateTime<Utc>,
    trace: Trace<'_>,
) -> Result<(Vec<Accepted>, bool), IngestFailure> {
    let (mut events, batch) = parse(body, policy, max_event_bytes, now)?;
    let spans = trace_events(trace, &mut events);
    let stored = store_events(ingestor, events, now).await;
    end_spans(spans, stored.as_ref().err());
    Ok((stored?, batch))
}

/// Starts each event's `ingest` span, parented on the request's
/// `traceparent`, else the event's `trace_id`, with a `fan-out` child
/// naming its deliveries, and writes the ingest span's context into the
/// event (`meta.traceparent`) so every attempt, whenever it runs, is its
/// child. With tracing off, the producer's traceparent is kept instead, for
/// the outbound `traceparent` header.
pub fn trace_events(trace: Trace<'_>, events: &mut [NewEvent]) -> Vec<TraceSpan> {
    let header = trace
        .traceparent
        .filter(|t| crate::telemetry::parse_parent(t).is_some());
    if !trace.telemetry.enabled() {
        for e in events.iter_mut() {
            e.meta.traceparent = header.map(str::to_owned);
        }
        return Vec::new();
    }
    events
        .iter_mut()
        .map(|e| {
            let parent = header.or(e.trace_id.as_deref());
            let span = trace.telemetry.span(
                "ingest",
                SpanKind::Server,
                parent,
                vec![
                    KeyValue::new("aion.event.id", e.id.clone()),
                    KeyValue::new("aion.event.topic", e.topic.clone()),
                ],
            );
            trace
                .telemetry
                .child(
                    "fan-out",
                    &span,
                    vec![
                        KeyValue::new("aion.deliveries", e.webhooks.len() as i64),
                        KeyValue::new(
                            "aion.webhooks",
                            e.webhooks
                                .iter()
                                .map(|r| r.webhook_id.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                        ),
                    ],
                )
                .end();
            e.meta.traceparent = span.traceparent().or_else(|| header.map(str::to_owned));
            span
        })
        .collect()
}

/// Ends the ingest spans of [`trace_events`], failed if the store refused.
pub fn end_spans(spans: Vec<TraceSpan>, error: Option<&IngestFailure>) {
    for mut span in spans {
        if let Some(e) = error {
            span.fail(e.to_string());
        }
        span.end();
    }
}

/// Stores validated events (from [`parse`] or a bus source) with their
/// deliveries, all or none, and answers for each in order. The same id twice
/// in `events`: identical → the second is a duplicate; different → conflict.
pub async fn store_events(
    ingestor: &Ingestor,
    events: Vec<NewEvent>,
    now: DateTime<Utc>,
) -> Result<Vec<Accepted>, IngestFailure> {
    // The same id twice in one call: identical → the second is a duplicate; different → conflict.
    let mut first_of: HashMap<&str, usize> = HashMap::new();
    let mut slot = Vec::with_capacity(events.len());
    let mut repeats = Vec::new();
    let mut unique_count = 0;
    for (i, e) in events.iter().enumerate() {
        match first_of.get(e.id.as_str()) {
            Some(&j) if events[j].topic != e.topic => {
                return Err(IngestFailure::Conflict { id: e.id.clone() });
            }
            Some(&j) => {
                if events[j].payload != e.payload {
                    repeats.push((i, j));
                }
                slot.push(None);
            }
            None => {
                first_of.insert(&e.id, i);
                slot.push(Some(unique_count));
                unique_count += 1;
            }
        }
    }
    // Repeats spelled differently are compared off the async workers.
    let pairs = repeats
        .iter()
        .map(|&(i, j)| (events[i].payload.clone(), events[j].payload.clone()))
        .collect();
    let verdicts = crate::store::same_payloads(pairs).await;
    if let Some(&(i, _)) = repeats
        .iter()
        .zip(&verdicts)
        .find(|(_, same)| !**same)
        .map(|(r, _)| r)
    {
        return Err(IngestFailure::Conflict {
            id: events[i].id.clone(),
        });
    }
    // What the answers need, taken before the events move into the store.
    let mut answers: Vec<Accepted> = events
        .iter()
        .map(|e| Accepted {
            id: e.id.clone(),
            topic: e.topic.clone(),
            deliveries: e.webhooks.len(),
            duplicate: true,
            below_min_version: e.below_min_version.clone(),
            schema_warned: e.meta.schema_errors.is_some(),
        })
        .collect();
    let mut unique: Vec<NewEvent> = events
        .into_iter()
        .zip(&slot)
        .filter_map(|(e, s)| s.map(|_| e))
        .collect();
    let outcomes = if unique.len() == 1 {
        let single = unique.pop().expect("one event");
        let id = single.id.clone();
        match ingestor.insert_one(single, now).await? {
            Some(outcome) => vec![outcome],
            None => return Err(IngestFailure::Conflict { id }),
        }
    } else {
        ingestor
            .insert_batch(unique, now)
            .await
            .map_err(|e| match e {
                IngestError::Conflict { id, .. } => IngestFailure::Conflict { id },
                IngestError::Store(s) => IngestFailure::Store(s),
            })?
    };
    for (answer, slot) in answers.iter_mut().zip(slot) {
        match slot.map(|k| outcomes[k]) {
            Some(InsertOutcome::Created { deliveries }) => {
                answer.deliveries = deliveries;
                answer.duplicate = false;
            }
            Some(InsertOutcome::Duplicate { deliveries }) => answer.deliveries = deliveries,
            // A repeat within this call: as many deliveries as its first copy got.
            None => {}
        }
    }
    Ok(answers)
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
    let schema_errors = check_schema(policy, &topic, version.as_ref(), payload, prefix)?;
    let (webhooks, below_min_version) =
        recipients(policy, &topic, w.tenant_id.as_deref(), version.as_ref());
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
            schema_errors,
            traceparent: None,
        },
        webhooks,
        below_min_version,
    })
}

/// Checks `payload` against its topic's schema, if the policy has one:
/// `Err` in `enforce` mode, the violations as JSON text in `warn` mode.
fn check_schema(
    policy: &PolicySet,
    topic: &Topic,
    version: Option<&EventVersion>,
    payload: &RawValue,
    prefix: &str,
) -> Result<Option<String>, IngestFailure> {
    let Some(entry) = policy.schemas().for_topic(topic) else {
        return Ok(None);
    };
    // serde_json's own nesting limit (128) bounds the validator's recursion.
    let value: serde_json::Value =
        serde_json::from_str(payload.get()).map_err(|e| IngestFailure::Invalid {
            field: format!("{prefix}payload"),
            message: format!(
                "the payload cannot be checked against the schema of topic {topic}: {e}"
            ),
        })?;
    match entry.check(version, &value) {
        Ok(()) => Ok(None),
        Err(failed) if failed.mode == SchemaMode::Enforce => Err(IngestFailure::SchemaViolation {
            field: format!("{prefix}payload"),
            topic: topic.to_string(),
            file: failed.file,
            violations: failed.violations,
        }),
        Err(failed) => Ok(Some(
            serde_json::to_string(&failed.violations).unwrap_or_else(|_| "[]".into()),
        )),
    }
}

fn schema_message(topic: &str, file: &str, violations: &[Violation]) -> String {
    let mut message = format!("the payload does not match the schema of topic {topic}");
    if !file.is_empty() {
        message.push_str(&format!(" ({file})"));
    }
    for (i, v) in violations.iter().enumerate() {
        let at = if v.pointer.is_empty() {
            "(root)"
        } else {
            &v.pointer
        };
        message.push_str(&format!(
            "{} at {at}: {} [{}]",
            if i == 0 { ":" } else { ";" },
            v.message,
            v.keyword
        ));
    }
    message
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
    let (webhooks, below_min_version) = recipients(policy, topic, None, None);
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
        webhooks,
        below_min_version,
    }
}

/// The webhooks an event of `topic` (and `tenant`) goes to, and those its
/// `version` is below the `min_version` of.
fn recipients(
    policy: &PolicySet,
    topic: &Topic,
    tenant: Option<&str>,
    version: Option<&EventVersion>,
) -> (Vec<Recipient>, Vec<String>) {
    let mut below = Vec::new();
    let to = policy
        .route(topic, tenant)
        .iter()
        .filter(|r| {
            let ok = r.webhook.accepts_version(version);
            if !ok {
                below.push(r.webhook.id.to_string());
            }
            ok
        })
        .map(|r| Recipient {
            webhook_id: r.webhook.id.to_string(),
            ordered: r.webhook.ordered,
            lease: None,
        })
        .collect();
    (to, below)
}

/// The fields of the delivery body besides the payload.
struct Envelope<'a> {
    id: &'a str,
    topic: &'a str,
    occurred_at: DateTime<Utc>,
    version: Option<&'a EventVersion>,
    tenant_id: &'a Option<String>,
    source: &'a Option<String>,
    key: &'a Option<String>,
    trace_id: &'a Option<String>,
}

/// The delivery body (contract §3); absent optional fields are omitted and
/// the payload is embedded byte for byte as the producer sent it.
fn render_body(e: Envelope<'_>, payload: &RawValue) -> Vec<u8> {
    let s = |v: &str| serde_json::Value::from(v).to_string();
    let mut out = String::with_capacity(payload.get().len() + 256);
    out.push_str(&format!(
        "{{\"id\":{},\"topic\":{},\"occurred_at\":{}",
        s(e.id),
        s(e.topic),
        s(&e.occurred_at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    ));
    if let Some(v) = e.version {
        out.push_str(&format!(",\"version\":{}", v.json()));
    }
    for (name, value) in [
        ("tenant_id", e.tenant_id),
        ("source", e.source),
        ("key", e.key),
        ("trace_id", e.trace_id),
    ] {
        if let Some(v) = value {
            out.push_str(&format!(",\"{name}\":{}", s(v)));
        }
    }
    out.push_str(",\"payload\":");
    out.push_str(payload.get());
    out.push('}');
    out.into_bytes()
}

/// The Standard Webhooks body (`payload_format: standard`) of a stored
/// contract §3 body: `{"type","timestamp","data"}`, the payload embedded
/// byte for byte. A pure function of the stored bytes, so every attempt and
/// replay sends the same bytes.
pub fn standard_body(body: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Stored<'a> {
        topic: String,
        occurred_at: String,
        #[serde(borrow)]
        payload: &'a RawValue,
    }
    let stored: Stored<'_> = serde_json::from_slice(body)?;
    let s = |v: &str| serde_json::Value::from(v).to_string();
    let mut out = String::with_capacity(body.len());
    out.push_str(&format!(
        "{{\"type\":{},\"timestamp\":{},\"data\":",
        s(&stored.topic),
        s(&stored.occurred_at)
    ));
    out.push_str(stored.payload.get());
    out.push('}');
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_embeds_the_payload_bytes_exactly_and_omits_absent_fields() {
        let payload: &RawValue = serde_json::from_str(r#"{ "b" : 1.50, "a":[ ] }"#).expect("raw");
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.5Z")
            .expect("time")
            .with_timezone(&Utc);
        let tenant = Some("t1".to_owned());
        let envelope = |version| Envelope {
            id: "e1",
            topic: "a.b",
            occurred_at: at,
            version,
            tenant_id: &tenant,
            source: &None,
            key: &None,
            trace_id: &None,
        };
        let body = render_body(envelope(None), payload);
        assert_eq!(
            String::from_utf8(body).expect("utf8"),
            r#"{"id":"e1","topic":"a.b","occurred_at":"2026-01-02T03:04:05.500Z","tenant_id":"t1","payload":{ "b" : 1.50, "a":[ ] }}"#
        );
        let standard = standard_body(&render_body(envelope(None), payload)).expect("standard");
        assert_eq!(
            String::from_utf8(standard).expect("utf8"),
            r#"{"type":"a.b","timestamp":"2026-01-02T03:04:05.500Z","data":{ "b" : 1.50, "a":[ ] }}"#
        );
        let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
        let deep: &RawValue = serde_json::from_str(&deep).expect("a deep payload is a raw value");
        let standard = standard_body(&render_body(envelope(None), deep)).expect("deep payload");
        assert_eq!(
            standard.len(),
            100_000 + r#"{"type":"a.b","timestamp":"2026-01-02T03:04:05.500Z","data":}"#.len()
        );
        let v2 = EventVersion::parse("2.1").expect("version");
        let body = render_body(envelope(Some(&v2)), payload);
        assert!(
            String::from_utf8(body).expect("utf8").contains(
                r#""occurred_at":"2026-01-02T03:04:05.500Z","version":"2.1","tenant_id""#
            )
        );
    }
}
