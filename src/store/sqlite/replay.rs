//! Replay on SQLite ([`Replay`]): a finished delivery back to `pending` (or
//! `waiting` in its line), due now, with a fresh budget and the same id,
//! in one transaction with its audit record and event.

use super::events::promote;
use super::queue::audited;
use super::{Lite, ms, now_ms};
use crate::store::contract::Replay;
use crate::store::queue::{REJOIN, lines_from};
use crate::store::{AuditRow, DeliveryState, NewEvent, ReplayFilter, ReplayResult, StoreError};
use chrono::{DateTime, Utc};
use uuid::Uuid;

impl Replay for Lite {
    async fn replay(
        &self,
        id: Uuid,
        audit: Option<(&AuditRow, &NewEvent)>,
        now: DateTime<Utc>,
    ) -> Result<Option<ReplayResult>, StoreError> {
        let mut w = self.write.take().await?;
        let mut tx = w.begin().await?;
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM deliveries WHERE id = ?1")
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
            "UPDATE deliveries SET state = {REJOIN}, replay_base = attempts, next_attempt_at = ?2,
                    completed_at = NULL, updated_at = ?3
             WHERE id = ?1
             RETURNING webhook_id, order_key"
        ))
        .bind(id)
        .bind(now_ms())
        .bind(ms(now))
        .fetch_optional(&mut *tx)
        .await?;
        promote(&mut tx, &lines_from(line)).await?;
        if let Some((row, event)) = audit {
            audited(&mut tx, row, event, now).await?;
        }
        tx.commit().await?;
        w.done();
        Ok(Some(ReplayResult::Replayed(state)))
    }

    async fn replay_matching(
        &self,
        filter: &ReplayFilter,
        audit: impl FnOnce(u64) -> (AuditRow, NewEvent),
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut w = self.write.take().await?;
        let mut tx = w.begin().await?;
        let replayed: Vec<(String, Option<String>)> = sqlx::query_as(&format!(
            "UPDATE deliveries SET state = {REJOIN}, replay_base = attempts, next_attempt_at = ?6,
                    completed_at = NULL, updated_at = ?7
             WHERE id IN (
                 SELECT id FROM deliveries
                 WHERE state = ?1 AND (?2 IS NULL OR webhook_id = ?2)
                   AND (?3 IS NULL OR completed_at >= ?3)
                   AND (?4 IS NULL OR completed_at < ?4)
                 ORDER BY id LIMIT ?5)
             RETURNING webhook_id, order_key"
        ))
        .bind(filter.state.as_str())
        .bind(filter.webhook_id.as_deref())
        .bind(filter.since.map(ms))
        .bind(filter.until.map(ms))
        .bind(i64::from(filter.limit))
        .bind(now_ms())
        .bind(ms(now))
        .fetch_all(&mut *tx)
        .await?;
        let count = replayed.len() as u64;
        promote(&mut tx, &lines_from(replayed)).await?;
        let (row, event) = audit(count);
        audited(&mut tx, &row, &event, now).await?;
        tx.commit().await?;
        w.done();
        Ok(count)
    }
}
