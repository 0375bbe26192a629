//! Ingest: events and their deliveries, written in one transaction. No event
//! is stored without its deliveries, and no delivery without its event.

use chrono::{DateTime, Utc};

use std::collections::{HashMap, HashSet};

use super::lines::{Line, lock_query, promote};
use super::{Claimed, Store, StoreError, WAKE_CHANNEL};
use crate::domain::DeliveryId;

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
    /// The webhooks that get one delivery each.
    pub webhooks: Vec<Recipient>,
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
    fn joins_line(&self, event: &NewEvent) -> bool {
        self.ordered && event.key.is_some()
    }
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
fn lines_of(events: &[NewEvent]) -> Vec<Line> {
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
}

/// What one insert statement wrote.
#[derive(Debug, Default)]
pub(super) struct Written {
    /// Ids of the events it inserted (the others were already stored).
    pub events: HashSet<String>,
    /// The deliveries of those events it stored `in_flight` under a
    /// recipient's lease, ready to send once the transaction commits.
    pub leased: Vec<Claimed>,
    /// Whether it stored any delivery a worker must claim (not leased).
    pub queued: bool,
}

/// Inserts the events that are new, and the deliveries of exactly those,
/// and notifies workers of the ones left to claim.
///
/// A delivery of a keyed event to an `ordering: key` webhook joins its line
/// as `waiting`, placed by acceptance: one sequence value per statement,
/// then the event's place in `events` (request order), and the lines are
/// settled before returning — so when any event joins a line, `conn` must
/// be inside a transaction (the line locks last until it ends).
pub(super) async fn insert_statement(
    conn: &mut sqlx::PgConnection,
    events: &[NewEvent],
    now: DateTime<Utc>,
) -> Result<Written, sqlx::Error> {
    let mut cols = EventColumns::default();
    let mut dl = DeliveryColumns::default();
    // Rows in id order: two calls holding the same ids in another order
    // would otherwise wait on each other's uncommitted rows (a deadlock).
    let mut sorted: Vec<(usize, &NewEvent)> = events.iter().enumerate().collect();
    sorted.sort_by(|a, b| a.1.id.cmp(&b.1.id));
    for (place, e) in sorted {
        cols.push(e);
        for hook in &e.webhooks {
            dl.push(e, hook, place);
        }
    }
    let inserted: Vec<String> = sqlx::query_scalar(&format!(
        "WITH ins AS (
             INSERT INTO events (id, topic, payload, body, occurred_at, received_at, tenant_id, source, key, trace_id, undelivered)
             SELECT id, topic, payload, body, occurred_at, $7, tenant_id, source, key, trace_id, undelivered
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[], $6::text[], $8::text[], $9::text[], $10::text[], $15::bool[])
                  AS t(id, topic, payload, body, occurred_at, tenant_id, source, key, trace_id, undelivered)
             ON CONFLICT (id) DO NOTHING
             RETURNING id
         ), dl AS (
             INSERT INTO deliveries (id, event_id, webhook_id, state, attempts, next_attempt_at,
                                     lease_expires_at, leased_by, created_at, updated_at, order_key, order_seq)
             SELECT d.id, d.event_id, d.webhook_id,
                    CASE WHEN d.order_key IS NOT NULL THEN 'waiting'
                         WHEN d.holder IS NOT NULL THEN 'in_flight'
                         ELSE 'pending' END,
                    CASE WHEN d.holder IS NOT NULL THEN 1 ELSE 0 END,
                    now(), now() + d.lease_ms * interval '1 millisecond', d.holder, $7, $7,
                    d.order_key,
                    CASE WHEN d.order_key IS NOT NULL
                         THEN (SELECT nextval('delivery_order_seq')) * 1048576 + d.place END
             FROM unnest($11::uuid[], $12::text[], $13::text[], $16::text[], $17::int8[], $18::text[], $19::int8[])
                  AS d(id, event_id, webhook_id, order_key, place, holder, lease_ms)
             WHERE d.event_id IN (SELECT id FROM ins)
             RETURNING webhook_id AS w, order_key AS k, leased_by AS holder
         ), wake AS (
             SELECT pg_notify($14, '') FROM (SELECT 1 FROM dl WHERE holder IS NULL LIMIT 1) AS to_claim
         ), locks AS ({LOCK})
         SELECT ins.id FROM ins
         LEFT JOIN (SELECT count(*) AS n FROM wake) AS w ON true
         LEFT JOIN locks ON true",
        LOCK = lock_query("SELECT * FROM dl")
    ))
    .bind(&cols.ids)
    .bind(&cols.topics)
    .bind(&cols.payloads)
    .bind(&cols.bodies)
    .bind(&cols.occurred)
    .bind(&cols.tenants)
    .bind(now)
    .bind(&cols.sources)
    .bind(&cols.keys)
    .bind(&cols.traces)
    .bind(&dl.ids)
    .bind(&dl.events)
    .bind(&dl.hooks)
    .bind(WAKE_CHANNEL)
    .bind(&cols.undelivered)
    .bind(&dl.order_keys)
    .bind(&dl.places)
    .bind(&dl.holders)
    .bind(&dl.lease_ms)
    .fetch_all(&mut *conn)
    .await?;
    // The statement locked the lines it added to; now their heads.
    promote(conn, &lines_of(events)).await?;
    let inserted: HashSet<String> = inserted.into_iter().collect();
    let mut written = Written::default();
    for (&(event, to), id) in dl.rows.iter().zip(&dl.ids) {
        if !inserted.contains(&event.id) {
            continue;
        }
        match &to.lease {
            Some(_) if !to.joins_line(event) => written.leased.push(Claimed {
                id: *id,
                event_id: event.id.clone(),
                webhook_id: to.webhook_id.clone(),
                attempt: 1,
                replay_base: 0,
                topic: event.topic.clone(),
                body: event.body.clone(),
                trace_id: event.trace_id.clone(),
                in_line: false,
            }),
            _ => written.queued = true,
        }
    }
    written.events = inserted;
    Ok(written)
}

/// Outcomes in request order; ids not inserted must match what is stored
/// (a duplicate) or the call fails with a conflict.
async fn check_existing<'c>(
    db: impl sqlx::PgExecutor<'c>,
    events: &[NewEvent],
    inserted: &HashSet<String>,
) -> Result<Vec<InsertOutcome>, IngestError> {
    existing_outcomes(db, events, inserted)
        .await?
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

/// Each event's outcome on its own: `None` where a stored event with that
/// id has other content (a conflict).
async fn existing_outcomes<'c>(
    db: impl sqlx::PgExecutor<'c>,
    events: &[NewEvent],
    inserted: &HashSet<String>,
) -> Result<Vec<Option<InsertOutcome>>, sqlx::Error> {
    let existing: Vec<&str> = events
        .iter()
        .map(|e| e.id.as_str())
        .filter(|id| !inserted.contains(*id))
        .collect();
    let stored: HashMap<String, (String, String, i64)> = if existing.is_empty() {
        HashMap::new()
    } else {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT e.id, e.topic, e.payload, (SELECT count(*) FROM deliveries d WHERE d.event_id = e.id)
             FROM events e WHERE e.id = ANY($1)",
        )
        .bind(&existing)
        .fetch_all(db)
        .await?;
        rows.into_iter()
            .map(|(id, t, p, n)| (id, (t, p, n)))
            .collect()
    };
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
    Ok(events
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
        .collect())
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

impl Store {
    /// Stores `events` (all or none) with one delivery per routed webhook.
    /// Callers dedupe ids within one call first.
    ///
    /// One event is written by a single statement (one round trip, its own
    /// atomic commit); a batch runs the same statement in a transaction so a
    /// conflict found afterwards rolls the whole batch back.
    pub async fn insert_events(
        &self,
        events: &[NewEvent],
        now: DateTime<Utc>,
    ) -> Result<Stored<Vec<InsertOutcome>>, IngestError> {
        let (written, outcomes) = if events.len() == 1 && lines_of(events).is_empty() {
            let mut conn = self.pool.acquire().await?;
            let written = insert_statement(&mut conn, events, now).await?;
            let outcomes = check_existing(&mut *conn, events, &written.events).await?;
            (written, outcomes)
        } else {
            let mut tx = self.pool.begin().await?;
            let written = insert_statement(&mut tx, events, now).await?;
            let outcomes = check_existing(&mut *tx, events, &written.events).await?;
            tx.commit().await?;
            (written, outcomes)
        };
        if written.queued {
            self.local_wake.notify_one();
        }
        Ok(Stored {
            outcomes,
            leased: written.leased,
        })
    }

    /// Inserts events of separate requests together — one statement, one
    /// commit — each created, a duplicate or a conflict on its own (`None`).
    /// Ids must be distinct within the call.
    pub async fn insert_independent(
        &self,
        events: &[NewEvent],
        now: DateTime<Utc>,
    ) -> Result<Stored<Vec<Option<InsertOutcome>>>, StoreError> {
        let written = if lines_of(events).is_empty() {
            insert_statement(&mut *self.pool.acquire().await?, events, now).await?
        } else {
            let mut tx = self.pool.begin().await?;
            let written = insert_statement(&mut tx, events, now).await?;
            tx.commit().await?;
            written
        };
        if written.queued {
            self.local_wake.notify_one();
        }
        // Only ids not inserted are looked up. Should that fail, the
        // leased deliveries are committed but not handed back: they are
        // sent after their lease expires, by whichever engine rescues them.
        let outcomes = existing_outcomes(&self.pool, events, &written.events).await?;
        Ok(Stored {
            outcomes,
            leased: written.leased,
        })
    }

    pub async fn get_event(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let row: Option<EventRow> = sqlx::query_as(
            "SELECT id, topic, payload, occurred_at, received_at, tenant_id, source, key, trace_id
             FROM events WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| StoredEvent {
            id: r.id,
            topic: r.topic,
            payload: r.payload,
            occurred_at: r.occurred_at,
            received_at: r.received_at,
            tenant_id: r.tenant_id,
            source: r.source,
            key: r.key,
            trace_id: r.trace_id,
        }))
    }
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: String,
    topic: String,
    payload: String,
    occurred_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
    tenant_id: Option<String>,
    source: Option<String>,
    key: Option<String>,
    trace_id: Option<String>,
}

/// The deliveries' column arrays, in the events' row order.
#[derive(Default)]
struct DeliveryColumns<'a> {
    /// Which event and recipient each row is.
    rows: Vec<(&'a NewEvent, &'a Recipient)>,
    ids: Vec<uuid::Uuid>,
    events: Vec<&'a str>,
    hooks: Vec<&'a str>,
    /// The event's key where the delivery joins a line, else `None`.
    order_keys: Vec<Option<&'a str>>,
    /// The event's place in the call (acceptance order within it).
    places: Vec<i64>,
    /// The lease holder where the delivery is sent at once, else `None`.
    holders: Vec<Option<&'a str>>,
    lease_ms: Vec<Option<i64>>,
}

impl<'a> DeliveryColumns<'a> {
    fn push(&mut self, e: &'a NewEvent, to: &'a Recipient, place: usize) {
        self.rows.push((e, to));
        self.ids.push(DeliveryId::generate().uuid());
        self.events.push(&e.id);
        self.hooks.push(&to.webhook_id);
        self.order_keys
            .push(e.key.as_deref().filter(|_| to.ordered));
        self.places.push(i64::try_from(place).unwrap_or(i64::MAX));
        let lease = to.lease.as_ref().filter(|_| !to.joins_line(e));
        self.holders.push(lease.map(|l| &*l.holder));
        self.lease_ms.push(lease.map(|l| super::millis(l.length)));
    }
}

/// Column arrays for one multi-row insert through `unnest`.
#[derive(Default)]
struct EventColumns<'a> {
    ids: Vec<&'a str>,
    topics: Vec<&'a str>,
    payloads: Vec<&'a str>,
    bodies: Vec<&'a [u8]>,
    occurred: Vec<DateTime<Utc>>,
    tenants: Vec<Option<&'a str>>,
    sources: Vec<Option<&'a str>>,
    keys: Vec<Option<&'a str>>,
    traces: Vec<Option<&'a str>>,
    undelivered: Vec<bool>,
}

impl<'a> EventColumns<'a> {
    fn push(&mut self, e: &'a NewEvent) {
        self.ids.push(&e.id);
        self.topics.push(&e.topic);
        self.payloads.push(&e.payload);
        self.bodies.push(&e.body);
        self.occurred.push(e.occurred_at);
        self.tenants.push(e.tenant_id.as_deref());
        self.sources.push(e.source.as_deref());
        self.keys.push(e.key.as_deref());
        self.traces.push(e.trace_id.as_deref());
        self.undelivered.push(e.webhooks.is_empty());
    }
}
