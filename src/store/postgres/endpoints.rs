//! Runtime endpoint state: which webhooks are disabled at runtime (by an
//! admin, or later by the engine itself), why and since when. The policy's
//! `enabled: false` is separate and wins; this state survives restarts and
//! policy reloads because it lives here, not in the file.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::Pg;
use crate::store::contract::Endpoints;
use crate::store::{AuditRow, EndpointState, EndpointStatus, NewEvent, StoreError};

impl Endpoints for Pg {
    /// Every webhook with a stored runtime state (webhooks without one are
    /// active).
    async fn endpoint_states(&self) -> Result<HashMap<String, EndpointState>, StoreError> {
        type Row = (
            String,
            String,
            String,
            DateTime<Utc>,
            String,
            Option<DateTime<Utc>>,
            Option<f64>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT webhook_id, state, reason, since, changed_by, throttled_until,
                    extract(epoch FROM throttled_until - now())::float8, note
             FROM webhook_state",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, state, reason, since, changed_by, until, left, note)| {
                    // A pause that has run out is simply active again.
                    let left = left
                        .filter(|s| *s > 0.0)
                        .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok());
                    let status = match state.as_str() {
                        "disabled" => EndpointStatus::Disabled,
                        "throttled" if left.is_some() => EndpointStatus::Throttled,
                        _ => EndpointStatus::Active,
                    };
                    let throttled = status == EndpointStatus::Throttled;
                    (
                        id,
                        EndpointState {
                            status,
                            reason,
                            since,
                            changed_by,
                            throttled_until: until.filter(|_| throttled),
                            throttled_for: left.filter(|_| throttled),
                            note: note.filter(|_| status == EndpointStatus::Disabled),
                        },
                    )
                },
            )
            .collect())
    }

    /// Pauses `webhook` for `pause` on every engine (a receiver's
    /// `Retry-After`), unless it is disabled; a longer pause already in
    /// force is kept. Not audited: it is the receiver's request, and passes.
    async fn throttle(&self, webhook: &str, pause: std::time::Duration) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhook_state (webhook_id, state, reason, since, changed_by, throttled_until)
             VALUES ($1, 'throttled', 'retry_after', now(), $3, now() + make_interval(secs => $2::float8))
             ON CONFLICT (webhook_id) DO UPDATE SET
                 since = CASE WHEN webhook_state.state = 'throttled'
                               AND webhook_state.throttled_until > now()
                          THEN webhook_state.since ELSE now() END,
                 state = 'throttled', reason = 'retry_after', changed_by = EXCLUDED.changed_by,
                 throttled_until = GREATEST(
                     CASE WHEN webhook_state.state = 'throttled' THEN webhook_state.throttled_until END,
                     EXCLUDED.throttled_until)
             WHERE webhook_state.state <> 'disabled'",
        )
        .bind(webhook)
        .bind(pause.as_secs_f64())
        .bind(crate::domain::ENGINE_SOURCE)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Sets `webhook`'s state, with its audit record and audit event, and
    /// (on a real change) `event` announcing it, in one transaction. Returns
    /// the state in force afterwards and whether it changed; setting the
    /// state it already has changes nothing and records nothing.
    async fn set_endpoint_state(
        &self,
        webhook: &str,
        state: &EndpointState,
        audit: (&AuditRow, &NewEvent),
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<(EndpointState, bool), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Serialises concurrent changes of one webhook.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('webhook_state:' || $1))")
            .bind(webhook)
            .execute(&mut *tx)
            .await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT state FROM webhook_state WHERE webhook_id = $1")
                .bind(webhook)
                .fetch_optional(&mut *tx)
                .await?;
        let was_disabled = current.as_deref() == Some("disabled");
        let now_disabled = state.status == EndpointStatus::Disabled;
        if was_disabled == now_disabled {
            // Nothing to change: answer with the state in force as read
            // (a throttled webhook shows as throttled, with its deadline).
            drop(tx);
            let kept = self
                .endpoint_states()
                .await?
                .remove(webhook)
                .unwrap_or_else(|| state.clone());
            return Ok((kept, false));
        }
        sqlx::query(
            "INSERT INTO webhook_state (webhook_id, state, reason, since, changed_by, note)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (webhook_id) DO UPDATE
             SET state = EXCLUDED.state, reason = EXCLUDED.reason,
                 since = EXCLUDED.since, changed_by = EXCLUDED.changed_by,
                 throttled_until = NULL, note = EXCLUDED.note",
        )
        .bind(webhook)
        .bind(state.status.as_str())
        .bind(crate::store::storable(&state.reason))
        .bind(state.since)
        .bind(crate::store::storable(&state.changed_by))
        .bind(state.note.as_deref().map(crate::store::storable))
        .execute(&mut *tx)
        .await?;
        let (row, audit_event) = audit;
        super::events::insert_statement(&mut tx, &[audit_event.clone(), event.clone()], now)
            .await?;
        super::inbound::insert_audit(&mut tx, row, audit_event).await?;
        // Enabling makes the webhook's pending deliveries claimable: wake
        // every engine.
        super::queue::notify(&mut tx).await?;
        tx.commit().await?;
        Ok((state.clone(), true))
    }

    /// Whether `webhook` has failed every attempt for at least `after`
    /// (by the database's clock) and at least `min_failures` times since its
    /// last success; with its last error kind.
    async fn failing_for(
        &self,
        webhook: &str,
        after: std::time::Duration,
        min_failures: i32,
    ) -> Result<Option<Option<String>>, StoreError> {
        let row: Option<Option<String>> = sqlx::query_scalar(
            "SELECT last_error_kind FROM webhook_health
             WHERE webhook_id = $1 AND failures_since_success >= $3
               AND failing_since <= now() - make_interval(secs => $2::float8)",
        )
        .bind(webhook)
        .bind(after.as_secs_f64())
        .bind(min_failures)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }
}
