//! Identifier newtypes. Each has a fallible `parse`, so an invalid id cannot
//! exist past the edge that received it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {value:?} is invalid: {expected}")]
pub struct IdError {
    kind: &'static str,
    value: String,
    expected: &'static str,
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $expected:literal, $valid:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, IdError> {
                let valid: fn(&str) -> bool = $valid;
                if valid(value) {
                    Ok(Self(value.to_owned()))
                } else {
                    Err(IdError {
                        kind: $kind,
                        // Truncated so a hostile 1 MB id does not end up in an error body.
                        value: value.chars().take(80).collect(),
                        expected: $expected,
                    })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn webhook_id_valid(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The longest event id, in bytes (contract §2).
pub const MAX_EVENT_ID_BYTES: usize = 128;

fn event_id_valid(s: &str) -> bool {
    (1..=MAX_EVENT_ID_BYTES).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

string_id!(
    /// A webhook's id from the policy file; deliveries reference it, so it is stable.
    WebhookId,
    "webhook id",
    "expected 1-64 characters of [a-z0-9_-]",
    webhook_id_valid
);

string_id!(
    /// An event id: given by the producer or generated (`evt_` + UUIDv7).
    EventId,
    "event id",
    "expected 1-128 characters of [A-Za-z0-9._:-]",
    event_id_valid
);

impl EventId {
    /// A fresh, time-ordered id for an event the producer did not name.
    pub fn generate() -> Self {
        Self(format!("evt_{}", uuid::Uuid::now_v7().simple()))
    }
}

/// A delivery's id: a UUIDv7 (time-ordered, so cursors page by age), shown
/// as `dlv_<32 hex>`. It is the `Idempotency-Key` receivers deduplicate on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId(uuid::Uuid);

impl DeliveryId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7())
    }

    pub fn from_uuid(id: uuid::Uuid) -> Self {
        Self(id)
    }

    pub fn uuid(self) -> uuid::Uuid {
        self.0
    }

    pub fn parse(value: &str) -> Result<Self, IdError> {
        value
            .strip_prefix("dlv_")
            .filter(|hex| hex.len() == 32)
            .and_then(|hex| uuid::Uuid::try_parse(hex).ok())
            .map(Self)
            .ok_or_else(|| IdError {
                kind: "delivery id",
                value: value.chars().take(80).collect(),
                expected: "expected dlv_ followed by 32 hex digits",
            })
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dlv_{}", self.0.simple())
    }
}

impl Serialize for DeliveryId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_ids_follow_the_contract_grammar() {
        assert!(WebhookId::parse("router-analytics_2").is_ok());
        assert!(WebhookId::parse(&"a".repeat(64)).is_ok());
        for bad in ["", "Upper", "has space", "dot.ted", &"a".repeat(65)] {
            assert!(WebhookId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn event_ids_follow_the_contract_grammar() {
        assert!(EventId::parse("evt_01H:abc.DEF-1").is_ok());
        for bad in ["", "a b", "a/b", &"x".repeat(129)] {
            assert!(EventId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn generated_event_ids_are_valid_and_distinct() {
        let a = EventId::generate();
        let b = EventId::generate();
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("evt_"));
        assert!(EventId::parse(a.as_str()).is_ok());
    }

    #[test]
    fn delivery_ids_round_trip_through_their_display_form() {
        let id = DeliveryId::generate();
        let text = id.to_string();
        assert!(text.starts_with("dlv_") && text.len() == 36, "{text}");
        assert_eq!(DeliveryId::parse(&text), Ok(id));
        for bad in [
            "",
            "dlv_",
            "dlv_xyz",
            "evt_0190a0a0a0a0a0a0a0a0a0a0a0a0a0a0",
            &text[4..],
        ] {
            assert!(DeliveryId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn id_errors_truncate_hostile_values() {
        let err = WebhookId::parse(&"X".repeat(10_000))
            .unwrap_err()
            .to_string();
        assert!(err.len() < 200, "{err}");
    }
}
