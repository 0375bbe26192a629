//! `source_rejects` on SQLite.

use super::{Lite, at, ms};
use crate::store::contract::Rejects;
use crate::store::{NewReject, RejectRow, StoreError};

impl Rejects for Lite {
    async fn record_rejects(&self, rejects: &[NewReject]) -> Result<(), StoreError> {
        if rejects.is_empty() {
            return Ok(());
        }
        let mut w = self.write.take().await?;
        let mut tx = w.begin().await?;
        for r in rejects {
            sqlx::query(
                "INSERT INTO source_rejects (source_id, position, reason, value, value_bytes, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (source_id, position) DO NOTHING",
            )
            .bind(&r.source_id)
            .bind(&r.position)
            .bind(&r.reason)
            .bind(&r.value)
            .bind(i64::try_from(r.value_bytes).unwrap_or(i64::MAX))
            .bind(ms(r.at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        w.done();
        Ok(())
    }

    async fn purge_rejects(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        batch: u32,
    ) -> Result<u64, StoreError> {
        let mut w = self.write.take().await?;
        let done = sqlx::query(
            "DELETE FROM source_rejects WHERE id IN
               (SELECT id FROM source_rejects WHERE at < ?1 ORDER BY id LIMIT ?2)",
        )
        .bind(ms(before))
        .bind(i64::from(batch))
        .execute(&mut *w)
        .await?;
        w.done();
        Ok(done.rows_affected())
    }

    async fn list_rejects(
        &self,
        source_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RejectRow>, StoreError> {
        type Row = (i64, String, String, String, Vec<u8>, i64, i64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, source_id, position, reason, value, value_bytes, at FROM source_rejects
             WHERE source_id = ?1 AND (?2 IS NULL OR id < ?2)
             ORDER BY id DESC LIMIT ?3",
        )
        .bind(source_id)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, s, p, r, v, n, t)| RejectRow::from_parts(id, s, p, r, &v, n, at(t)))
            .collect())
    }
}
