//! Ingest and lines on SQLite ([`Events`]; inbound commands are in
//! `inbound.rs`): the same rows and the same all-or-nothing transactions as
//! the PostgreSQL backend, written row by row on the one write connection
//! (statements are prepared once and run in-process, so a row costs
//! microseconds, not a round trip).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::{Lite, ROWS_PER_STATEMENT, after, at, ms, now_ms};
use crate::domain::DeliveryId;
use crate::store::contract::Events;
use crate::store::events::{Written, all_or_conflict, lines_of, outcomes_of, payload_text};
use crate::store::lines::Line;
use crate::store::{
    AuditRow, EventMeta, IngestError, InsertOutcome, NewEvent, StoreError, Stored, StoredEvent,
    storable,
};

/// Inserts the events of `events` that are new and the deliveries of
/// exactly those, then gives every line they joined its head. Run inside
/// the caller's transaction.
pub(super) async fn insert_rows(
    conn: &mut SqliteConnection,
    events: &[NewEvent],
    now: DateTime<Utc>,
) -> Result<Written, sqlx::Error> {
    let lines = lines_of(events);
    // One sequence value per call, then the event's place (as PostgreSQL).
    let seq: i64 = if lines.is_empty() {
        0
    } else {
        sqlx::query_scalar(
            "UPDATE counters SET value = value + 1 WHERE name = 'delivery_order_seq' RETURNING value",
        )
        .fetch_one(&mut *conn)
        .await?
    };
    let (now, clock) = (ms(now), now_ms());
    let mut inserted = HashSet::new();
    // Multi-row statements: each statement is a round trip to the
    // connection's thread, so a group of events costs a few, not two each.
    for chunk in super::shaped(events, ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (id, topic, payload, body, occurred_at, received_at, tenant_id, source, key, trace_id, undelivered, version, schema_errors, traceparent) ",
        );
        insert.push_values(chunk, |mut row, e| {
            row.push_bind(&e.id)
                .push_bind(&e.topic)
                // The payload is stored once, in the body (`payload_text`).
                .push_bind("")
                .push_bind(&e.body)
                .push_bind(ms(e.occurred_at))
                .push_bind(now)
                .push_bind(e.tenant_id.as_deref())
                .push_bind(e.source.as_deref())
                .push_bind(e.key.as_deref())
                .push_bind(e.trace_id.as_deref())
                .push_bind(e.webhooks.is_empty())
                .push_bind(e.meta.version.as_deref())
                .push_bind(e.meta.schema_errors.as_deref())
                .push_bind(e.meta.traceparent.as_deref());
        });
        insert.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
        let new: Vec<String> = insert.build_query_scalar().fetch_all(&mut *conn).await?;
        inserted.extend(new);
    }
    let mut rows = Vec::new();
    for (place, e) in events.iter().enumerate() {
        for to in &e.webhooks {
            rows.push((e, to, DeliveryId::generate().uuid(), place));
        }
    }
    let new_rows: Vec<_> = rows
        .iter()
        .filter(|(e, ..)| inserted.contains(&e.id))
        .collect();
    for chunk in super::shaped(&new_rows, ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO deliveries (id, event_id, webhook_id, state, attempts, next_attempt_at,
                                     lease_expires_at, leased_by, created_at, updated_at, order_key, order_seq) ",
        );
        insert.push_values(chunk, |mut row, &&(e, to, id, place)| {
            let in_line = to.joins_line(e);
            let lease = to.lease.as_ref().filter(|_| !in_line);
            let state = match (in_line, lease) {
                (true, _) => "waiting",
                (false, Some(_)) => "in_flight",
                (false, None) => "pending",
            };
            let place = i64::try_from(place).unwrap_or(i64::MAX);
            row.push_bind(id)
                .push_bind(&e.id)
                .push_bind(&to.webhook_id)
                .push_bind(state)
                .push_bind(i32::from(lease.is_some()))
                .push_bind(clock)
                .push_bind(lease.map(|l| after(clock, l.length)))
                .push_bind(lease.map(|l| &*l.holder))
                .push_bind(now)
                .push_bind(now)
                .push_bind(e.key.as_deref().filter(|_| in_line))
                .push_bind(in_line.then(|| seq.saturating_mul(1 << 20).saturating_add(place)));
        });
        insert.build().execute(&mut *conn).await?;
    }
    promote(conn, &lines).await?;
    Ok(Written::of(
        inserted,
        rows.into_iter().map(|(e, to, id, _)| (e, to, id)),
    ))
}

/// Gives each of `lines` that has no head its next waiting delivery, due
/// now. Returns how many were promoted. The single writer makes this safe
/// without locks: nobody else changes the lines meanwhile.
pub(super) async fn promote(
    conn: &mut SqliteConnection,
    lines: &[Line],
) -> Result<u64, sqlx::Error> {
    let now = now_ms();
    let mut promoted = 0;
    for line in lines {
        promoted += sqlx::query(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = ?3, updated_at = ?3
             WHERE id = (SELECT id FROM deliveries
                         WHERE webhook_id = ?1 AND order_key = ?2 AND state = 'waiting'
                           -- the partial index's own terms, so SQLite uses it
                           AND state IN ('waiting', 'pending', 'in_flight')
                         ORDER BY order_seq LIMIT 1)
               AND NOT EXISTS (SELECT 1 FROM deliveries
                               WHERE webhook_id = ?1 AND order_key = ?2 AND state IN ('pending', 'in_flight'))",
        )
        .bind(&line.webhook_id)
        .bind(&line.key)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok(promoted)
}

/// What is stored under the ids of `events` this call did not insert.
async fn stored_content(
    conn: &mut SqliteConnection,
    events: &[NewEvent],
    inserted: &HashSet<String>,
) -> Result<HashMap<String, (String, String, i64)>, sqlx::Error> {
    let mut stored = HashMap::new();
    for e in events.iter().filter(|e| !inserted.contains(&e.id)) {
        let row: Option<(String, String, Option<Vec<u8>>, i64)> = sqlx::query_as(
            "SELECT e.topic, e.payload, CASE WHEN e.payload = '' THEN e.body END,
                    (SELECT count(*) FROM deliveries d WHERE d.event_id = e.id)
             FROM events e WHERE e.id = ?1",
        )
        .bind(&e.id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some((topic, payload, body, n)) = row {
            stored.insert(e.id.clone(), (topic, payload_text(payload, body)?, n));
        }
    }
    Ok(stored)
}

pub(super) async fn insert_audit(
    conn: &mut SqliteConnection,
    audit: &AuditRow,
    event: &NewEvent,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor_id, action, outcome, target, request_id, source_ip, event_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .bind(ms(audit.at))
    .bind(storable(&audit.actor_id))
    .bind(storable(&audit.action))
    .bind(audit.outcome)
    .bind(audit.target.as_deref().map(storable))
    .bind(audit.request_id.as_deref().map(storable))
    .bind(audit.source_ip.as_deref().map(storable))
    .bind(&event.id)
    .execute(conn)
    .await?;
    Ok(())
}

impl Events for Lite {
    async fn insert_events(
        &self,
        events: &[NewEvent],
        now: DateTime<Utc>,
    ) -> Result<Stored<Vec<InsertOutcome>>, IngestError> {
        let mut w = self.write.take().await?;
        let mut tx = w.begin().await?;
        let written = insert_rows(&mut tx, events, now).await?;
        let stored = stored_content(&mut tx, events, &written.events).await?;
        // A conflict returns before the commit: the whole call rolls back.
        let outcomes = all_or_conflict(events, outcomes_of(events, &written.events, stored).await)?;
        tx.commit().await?;
        w.done();
        Ok(Stored {
            outcomes,
            leased: written.leased,
            queued: written.queued,
        })
    }

    async fn insert_independent(
        &self,
        events: &[NewEvent],
        now: DateTime<Utc>,
    ) -> Result<Stored<Vec<Option<InsertOutcome>>>, StoreError> {
        let mut w = self.write.take().await?;
        let mut tx = w.begin().await?;
        let written = insert_rows(&mut tx, events, now).await?;
        let stored = stored_content(&mut tx, events, &written.events).await?;
        tx.commit().await?;
        w.done();
        Ok(Stored {
            outcomes: outcomes_of(events, &written.events, stored).await,
            leased: written.leased,
            queued: written.queued,
        })
    }

    async fn get_event(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        type Row = (
            String,
            String,
            String,
            Option<Vec<u8>>,
            i64,
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT id, topic, payload, CASE WHEN payload = '' THEN body END, occurred_at, received_at, tenant_id, source, key, trace_id,
                    version, schema_errors, traceparent
             FROM events WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        let event = row.map(
            |(
                id,
                topic,
                payload,
                body,
                occurred,
                received,
                tenant_id,
                source,
                key,
                trace_id,
                version,
                schema_errors,
                traceparent,
            )| {
                Ok::<_, sqlx::Error>(StoredEvent {
                    id,
                    topic,
                    payload: payload_text(payload, body)?,
                    occurred_at: at(occurred),
                    received_at: at(received),
                    tenant_id,
                    source,
                    key,
                    trace_id,
                    meta: EventMeta {
                        version,
                        schema_errors,
                        traceparent,
                    },
                })
            },
        );
        Ok(event.transpose()?)
    }
}
