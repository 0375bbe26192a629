//! `source_rejects` on PostgreSQL.

use super::Pg;
use crate::store::contract::Rejects;
use crate::store::{NewReject, RejectRow, StoreError, storable};

impl Rejects for Pg {
    async fn record_rejects(&self, rejects: &[NewReject]) -> Result<(), StoreError> {
        if rejects.is_empty() {
            return Ok(());
        }
        let mut q = sqlx::QueryBuilder::new(
            "INSERT INTO source_rejects (source_id, position, reason, value, value_bytes, at) ",
        );
        q.push_values(rejects, |mut row, r| {
            row.push_bind(storable(&r.source_id).into_owned())
                .push_bind(storable(&r.position).into_owned())
                .push_bind(storable(&r.reason).into_owned())
                .push_bind(r.value.clone())
                .push_bind(i64::try_from(r.value_bytes).unwrap_or(i64::MAX))
                .push_bind(r.at);
        });
        q.push(" ON CONFLICT (source_id, position) DO NOTHING");
        q.build().execute(&self.pool).await?;
        Ok(())
    }

    async fn purge_rejects(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        batch: u32,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM source_rejects WHERE id IN
               (SELECT id FROM source_rejects WHERE at < $1 ORDER BY id LIMIT $2)",
        )
        .bind(before)
        .bind(i64::from(batch))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn list_rejects(
        &self,
        source_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RejectRow>, StoreError> {
        type Row = (
            i64,
            String,
            String,
            String,
            Vec<u8>,
            i64,
            chrono::DateTime<chrono::Utc>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, source_id, position, reason, value, value_bytes, at FROM source_rejects
             WHERE source_id = $1 AND ($2::bigint IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(source_id)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, s, p, r, v, n, at)| RejectRow::from_parts(id, s, p, r, &v, n, at))
            .collect())
    }
}
