//! Inbound commands and audit records as the store takes and gives them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::NewEvent;

/// An audit row as stored (the event that mirrors it is passed beside it).
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub at: DateTime<Utc>,
    pub actor_id: String,
    pub action: String,
    pub outcome: &'static str,
    pub target: Option<String>,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
}

/// An accepted command and the event that dispatches it.
#[derive(Debug, Clone)]
pub struct NewCommand {
    pub id: Uuid,
    pub action: String,
    /// The params object as JSON text.
    pub params: String,
    pub actor_id: String,
    pub idempotency_key: Option<String>,
    pub event: NewEvent,
}

/// The first answer to remember for an `Idempotency-Key`.
#[derive(Debug, Clone)]
pub struct IdempotencyRecord {
    pub actor_id: String,
    pub key: String,
    pub body_sha256: [u8; 32],
    pub status: u16,
    pub response: String,
    pub ttl: Duration,
}

/// An accepted inbound signature, remembered for the tolerance window so
/// that the same signed request sent again dispatches nothing.
#[derive(Debug, Clone)]
pub struct SignatureRecord {
    pub actor_id: String,
    /// SHA-256 of `<t>.<body>`, the message the signature covers.
    pub digest: [u8; 32],
    /// The signature's `t` (unix seconds): it is remembered until `t + ttl`,
    /// by the database's clock, after which no engine accepts it anyway.
    pub signed_at: i64,
    /// The answer to give a replay.
    pub status: u16,
    pub response: String,
    pub ttl: Duration,
}

/// What storing a command came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandStored {
    Accepted,
    /// The key was used before with the same body: the first answer, again.
    Replayed {
        status: u16,
        response: String,
    },
    /// The key was used before with a different body.
    KeyReused,
}

/// A stored audit record, for `GET /v1/audit`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditListRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_id: String,
    pub action: String,
    pub outcome: String,
    pub target: Option<String>,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
}

impl CommandStored {
    /// The answer to a request whose `Idempotency-Key` was used before: the
    /// first answer again if the body is the same (`stored_hash`), else
    /// `KeyReused`.
    pub(in crate::store) fn for_used_key(
        stored_hash: &[u8],
        idem: &IdempotencyRecord,
        status: i32,
        response: String,
    ) -> Self {
        if stored_hash == idem.body_sha256 {
            Self::Replayed {
                status: u16::try_from(status).unwrap_or(202),
                response,
            }
        } else {
            Self::KeyReused
        }
    }
}
