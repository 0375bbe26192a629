//! What the console's overview reads besides the queue depth.

use super::{Lite, now_ms};
use crate::store::contract::Overview;
use crate::store::{StoreError, millis};

impl Overview for Lite {
    /// Attempts that succeeded and failed in the last `window`, all
    /// webhooks, from the per-minute health counters.
    async fn recent_outcomes(&self, window: std::time::Duration) -> Result<(i64, i64), StoreError> {
        Ok(sqlx::query_as(
            "SELECT COALESCE(sum(succeeded), 0), COALESCE(sum(failed), 0)
             FROM webhook_minutes WHERE minute > ?1",
        )
        .bind(now_ms().saturating_sub(millis(window)))
        .fetch_one(&self.read)
        .await?)
    }
}
