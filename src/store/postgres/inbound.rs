//! Inbound commands and the audit log: a command, its dispatch event, its
//! audit row and audit event, and its idempotency record are written in one
//! transaction, so none exists without the others.

use chrono::{DateTime, Utc};

use super::Pg;
use super::events::insert_statement;
use crate::store::contract::Audit;
use crate::store::{
    AuditFilter, AuditListRow, AuditRow, CommandStored, IdempotencyRecord, NewCommand, NewEvent,
    SignatureRecord, StoreError, storable,
};

pub(super) async fn insert_audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    audit: &AuditRow,
    event: &NewEvent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor_id, action, outcome, target, request_id, source_ip, event_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(audit.at)
    .bind(storable(&audit.actor_id))
    .bind(storable(&audit.action))
    .bind(audit.outcome)
    .bind(audit.target.as_deref().map(storable))
    .bind(audit.request_id.as_deref().map(storable))
    .bind(audit.source_ip.as_deref().map(storable))
    .bind(&event.id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Audit for Pg {
    /// Stores an accepted command with everything that goes with it, unless
    /// its signature was accepted before (a replayed request: the first
    /// answer, again) or its `Idempotency-Key` was used before.
    async fn accept_command(
        &self,
        cmd: &NewCommand,
        audit: &AuditRow,
        audit_event: &NewEvent,
        signature: &SignatureRecord,
        idempotency: Option<&IdempotencyRecord>,
        now: DateTime<Utc>,
    ) -> Result<CommandStored, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Like the idempotency key below: a concurrent copy waits on this row.
        // Expiry is by the database's clock, so an engine whose clock runs
        // ahead cannot forget a signature another engine still accepts.
        let fresh: Option<i32> = sqlx::query_scalar(
            "INSERT INTO inbound_signatures (actor_id, digest, status, response, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, to_timestamp($6) + $7 * interval '1 millisecond')
             ON CONFLICT (actor_id, digest) DO UPDATE
                 SET status = EXCLUDED.status, response = EXCLUDED.response,
                     created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
                 WHERE inbound_signatures.expires_at <= now()
             RETURNING 1",
        )
        .bind(storable(&signature.actor_id))
        .bind(&signature.digest[..])
        .bind(i32::from(signature.status))
        .bind(&signature.response)
        .bind(now)
        .bind(signature.signed_at as f64)
        .bind(crate::store::millis(signature.ttl))
        .fetch_optional(&mut *tx)
        .await?;
        if fresh.is_none() {
            let (status, response): (i32, String) = sqlx::query_as(
                "SELECT status, response FROM inbound_signatures WHERE actor_id = $1 AND digest = $2",
            )
            .bind(storable(&signature.actor_id))
            .bind(&signature.digest[..])
            .fetch_one(&mut *tx)
            .await?;
            return Ok(CommandStored::Replayed {
                status: u16::try_from(status).unwrap_or(202),
                response,
            });
        }
        if let Some(idem) = idempotency {
            let expires =
                now + chrono::Duration::from_std(idem.ttl).unwrap_or(chrono::Duration::days(1));
            // A concurrent first request holds the key's row: this insert waits
            // for it to commit, then finds the key taken and replays its answer.
            let claimed: Option<i32> = sqlx::query_scalar(
                "INSERT INTO idempotency_keys (actor_id, key, body_sha256, status, response, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (actor_id, key) DO UPDATE
                     SET body_sha256 = EXCLUDED.body_sha256, status = EXCLUDED.status, response = EXCLUDED.response,
                         created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
                     WHERE idempotency_keys.expires_at <= $6
                 RETURNING 1",
            )
            .bind(&idem.actor_id)
            .bind(&idem.key)
            .bind(&idem.body_sha256[..])
            .bind(i32::from(idem.status))
            .bind(&idem.response)
            .bind(now)
            .bind(expires)
            .fetch_optional(&mut *tx)
            .await?;
            if claimed.is_none() {
                let (hash, status, response): (Vec<u8>, i32, String) = sqlx::query_as(
                    "SELECT body_sha256, status, response FROM idempotency_keys WHERE actor_id = $1 AND key = $2",
                )
                .bind(&idem.actor_id)
                .bind(&idem.key)
                .fetch_one(&mut *tx)
                .await?;
                return Ok(CommandStored::for_used_key(&hash, idem, status, response));
            }
        }
        insert_statement(&mut tx, &[cmd.event.clone(), audit_event.clone()], now).await?;
        sqlx::query(
            "INSERT INTO commands (id, action, params, actor_id, received_at, idempotency_key, event_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(cmd.id)
        .bind(&cmd.action)
        .bind(&cmd.params)
        .bind(storable(&cmd.actor_id))
        .bind(now)
        .bind(cmd.idempotency_key.as_deref())
        .bind(&cmd.event.id)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit, audit_event).await?;
        tx.commit().await?;
        Ok(CommandStored::Accepted)
    }

    /// Records an audit entry and emits its event, on their own (denials).
    async fn record_audit(
        &self,
        audit: &AuditRow,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_statement(&mut tx, std::slice::from_ref(event), now).await?;
        insert_audit(&mut tx, audit, event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets idempotency keys past their 24 h and inbound signatures past
    /// their tolerance window.
    async fn purge_idempotency_keys(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let keys = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        let signatures = sqlx::query("DELETE FROM inbound_signatures WHERE expires_at <= now()")
            .execute(&self.pool)
            .await?;
        Ok(keys.rows_affected() + signatures.rows_affected())
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditListRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, at, actor_id, action, outcome, target, request_id, source_ip FROM audit_log
             WHERE ($1::text IS NULL OR actor_id = $1) AND ($2::timestamptz IS NULL OR at >= $2)
               AND ($4::text IS NULL OR action = $4) AND ($5::bigint IS NULL OR id < $5)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(f.actor.as_deref().map(storable))
        .bind(f.since)
        .bind(i64::from(f.limit))
        .bind(f.action.as_deref().map(storable))
        .bind(f.before)
        .fetch_all(&self.pool)
        .await?)
    }
}
