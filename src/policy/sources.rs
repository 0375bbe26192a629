//! `sources:` — the event-bus consumers (contract §9), as validated. Each
//! source's settings compare by value, so a reload restarts only the
//! consumers whose entry changed.

use std::path::PathBuf;

use crate::domain::Secret;

/// Largest batch a source stores in one transaction.
pub const MAX_SOURCE_BATCH: u32 = 1000;
/// The default batch: messages fetched, stored and then acknowledged together.
pub const DEFAULT_SOURCE_BATCH: u32 = 500;

/// One consumer of the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `[a-z0-9_-]{1,64}`; the `source` of its events unless the envelope names one.
    pub id: String,
    pub format: MessageFormat,
    /// May carry `aion.audit.**` (contract §1).
    pub accept_audit_topics: bool,
    /// Messages in flight per source: fetched, stored, then committed together.
    pub max_batch: u32,
    /// `false` = configured but not consuming.
    pub enabled: bool,
    pub kind: SourceKind,
    /// A digest of the files the consumer reads when it connects (TLS
    /// certificates and keys, a NATS creds file): part of the entry's value,
    /// so rotating one restarts the source on reload.
    pub files_stamp: [u8; 32],
}

/// How a message's value becomes an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFormat {
    /// A JSON object with the envelope fields (`event_type`, `payload`, …).
    Envelope,
    /// The value is the payload; the topic is the bus's topic or subject.
    Raw,
}

impl MessageFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Envelope => "envelope",
            Self::Raw => "raw",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    Kafka(KafkaSource),
    Nats(NatsSource),
}

impl SourceKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Kafka(_) => "kafka",
            Self::Nats(_) => "nats",
        }
    }

    /// The files this consumer reads when it connects.
    pub fn files(&self) -> Vec<&std::path::Path> {
        match self {
            Self::Kafka(k) => k
                .tls
                .iter()
                .flat_map(|t| [&t.ca_file, &t.cert_file, &t.key_file])
                .flatten()
                .map(PathBuf::as_path)
                .collect(),
            Self::Nats(n) => match &n.credentials {
                Some(NatsCredentials::CredsFile(path)) => vec![path.as_path()],
                _ => Vec::new(),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSource {
    /// `host:port` each.
    pub brokers: Vec<String>,
    pub group: String,
    /// Topic names; an entry starting with `^` is a regular expression
    /// (librdkafka's syntax) matched against the cluster's topics.
    pub topics: Vec<String>,
    /// Where a group with no committed offset starts.
    pub start: StartAt,
    pub tls: Option<KafkaTls>,
    pub sasl: Option<KafkaSasl>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
}

/// TLS to the brokers; files resolved against the policy's directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KafkaTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSasl {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Self::Plain),
            "SCRAM-SHA-256" => Some(Self::ScramSha256),
            "SCRAM-SHA-512" => Some(Self::ScramSha512),
            _ => None,
        }
    }

    /// The name librdkafka takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSource {
    /// `nats://host:port` (or `tls://…`).
    pub url: String,
    /// The JetStream stream, which must exist.
    pub stream: String,
    /// Durable pull consumer, created (with `subjects` as its filter) if missing.
    pub consumer: String,
    /// Subject filters; empty = the whole stream.
    pub subjects: Vec<String>,
    pub credentials: Option<NatsCredentials>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsCredentials {
    UserPassword {
        user: String,
        password: Secret,
    },
    Token(Secret),
    /// A `.creds` file (JWT and NKey seed).
    CredsFile(PathBuf),
}
