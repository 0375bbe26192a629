//! Events as the store takes and gives them, and what both backends'
//! ingest shares: which deliveries go out at once, and each event's outcome.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::lines::Line;
use super::{Claimed, StoreError};

/// An event ready to store: validated, its body rendered, its webhooks routed.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub topic: String,
    /// The producer's payload text, exactly as received.
    pub payload: String,
    /// The delivery body, exactly as every attempt will send it.
    pub body: Vec<u8>,
    pub occurred_at: DateTime<Utc>,
    pub tenant_id: Option<String>,
    pub source: Option<String>,
    pub key: Option<String>,
    pub trace_id: Option<String>,
    pub meta: EventMeta,
    /// The webhooks that get one delivery each.
    pub webhooks: Vec<Recipient>,
    /// Not stored: what the metrics count of this event.
    pub notes: EventNotes,
}

/// What ingest noticed about an event for the metrics; never stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventNotes {
    /// The webhooks whose topics matched but whose `min_version` the event
    /// is below.
    pub below_min_version: Vec<String>,
    /// The webhooks whose topics matched but whose `filter:` refused it.
    pub filtered_out: Vec<String>,
    /// The topic pattern of the schema entry it violated in `warn` mode.
    pub schema_warned: Option<String>,
}

/// What an event carries besides the contract §2 fields (issue 16), stored
/// with it and never changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventMeta {
    /// The envelope's `event_version`, as written (an integer or semver).
    pub version: Option<String>,
    /// The schema violations of an event accepted in `warn` mode: a JSON
    /// array of `{"pointer", "keyword", "message"}`.
    pub schema_errors: Option<String>,
    /// The W3C traceparent its delivery attempts are parented on.
    pub traceparent: Option<String>,
}

/// A webhook an event is routed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub webhook_id: String,
    /// The webhook has `ordering: key`: with a `key`, the delivery joins
    /// that key's line (see `store::lines`).
    pub ordered: bool,
    /// The accepting engine sends this delivery at once: it is stored
    /// `in_flight` under this lease, its first attempt counted, so the row
    /// is the durable record of the send about to start (rescued like any
    /// lease if that engine dies). Ignored for a delivery that joins a line.
    pub lease: Option<Lease>,
}

/// A lease taken at ingest: who holds it and for how long from the
/// database's now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: std::sync::Arc<str>,
    pub length: std::time::Duration,
}

impl Recipient {
    pub fn unordered(webhook_id: impl Into<String>) -> Self {
        Self {
            webhook_id: webhook_id.into(),
            ordered: false,
            lease: None,
        }
    }

    /// Whether this recipient's delivery of `event` joins a line.
    pub(in crate::store) fn joins_line(&self, event: &NewEvent) -> bool {
        self.ordered && event.key.is_some()
    }
}

/// The payload text of a stored event, from its `payload` column and, where
/// that is `''`, its body.
///
/// The payload is stored once: inside the delivery body, whose `payload`
/// member holds it byte for byte as the producer sent it (`render_body`).
/// Ingest writes `''` to the `payload` column (never a JSON text, so it
/// cannot be mistaken for one); rows written before 2026-12-07 hold the text
/// itself there and are read as they are. `body` is only needed, and only
/// read by the statements, where the column is `''`.
pub(in crate::store) fn payload_text(
    column: String,
    body: Option<Vec<u8>>,
) -> Result<String, sqlx::Error> {
    #[derive(serde::Deserialize)]
    struct Member<'a> {
        #[serde(borrow)]
        payload: &'a serde_json::value::RawValue,
    }
    if !column.is_empty() {
        return Ok(column);
    }
    let unreadable = |why: String| sqlx::Error::Decode(format!("stored event body: {why}").into());
    let body = body.ok_or_else(|| unreadable("missing".into()))?;
    serde_json::from_slice::<Member<'_>>(&body)
        .map(|m| m.payload.get().to_owned())
        .map_err(|e| unreadable(e.to_string()))
}

impl NewEvent {
    /// The lines this event's deliveries join.
    fn lines(&self) -> impl Iterator<Item = Line> + '_ {
        self.key.iter().flat_map(|key| {
            self.webhooks.iter().filter(|r| r.ordered).map(|r| Line {
                webhook_id: r.webhook_id.clone(),
                key: key.clone(),
            })
        })
    }
}

/// Every line `events` join, each once.
pub(in crate::store) fn lines_of(events: &[NewEvent]) -> Vec<Line> {
    let mut lines: Vec<Line> = events.iter().flat_map(NewEvent::lines).collect();
    lines.sort_unstable();
    lines.dedup();
    lines
}

/// What an ingest call stored: each event's outcome, and the deliveries
/// leased to the caller (see [`Recipient::lease`]) to send now that the
/// call has committed.
#[derive(Debug)]
pub struct Stored<T> {
    pub outcomes: T,
    pub leased: Vec<Claimed>,
    /// Some delivery was stored due and not leased: the facade wakes this
    /// process's claim.
    pub queued: bool,
}

/// What happened to one event of an ingest call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Created {
        deliveries: usize,
    },
    /// Same id, topic and payload as a stored event: nothing new written.
    Duplicate {
        deliveries: usize,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The id exists with another topic or payload; the whole call is rolled back.
    #[error("event {id:?} already exists with a different topic or payload")]
    Conflict { index: usize, id: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for IngestError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// A stored event as the admin API shows it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub id: String,
    pub topic: String,
    pub payload: String,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub tenant_id: Option<String>,
    pub source: Option<String>,
    pub key: Option<String>,
    pub trace_id: Option<String>,
    pub meta: EventMeta,
}

/// Whether each pair of payload texts is the same JSON value, off the async
/// workers: a comparison of differently spelled payloads walks both (a few
/// milliseconds per MiB), and a hostile re-send must not stall other
/// requests. Equal texts should be decided by the caller first.
pub async fn same_payloads(pairs: Vec<(String, String)>) -> Vec<bool> {
    if pairs.is_empty() {
        return Vec::new();
    }
    let n = pairs.len();
    tokio::task::spawn_blocking(move || {
        pairs
            .iter()
            .map(|(a, b)| crate::domain::payload::same_value(a, b))
            .collect()
    })
    .await
    // A panic in the comparison (a bug) counts as "different": a 409, never a lost event.
    .unwrap_or_else(|_| vec![false; n])
}

impl NewEvent {
    /// Whether `topic` and `payload` are this event's, the payload compared
    /// as a JSON value at any depth (`domain::payload`: whitespace, member
    /// order and number spelling do not matter).
    pub fn same_content(&self, topic: &str, payload: &str) -> bool {
        topic == self.topic && crate::domain::payload::same_value(payload, &self.payload)
    }
}

/// What one ingest write stored.
#[derive(Debug, Default)]
pub(in crate::store) struct Written {
    /// Ids of the events it inserted (the others were already stored).
    pub events: HashSet<String>,
    /// The deliveries of those events it stored `in_flight` under a
    /// recipient's lease, ready to send once the transaction commits.
    pub leased: Vec<Claimed>,
    /// Whether it stored any delivery a worker must claim (not leased).
    pub queued: bool,
}

impl Written {
    /// From the events the write inserted and every delivery row it meant
    /// to write (event, recipient, delivery id): those of inserted events
    /// are stored, leased or queued.
    pub(in crate::store) fn of<'a>(
        inserted: HashSet<String>,
        rows: impl Iterator<Item = (&'a NewEvent, &'a Recipient, uuid::Uuid)>,
    ) -> Self {
        let mut written = Written::default();
        for (event, to, id) in rows {
            if !inserted.contains(&event.id) {
                continue;
            }
            match &to.lease {
                Some(_) if !to.joins_line(event) => written.leased.push(Claimed {
                    id,
                    event_id: event.id.clone(),
                    webhook_id: to.webhook_id.clone(),
                    attempt: 1,
                    replay_base: 0,
                    topic: event.topic.clone(),
                    body: event.body.clone(),
                    trace_id: event.trace_id.clone(),
                    traceparent: event.meta.traceparent.clone(),
                    in_line: false,
                    key: event.key.clone(),
                }),
                _ => written.queued = true,
            }
        }
        written.events = inserted;
        written
    }
}

/// Each event's outcome on its own, given what is stored under the ids the
/// write did not insert (`stored`: topic, payload, delivery count): `None`
/// where a stored event with that id has other content (a conflict).
pub(in crate::store) async fn outcomes_of(
    events: &[NewEvent],
    inserted: &HashSet<String>,
    stored: HashMap<String, (String, String, i64)>,
) -> Vec<Option<InsertOutcome>> {
    // Which stored events have this event's content. Equal bytes (the usual
    // re-send) are decided here; other spellings go to `same_payloads`.
    let mut deep = Vec::new();
    let mut same: Vec<Option<bool>> = events
        .iter()
        .map(|e| match stored.get(&e.id) {
            _ if inserted.contains(&e.id) => Some(false),
            Some((topic, payload, _)) if *topic == e.topic => {
                if *payload == e.payload {
                    Some(true)
                } else {
                    deep.push((e.payload.clone(), payload.clone()));
                    None
                }
            }
            _ => Some(false),
        })
        .collect();
    let mut verdicts = same_payloads(deep).await.into_iter();
    for s in same.iter_mut().filter(|s| s.is_none()) {
        *s = verdicts.next();
    }
    events
        .iter()
        .zip(same)
        .map(|(e, same)| {
            if inserted.contains(&e.id) {
                return Some(InsertOutcome::Created {
                    deliveries: e.webhooks.len(),
                });
            }
            match stored.get(&e.id) {
                Some((_, _, n)) if same == Some(true) => Some(InsertOutcome::Duplicate {
                    deliveries: usize::try_from(*n).unwrap_or(0),
                }),
                _ => None,
            }
        })
        .collect()
}

/// Outcomes of an all-or-nothing call: the first conflict fails it.
pub(in crate::store) fn all_or_conflict(
    events: &[NewEvent],
    outcomes: Vec<Option<InsertOutcome>>,
) -> Result<Vec<InsertOutcome>, IngestError> {
    outcomes
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            o.ok_or_else(|| IngestError::Conflict {
                index: i,
                id: events[i].id.clone(),
            })
        })
        .collect()
}
