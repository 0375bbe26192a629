//! Event ids the event-bus sources derive from a message's position
//! (contract §9): `kafka:<topic>:<partition>:<offset>` and
//! `nats:<stream>:<sequence>`. They belong to their source alone: any other
//! way in (the API, a bus envelope, a `Nats-Msg-Id`) that names an id of
//! these forms is refused, so nobody can take the id of a message that has
//! not arrived yet. Pure: no I/O.

use sha2::{Digest, Sha256};

use super::ids::MAX_EVENT_ID_BYTES;

/// The source kinds whose ids are derived, each with its prefix. A new
/// source kind adds its prefix here, and every way in refuses it at once.
pub const DERIVED_ID_PREFIXES: &[&str] = &["kafka:", "nats:"];

/// How much of a long topic or stream name a shortened id keeps readable.
const KEPT_NAME_BYTES: usize = 48;

/// Whether `id` is of a form only a source derives.
pub fn is_derived_id(id: &str) -> bool {
    DERIVED_ID_PREFIXES.iter().any(|p| id.starts_with(p))
}

/// `kafka:<topic>:<partition>:<offset>`, always a valid event id.
pub fn kafka_id(topic: &str, partition: i32, offset: i64) -> String {
    derive("kafka", topic, &format!("{partition}:{offset}"))
}

/// `nats:<stream>:<sequence>`, always a valid event id.
pub fn nats_id(stream: &str, sequence: u64) -> String {
    derive("nats", stream, &sequence.to_string())
}

/// `<kind>:<name>:<position>` when that fits the id limit; else the name
/// is cut to its first 48 bytes and followed by `:` and 32 hex digits of
/// its SHA-256 (`kafka:<first 48>:<hash>:<p>:<o>`), so a 249-character Kafka
/// topic still yields a valid id, the same one for every redelivery. The
/// extra `:` cannot occur in a topic or stream name, so a shortened id
/// never equals a full one.
fn derive(kind: &str, name: &str, position: &str) -> String {
    let full = format!("{kind}:{name}:{position}");
    if full.len() <= MAX_EVENT_ID_BYTES {
        return full;
    }
    let mut cut = KEPT_NAME_BYTES.min(name.len());
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = hex::encode(&Sha256::digest(name.as_bytes())[..16]);
    format!("{kind}:{}:{digest}:{position}", &name[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventId;

    #[test]
    fn short_names_keep_the_contract_form() {
        assert_eq!(kafka_id("orders", 3, 42), "kafka:orders:3:42");
        assert_eq!(nats_id("EVENTS", 7), "nats:EVENTS:7");
        assert!(is_derived_id("kafka:orders:3:42"));
        assert!(is_derived_id("nats:S:1"));
        assert!(!is_derived_id("evt_1"));
        assert!(!is_derived_id("natsy:1"));
    }

    #[test]
    fn the_longest_kafka_topic_yields_a_valid_stable_id() {
        let topic = "t".repeat(249);
        let id = kafka_id(&topic, i32::MAX, i64::MAX);
        assert!(id.len() <= MAX_EVENT_ID_BYTES, "{id}");
        EventId::parse(&id).expect("valid id");
        assert_eq!(id, kafka_id(&topic, i32::MAX, i64::MAX));
        assert!(
            id.starts_with(&format!("kafka:{}:", "t".repeat(48))),
            "{id}"
        );
        assert!(id.ends_with(&format!(":{}:{}", i32::MAX, i64::MAX)), "{id}");
        // Two long topics sharing their first 48 bytes stay apart.
        let other = format!("{}x", "t".repeat(248));
        assert_ne!(id, kafka_id(&other, i32::MAX, i64::MAX));
        let stream = "S".repeat(200);
        EventId::parse(&nats_id(&stream, u64::MAX)).expect("valid id");
    }
}
