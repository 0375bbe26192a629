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
    pub rate_limit: Option<Str>,
    pub ordering: Option<Str>,
    #[serde(default)]
    pub headers: BTreeMap<String, Str>,
    pub signature: Option<Str>,
    pub tenants: Option<Spanned<Vec<Str>>>,
    pub include_untenanted: Option<bool>,
    pub enabled: Option<bool>,
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
}
