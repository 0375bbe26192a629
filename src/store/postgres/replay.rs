//! Replay on PostgreSQL ([`Replay`]): a finished delivery back to `pending` (or
//! `waiting` in its line), due now, with a fresh budget and the same id,
//! in one transaction with its audit record and event.

use super::Pg;
use super::lines::settle;
use super::queue::notify;
use crate::store::contract::Replay;
use crate::store::queue::{REJOIN, lines_from};
use crate::store::{DeliveryState, ReplayFilter, ReplayResult, StoreError};
use chrono::{DateTime, Utc};
use uuid::Uuid;

impl Replay for Pg {
    /// Puts a finished (`dead` or `succeeded`) delivery back to `pending`,
    /// due now, with a fresh retry budget and the same id. Returns the state
    /// it was in, or `None` if there is no such delivery.
    /// The audit row and event, when given, are written in the same
    /// transaction as the replay itself.
    async fn replay(
        &self,
        id: Uuid,
        audit: Option<(&crate::store::AuditRow, &crate::store::NewEvent)>,
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
        let line: Option<(String, Option<String>)> = sqlx::query_as(&format!(
            "UPDATE deliveries SET state = {REJOIN}, replay_base = attempts, next_attempt_at = now(),
                    completed_at = NULL, updated_at = $2
             WHERE id = $1
             RETURNING webhook_id, order_key"
        ))
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        settle(&mut tx, &lines_from(line)).await?;
        if let Some((row, event)) = audit {
            super::events::insert_statement(&mut tx, std::slice::from_ref(event), now).await?;
            super::inbound::insert_audit(&mut tx, row, event).await?;
        }
        notify(&mut tx).await?;
        tx.commit().await?;
        Ok(Some(ReplayResult::Replayed(state)))
    }

    /// Puts every delivery `filter` names (at most `limit`, oldest first) back
    /// to `pending` with the same id and a fresh budget, in one transaction
    /// with the audit row and event `audit` makes from the count.
    async fn replay_matching(
        &self,
        filter: &ReplayFilter,
        audit: impl FnOnce(u64) -> (crate::store::AuditRow, crate::store::NewEvent),
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let replayed: Vec<(String, Option<String>)> = sqlx::query_as(&format!(
            "UPDATE deliveries SET state = {REJOIN}, replay_base = attempts, next_attempt_at = now(),
                    completed_at = NULL, updated_at = $6
             WHERE id = ANY(ARRAY(
                 SELECT id FROM deliveries
                 WHERE state = $1 AND ($2::text IS NULL OR webhook_id = $2)
                   AND ($3::timestamptz IS NULL OR completed_at >= $3)
                   AND ($4::timestamptz IS NULL OR completed_at < $4)
                 ORDER BY id LIMIT $5
                 FOR UPDATE SKIP LOCKED))
             RETURNING webhook_id, order_key"
        ))
        .bind(filter.state.as_str())
        .bind(filter.webhook_id.as_deref())
        .bind(filter.since)
        .bind(filter.until)
        .bind(i64::from(filter.limit))
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let count = replayed.len() as u64;
        settle(&mut tx, &lines_from(replayed)).await?;
        let (row, event) = audit(count);
        super::events::insert_statement(&mut tx, std::slice::from_ref(&event), now).await?;
        super::inbound::insert_audit(&mut tx, &row, &event).await?;
        if count > 0 {
            notify(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(count)
    }
}
