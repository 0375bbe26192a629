//! The database a test runs against, and `both!`, which runs one test body
//! against each store: a fresh PostgreSQL database and a fresh SQLite file
//! in a temporary directory. The PostgreSQL server is `DATABASE_URL`'s, or
//! `postgres://postgres@127.0.0.1:5432/postgres` when it is unset.
//!
//! Tests read rows with plain SQL through [`TestDb`] (counts, states, ids):
//! the tables and their text columns are the same in both stores. Times are
//! not (`timestamptz` against integer milliseconds): where a test moves a
//! time it writes [`TestDb::ago`] into its SQL.

use std::sync::Arc;

use aion_webhooks::store::Store;
use sqlx::{FromRow, PgPool, SqlitePool};

/// Defines a module `$name` holding the test body twice: `postgres` and
/// `sqlite`, each given its fresh database as `$db: TestDb`.
macro_rules! both {
    ($(#[$attr:meta])* async fn $name:ident($db:ident) $body:block) => {
        both!(@with $crate::db::TestDb::sqlite().await; $(#[$attr])* async fn $name($db) $body);
    };
    (@with $sqlite:expr; $(#[$attr:meta])* async fn $name:ident($db:ident) $body:block) => {
        $(#[$attr])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn postgres() {
                let (pool, fresh) = $crate::db::fresh_postgres().await;
                let $db = $crate::db::TestDb::Postgres(pool);
                $body
                fresh.drop_database().await;
            }

            #[tokio::test]
            async fn sqlite() {
                let $db = $sqlite;
                $body
            }
        }
    };
}

/// A test of PostgreSQL-only behaviour (several engines on one database, a
/// database restart): the body gets a fresh database's pool as `$pool`.
macro_rules! pg_test {
    ($(#[$attr:meta])* async fn $name:ident($pool:ident) $body:block) => {
        $(#[$attr])*
        #[tokio::test]
        async fn $name() {
            let ($pool, fresh) = $crate::db::fresh_postgres().await;
            $body
            fresh.drop_database().await;
        }
    };
}

/// As [`both!`], for tests that run the engine binary: the SQLite file is
/// left to the engine (it takes the file's lock), the test only reads it.
macro_rules! both_binary {
    ($(#[$attr:meta])* async fn $name:ident($db:ident) $body:block) => {
        both!(@with $crate::db::TestDb::sqlite_file(); $(#[$attr])* async fn $name($db) $body);
    };
}

/// The server tests make their databases on: `DATABASE_URL` (any database
/// on it), else the local PostgreSQL `.ci/run` makes sure of.
fn postgres_server() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database made for one test, dropped when the test passes. One that a
/// failed test leaves behind is dropped by a later test once it is an hour
/// old (its name carries its creation time), so none pile up.
#[derive(Debug)]
pub struct FreshPostgres {
    name: String,
}

const TEST_DB_PREFIX: &str = "aion_test_";

/// A fresh, empty database on the test server and a pool on it.
pub async fn fresh_postgres() -> (PgPool, FreshPostgres) {
    use sqlx::{ConnectOptions, Connection};
    let server: sqlx::postgres::PgConnectOptions = postgres_server().parse().expect("DATABASE_URL");
    let mut admin = server
        .clone()
        .log_statements(tracing::log::LevelFilter::Off)
        .connect()
        .await
        .expect(
            "connect to the test PostgreSQL (scripts/test starts it; see docs/src/development.md)",
        );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let stale: Vec<(String,)> = sqlx::query_as(&format!(
        "SELECT datname FROM pg_database WHERE datname LIKE '{TEST_DB_PREFIX}%'"
    ))
    .fetch_all(&mut admin)
    .await
    .expect("list test databases");
    for (name,) in stale {
        let made: Option<u64> = name
            .strip_prefix(TEST_DB_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse().ok());
        if made.is_some_and(|made| made + 3600 < now) {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut admin)
                .await;
        }
    }
    let name = format!("{TEST_DB_PREFIX}{now}_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .expect("create the test database");
    admin.close().await.ok();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(20)
        .connect_with(server.database(&name))
        .await
        .expect("connect to the test database");
    (pool, FreshPostgres { name })
}

impl FreshPostgres {
    /// Drops the database (and ends any session still on it).
    pub async fn drop_database(self) {
        use sqlx::{ConnectOptions, Connection};
        let server: sqlx::postgres::PgConnectOptions =
            postgres_server().parse().expect("DATABASE_URL");
        if let Ok(mut admin) = server.connect().await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin)
            .await;
            admin.close().await.ok();
        }
    }
}

#[derive(Clone, Debug)]
pub enum TestDb {
    Postgres(PgPool),
    Sqlite {
        /// The engine's store: the file's lock allows one per process, so
        /// every app and helper of the test shares this one. `None` where
        /// an engine process owns the file.
        store: Option<Store>,
        /// A second connection for the test's own queries.
        pool: SqlitePool,
        dir: Arc<tempfile::TempDir>,
    },
}

impl From<PgPool> for TestDb {
    fn from(pool: PgPool) -> Self {
        Self::Postgres(pool)
    }
}

impl TestDb {
    /// A fresh SQLite store in a temporary directory, migrated.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("aion-webhooks.db");
        let store = Store::open_sqlite(&path).await.expect("open sqlite store");
        store.migrate().await.expect("migrate sqlite store");
        let pool = SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .busy_timeout(std::time::Duration::from_secs(10)),
        )
        .await
        .expect("test connection");
        Self::Sqlite {
            store: Some(store),
            pool,
            dir: Arc::new(dir),
        }
    }

    /// A SQLite file for an engine process to create and own; the test's
    /// connection opens once the engine has made it.
    pub fn sqlite_file() -> Self {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        let dir = tempfile::tempdir().expect("temporary directory");
        let pool = sqlx::sqlite::SqlitePoolOptions::new().connect_lazy_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.path().join("aion-webhooks.db"))
                .busy_timeout(std::time::Duration::from_secs(10)),
        );
        Self::Sqlite {
            store: None,
            pool,
            dir: Arc::new(dir),
        }
    }

    /// A store on this database (PostgreSQL: a new handle on the pool;
    /// SQLite: the one store of the file).
    pub fn store(&self) -> Store {
        match self {
            Self::Postgres(pool) => Store::from_pool(pool.clone()),
            Self::Sqlite { store, .. } => store
                .clone()
                .expect("an engine process owns this SQLite file"),
        }
    }

    /// The `DATABASE_URL` of this database, for the engine binary.
    pub fn url(&self) -> String {
        match self {
            Self::Postgres(pool) => crate::crash::database_url(pool),
            Self::Sqlite { dir, .. } => {
                format!("sqlite://{}", dir.path().join("aion-webhooks.db").display())
            }
        }
    }

    /// An SQL expression for the time `secs` seconds ago, in the column
    /// type of this store.
    pub fn ago(&self, secs: i64) -> String {
        match self {
            Self::Postgres(_) => format!("(now() - interval '{secs} seconds')"),
            Self::Sqlite { .. } => {
                format!("(CAST(unixepoch('subsec') * 1000 AS INTEGER) - {secs} * 1000)")
            }
        }
    }

    /// An SQL expression for the difference of two times (`expr`), in
    /// seconds.
    pub fn seconds(&self, expr: &str) -> String {
        match self {
            Self::Postgres(_) => format!("extract(epoch FROM ({expr}))::float8"),
            Self::Sqlite { .. } => format!("(({expr}) / 1000.0)"),
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.one::<(i64,)>(sql).await.0
    }

    /// A count, or `None` while the database cannot answer.
    pub async fn try_count(&self, sql: &str) -> Option<i64> {
        match self {
            Self::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.ok(),
            Self::Sqlite { pool, .. } => sqlx::query_scalar(sql).fetch_one(pool).await.ok(),
        }
    }

    /// Waits until no engine process is connected (PostgreSQL: its
    /// sessions can outlive it for a moment). Nothing to wait for on SQLite.
    pub async fn engine_sessions_gone(&self) {
        if let Self::Postgres(pool) = self {
            crate::crash::engine_sessions_gone(pool).await;
        }
    }

    pub async fn execute(&self, sql: &str) -> u64 {
        self.try_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn try_execute(&self, sql: &str) -> Result<u64, sqlx::Error> {
        match self {
            Self::Postgres(pool) => sqlx::query(sql)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            Self::Sqlite { pool, .. } => sqlx::query(sql)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
        }
    }

    pub async fn all<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'r> FromRow<'r, sqlx::postgres::PgRow>
            + for<'r> FromRow<'r, sqlx::sqlite::SqliteRow>
            + Send
            + Unpin,
    {
        match self {
            Self::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await,
            Self::Sqlite { pool, .. } => sqlx::query_as(sql).fetch_all(pool).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn optional<T>(&self, sql: &str) -> Option<T>
    where
        T: for<'r> FromRow<'r, sqlx::postgres::PgRow>
            + for<'r> FromRow<'r, sqlx::sqlite::SqliteRow>
            + Send
            + Unpin,
    {
        match self {
            Self::Postgres(pool) => sqlx::query_as(sql).fetch_optional(pool).await,
            Self::Sqlite { pool, .. } => sqlx::query_as(sql).fetch_optional(pool).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn one<T>(&self, sql: &str) -> T
    where
        T: for<'r> FromRow<'r, sqlx::postgres::PgRow>
            + for<'r> FromRow<'r, sqlx::sqlite::SqliteRow>
            + Send
            + Unpin,
    {
        self.optional(sql)
            .await
            .unwrap_or_else(|| panic!("{sql}: no row"))
    }
}
