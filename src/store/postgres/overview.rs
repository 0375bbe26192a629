//! What the console's overview reads besides the queue depth.

use super::Pg;
use crate::store::StoreError;
use crate::store::contract::Overview;

impl Overview for Pg {
    /// Attempts that succeeded and failed in the last `window`, all
    /// webhooks, from the per-minute health counters.
    async fn recent_outcomes(&self, window: std::time::Duration) -> Result<(i64, i64), StoreError> {
        Ok(sqlx::query_as(
            "SELECT COALESCE(sum(succeeded), 0)::bigint, COALESCE(sum(failed), 0)::bigint
             FROM webhook_minutes WHERE minute > now() - make_interval(secs => $1::float8)",
        )
        .bind(window.as_secs_f64())
        .fetch_one(&self.pool)
        .await?)
    }
}
