//! A bus message → an event, or the reason it cannot be one (contract §9).
//! Pure: the consumers hand in what the broker gave them.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use crate::ingest::{self, IngestFailure, Origin};
use crate::policy::PolicySet;
use crate::policy::sources::{MessageFormat, Source};
use crate::store::NewEvent;

/// One consumed message, owned (the broker's buffer is released).
#[derive(Debug, Clone)]
pub struct Message {
    pub value: Vec<u8>,
    /// The Kafka topic or NATS subject.
    pub topic: String,
    /// The Kafka message key.
    pub key: Option<Vec<u8>>,
    /// `kafka:<topic>:<partition>:<offset>` or `nats:<stream>:<sequence>`:
    /// where rejects are recorded, and the event id unless `msg_id` or the
    /// envelope gives one.
    pub position: String,
    /// The `Nats-Msg-Id` header: the publisher's own id for the message.
    pub msg_id: Option<String>,
    /// Kafka: (topic, partition, offset), whose offset is stored once the
    /// message is.
    pub kafka: Option<(String, i32, i64)>,
}

/// Why a message is no event: the line recorded in `source_rejects`, and
/// the schema entry's topic pattern when its payload failed a schema (for
/// the metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub reason: String,
    pub schema: Option<String>,
}

impl From<String> for Refused {
    fn from(reason: String) -> Self {
        Self {
            reason,
            schema: None,
        }
    }
}

impl std::ops::Deref for Refused {
    type Target = str;
    fn deref(&self) -> &str {
        &self.reason
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The event `msg` stands for, routed through `policy`; or why there is none.
pub fn event_of(
    source: &Source,
    msg: &Message,
    policy: &PolicySet,
    max_event_bytes: usize,
    now: DateTime<Utc>,
) -> Result<NewEvent, Refused> {
    if msg.value.len() > max_event_bytes {
        return Err(Refused::from(format!(
            "the message is {} bytes; the event limit is {max_event_bytes}",
            msg.value.len()
        )));
    }
    let raw: &RawValue = serde_json::from_slice(&msg.value)
        .map_err(|e| Refused::from(format!("the message is not JSON: {e}")))?;
    let origin = Origin {
        default_id: Some(msg.msg_id.as_deref().unwrap_or(&msg.position)),
        derived_id: Some(&msg.position),
        default_source: Some(&source.id),
        allow_audit: source.accept_audit_topics,
    };
    let made = match source.format {
        MessageFormat::Envelope => ingest::event(raw, "", policy, max_event_bytes, now, origin),
        MessageFormat::Raw => {
            let key = match &msg.key {
                None => None,
                Some(k) => Some(
                    String::from_utf8(k.clone())
                        .map_err(|_| Refused::from("the message key is not UTF-8".to_owned()))?,
                ),
            };
            ingest::raw_event(raw, &msg.topic, key, policy, max_event_bytes, now, origin)
        }
    };
    made.map_err(|e| Refused {
        reason: reason(&e),
        schema: match e {
            IngestFailure::SchemaViolation { pattern, .. } => Some(pattern),
            _ => None,
        },
    })
}

/// An ingest refusal as one line for `source_rejects`.
fn reason(e: &IngestFailure) -> String {
    match e {
        IngestFailure::Invalid { field, message }
        | IngestFailure::ReservedTopic { field, message }
        | IngestFailure::ReservedSource { field, message }
            if !field.is_empty() =>
        {
            format!("{field}: {message}")
        }
        IngestFailure::SchemaViolation { field, .. } => format!("{field}: schema_violation: {e}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::sources::{NatsSource, SourceKind};

    fn policy() -> PolicySet {
        PolicySet::parse(
            "version: 1\nwebhooks:\n  - id: a\n    url: http://127.0.0.1:9/\n    secret: s\n    topics: [\"orders.*\", \"aion.audit.**\"]\n",
            "t",
            std::path::Path::new("."),
            &|_| None,
        )
        .expect("policy")
    }

    fn source(format: MessageFormat, audit: bool) -> Source {
        Source {
            id: "bus".into(),
            format,
            accept_audit_topics: audit,
            max_batch: 10,
            enabled: true,
            kind: SourceKind::Nats(NatsSource {
                url: "nats://127.0.0.1:4222".into(),
                stream: "S".into(),
                consumer: "c".into(),
                subjects: vec![],
                credentials: None,
            }),
            files_stamp: [0; 32],
        }
    }

    fn msg(value: &[u8]) -> Message {
        Message {
            value: value.to_vec(),
            topic: "orders.created".into(),
            key: Some(b"k1".to_vec()),
            position: "nats:S:7".into(),
            msg_id: None,
            kafka: None,
        }
    }

    #[test]
    fn an_envelope_becomes_its_event_with_the_position_as_id_and_the_source_id() {
        let m = msg(br#"{"event_type":"orders.paid","payload":{"n":1},"metadata":{"x":1}}"#);
        let e = event_of(
            &source(MessageFormat::Envelope, false),
            &m,
            &policy(),
            1 << 20,
            Utc::now(),
        )
        .expect("event");
        assert_eq!(e.topic, "orders.paid");
        assert_eq!(e.id, "nats:S:7");
        assert_eq!(e.source.as_deref(), Some("bus"));
        assert_eq!(e.payload, r#"{"n":1}"#);
        assert_eq!(e.webhooks.len(), 1);
    }

    #[test]
    fn the_envelope_id_and_source_win_and_the_msg_id_beats_the_position() {
        let mut m =
            msg(br#"{"event_type":"orders.paid","event_id":"e-1","source":"shop","payload":1}"#);
        let s = source(MessageFormat::Envelope, false);
        let e = event_of(&s, &m, &policy(), 1 << 20, Utc::now()).expect("event");
        assert_eq!((e.id.as_str(), e.source.as_deref()), ("e-1", Some("shop")));
        m.value = br#"{"event_type":"orders.paid","payload":1}"#.to_vec();
        m.msg_id = Some("pub-9".into());
        let e = event_of(&s, &m, &policy(), 1 << 20, Utc::now()).expect("event");
        assert_eq!(e.id, "pub-9");
    }

    #[test]
    fn a_raw_message_is_the_payload_on_the_bus_topic_with_the_key() {
        let m = msg(br#"[1, 2]"#);
        let e = event_of(
            &source(MessageFormat::Raw, false),
            &m,
            &policy(),
            1 << 20,
            Utc::now(),
        )
        .expect("event");
        assert_eq!(
            (e.topic.as_str(), e.key.as_deref()),
            ("orders.created", Some("k1"))
        );
        assert_eq!(e.payload, "[1, 2]");
    }

    #[test]
    fn bad_messages_name_their_problem() {
        let p = policy();
        let env = source(MessageFormat::Envelope, false);
        let raw = source(MessageFormat::Raw, false);
        let cases: &[(&Source, &[u8], &str)] = &[
            (&env, b"not json\0", "not JSON"),
            (&env, b"[1]", "JSON object"),
            (&env, br#"{"payload":1}"#, "topic"),
            (&env, br#"{"topic":"a..b","payload":1}"#, "invalid topic"),
            (
                &env,
                br#"{"topic":"a.b","payload":1,"tenant_id":5}"#,
                "invalid event",
            ),
            (&env, br#"{"topic":"command.x","payload":1}"#, "reserved"),
            (&env, br#"{"topic":"aion.audit.x","payload":1}"#, "reserved"),
            (
                &env,
                br#"{"topic":"a.b","payload":1,"source":"aion-webhooks"}"#,
                "reserved",
            ),
            (
                &env,
                br#"{"topic":"a.b","event_id":"bad id","payload":1}"#,
                "id",
            ),
            (&raw, &[b'7'; 100], "limit"),
        ];
        for (s, value, needle) in cases {
            let m = msg(value);
            let err = event_of(s, &m, &p, 64, Utc::now()).expect_err("refused");
            assert!(
                err.contains(needle),
                "{:?}: {err}",
                String::from_utf8_lossy(value)
            );
        }
        // 50,000 levels deep: a payload like any other, as through the API
        // (kept byte for byte; no recursion, no stack overflow).
        let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
        let e = event_of(&raw, &msg(deep.as_bytes()), &p, 1 << 20, Utc::now()).expect("deep");
        assert!(e.payload == deep, "the deep payload is kept as sent");
        let mut m = msg(b"1");
        m.key = Some(vec![0xff]);
        assert!(
            event_of(&raw, &m, &p, 64, Utc::now())
                .expect_err("key")
                .contains("UTF-8")
        );
    }

    #[test]
    fn audit_topics_pass_only_where_the_source_accepts_them() {
        let m = msg(br#"{"topic":"aion.audit.activity","payload":1}"#);
        let e = event_of(
            &source(MessageFormat::Envelope, true),
            &m,
            &policy(),
            1 << 20,
            Utc::now(),
        )
        .expect("accepted");
        assert_eq!(e.webhooks.len(), 1);
    }
}
