//! The store under test as the soak sees it: a private PostgreSQL cluster
//! (never the shared server on :5432) or the engine's embedded SQLite file
//! in the run directory, and the read-only questions the verdict asks of
//! it once the chaos is over (unfinished deliveries, rescued sends, what is
//! known of a lost item). It never writes to the store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::SqliteConnectOptions;

use crate::pgtmp::PrivatePg;

/// Which store the engine runs on (`--store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    Postgres,
    Sqlite,
}

#[derive(Debug)]
pub enum Db {
    Postgres(PrivatePg),
    /// The database file; its directory holds nothing else of ours.
    Sqlite(PathBuf),
}

impl Db {
    /// A fresh private PostgreSQL cluster, or `run_dir/db/soak.db` (the
    /// engine creates it).
    pub fn start(kind: StoreKind, run_dir: &Path) -> anyhow::Result<Self> {
        Ok(match kind {
            StoreKind::Postgres => {
                Self::Postgres(tokio::task::block_in_place(PrivatePg::start_new))
            }
            StoreKind::Sqlite => {
                let dir = run_dir.join("db");
                std::fs::create_dir_all(&dir)?;
                Self::Sqlite(dir.join("soak.db"))
            }
        })
    }

    /// The engine's `DATABASE_URL`.
    pub fn url(&self) -> String {
        match self {
            Self::Postgres(pg) => pg.url(),
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
        }
    }

    /// Keeps what the store logged (PostgreSQL's server log) in the run dir.
    pub fn save_log(&self, run_dir: &Path) {
        if let Self::Postgres(pg) = self {
            let _ = std::fs::write(run_dir.join("postgres.log"), pg.log());
        }
    }

    /// A small read-only pool for the verdict.
    pub async fn reader(&self) -> anyhow::Result<Reader> {
        Ok(match self {
            Self::Postgres(pg) => Reader::Pg(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect(&pg.url())
                    .await
                    .context("connecting to the private PostgreSQL")?,
            ),
            // Read-only: the engine (the file's only writer) keeps running
            // through the drain; WAL readers do not block it.
            Self::Sqlite(path) => Reader::Lite(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(
                        SqliteConnectOptions::new()
                            .filename(path)
                            .read_only(true)
                            .busy_timeout(Duration::from_secs(5)),
                    )
                    .await
                    .with_context(|| format!("opening {} read-only", path.display()))?,
            ),
        })
    }
}

#[derive(Debug)]
pub enum Reader {
    Pg(sqlx::PgPool),
    Lite(sqlx::SqlitePool),
}

const UNFINISHED: &str = "SELECT count(*) FROM deliveries WHERE state <> 'succeeded'";
const RESCUED: &str = "SELECT count(*) FROM delivery_attempts WHERE error_kind = 'lease_expired'";

/// (event id, what the database says of it and of its delivery) for the
/// given event ids and commands' ids. A command's id is read from its
/// event's body (`payload.command_id`): the payload is stored once, there.
const EXPLAIN_PG: &str = "SELECT e.id, concat_ws(' ',
        'command=' || ((convert_from(e.body, 'UTF8')::jsonb #>> '{payload,command_id}')),
        'received_at=' || e.received_at, 'state=' || d.state,
        'attempts=' || d.attempts, 'last_error=' || d.last_error,
        'history=' || (SELECT string_agg(a.attempt || '@' || a.started_at || ':'
                           || coalesce(a.status_code::text, a.error_kind, '?'), ', '
                           ORDER BY a.attempt)
                       FROM delivery_attempts a WHERE a.delivery_id = d.id))
     FROM events e LEFT JOIN deliveries d ON d.event_id = e.id
     WHERE e.id = ANY($1) OR (convert_from(e.body, 'UTF8')::jsonb #>> '{payload,command_id}') = ANY($2)";

/// The same for SQLite: times are milliseconds since the epoch, the id
/// lists are bound as JSON arrays.
const EXPLAIN_LITE: &str = "SELECT e.id, concat_ws(' ',
        'command=' || json_extract(CAST(e.body AS TEXT), '$.payload.command_id'),
        'received_at=' || e.received_at, 'state=' || d.state,
        'attempts=' || d.attempts, 'last_error=' || d.last_error,
        'history=' || (SELECT group_concat(x, ', ') FROM (
                           SELECT a.attempt || '@' || a.started_at || ':'
                                  || coalesce(a.status_code, a.error_kind, '?') AS x
                           FROM delivery_attempts a WHERE a.delivery_id = d.id
                           ORDER BY a.attempt)))
     FROM events e LEFT JOIN deliveries d ON d.event_id = e.id
     WHERE e.id IN (SELECT value FROM json_each(?1))
        OR json_extract(CAST(e.body AS TEXT), '$.payload.command_id') IN (SELECT value FROM json_each(?2))";

/// Of the accepted event ids and command ids (`$1`, `$2`), how many the
/// store no longer holds (a command as its event, by `command_id`).
const NOT_STORED_PG: &str = "SELECT
        (SELECT count(*) FROM unnest($1::text[]) AS a(id)
         WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = a.id)),
        (SELECT count(*) FROM unnest($2::text[]) AS a(id)
         WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.topic LIKE 'command.%'
                           AND (convert_from(e.body, 'UTF8')::jsonb #>> '{payload,command_id}') = a.id))";

/// The same for SQLite.
const NOT_STORED_LITE: &str = "SELECT
        (SELECT count(*) FROM json_each(?1) AS a
         WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = a.value)),
        (SELECT count(*) FROM json_each(?2) AS a
         WHERE a.value NOT IN (SELECT json_extract(CAST(e.body AS TEXT), '$.payload.command_id') FROM events e
                               WHERE e.topic LIKE 'command.%'
                                 AND json_extract(CAST(e.body AS TEXT), '$.payload.command_id') IS NOT NULL))";

impl Reader {
    /// Accepted events and commands the store does not hold at the end: a
    /// lost write, even where the receiver got the item before it was lost.
    pub async fn not_stored(
        &self,
        events: &[String],
        commands: &[String],
    ) -> anyhow::Result<(i64, i64)> {
        Ok(match self {
            Self::Pg(pool) => {
                sqlx::query_as(NOT_STORED_PG)
                    .bind(events)
                    .bind(commands)
                    .fetch_one(pool)
                    .await?
            }
            Self::Lite(pool) => {
                sqlx::query_as(NOT_STORED_LITE)
                    .bind(serde_json::to_string(events)?)
                    .bind(serde_json::to_string(commands)?)
                    .fetch_one(pool)
                    .await?
            }
        })
    }

    /// Deliveries not `succeeded`.
    pub async fn unfinished(&self) -> anyhow::Result<i64> {
        self.count(UNFINISHED).await
    }

    /// Attempts recorded `lease_expired`: sends cut off by a kill, rescued.
    pub async fn rescued(&self) -> anyhow::Result<i64> {
        self.count(RESCUED).await
    }

    async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        Ok(match self {
            Self::Pg(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
            Self::Lite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
        })
    }

    /// What the database holds for these event ids and command ids.
    pub async fn explain(
        &self,
        events: &[String],
        commands: &[String],
    ) -> anyhow::Result<Vec<(String, String)>> {
        Ok(match self {
            Self::Pg(pool) => {
                sqlx::query_as(EXPLAIN_PG)
                    .bind(events)
                    .bind(commands)
                    .fetch_all(pool)
                    .await?
            }
            Self::Lite(pool) => {
                sqlx::query_as(EXPLAIN_LITE)
                    .bind(serde_json::to_string(events)?)
                    .bind(serde_json::to_string(commands)?)
                    .fetch_all(pool)
                    .await?
            }
        })
    }
}
