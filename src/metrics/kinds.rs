//! The kinds the engine counts by: outcomes, sources, paths and events
//! named in metric labels, and the queue depth the store reports. Pure.

/// Why an inbound request ended the way it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundOutcome {
    Accepted,
    Replayed,
    TooLarge,
    NotConfigured,
    SignatureMissing,
    SignatureMalformed,
    SignatureStale,
    SignatureInvalid,
    Unauthenticated,
    NotAllowed,
    MissingRole,
    BadBody,
    KeyReused,
}

impl InboundOutcome {
    pub const ALL: [Self; 13] = [
        Self::Accepted,
        Self::Replayed,
        Self::TooLarge,
        Self::NotConfigured,
        Self::SignatureMissing,
        Self::SignatureMalformed,
        Self::SignatureStale,
        Self::SignatureInvalid,
        Self::Unauthenticated,
        Self::NotAllowed,
        Self::MissingRole,
        Self::BadBody,
        Self::KeyReused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Replayed => "replayed",
            Self::TooLarge => "too_large",
            Self::NotConfigured => "not_configured",
            Self::SignatureMissing => "signature_missing",
            Self::SignatureMalformed => "signature_malformed",
            Self::SignatureStale => "signature_stale",
            Self::SignatureInvalid => "signature_invalid",
            Self::Unauthenticated => "unauthenticated",
            Self::NotAllowed => "not_allowed",
            Self::MissingRole => "missing_role",
            Self::BadBody => "bad_body",
            Self::KeyReused => "key_reused",
        }
    }

    pub(super) fn index(self) -> usize {
        Self::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

/// Where an accepted event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    /// `POST /v1/events`.
    Api,
    /// A dispatched inbound command.
    Inbound,
    /// An event the engine made itself (audit, operations).
    Engine,
    /// An event-bus source (Kafka, NATS).
    Bus,
}

/// What became of one message an event-bus source consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Stored as a new event.
    Created,
    /// Its event was stored before (a redelivery).
    Duplicate,
    /// It could not become an event; recorded in `source_rejects`.
    Rejected,
}

/// How one attempt ended, as counted in `deliveries_finished_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Succeeded,
    Retry,
    Dead,
    Blocked,
}

/// What happened to an API connection; counted in
/// `http_connections_total{event}` (open ones in `http_connections_open`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEvent {
    Opened,
    Closed,
    /// Over the connection cap: answered 503 and closed at once.
    Refused,
    /// `accept` failed (e.g. out of descriptors).
    AcceptFailed,
    /// The request head did not arrive in time (also idle keep-alives).
    HeaderTimeout,
    /// Too many or too large headers: answered 431.
    HeaderTooLarge,
    /// Not HTTP/1.1.
    Malformed,
    /// The body did not arrive in time: answered 408.
    BodyTimeout,
    /// The client stopped reading its response.
    WriteTimeout,
    /// Reset or closed by the client mid-request.
    Aborted,
}

impl ConnectionEvent {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Closed => "closed",
            Self::Refused => "refused",
            Self::AcceptFailed => "accept_failed",
            Self::HeaderTimeout => "header_timeout",
            Self::HeaderTooLarge => "header_too_large",
            Self::Malformed => "malformed",
            Self::BodyTimeout => "body_timeout",
            Self::WriteTimeout => "write_timeout",
            Self::Aborted => "aborted",
        }
    }
}
