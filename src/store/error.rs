//! Why a store call failed, and how callers tell a passing failure (worth
//! trying again) from one of the data; and text made storable.

use crate::domain::Causes;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A shared write (group commit) failed; every caller in it gets this.
    #[error("database error: {message}")]
    Group {
        unavailable: bool,
        /// A lost deadlock or serialization race: worth trying again.
        transient: bool,
        message: String,
    },
}

impl StoreError {
    /// This error and its causes, for a log line: `database error` alone
    /// tells an operator nothing (`database error: pool timed out while
    /// waiting for an open connection` does). Not for API answers, which
    /// stay generic; the request log already carries the same chain.
    pub fn chain(&self) -> Causes<'_> {
        Causes(self)
    }

    /// True when the database could not be reached (as opposed to a query
    /// it refused): the caller answers 503 and retries later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed,
            ) => true,
            // SQLite: I/O error, disk full, cannot open the file.
            StoreError::Database(sqlx::Error::Database(e))
                if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() =>
            {
                e.code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .is_some_and(|c| matches!(c & 0xff, 10 | 13 | 14))
            }
            // 08xxx connection exception, 57P0x shutdown / cannot connect now
            // (what a restarting server answers), 53xxx out of resources.
            StoreError::Database(sqlx::Error::Database(e)) => e.code().is_some_and(|c| {
                c.starts_with("08") || c.starts_with("57P") || c.starts_with("53")
            }),
            StoreError::Group { unavailable, .. } => *unavailable,
            _ => false,
        }
    }

    /// True when the same write may succeed if simply tried again: the
    /// database is unreachable, or the statement lost a deadlock or a
    /// serialization race. Anything else is a property of the data, and
    /// retrying the same rows would fail the same way forever.
    pub fn is_transient(&self) -> bool {
        if self.is_unavailable() {
            return true;
        }
        match self {
            StoreError::Group { transient, .. } => *transient,
            // SQLite: SQLITE_BUSY / SQLITE_LOCKED (and their extended codes).
            StoreError::Database(sqlx::Error::Database(e))
                if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() =>
            {
                e.code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .is_some_and(|c| matches!(c & 0xff, 5 | 6))
            }
            // 40001 serialization failure, 40P01 deadlock, 55P03 lock not available.
            StoreError::Database(sqlx::Error::Database(e)) => e
                .code()
                .is_some_and(|c| matches!(c.as_ref(), "40001" | "40P01" | "55P03")),
            _ => false,
        }
    }
}

/// Text from outside, made storable: PostgreSQL `text` cannot hold U+0000,
/// so each NUL becomes U+FFFD. Everything else is kept as it is.
pub fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_gets_the_cause_an_api_answer_does_not() {
        let e = StoreError::Database(sqlx::Error::PoolTimedOut);
        assert_eq!(e.to_string(), "database error");
        assert_eq!(
            e.chain().to_string(),
            "database error: pool timed out while waiting for an open connection"
        );
        let group = StoreError::Group {
            unavailable: true,
            transient: true,
            message: "disk I/O error".into(),
        };
        assert_eq!(group.chain().to_string(), "database error: disk I/O error");
    }
}
