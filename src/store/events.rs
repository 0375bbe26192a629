//! Ingest: events and their deliveries, written in one transaction. No event
//! is stored without its deliveries, and no delivery without its event.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Store, StoreError, WAKE_CHANNEL};
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
    /// Webhook ids that get one delivery each.
    pub webhooks: Vec<String>,
}

/// What happened to one event of an ingest call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Created { deliveries: usize },
    /// Same id, topic and payload as a stored event: nothing new written.
    Duplicate { deliveries: usize },
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

fn same_content(topic: &str, payload: &str, new: &NewEvent) -> bool {
    // Compared as JSON values, so whitespace and key order do not matter.
    let parse = |s: &str| serde_json::from_str::<Value>(s).ok();
    topic == new.topic && parse(payload).is_some() && parse(payload) == parse(&new.payload)
}

impl Store {
    /// Stores `events` (all or none) with one delivery per routed webhook.
    /// Callers dedupe ids within one call first.
    pub async fn insert_events(
        &self,
        events: &[NewEvent],
        now: DateTime<Utc>,
    ) -> Result<Vec<InsertOutcome>, IngestError> {
        let mut tx = self.pool.begin().await?;
        let mut cols = EventColumns::default();
        for e in events {
            cols.push(e);
        }
        let inserted: Vec<String> = sqlx::query_scalar(
            "INSERT INTO events (id, topic, payload, body, occurred_at, received_at, tenant_id, source, key, trace_id)
             SELECT id, topic, payload, body, occurred_at, $7, tenant_id, source, key, trace_id
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[], $6::text[], $8::text[], $9::text[], $10::text[])
                  AS t(id, topic, payload, body, occurred_at, tenant_id, source, key, trace_id)
             ON CONFLICT (id) DO NOTHING
             RETURNING id",
        )
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
        .fetch_all(&mut *tx)
        .await?;
        let inserted: std::collections::HashSet<String> = inserted.into_iter().collect();

        let mut outcomes = Vec::with_capacity(events.len());
        let mut existing = Vec::new();
        let (mut d_ids, mut d_events, mut d_hooks) = (Vec::new(), Vec::new(), Vec::new());
        for (i, e) in events.iter().enumerate() {
            if inserted.contains(&e.id) {
                for hook in &e.webhooks {
                    d_ids.push(DeliveryId::generate().uuid());
                    d_events.push(e.id.as_str());
                    d_hooks.push(hook.as_str());
                }
                outcomes.push(InsertOutcome::Created { deliveries: e.webhooks.len() });
            } else {
                existing.push(i);
                outcomes.push(InsertOutcome::Duplicate { deliveries: 0 });
            }
        }

        if !existing.is_empty() {
            let ids: Vec<&str> = existing.iter().map(|&i| events[i].id.as_str()).collect();
            let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
                "SELECT e.id, e.topic, e.payload, (SELECT count(*) FROM deliveries d WHERE d.event_id = e.id)
                 FROM events e WHERE e.id = ANY($1)",
            )
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
            let stored: std::collections::HashMap<_, _> =
                rows.into_iter().map(|(id, t, p, n)| (id, (t, p, n))).collect();
            for &i in &existing {
                let e = &events[i];
                match stored.get(&e.id) {
                    Some((topic, payload, n)) if same_content(topic, payload, e) => {
                        outcomes[i] = InsertOutcome::Duplicate { deliveries: usize::try_from(*n).unwrap_or(0) };
                    }
                    _ => return Err(IngestError::Conflict { index: i, id: e.id.clone() }),
                }
            }
        }

        if !d_ids.is_empty() {
            sqlx::query(
                "INSERT INTO deliveries (id, event_id, webhook_id, state, next_attempt_at, created_at, updated_at)
                 SELECT id, event_id, webhook_id, 'pending', $4, $4, $4
                 FROM unnest($1::uuid[], $2::text[], $3::text[]) AS t(id, event_id, webhook_id)",
            )
            .bind(&d_ids)
            .bind(&d_events)
            .bind(&d_hooks)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            // Delivered to listeners at commit, never before.
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(WAKE_CHANNEL)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(outcomes)
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
    }
}

