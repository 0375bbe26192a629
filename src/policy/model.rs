//! The validated policy: what the rest of the engine reads. Built only by
//! `compile`, never mutated; a reload builds a new one and swaps it whole.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

use super::bus::Bus;
use super::filter::Filter;
use super::reach::{EgressProxy, OAuth2, Route};
use crate::domain::{EventVersion, Secret, TopicPattern, WebhookId};
use crate::signing::{Ed25519Secret, StandardSecret};

/// How long and how often a delivery is retried (contract §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial_interval: Duration,
    pub max_interval: Duration,
    /// Attempts in all, the first included; at least 1.
    pub max_attempts: u32,
}

/// Which signature headers a webhook's deliveries carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureMode {
    /// `X-Aion-Signature` only (the default).
    Aion,
    /// Standard Webhooks headers only.
    Standard,
    /// Both sets of headers.
    Both,
}

impl SignatureMode {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "aion" => Some(Self::Aion),
            "standard" => Some(Self::Standard),
            "both" => Some(Self::Both),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aion => "aion",
            Self::Standard => "standard",
            Self::Both => "both",
        }
    }

    pub fn signs_aion(self) -> bool {
        matches!(self, Self::Aion | Self::Both)
    }

    pub fn signs_standard(self) -> bool {
        matches!(self, Self::Standard | Self::Both)
    }
}

/// One outbound endpoint and what it subscribes to.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: WebhookId,
    /// The receiver's URL; for a Kafka or NATS destination, one naming its
    /// first broker and its topic or subject (`bus` has the whole of it).
    pub url: Url,
    /// A `kafka://` or `nats://` destination instead of an HTTP receiver.
    pub bus: Option<Arc<Bus>>,
    /// Active HMAC secrets (every entry of `secret`/`secrets` but the
    /// `whsk_` keys), newest first; one signature per secret during rotation.
    pub secrets: Vec<Secret>,
    /// The HMAC secrets decoded from `whsec_` for Standard Webhooks `v1`;
    /// empty unless the mode signs Standard Webhooks.
    pub standard_secrets: Vec<StandardSecret>,
    /// `whsk_` ed25519 keys for Standard Webhooks `v1a`, newest first.
    pub ed25519_keys: Vec<Ed25519Secret>,
    pub topics: Vec<TopicPattern>,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    /// Extra static headers: `headers` then `header_files`, each by name,
    /// every name once (case-insensitively). A value may carry a credential
    /// (`Authorization: Bearer ${TOKEN}`), so it is a [`Secret`]: never in
    /// a log line, an error or an API answer.
    pub headers: Vec<(String, Secret)>,
    pub signature: SignatureMode,
    /// `None` = events of every tenant (and of none).
    pub tenants: Option<Vec<String>>,
    /// With `tenants`: whether events that carry no tenant (the engine's own
    /// audit and command events among them) pass the filter too.
    pub include_untenanted: bool,
    pub enabled: bool,
    /// After this long with every attempt failing (since the first failure
    /// after the last success), the engine disables the webhook; `None` =
    /// never.
    pub disable_after: Option<Duration>,
    /// Ceiling of sends in flight to this webhook per engine; the adaptive
    /// limit moves between 1 and this. `None` = the engine's setting.
    pub max_in_flight: Option<u32>,
    /// Where the adaptive limit starts for a receiver this engine has not
    /// sent to yet (or not for a minute): slow start. `None` = the
    /// engine's setting (8).
    pub initial_in_flight: Option<u32>,
    /// Attempts per second to this webhook, across every engine sharing the
    /// database (`rate_limit: 50/s` or `/m`); `None` = no limit.
    pub rate_limit: Option<f64>,
    /// `ordering: key`: deliveries of events with the same `key` go out one
    /// at a time, in acceptance order (see `store::DeliveryState`).
    pub ordered: bool,
    /// `min_version:` events below this version are not delivered here (an
    /// event without `event_version` counts as version 1).
    pub min_version: Option<EventVersion>,
    /// The body's shape: today's envelope or the Standard Webhooks one.
    pub payload_format: PayloadFormat,
    /// `tls:` and the proxy in force: which HTTP client sends.
    pub route: Route,
    /// `oauth2:`: a bearer token fetched and cached for every send.
    pub oauth2: Option<Arc<OAuth2>>,
    /// `filter:`: which of the events its topics match it gets; `None` =
    /// all of them.
    pub filter: Option<Arc<Filter>>,
}

/// `payload_format:` — the shape of a webhook's delivery body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadFormat {
    /// Contract §3: `{"id","topic","occurred_at",…,"payload"}`.
    #[default]
    Aion,
    /// Standard Webhooks: `{"type","timestamp","data"}`, the id in `webhook-id`.
    Standard,
}

impl Webhook {
    /// Whether an event of `version` reaches this webhook (`min_version`).
    pub fn accepts_version(&self, version: Option<&EventVersion>) -> bool {
        match (&self.min_version, version) {
            (None, _) => true,
            (Some(min), Some(v)) => v >= min,
            (Some(min), None) => EventVersion::parse("1").is_ok_and(|one| &one >= min),
        }
    }
    /// Whether an event of `tenant` may go to this webhook. A tenant filter
    /// admits the listed tenants; an event with no tenant only when the
    /// webhook says `include_untenanted: true`.
    pub fn permits_tenant(&self, tenant: Option<&str>) -> bool {
        match (&self.tenants, tenant) {
            (None, _) => true,
            (Some(allowed), Some(t)) => allowed.iter().any(|a| a == t),
            (Some(_), None) => self.include_untenanted,
        }
    }
}

/// `inbound:` — the command endpoint's secret and allow-list.
#[derive(Debug, Clone)]
pub struct InboundPolicy {
    pub secrets: Vec<Secret>,
    pub tolerance: Duration,
    /// Allow-listed action name → roles that may run it (any one suffices).
    pub actions: BTreeMap<String, Vec<String>>,
}

/// `auth:` — who may call the API.
#[derive(Debug, Clone, Default)]
pub struct AuthPolicy {
    pub api_keys: Vec<ApiKey>,
    pub jwt: Option<JwtConfig>,
}

/// An API key, known only by its SHA-256.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// The actor id recorded in audit events.
    pub id: String,
    pub sha256: [u8; 32],
    pub roles: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub issuer: String,
    pub audience: String,
    pub key: JwtKey,
    pub roles_claim: String,
}

/// The verification key fixes the algorithm: no token picks its own.
#[derive(Debug, Clone)]
pub enum JwtKey {
    Hs256(Secret),
    /// PEM text of an RSA (RS256) or EC P-256 (ES256) public key.
    PublicKeyPem(String),
}

/// `retention:` — how long finished deliveries are kept before the
/// background purge deletes them (audit records are never deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Succeeded deliveries and their attempts.
    pub succeeded: Duration,
    /// Dead deliveries and their attempts.
    pub dead: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            succeeded: Duration::from_secs(7 * 24 * 3600),
            dead: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// `network:` — exceptions to the SSRF guard, and the egress proxy.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    pub allow_private_targets: Vec<IpNet>,
    /// `network.proxy`: every webhook's attempts go through it unless the
    /// webhook says `proxy: none` or names its own.
    pub proxy: Option<Arc<EgressProxy>>,
}
