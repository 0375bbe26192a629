//! Ingest use case (contract §2): a request body → validated events, each
//! routed through the current policy and stored with its deliveries in one
//! transaction. No HTTP types here; the handler maps [`IngestFailure`].
//!
//! Here: the use case and its answers; turning input into events is
//! `ingest/parse.rs`, the delivery body `ingest/body.rs`, the hand-off to the
//! store (group commit) `ingest/group.rs`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::policy::PolicySet;
use crate::policy::schemas::Violation;
use crate::store::{EventNotes, IngestError, InsertOutcome, NewEvent, StoreError};

mod body;
mod fanout;
mod group;
mod meters;
mod parse;
mod schema;
mod trace;

pub use body::standard_body;
pub use fanout::{TEST_TOPIC, test_event};
pub use group::{Handoff, Ingestor, Reserved};
pub use meters::{EventSource, Meters};
pub use parse::{event, internal_event, parse, raw_event};
pub use trace::{Trace, end_spans, trace_events};

use schema::schema_message;

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
fn record_contracts(meters: &Meters, answers: &[Accepted]) {
    for a in answers.iter().filter(|a| !a.duplicate) {
        if let Some(pattern) = &a.notes.schema_warned {
            meters.schema_violation(pattern, crate::policy::schemas::SchemaMode::Warn);
        }
        for webhook in &a.notes.below_min_version {
            meters.below_min_version(webhook);
        }
        for webhook in &a.notes.filtered_out {
            meters.filtered_out(webhook);
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
    ingestor.meters.events_accepted(origin, created);
    record_contracts(&ingestor.meters, &answers);
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
