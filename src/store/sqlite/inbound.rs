//! Inbound commands and audit records on SQLite ([`Audit`]): each command
//! with its dispatch event, audit row and replay protection in one
//! transaction.

use super::events::{insert_audit, insert_rows};
use super::{Lite, at, ms, now_ms};
use crate::store::contract::Audit;
use crate::store::{
    AuditFilter, AuditListRow, AuditRow, CommandStored, IdempotencyRecord, NewCommand, NewEvent,
    SignatureRecord, StoreError, storable,
};
use chrono::{DateTime, Utc};

impl Audit for Lite {
    async fn accept_command(
        &self,
        cmd: &NewCommand,
        audit: &AuditRow,
        audit_event: &NewEvent,
        signature: &SignatureRecord,
        idempotency: Option<&IdempotencyRecord>,
        now: DateTime<Utc>,
    ) -> Result<CommandStored, StoreError> {
        let mut w = self.write.take().await?;
        let mut tx = w.begin().await?;
        let actor = storable(&signature.actor_id);
        let expires = signature
            .signed_at
            .saturating_mul(1000)
            .saturating_add(crate::store::millis(signature.ttl));
        let fresh: Option<i32> = sqlx::query_scalar(
            "INSERT INTO inbound_signatures (actor_id, digest, status, response, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (actor_id, digest) DO UPDATE
                 SET status = excluded.status, response = excluded.response,
                     created_at = excluded.created_at, expires_at = excluded.expires_at
                 WHERE inbound_signatures.expires_at <= ?7
             RETURNING 1",
        )
        .bind(&*actor)
        .bind(&signature.digest[..])
        .bind(i32::from(signature.status))
        .bind(&signature.response)
        .bind(ms(now))
        .bind(expires)
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await?;
        if fresh.is_none() {
            let (status, response): (i32, String) = sqlx::query_as(
                "SELECT status, response FROM inbound_signatures WHERE actor_id = ?1 AND digest = ?2",
            )
            .bind(&*actor)
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
            let claimed: Option<i32> = sqlx::query_scalar(
                "INSERT INTO idempotency_keys (actor_id, key, body_sha256, status, response, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (actor_id, key) DO UPDATE
                     SET body_sha256 = excluded.body_sha256, status = excluded.status, response = excluded.response,
                         created_at = excluded.created_at, expires_at = excluded.expires_at
                     WHERE idempotency_keys.expires_at <= ?6
                 RETURNING 1",
            )
            .bind(&idem.actor_id)
            .bind(&idem.key)
            .bind(&idem.body_sha256[..])
            .bind(i32::from(idem.status))
            .bind(&idem.response)
            .bind(ms(now))
            .bind(ms(expires))
            .fetch_optional(&mut *tx)
            .await?;
            if claimed.is_none() {
                let (hash, status, response): (Vec<u8>, i32, String) = sqlx::query_as(
                    "SELECT body_sha256, status, response FROM idempotency_keys WHERE actor_id = ?1 AND key = ?2",
                )
                .bind(&idem.actor_id)
                .bind(&idem.key)
                .fetch_one(&mut *tx)
                .await?;
                return Ok(CommandStored::for_used_key(&hash, idem, status, response));
            }
        }
        insert_rows(&mut tx, &[cmd.event.clone(), audit_event.clone()], now).await?;
        sqlx::query(
            "INSERT INTO commands (id, action, params, actor_id, received_at, idempotency_key, event_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(cmd.id)
        .bind(&cmd.action)
        .bind(&cmd.params)
        .bind(storable(&cmd.actor_id))
        .bind(ms(now))
        .bind(cmd.idempotency_key.as_deref())
        .bind(&cmd.event.id)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit, audit_event).await?;
        tx.commit().await?;
        w.done();
        Ok(CommandStored::Accepted)
    }

    async fn record_audit(
        &self,
        audit: &AuditRow,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut w = self.write.take().await?;
        let mut tx = w.begin().await?;
        insert_rows(&mut tx, std::slice::from_ref(event), now).await?;
        insert_audit(&mut tx, audit, event).await?;
        tx.commit().await?;
        w.done();
        Ok(())
    }

    async fn purge_idempotency_keys(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut w = self.write.take().await?;
        let keys = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= ?1")
            .bind(ms(now))
            .execute(&mut *w)
            .await?;
        w.done();
        let mut w = self.write.take().await?;
        let signatures = sqlx::query("DELETE FROM inbound_signatures WHERE expires_at <= ?1")
            .bind(now_ms())
            .execute(&mut *w)
            .await?;
        w.done();
        Ok(keys.rows_affected() + signatures.rows_affected())
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditListRow>, StoreError> {
        type Row = (
            i64,
            i64,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, at, actor_id, action, outcome, target, request_id, source_ip FROM audit_log
             WHERE (?1 IS NULL OR actor_id = ?1) AND (?2 IS NULL OR at >= ?2)
               AND (?4 IS NULL OR action = ?4) AND (?5 IS NULL OR id < ?5)
             ORDER BY id DESC LIMIT ?3",
        )
        .bind(f.actor.as_deref())
        .bind(f.since.map(ms))
        .bind(i64::from(f.limit))
        .bind(f.action.as_deref())
        .bind(f.before)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, when, actor_id, action, outcome, target, request_id, source_ip)| {
                    AuditListRow {
                        id,
                        at: at(when),
                        actor_id,
                        action,
                        outcome,
                        target,
                        request_id,
                        source_ip,
                    }
                },
            )
            .collect())
    }
}
