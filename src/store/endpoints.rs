//! Runtime endpoint state as the store gives it.

use chrono::{DateTime, Utc};

/// A webhook's runtime state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointStatus {
    Active,
    /// Paused by a receiver's `Retry-After` until `throttled_until`.
    Throttled,
    Disabled,
}

impl EndpointStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Throttled => "throttled",
            Self::Disabled => "disabled",
        }
    }
}

/// One webhook's runtime state as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointState {
    pub status: EndpointStatus,
    /// Why: `manual` for an admin's call (with their note), and the engine's
    /// own reasons once it disables endpoints itself.
    pub reason: String,
    pub since: DateTime<Utc>,
    /// The actor that made the change.
    pub changed_by: String,
    /// While throttled: until when, and how long that is from now by the
    /// database's clock.
    pub throttled_until: Option<DateTime<Utc>>,
    pub throttled_for: Option<std::time::Duration>,
    /// While disabled by an admin: the note they gave (at most 500
    /// characters).
    pub note: Option<String>,
}
