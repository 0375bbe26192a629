//! Rate limits shared by every engine on one database: a token bucket per
//! webhook, refilled at `rate` a second by the database's clock, holding at
//! most `burst`. An engine takes tokens before it claims that webhook's
//! deliveries and gives back what the claim did not use.

use super::Pg;
use crate::store::contract::RateLimits;
use crate::store::{Grant, StoreError};

impl RateLimits for Pg {
    /// Takes up to `want` tokens from `webhook`'s bucket.
    async fn take_tokens(
        &self,
        webhook: &str,
        rate: f64,
        burst: f64,
        want: u32,
    ) -> Result<Grant, StoreError> {
        for _ in 0..2 {
            let row: Option<(i32, f64)> = sqlx::query_as(
                "WITH cur AS (
                     SELECT LEAST($3::float8, tokens + $2::float8
                                  * GREATEST(extract(epoch FROM now() - updated_at)::float8, 0)) AS avail
                     FROM webhook_rate WHERE webhook_id = $1 FOR UPDATE
                 )
                 UPDATE webhook_rate r
                 SET tokens = c.avail - LEAST(floor(c.avail), $4::float8), updated_at = now()
                 FROM cur c WHERE r.webhook_id = $1
                 RETURNING LEAST(floor(c.avail), $4::float8)::int4, c.avail - LEAST(floor(c.avail), $4::float8)",
            )
            .bind(webhook)
            .bind(rate)
            .bind(burst)
            .bind(f64::from(want))
            .fetch_optional(&self.pool)
            .await?;
            if let Some((granted, left)) = row {
                let granted = u32::try_from(granted).unwrap_or(0);
                let next_in = if granted > 0 {
                    0.0
                } else {
                    (1.0 - left).max(0.0) / rate
                };
                return Ok(Grant { granted, next_in });
            }
            // First use: a full bucket.
            sqlx::query(
                "INSERT INTO webhook_rate (webhook_id, tokens, updated_at) VALUES ($1, $2, now())
                 ON CONFLICT (webhook_id) DO NOTHING",
            )
            .bind(webhook)
            .bind(burst)
            .execute(&self.pool)
            .await?;
        }
        Ok(Grant {
            granted: 0,
            next_in: 1.0 / rate,
        })
    }

    /// Returns `n` unused tokens to `webhook`'s bucket.
    async fn give_back_tokens(&self, webhook: &str, n: u32, burst: f64) -> Result<(), StoreError> {
        sqlx::query("UPDATE webhook_rate SET tokens = LEAST($3::float8, tokens + $2::float8) WHERE webhook_id = $1")
            .bind(webhook)
            .bind(f64::from(n))
            .bind(burst)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
