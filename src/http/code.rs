//! The API's stable error codes (contract §7): one enum, so each code is
//! written once, the OpenAPI description lists them all, and a new one does
//! not compile until it has a name here.

use serde::Serialize;

/// `error.code` of every 4xx/5xx answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not JSON (or not the JSON shape the route takes).
    MalformedJson,
    /// The body ended before its declared length.
    IncompleteBody,
    /// A query parameter is invalid (`field` names it).
    InvalidQuery,
    /// An event field is invalid (`field` names it, `[i].` in a batch).
    InvalidEvent,
    /// A bulk replay request is invalid.
    InvalidReplay,
    /// A webhook state change's `note` is too long.
    InvalidNote,
    /// An inbound command's body is invalid.
    InvalidCommand,
    /// An inbound `Idempotency-Key` is empty or longer than 255 characters.
    InvalidIdempotencyKey,
    /// The topic is in a namespace only the engine writes.
    ReservedTopic,
    /// `source: aion-webhooks` is the engine's own.
    ReservedSource,
    /// The payload fails its topic's JSON Schema (`violations` lists why).
    SchemaViolation,
    /// The same event id with a different topic or payload.
    EventConflict,
    /// The delivery is not finished (only dead or succeeded ones replay).
    NotReplayable,
    /// The webhook is disabled in the policy.
    WebhookDisabled,
    /// No webhook with this id in the policy in force.
    WebhookUnknown,
    /// The same inbound `Idempotency-Key` with a different body.
    IdempotencyKeyReused,
    /// Missing or invalid credentials.
    Unauthorized,
    /// No `X-Aion-Signature` on an inbound command.
    SignatureMissing,
    /// An `X-Aion-Signature` that does not parse.
    SignatureMalformed,
    /// A signature timestamp outside the tolerance.
    SignatureStale,
    /// A signature that does not verify.
    SignatureInvalid,
    /// The caller's roles do not allow this.
    Forbidden,
    /// The inbound action is not in the allow-list.
    ActionNotAllowed,
    NotFound,
    PayloadTooLarge,
    /// The body did not arrive in time.
    RequestTimeout,
    UnsupportedMediaType,
    /// A policy reload was refused (`errors` lists every problem).
    PolicyInvalid,
    /// The engine is at its connection limit.
    TooManyConnections,
    /// The database is unavailable; retry later.
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// Every code, for tests and docs.
    pub const ALL: [Self; 31] = [
        Self::MalformedJson,
        Self::IncompleteBody,
        Self::InvalidQuery,
        Self::InvalidEvent,
        Self::InvalidReplay,
        Self::InvalidNote,
        Self::InvalidCommand,
        Self::InvalidIdempotencyKey,
        Self::ReservedTopic,
        Self::ReservedSource,
        Self::SchemaViolation,
        Self::EventConflict,
        Self::NotReplayable,
        Self::WebhookDisabled,
        Self::WebhookUnknown,
        Self::IdempotencyKeyReused,
        Self::Unauthorized,
        Self::SignatureMissing,
        Self::SignatureMalformed,
        Self::SignatureStale,
        Self::SignatureInvalid,
        Self::Forbidden,
        Self::ActionNotAllowed,
        Self::NotFound,
        Self::PayloadTooLarge,
        Self::RequestTimeout,
        Self::UnsupportedMediaType,
        Self::PolicyInvalid,
        Self::TooManyConnections,
        Self::Unavailable,
        Self::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::IncompleteBody => "incomplete_body",
            Self::InvalidQuery => "invalid_query",
            Self::InvalidEvent => "invalid_event",
            Self::InvalidReplay => "invalid_replay",
            Self::InvalidNote => "invalid_note",
            Self::InvalidCommand => "invalid_command",
            Self::InvalidIdempotencyKey => "invalid_idempotency_key",
            Self::ReservedTopic => "reserved_topic",
            Self::ReservedSource => "reserved_source",
            Self::SchemaViolation => "schema_violation",
            Self::EventConflict => "event_conflict",
            Self::NotReplayable => "not_replayable",
            Self::WebhookDisabled => "webhook_disabled",
            Self::WebhookUnknown => "webhook_unknown",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::Unauthorized => "unauthorized",
            Self::SignatureMissing => "signature_missing",
            Self::SignatureMalformed => "signature_malformed",
            Self::SignatureStale => "signature_stale",
            Self::SignatureInvalid => "signature_invalid",
            Self::Forbidden => "forbidden",
            Self::ActionNotAllowed => "action_not_allowed",
            Self::NotFound => "not_found",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PolicyInvalid => "policy_invalid",
            Self::TooManyConnections => "too_many_connections",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn as_str_is_the_serialized_name() {
        for code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_value(code).expect("json"),
                serde_json::json!(code.as_str())
            );
        }
    }
}
