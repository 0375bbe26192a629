//! Ingest use case (contract §2): a request body → validated events, each
//! routed through the current policy and stored with its deliveries in one
//! transaction. No HTTP types here; the handler maps [`IngestFailure`].
//!
//! Longer than 400 lines until the delivery-core reshape (issue 29) splits
//! parsing, routing and the hand-off to the store into modules of their own.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::domain::derived_id::{DERIVED_ID_PREFIXES, is_derived_id};
use crate::domain::reserved::claims_engine_source;
use crate::domain::{ENGINE_SOURCE, EventId, EventVersion, ReservedNamespace, Topic};
use crate::metrics::EventSource;
use crate::policy::PolicySet;
use crate::policy::schemas::Violation;
use crate::store::{
    EventMeta, EventNotes, IngestError, InsertOutcome, NewEvent, Recipient, StoreError,
};

mod body;
mod group;
mod schema;
mod trace;

pub use body::standard_body;
pub use group::{Handoff, Ingestor, Reserved};
pub use trace::{Trace, end_spans, trace_events};

use body::{Envelope, render_body};
use schema::{check_schema, schema_message};

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
    #[error("{}", schema_message(topic, violations))]
    SchemaViolation {
        field: String,
        topic: String,
        /// The schema entry's topic pattern (the metrics label).
        pattern: String,
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
    /// The event id when the event names none (a message's `Nats-Msg-Id`
    /// or its position).
    pub default_id: Option<&'a str>,
    /// The id this way in derived from the message's position, the only id
    /// of a derived form (`kafka:…`, `nats:…`) it may use (contract §9).
    pub derived_id: Option<&'a str>,
    /// The `source` when the event names none (the source's id).
    pub default_source: Option<&'a str>,
    /// Whether `aion.audit.**` is accepted.
    pub allow_audit: bool,
}

/// The HTTP API: ids generated, no default source, no reserved topics.
pub const API: Origin<'static> = Origin {
    default_id: None,
    derived_id: None,
    default_source: None,
    allow_audit: false,
};

/// Counts what newly stored events met of the event contracts: `warn`-mode
/// schema violations, and webhooks left out by `min_version`.
fn record_contracts(metrics: &crate::metrics::Metrics, answers: &[Accepted]) {
    for a in answers.iter().filter(|a| !a.duplicate) {
        if let Some(pattern) = &a.notes.schema_warned {
            metrics.schema_violation(pattern, crate::policy::schemas::SchemaMode::Warn);
        }
        for webhook in &a.notes.below_min_version {
            metrics.below_min_version(webhook);
        }
    }
}

/// The answer for one event.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Accepted {
    pub id: String,
    pub topic: String,
    pub deliveries: usize,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// For the metrics, not the answer.
    #[serde(skip)]
    pub notes: EventNotes,
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
    let stored = store_events(ingestor, events, now, EventSource::Api).await;
    end_spans(spans, stored.as_ref().err());
    Ok((stored?, batch))
}

/// Stores validated events (from [`parse`] or a bus source) with their
/// deliveries, all or none, and answers for each in order. The same id twice
/// in `events`: identical → the second is a duplicate; different → conflict.
/// What was stored is counted here, once, by `origin`.
pub async fn store_events(
    ingestor: &Ingestor,
    events: Vec<NewEvent>,
    now: DateTime<Utc>,
    origin: EventSource,
) -> Result<Vec<Accepted>, IngestFailure> {
    let answers = store_unique(ingestor, events, now).await?;
    let created = answers.iter().filter(|a| !a.duplicate).count() as u64;
    ingestor.metrics.events_accepted(origin, created);
    record_contracts(&ingestor.metrics, &answers);
    Ok(answers)
}

async fn store_unique(
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
            notes: e.notes.clone(),
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
            schema_errors: warned.as_ref().map(|w| w.errors.clone()),
            traceparent: None,
        },
        webhooks,
        notes: EventNotes {
            below_min_version,
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
        notes: EventNotes {
            below_min_version,
            schema_warned: None,
        },
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
