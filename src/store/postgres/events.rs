//! Ingest: events and their deliveries, written in one transaction. No event
//! is stored without its deliveries, and no delivery without its event.

use chrono::{DateTime, Utc};

use std::collections::{HashMap, HashSet};

use super::lines::{lock_query, promote};
use super::{Pg, WAKE_CHANNEL};
use crate::domain::DeliveryId;
use crate::store::contract::Events;
use crate::store::events::{Written, all_or_conflict, lines_of, outcomes_of, payload_text};
use crate::store::{
    EventMeta, IngestError, InsertOutcome, NewEvent, Recipient, StoreError, Stored, StoredEvent,
};

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
    // The payload column gets '' (the payload is in the body, see
    // `payload_text`), so `$3`, once the payloads, carries the traceparents.
    let inserted: Vec<String> = sqlx::query_scalar(&format!(
        "WITH ins AS (
             INSERT INTO events (id, topic, payload, body, occurred_at, received_at, tenant_id, source, key, trace_id, undelivered,
                                 version, schema_errors, traceparent)
             SELECT id, topic, '', body, occurred_at, $7, tenant_id, source, key, trace_id, undelivered,
                    version, schema_errors, traceparent
             FROM unnest($1::text[], $2::text[], $4::bytea[], $5::timestamptz[], $6::text[], $8::text[], $9::text[], $10::text[], $15::bool[],
                         $20::text[], $21::text[], $3::text[])
                  AS t(id, topic, body, occurred_at, tenant_id, source, key, trace_id, undelivered,
                       version, schema_errors, traceparent)
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
    .bind(&cols.traceparents)
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
    .bind(&cols.versions)
    .bind(&cols.schema_errors)
    .fetch_all(&mut *conn)
    .await?;
    // The statement locked the lines it added to; now their heads.
    promote(conn, &lines_of(events)).await?;
    Ok(Written::of(
        inserted.into_iter().collect(),
        dl.rows
            .iter()
            .zip(&dl.ids)
            .map(|(&(e, to), id)| (e, to, *id)),
    ))
}

/// What is stored under the ids of `events` that this call did not
/// insert: topic, payload and delivery count, for [`outcomes_of`].
async fn stored_content<'c>(
    db: impl sqlx::PgExecutor<'c>,
    events: &[NewEvent],
    inserted: &HashSet<String>,
) -> Result<HashMap<String, (String, String, i64)>, sqlx::Error> {
    let existing: Vec<&str> = events
        .iter()
        .map(|e| e.id.as_str())
        .filter(|id| !inserted.contains(*id))
        .collect();
    if existing.is_empty() {
        return Ok(HashMap::new());
    }
    /// Id, topic, payload column, body (where that is `''`), delivery count.
    type Row = (String, String, String, Option<Vec<u8>>, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT e.id, e.topic, e.payload, CASE WHEN e.payload = '' THEN e.body END,
                (SELECT count(*) FROM deliveries d WHERE d.event_id = e.id)
         FROM events e WHERE e.id = ANY($1)",
    )
    .bind(&existing)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|(id, t, p, body, n)| Ok((id, (t, payload_text(p, body)?, n))))
        .collect()
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: String,
    topic: String,
    payload: String,
    body: Option<Vec<u8>>,
    occurred_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
    tenant_id: Option<String>,
    source: Option<String>,
    key: Option<String>,
    trace_id: Option<String>,
    version: Option<String>,
    schema_errors: Option<String>,
    traceparent: Option<String>,
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
        self.lease_ms
            .push(lease.map(|l| crate::store::millis(l.length)));
    }
}

/// Column arrays for one multi-row insert through `unnest`.
#[derive(Default)]
struct EventColumns<'a> {
    ids: Vec<&'a str>,
    topics: Vec<&'a str>,
    bodies: Vec<&'a [u8]>,
    occurred: Vec<DateTime<Utc>>,
    tenants: Vec<Option<&'a str>>,
    sources: Vec<Option<&'a str>>,
    keys: Vec<Option<&'a str>>,
    traces: Vec<Option<&'a str>>,
    undelivered: Vec<bool>,
    versions: Vec<Option<&'a str>>,
    schema_errors: Vec<Option<&'a str>>,
    traceparents: Vec<Option<&'a str>>,
}

impl<'a> EventColumns<'a> {
    fn push(&mut self, e: &'a NewEvent) {
        self.ids.push(&e.id);
        self.topics.push(&e.topic);
        self.bodies.push(&e.body);
        self.occurred.push(e.occurred_at);
        self.tenants.push(e.tenant_id.as_deref());
        self.sources.push(e.source.as_deref());
        self.keys.push(e.key.as_deref());
        self.traces.push(e.trace_id.as_deref());
        self.undelivered.push(e.webhooks.is_empty());
        self.versions.push(e.meta.version.as_deref());
        self.schema_errors.push(e.meta.schema_errors.as_deref());
        self.traceparents.push(e.meta.traceparent.as_deref());
    }
}

impl Events for Pg {
    /// Stores `events` (all or none) with one delivery per routed webhook.
    /// Callers dedupe ids within one call first.
    ///
    /// One event is written by a single statement (one round trip, its own
    /// atomic commit); a batch runs the same statement in a transaction so a
    /// conflict found afterwards rolls the whole batch back.
    async fn insert_events(
        &self,
        events: &[NewEvent],
        now: DateTime<Utc>,
    ) -> Result<Stored<Vec<InsertOutcome>>, IngestError> {
        let mut conn = self.hot.take(&self.pool).await?;
        let (written, outcomes) = if events.len() == 1 && lines_of(events).is_empty() {
            let written = insert_statement(&mut conn, events, now).await?;
            let stored = stored_content(&mut *conn, events, &written.events).await?;
            let outcomes =
                all_or_conflict(events, outcomes_of(events, &written.events, stored).await)?;
            (written, outcomes)
        } else {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            let written = insert_statement(&mut tx, events, now).await?;
            let stored = stored_content(&mut *tx, events, &written.events).await?;
            let outcomes =
                all_or_conflict(events, outcomes_of(events, &written.events, stored).await)?;
            tx.commit().await?;
            (written, outcomes)
        };
        conn.done();
        Ok(Stored {
            outcomes,
            leased: written.leased,
            queued: written.queued,
        })
    }

    /// Inserts events of separate requests together — one statement, one
    /// commit — each created, a duplicate or a conflict on its own (`None`).
    /// Ids must be distinct within the call.
    async fn insert_independent(
        &self,
        events: &[NewEvent],
        now: DateTime<Utc>,
    ) -> Result<Stored<Vec<Option<InsertOutcome>>>, StoreError> {
        let mut conn = self.hot.take(&self.pool).await?;
        let written = if lines_of(events).is_empty() {
            insert_statement(&mut conn, events, now).await?
        } else {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            let written = insert_statement(&mut tx, events, now).await?;
            tx.commit().await?;
            written
        };
        // Only ids not inserted are looked up. Should that fail, the
        // leased deliveries are committed but not handed back: they are
        // sent after their lease expires, by whichever engine rescues them.
        let stored = stored_content(&mut *conn, events, &written.events).await?;
        conn.done();
        let outcomes = outcomes_of(events, &written.events, stored).await;
        Ok(Stored {
            outcomes,
            leased: written.leased,
            queued: written.queued,
        })
    }

    async fn get_event(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let row: Option<EventRow> = sqlx::query_as(
            "SELECT id, topic, payload, CASE WHEN payload = '' THEN body END AS body,
                    occurred_at, received_at, tenant_id, source, key, trace_id,
                    version, schema_errors, traceparent
             FROM events WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(StoredEvent {
            payload: payload_text(r.payload, r.body)?,
            id: r.id,
            topic: r.topic,
            occurred_at: r.occurred_at,
            received_at: r.received_at,
            tenant_id: r.tenant_id,
            source: r.source,
            key: r.key,
            trace_id: r.trace_id,
            meta: EventMeta {
                version: r.version,
                schema_errors: r.schema_errors,
                traceparent: r.traceparent,
            },
        }))
    }
}
