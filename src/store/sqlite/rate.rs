//! Rate-limit token buckets on SQLite ([`RateLimits`]), refilled by the
//! database's clock like the PostgreSQL backend's.

use super::{Lite, now_ms};
use crate::store::contract::RateLimits;
use crate::store::{Grant, StoreError};

impl RateLimits for Lite {
    async fn take_tokens(
        &self,
        webhook: &str,
        rate: f64,
        burst: f64,
        want: u32,
    ) -> Result<Grant, StoreError> {
        let now = now_ms();
        let mut w = self.write.take().await?;
        let mut tx = w.begin().await?;
        let row: Option<(f64, i64)> =
            sqlx::query_as("SELECT tokens, updated_at FROM webhook_rate WHERE webhook_id = ?1")
                .bind(webhook)
                .fetch_optional(&mut *tx)
                .await?;
        // First use: a full bucket.
        let avail = row.map_or(burst, |(tokens, updated)| {
            let elapsed = (now - updated).max(0) as f64 / 1000.0;
            burst.min(tokens + rate * elapsed)
        });
        let granted = avail.floor().min(f64::from(want)).max(0.0);
        let left = avail - granted;
        sqlx::query(
            "INSERT INTO webhook_rate (webhook_id, tokens, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (webhook_id) DO UPDATE SET tokens = excluded.tokens, updated_at = excluded.updated_at",
        )
        .bind(webhook)
        .bind(left)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        w.done();
        let granted = granted as u32;
        let next_in = if granted > 0 {
            0.0
        } else {
            (1.0 - left).max(0.0) / rate
        };
        Ok(Grant { granted, next_in })
    }

    async fn give_back_tokens(&self, webhook: &str, n: u32, burst: f64) -> Result<(), StoreError> {
        let mut w = self.write.take().await?;
        sqlx::query("UPDATE webhook_rate SET tokens = MIN(?3, tokens + ?2) WHERE webhook_id = ?1")
            .bind(webhook)
            .bind(f64::from(n))
            .bind(burst)
            .execute(&mut *w)
            .await?;
        w.done();
        Ok(())
    }
}
