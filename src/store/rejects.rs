//! Messages an event-bus source could not turn into events (contract §9):
//! the rows both backends keep in `source_rejects`.

use chrono::{DateTime, Utc};

/// At most this much of a rejected message's value is kept.
pub const REJECT_VALUE_BYTES: usize = 4096;

/// A message to record as rejected.
#[derive(Debug, Clone)]
pub struct NewReject {
    pub source_id: String,
    /// Where the message sits on the bus: `kafka:<topic>:<partition>:<offset>`
    /// or `nats:<stream>:<sequence>`.
    pub position: String,
    pub reason: String,
    /// The first [`REJECT_VALUE_BYTES`] of the value.
    pub value: Vec<u8>,
    /// The whole value's size.
    pub value_bytes: u64,
    pub at: DateTime<Utc>,
}

impl NewReject {
    /// A reject of `value`, of which only the first 4 KiB are kept.
    pub fn new(
        source_id: &str,
        position: String,
        reason: String,
        value: &[u8],
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            source_id: source_id.to_owned(),
            position,
            reason,
            value: value[..value.len().min(REJECT_VALUE_BYTES)].to_vec(),
            value_bytes: value.len() as u64,
            at,
        }
    }
}

/// A recorded reject, newest first in listings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RejectRow {
    pub id: i64,
    pub source_id: String,
    pub position: String,
    pub reason: String,
    /// The kept bytes as text (invalid UTF-8 replaced).
    pub value: String,
    pub value_bytes: i64,
    /// Whether `value` is only the start of the message.
    pub truncated: bool,
    pub at: DateTime<Utc>,
}

impl RejectRow {
    pub(crate) fn from_parts(
        id: i64,
        source_id: String,
        position: String,
        reason: String,
        value: &[u8],
        value_bytes: i64,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            source_id,
            position,
            reason,
            value: String::from_utf8_lossy(value).into_owned(),
            truncated: usize::try_from(value_bytes).map_or(true, |n| n > value.len()),
            value_bytes,
            at,
        }
    }
}
