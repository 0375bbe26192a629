//! The delivery queue's state transitions: claim, complete, rescue, replay.
//! `now` is always a parameter, so tests and several engines agree on time
//! only through what they pass in.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{DeliveryState, Store, StoreError, WAKE_CHANNEL, clamp_i32, millis};

/// A webhook the claim may take deliveries for: its id, how many more it may
/// have in flight on this engine, and how long its lease lasts.
#[derive(Debug, Clone)]
pub struct WebhookSlot {
    pub webhook_id: String,
    pub room: u32,
    pub lease: std::time::Duration,
}

/// A delivery this engine now holds (state `in_flight`, lease set).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
    pub event_id: String,
    pub webhook_id: String,
    /// Attempt number of the attempt about to be made (1-based, never reused).
    pub attempt: i32,
    /// Attempts made before the last replay; the retry budget counts from here.
    pub replay_base: i32,
    pub topic: String,
    pub body: Vec<u8>,
    pub trace_id: Option<String>,
}

/// What one attempt looked like, as recorded in `delivery_attempts`.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub started_at: DateTime<Utc>,
    pub duration: std::time::Duration,
    pub status: Option<u16>,
    pub error_kind: Option<&'static str>,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

/// The outcome of one attempt and the state it moves the delivery to.
#[derive(Debug, Clone)]
pub struct Completion {
    pub id: Uuid,
    pub attempt: i32,
    /// `Succeeded`, `Pending` (retry at `next_attempt_at`) or `Dead`.
    pub state: DeliveryState,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub record: AttemptRecord,
}

impl Store {
    /// Claims up to `limit` due deliveries of the given webhooks, at most
    /// `room` per webhook, and leases them to `worker`. Deliveries of
    /// webhooks not listed (disabled, or gone from the policy) stay pending.
    pub async fn claim(
        &self,
        slots: &[WebhookSlot],
        limit: u32,
        worker: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Claimed>, StoreError> {
        if slots.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = slots.iter().map(|s| s.webhook_id.as_str()).collect();
        let rooms: Vec<i32> = slots.iter().map(|s| clamp_i32(u64::from(s.room))).collect();
        let leases: Vec<i64> = slots.iter().map(|s| millis(s.lease)).collect();
        // When every webhook has room for the whole batch (the usual case) a
        // plain ordered claim does; otherwise rank per webhook and cap each.
        let capped = slots.iter().any(|s| s.room < limit);
        // Joins below go through `= ANY(ARRAY(…))` and LATERAL lookups so
        // the planner uses the primary keys: a hash join against a CTE would
        // scan the whole table on every claim.
        let lock = if capped {
            "SELECT d.id FROM deliveries d
             WHERE d.id = ANY(ARRAY(
                 SELECT id FROM (
                     SELECT due.id, due.next_attempt_at, slot.room,
                            row_number() OVER (PARTITION BY due.webhook_id ORDER BY due.next_attempt_at) AS rn
                     FROM (SELECT d.id, d.webhook_id, d.next_attempt_at FROM deliveries d
                           WHERE d.state = 'pending' AND d.next_attempt_at <= $4 AND d.webhook_id = ANY($1)
                           ORDER BY d.next_attempt_at LIMIT $5 * 4) AS due
                     JOIN slot USING (webhook_id)
                 ) AS ranked WHERE rn <= room ORDER BY next_attempt_at LIMIT $5))
               AND d.state = 'pending'
             FOR UPDATE SKIP LOCKED"
        } else {
            "SELECT d.id FROM deliveries d
             WHERE d.state = 'pending' AND d.next_attempt_at <= $4 AND d.webhook_id = ANY($1)
             ORDER BY d.next_attempt_at LIMIT $5
             FOR UPDATE SKIP LOCKED"
        };
        let sql = format!(
            "WITH slot AS (
                 SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[]) AS s(webhook_id, room, lease_ms)
             ), locked AS ({lock}
             ), claimed AS (
                 UPDATE deliveries d
                 SET state = 'in_flight', attempts = d.attempts + 1,
                     lease_expires_at = $4 + (SELECT s.lease_ms FROM slot s WHERE s.webhook_id = d.webhook_id)
                                             * interval '1 millisecond',
                     leased_by = $6, updated_at = $4
                 WHERE d.id = ANY(ARRAY(SELECT id FROM locked))
                 RETURNING d.id, d.event_id, d.webhook_id, d.attempts, d.replay_base
             )
             SELECT c.id, c.event_id, c.webhook_id, c.attempts, c.replay_base, e.topic, e.body, e.trace_id
             FROM claimed c
             CROSS JOIN LATERAL (SELECT topic, body, trace_id FROM events WHERE events.id = c.event_id) AS e"
        );
        let rows: Vec<ClaimRow> = sqlx::query_as(&sql)
            .bind(&ids)
            .bind(&rooms)
            .bind(&leases)
            .bind(now)
            .bind(i64::from(limit))
            .bind(worker)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| Claimed {
                id: r.id,
                event_id: r.event_id,
                webhook_id: r.webhook_id,
                attempt: r.attempts,
                replay_base: r.replay_base,
                topic: r.topic,
                body: r.body,
                trace_id: r.trace_id,
            })
            .collect())
    }

    /// Records attempts and moves their deliveries on, in one transaction.
    /// A completion whose lease was lost (rescued, then claimed again) only
    /// leaves its attempt row: the delivery belongs to its new holder.
    pub async fn complete(
        &self,
        done: &[Completion],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = done.iter().map(|c| c.id).collect();
        let attempts: Vec<i32> = done.iter().map(|c| c.attempt).collect();
        let states: Vec<&str> = done.iter().map(|c| c.state.as_str()).collect();
        let next: Vec<Option<DateTime<Utc>>> = done.iter().map(|c| c.next_attempt_at).collect();
        let started: Vec<DateTime<Utc>> = done.iter().map(|c| c.record.started_at).collect();
        let durations: Vec<i32> = done
            .iter()
            .map(|c| clamp_i32(u64::try_from(c.record.duration.as_millis()).unwrap_or(u64::MAX)))
            .collect();
        let statuses: Vec<Option<i32>> = done
            .iter()
            .map(|c| c.record.status.map(i32::from))
            .collect();
        let kinds: Vec<Option<&str>> = done.iter().map(|c| c.record.error_kind).collect();
        let errors: Vec<Option<&str>> = done.iter().map(|c| c.record.error.as_deref()).collect();
        let bodies: Vec<Option<&str>> = done
            .iter()
            .map(|c| c.record.response_body.as_deref())
            .collect();

        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error_kind, error, response_body)
             SELECT * FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::int[], $5::int[], $6::text[], $7::text[], $8::text[])
             ON CONFLICT DO NOTHING",
        )
        .bind(&ids)
        .bind(&attempts)
        .bind(&started)
        .bind(&durations)
        .bind(&statuses)
        .bind(&kinds)
        .bind(&errors)
        .bind(&bodies)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE deliveries d
             SET state = u.state,
                 next_attempt_at = COALESCE(u.next_at, d.next_attempt_at),
                 lease_expires_at = NULL, leased_by = NULL,
                 last_status = u.status,
                 last_error = COALESCE(u.kind || COALESCE(': ' || u.error, ''), NULL),
                 updated_at = $8,
                 completed_at = CASE WHEN u.state IN ('succeeded', 'dead') THEN $8 END
             FROM unnest($1::uuid[], $2::int[], $3::text[], $4::timestamptz[], $5::int[], $6::text[], $7::text[])
                  AS u(id, attempt, state, next_at, status, kind, error)
             WHERE d.id = ANY($1) AND d.id = u.id AND d.state = 'in_flight' AND d.attempts = u.attempt",
        )
        .bind(&ids)
        .bind(&attempts)
        .bind(&states)
        .bind(&next)
        .bind(&statuses)
        .bind(&kinds)
        .bind(&errors)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Returns deliveries whose lease expired (their engine died or hung) to
    /// `pending`, due now, recording the lost attempt as `lease_expired`:
    /// it may or may not have reached the receiver.
    pub async fn rescue_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rescued: Vec<(Uuid, i32, DateTime<Utc>)> = sqlx::query_as(
            "UPDATE deliveries
             SET state = 'pending', next_attempt_at = $1, lease_expires_at = NULL, leased_by = NULL,
                 last_error = 'lease_expired', updated_at = $1
             WHERE id = ANY(ARRAY(SELECT id FROM deliveries
                                  WHERE state = 'in_flight' AND lease_expires_at < $1
                                  LIMIT 1000 FOR UPDATE SKIP LOCKED))
             RETURNING id, attempts, updated_at",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        if rescued.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = rescued.iter().map(|r| r.0).collect();
        let attempts: Vec<i32> = rescued.iter().map(|r| r.1).collect();
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, error_kind, error)
             SELECT id, attempt, $3, 0, 'lease_expired', 'the engine holding this attempt stopped before recording it'
             FROM unnest($1::uuid[], $2::int[]) AS t(id, attempt)
             ON CONFLICT DO NOTHING",
        )
        .bind(&ids)
        .bind(&attempts)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        notify(&mut tx).await?;
        tx.commit().await?;
        Ok(rescued.len() as u64)
    }

    /// Puts a finished (`dead` or `succeeded`) delivery back to `pending`,
    /// due now, with a fresh retry budget and the same id. Returns the state
    /// it was in, or `None` if there is no such delivery.
    /// The audit row and event, when given, are written in the same
    /// transaction as the replay itself.
    pub async fn replay(
        &self,
        id: Uuid,
        audit: Option<(&super::AuditRow, &super::NewEvent)>,
        now: DateTime<Utc>,
    ) -> Result<Option<ReplayResult>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM deliveries WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(state) = state.as_deref().and_then(DeliveryState::parse) else {
            return Ok(None);
        };
        if !matches!(state, DeliveryState::Dead | DeliveryState::Succeeded) {
            return Ok(Some(ReplayResult::NotFinished(state)));
        }
        sqlx::query(
            "UPDATE deliveries SET state = 'pending', replay_base = attempts, next_attempt_at = $2,
                    completed_at = NULL, updated_at = $2
             WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if let Some((row, event)) = audit {
            super::events::insert_statement(&mut *tx, std::slice::from_ref(event), now).await?;
            super::inbound::insert_audit(&mut tx, row, event).await?;
        }
        notify(&mut tx).await?;
        tx.commit().await?;
        self.local_wake.notify_one();
        Ok(Some(ReplayResult::Replayed(state)))
    }

    /// The earliest time a pending delivery of these webhooks falls due.
    pub async fn next_due(
        &self,
        webhook_ids: &[&str],
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT min(next_attempt_at) FROM deliveries WHERE state = 'pending' AND webhook_id = ANY($1)",
        )
        .bind(webhook_ids)
        .fetch_one(&self.pool)
        .await?)
    }
}

/// What a replay request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayResult {
    /// Replayed; the state it left.
    Replayed(DeliveryState),
    /// Still pending or in flight: nothing to replay.
    NotFinished(DeliveryState),
}

async fn notify(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(WAKE_CHANNEL)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: Uuid,
    event_id: String,
    webhook_id: String,
    attempts: i32,
    replay_base: i32,
    topic: String,
    body: Vec<u8>,
    trace_id: Option<String>,
}
