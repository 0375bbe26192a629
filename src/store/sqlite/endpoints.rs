//! Runtime endpoint state on SQLite ([`Endpoints`]): the same rules as the
//! PostgreSQL backend's, in one transaction on the write connection.

use super::queue::audited;
use super::{Lite, after, at, ms, now_ms};
use crate::store::contract::Endpoints;
use crate::store::{
    AuditRow, EndpointState, EndpointStatus, NewEvent, StoreError, millis, storable,
};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

impl Endpoints for Lite {
    async fn endpoint_states(&self) -> Result<HashMap<String, EndpointState>, StoreError> {
        type Row = (
            String,
            String,
            String,
            i64,
            String,
            Option<i64>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT webhook_id, state, reason, since, changed_by, throttled_until, note FROM webhook_state",
        )
        .fetch_all(&self.read)
        .await?;
        let now = now_ms();
        Ok(rows
            .into_iter()
            .map(|(id, state, reason, since, changed_by, until, note)| {
                // A pause that has run out is simply active again.
                let left = until
                    .filter(|&u| u > now)
                    .map(|u| std::time::Duration::from_millis(u64::try_from(u - now).unwrap_or(0)));
                let status = match state.as_str() {
                    "disabled" => EndpointStatus::Disabled,
                    "throttled" if left.is_some() => EndpointStatus::Throttled,
                    _ => EndpointStatus::Active,
                };
                let throttled = status == EndpointStatus::Throttled;
                let state = EndpointState {
                    status,
                    reason,
                    since: at(since),
                    changed_by,
                    throttled_until: until.filter(|_| throttled).map(at),
                    throttled_for: left.filter(|_| throttled),
                    note: note.filter(|_| status == EndpointStatus::Disabled),
                };
                (id, state)
            })
            .collect())
    }

    async fn throttle(&self, webhook: &str, pause: std::time::Duration) -> Result<(), StoreError> {
        let now = now_ms();
        let mut w = self.write.take().await?;
        sqlx::query(
            "INSERT INTO webhook_state AS s (webhook_id, state, reason, since, changed_by, throttled_until)
             VALUES (?1, 'throttled', 'retry_after', ?2, ?3, ?4)
             ON CONFLICT (webhook_id) DO UPDATE SET
                 since = CASE WHEN s.state = 'throttled' AND s.throttled_until > ?2 THEN s.since ELSE ?2 END,
                 state = 'throttled', reason = 'retry_after', changed_by = excluded.changed_by,
                 throttled_until = MAX(CASE WHEN s.state = 'throttled' THEN COALESCE(s.throttled_until, 0) ELSE 0 END,
                                       excluded.throttled_until)
             WHERE s.state <> 'disabled'",
        )
        .bind(webhook)
        .bind(now)
        .bind(crate::domain::ENGINE_SOURCE)
        .bind(after(now, pause))
        .execute(&mut *w)
        .await?;
        w.done();
        Ok(())
    }

    async fn set_endpoint_state(
        &self,
        webhook: &str,
        state: &EndpointState,
        audit: (&AuditRow, &NewEvent),
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<(EndpointState, bool), StoreError> {
        let mut w = self.write.take().await?;
        let mut tx = w.begin().await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT state FROM webhook_state WHERE webhook_id = ?1")
                .bind(webhook)
                .fetch_optional(&mut *tx)
                .await?;
        let was_disabled = current.as_deref() == Some("disabled");
        if was_disabled == (state.status == EndpointStatus::Disabled) {
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
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (webhook_id) DO UPDATE
             SET state = excluded.state, reason = excluded.reason,
                 since = excluded.since, changed_by = excluded.changed_by,
                 throttled_until = NULL, note = excluded.note",
        )
        .bind(webhook)
        .bind(state.status.as_str())
        .bind(storable(&state.reason))
        .bind(ms(state.since))
        .bind(storable(&state.changed_by))
        .bind(state.note.as_deref().map(storable))
        .execute(&mut *tx)
        .await?;
        let (row, audit_event) = audit;
        audited(&mut tx, row, audit_event, now).await?;
        super::events::insert_rows(&mut tx, std::slice::from_ref(event), now).await?;
        tx.commit().await?;
        w.done();
        Ok((state.clone(), true))
    }

    async fn failing_for(
        &self,
        webhook: &str,
        after: std::time::Duration,
        min_failures: i32,
    ) -> Result<Option<Option<String>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT last_error_kind FROM webhook_health
             WHERE webhook_id = ?1 AND failures_since_success >= ?3 AND failing_since <= ?2",
        )
        .bind(webhook)
        .bind(now_ms().saturating_sub(millis(after)))
        .bind(min_failures)
        .fetch_optional(&self.read)
        .await?)
    }
}
