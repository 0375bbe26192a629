//! The policy file exactly as written: serde structs mirroring contract §1,
//! unknown keys refused, every scalar wrapped in `Spanned` so the compile step
//! can point at the line and column of a value it rejects. Nothing here
//! validates meaning; that is `compile`'s job.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub(crate) type Str = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub version: Spanned<i64>,
    #[serde(default)]
    pub defaults: Option<RawDefaults>,
    #[serde(default)]
    pub webhooks: Vec<Spanned<RawWebhook>>,
    #[serde(default)]
    pub inbound: Option<Spanned<RawInbound>>,
    #[serde(default)]
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub network: Option<RawNetwork>,
    #[serde(default)]
    pub retention: Option<RawRetention>,
    #[serde(default)]
    pub sources: Vec<Spanned<RawSource>>,
    #[serde(default)]
    pub schemas: Vec<Spanned<RawSchema>>,
}

/// One `schemas:` entry (issue 16).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSchema {
    pub topic: Str,
    pub file: Option<Str>,
    pub versions: Option<Spanned<BTreeMap<String, Str>>>,
    pub mode: Option<Str>,
}

/// One event-bus source (contract §9). Kafka and NATS fields share one
/// struct so an unknown key is still an error; `compile` refuses a field of
/// the other kind by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSource {
    pub id: Str,
    pub kind: Str,
    pub format: Option<Str>,
    pub accept_audit_topics: Option<bool>,
    pub max_batch: Option<Spanned<i64>>,
    pub enabled: Option<bool>,
    // kind: kafka
    pub brokers: Option<Spanned<Vec<Str>>>,
    pub group: Option<Str>,
    pub topics: Option<Spanned<Vec<Str>>>,
    pub start: Option<Str>,
    pub tls: Option<Spanned<RawTls>>,
    pub sasl: Option<Spanned<RawSasl>>,
    // kind: nats
    pub url: Option<Str>,
    pub stream: Option<Str>,
    pub consumer: Option<Str>,
    pub subjects: Option<Spanned<Vec<Str>>>,
    pub credentials: Option<Spanned<RawNatsCredentials>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub ca_file: Option<Str>,
    pub cert_file: Option<Str>,
    pub key_file: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSasl {
    pub mechanism: Str,
    pub username: Str,
    pub password: Option<Str>,
    pub password_file: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNatsCredentials {
    pub user: Option<Str>,
    pub password: Option<Str>,
    pub token: Option<Str>,
    pub creds_file: Option<Str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetention {
    pub succeeded: Option<Str>,
    pub dead: Option<Str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDefaults {
    pub timeout: Option<Str>,
    pub retry: Option<RawRetry>,
    pub disable_after: Option<Str>,
}

/// Every field optional: a webhook's `retry` overrides the defaults field by field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    pub initial_interval: Option<Str>,
    pub max_interval: Option<Str>,
    pub max_attempts: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    pub id: Str,
    pub url: Str,
    pub secret: Option<Str>,
    pub secrets: Option<Spanned<Vec<Str>>>,
    pub secret_file: Option<Str>,
    pub topics: Spanned<Vec<Str>>,
    pub retry: Option<RawRetry>,
    pub timeout: Option<Str>,
    pub disable_after: Option<Str>,
    pub max_in_flight: Option<Spanned<i64>>,
    pub initial_in_flight: Option<Spanned<i64>>,
    pub rate_limit: Option<Str>,
    pub ordering: Option<Str>,
    #[serde(default)]
    pub headers: BTreeMap<String, Str>,
    /// Header name → a file (relative to the policy) holding its value.
    #[serde(default)]
    pub header_files: BTreeMap<String, Str>,
    pub signature: Option<Str>,
    pub tenants: Option<Spanned<Vec<Str>>>,
    pub include_untenanted: Option<bool>,
    pub enabled: Option<bool>,
    pub min_version: Option<Str>,
    pub payload_format: Option<Str>,
    pub tls: Option<Spanned<RawClientTls>>,
    pub oauth2: Option<Spanned<RawOAuth2>>,
    /// A proxy URL, or `none` for a direct connection.
    pub proxy: Option<Str>,
    pub proxy_password_file: Option<Str>,
    pub filter: Option<Spanned<RawNode>>,
}

/// Any YAML node, each with its position: a webhook's `filter:` is a
/// document of conditions whose shape `compile` checks.
#[derive(Debug)]
pub(crate) enum RawNode {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawNode>>),
    Map(Vec<(String, Spanned<RawNode>)>),
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawNode;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a YAML value")
            }
            fn visit_unit<E>(self) -> Result<RawNode, E> {
                Ok(RawNode::Null)
            }
            fn visit_none<E>(self) -> Result<RawNode, E> {
                Ok(RawNode::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<RawNode, E> {
                Ok(RawNode::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<RawNode, E> {
                Ok(RawNode::Int(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<RawNode, E> {
                Ok(RawNode::Int(n.into()))
            }
            fn visit_i128<E>(self, n: i128) -> Result<RawNode, E> {
                Ok(RawNode::Int(n))
            }
            fn visit_u128<E: serde::de::Error>(self, n: u128) -> Result<RawNode, E> {
                i128::try_from(n)
                    .map(RawNode::Int)
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_f64<E>(self, n: f64) -> Result<RawNode, E> {
                Ok(RawNode::Float(n))
            }
            fn visit_str<E>(self, s: &str) -> Result<RawNode, E> {
                Ok(RawNode::Str(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<RawNode, E> {
                Ok(RawNode::Str(s))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<RawNode, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element()? {
                    items.push(item);
                }
                Ok(RawNode::Seq(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<RawNode, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = a.next_entry()? {
                    members.push(entry);
                }
                Ok(RawNode::Map(members))
            }
        }
        d.deserialize_any(V)
    }
}

/// A webhook's `tls:` (contract §10).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClientTls {
    pub client_cert_file: Option<Str>,
    pub client_key_file: Option<Str>,
    pub ca_file: Option<Str>,
}

/// A webhook's `oauth2:` (contract §10).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOAuth2 {
    pub token_url: Str,
    pub client_id: Str,
    pub client_secret: Option<Str>,
    pub client_secret_file: Option<Str>,
    pub scopes: Option<Spanned<Vec<Str>>>,
    pub audience: Option<Str>,
    /// `basic` (default) or `post`.
    pub client_auth: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInbound {
    pub secret: Option<Str>,
    pub secrets: Option<Spanned<Vec<Str>>>,
    pub secret_file: Option<Str>,
    pub tolerance: Option<Str>,
    #[serde(default)]
    pub actions: BTreeMap<String, Spanned<RawAction>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAction {
    pub roles: Spanned<Vec<Str>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    #[serde(default)]
    pub api_keys: Vec<Spanned<RawApiKey>>,
    pub jwt: Option<Spanned<RawJwt>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApiKey {
    pub id: Str,
    pub sha256: Str,
    pub roles: Spanned<Vec<Str>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwt {
    pub issuer: Str,
    pub audience: Str,
    pub hs256_secret: Option<Str>,
    pub public_key_file: Option<Str>,
    pub roles_claim: Option<Str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetwork {
    #[serde(default)]
    pub allow_private_targets: Vec<Str>,
    pub proxy: Option<Str>,
    pub proxy_password_file: Option<Str>,
}
