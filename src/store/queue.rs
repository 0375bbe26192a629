//! What the queue transitions take and give, shared by both backends.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::lines::Line;
use super::{DeliveryState, StoreError, storable};

/// A webhook the claim may take deliveries for: its id, how many more it may
/// have in flight on this engine, and how long its lease lasts.
#[derive(Debug, Clone)]
pub struct WebhookSlot {
    pub webhook_id: String,
    pub room: u32,
    pub lease: std::time::Duration,
}

/// A delivery this engine now holds (state `in_flight`, lease set).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
    pub event_id: String,
    pub webhook_id: String,
    /// Attempt number of the attempt about to be made (1-based, never reused).
    pub attempt: i32,
    /// Attempts made before the last replay; the retry budget counts from here.
    pub replay_base: i32,
    pub topic: String,
    pub body: Vec<u8>,
    pub trace_id: Option<String>,
    /// The event's stored traceparent: the parent of the attempt's span.
    pub traceparent: Option<String>,
    /// The delivery is in a key's line (`ordering: key`).
    pub in_line: bool,
    /// The event's `key` (a Kafka destination's message key).
    pub key: Option<String>,
}

/// What one attempt looked like, as recorded in `delivery_attempts`.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub started_at: DateTime<Utc>,
    pub duration: std::time::Duration,
    pub status: Option<u16>,
    pub error_kind: Option<&'static str>,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

/// The outcome of one attempt and the state it moves the delivery to.
#[derive(Debug, Clone)]
pub struct Completion {
    pub id: Uuid,
    /// The delivery's webhook: its health counts this attempt.
    pub webhook_id: String,
    pub attempt: i32,
    /// `Succeeded`, `Pending` (retry after `retry_in`) or `Dead`.
    pub state: DeliveryState,
    /// With `Pending`: how long from the database's now until the retry.
    pub retry_in: Option<std::time::Duration>,
    pub record: AttemptRecord,
    /// The delivery is in a key's line ([`Claimed::in_line`]): recording
    /// its outcome may have to promote the line's next delivery.
    pub in_line: bool,
}

impl Completion {
    /// The delivery's `last_error`: the error's kind, then its text if it
    /// has one (`timeout: …`); `None` for a success. Both stores write this
    /// value as it is.
    pub fn last_error(&self) -> Option<String> {
        let kind = self.record.error_kind?;
        Some(match self.record.error.as_deref() {
            Some(e) => format!("{kind}: {}", storable(e)),
            None => kind.to_owned(),
        })
    }

    /// The same outcome with the details from outside (error text, response
    /// body) replaced by why they could not be stored: the fallback when a
    /// row is refused, so the outcome itself is never lost.
    pub fn without_details(&self, why: &StoreError) -> Self {
        let mut text = format!("the attempt's details could not be stored: {}", why.chain());
        let mut end = text.len().min(500);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        Self {
            record: AttemptRecord {
                error: Some(storable(&text).into_owned()),
                response_body: None,
                ..self.record.clone()
            },
            ..self.clone()
        }
    }
}

/// The lines among deliveries' `(webhook_id, order_key)`, each once.
/// The state a replayed delivery returns to, in SQL for both stores:
/// `pending`, or `waiting` in its line (its original place: it goes after
/// the line's head, before the later events still waiting); promoting the
/// line then makes it the head if the line has none.
pub(in crate::store) const REJOIN: &str =
    "CASE WHEN order_key IS NULL THEN 'pending' ELSE 'waiting' END";

pub(in crate::store) fn lines_from(
    rows: impl IntoIterator<Item = (String, Option<String>)>,
) -> Vec<Line> {
    let mut lines: Vec<Line> = rows
        .into_iter()
        .filter_map(|(webhook_id, key)| key.map(|key| Line { webhook_id, key }))
        .collect();
    lines.sort_unstable();
    lines.dedup();
    lines
}

/// Which finished deliveries a bulk replay takes.
#[derive(Debug, Clone)]
pub struct ReplayFilter {
    pub webhook_id: Option<String>,
    /// `Dead` or `Succeeded`.
    pub state: DeliveryState,
    /// Finished at or after.
    pub since: Option<DateTime<Utc>>,
    /// Finished before.
    pub until: Option<DateTime<Utc>>,
    pub limit: u32,
}

/// What a replay request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayResult {
    /// Replayed; the state it left.
    Replayed(DeliveryState),
    /// Still pending or in flight: nothing to replay.
    NotFinished(DeliveryState),
}
