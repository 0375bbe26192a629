//! Raw policy → validated model. Every check lives here and records an error
//! with the YAML path and position instead of returning early, so one run of
//! `policy check` lists everything wrong with a file.
//!
//! Longer than 400 lines: the webhook entry's checks (secrets, retry,
//! headers, signature modes, versions) are one sequence that reads best in
//! one place; the other sections of the file are compiled in `compile/`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::duration::parse_duration;
use super::error::PolicyError;
use super::interp::interpolate;
use super::model::{PayloadFormat, RetryPolicy, SignatureMode, Webhook};
use super::raw::{RawDefaults, RawRetry, RawWebhook, Str};
use crate::domain::{EventVersion, Secret, TopicPattern, WebhookId};
use crate::signing::ed25519::{PUBLIC_PREFIX, SIGNING_PREFIX};
use crate::signing::{Ed25519Secret, StandardSecret};

mod access;
mod files;
mod retention;
mod schemas;
mod sources;

pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a webhook may fail every attempt before the engine disables it.
pub(crate) const DEFAULT_DISABLE_AFTER: Duration = Duration::from_secs(5 * 24 * 3600);

/// `N/s` or `N/m` (N a positive integer, at most 100,000 a second) as
/// attempts per second.
fn parse_rate(text: &str) -> Result<f64, String> {
    let bad = || format!("invalid rate {text:?}; expected e.g. `50/s` or `300/m`");
    let (n, unit) = text.trim().split_once('/').ok_or_else(bad)?;
    let n: u32 = n.trim().parse().map_err(|_| bad())?;
    let per_second = match unit.trim() {
        "s" => f64::from(n),
        "m" => f64::from(n) / 60.0,
        _ => return Err(bad()),
    };
    if n == 0 || per_second > 100_000.0 {
        return Err(format!(
            "rate {text:?} must be above zero and at most 100000/s"
        ));
    }
    Ok(per_second)
}

/// What a webhook inherits from `defaults:`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WebhookDefaults {
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub disable_after: Option<Duration>,
}
pub(crate) const DEFAULT_RETRY: RetryPolicy = RetryPolicy {
    initial_interval: Duration::from_secs(10),
    max_interval: Duration::from_secs(6 * 3600),
    max_attempts: 15,
};
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_ATTEMPTS: i64 = 1000;
/// Headers the engine sets itself; a static header must not override them.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "idempotency-key",
    "traceparent",
    "transfer-encoding",
    "connection",
];

/// Where secret files and key files are read from, and how `${NAME}` resolves.
pub(crate) struct Compiler<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub base_dir: &'a Path,
    pub errors: Vec<PolicyError>,
    /// Every file the policy reads (secret, key and password files,
    /// schemas and the files their `$ref`s read, source TLS and credential
    /// files) and its bytes: the policy's fingerprint, and what the file
    /// watcher watches.
    pub included: Vec<(PathBuf, Vec<u8>)>,
}

fn at(loc: Location) -> (u64, u64) {
    (loc.line(), loc.column())
}

impl Compiler<'_> {
    pub fn error(&mut self, path: impl Into<String>, loc: Location, message: impl Into<String>) {
        let (line, column) = at(loc);
        self.errors.push(PolicyError {
            path: path.into(),
            line,
            column,
            message: message.into(),
        });
    }

    /// The string with `${NAME}` resolved, or `None` after recording why not.
    pub fn string(&mut self, s: &Str, path: &str) -> Option<String> {
        match interpolate(&s.value, self.env) {
            Ok(v) => Some(v),
            Err(msg) => {
                self.error(path, s.referenced, msg);
                None
            }
        }
    }

    fn duration(&mut self, s: &Str, path: &str, allow_zero: bool) -> Option<Duration> {
        let text = self.string(s, path)?;
        match parse_duration(&text) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.error(path, s.referenced, "must be greater than zero");
                None
            }
            Ok(d) => Some(d),
            Err(msg) => {
                self.error(path, s.referenced, msg);
                None
            }
        }
    }

    /// Resolves `secret` / `secrets` / `secret_file` (exactly one must be given).
    fn secrets(
        &mut self,
        path: &str,
        owner: Location,
        secret: &Option<Str>,
        secrets: &Option<Spanned<Vec<Str>>>,
        secret_file: &Option<Str>,
    ) -> Option<Vec<Secret>> {
        let given = usize::from(secret.is_some())
            + usize::from(secrets.is_some())
            + usize::from(secret_file.is_some());
        if given != 1 {
            let msg = if given == 0 {
                "a secret is required: set `secret`, `secrets` or `secret_file`"
            } else {
                "set only one of `secret`, `secrets` and `secret_file`"
            };
            self.error(path, owner, msg);
            return None;
        }
        let mut out = Vec::new();
        if let Some(s) = secret {
            out.push(self.string(s, &format!("{path}.secret"))?);
        } else if let Some(list) = secrets {
            if list.value.is_empty() {
                self.error(
                    format!("{path}.secrets"),
                    list.referenced,
                    "must list at least one secret",
                );
                return None;
            }
            for (i, s) in list.value.iter().enumerate() {
                // Every entry is checked, so each missing variable is reported.
                if let Some(v) = self.string(s, &format!("{path}.secrets[{i}]")) {
                    out.push(v);
                }
            }
            if out.len() < list.value.len() {
                return None;
            }
        } else if let Some(f) = secret_file {
            out.push(self.read_file(f, &format!("{path}.secret_file"))?);
        }
        if out.iter().any(|s| s.is_empty()) {
            self.error(
                path,
                owner,
                "a secret is empty (is its environment variable set to an empty string?)",
            );
            return None;
        }
        Some(out.into_iter().map(Secret::new).collect())
    }

    pub fn retry(
        &mut self,
        base: RetryPolicy,
        raw: &Option<RawRetry>,
        path: &str,
        owner: Location,
    ) -> RetryPolicy {
        let mut r = base;
        let Some(raw) = raw else { return r };
        if let Some(s) = &raw.initial_interval {
            r.initial_interval = self
                .duration(s, &format!("{path}.initial_interval"), false)
                .unwrap_or(r.initial_interval);
        }
        if let Some(s) = &raw.max_interval {
            r.max_interval = self
                .duration(s, &format!("{path}.max_interval"), false)
                .unwrap_or(r.max_interval);
        }
        if let Some(n) = &raw.max_attempts {
            if (1..=MAX_ATTEMPTS).contains(&n.value) {
                r.max_attempts = n.value as u32;
            } else {
                self.error(
                    format!("{path}.max_attempts"),
                    n.referenced,
                    format!("must be between 1 and {MAX_ATTEMPTS}, got {}", n.value),
                );
            }
        }
        if r.initial_interval > r.max_interval {
            self.error(
                path,
                owner,
                format!(
                    "initial_interval ({:?}) is greater than max_interval ({:?})",
                    r.initial_interval, r.max_interval
                ),
            );
        }
        r
    }

    pub fn timeout(&mut self, base: Duration, raw: &Option<Str>, path: &str) -> Duration {
        let Some(s) = raw else { return base };
        match self.duration(s, path, false) {
            Some(d) if d > MAX_TIMEOUT => {
                self.error(
                    path,
                    s.referenced,
                    format!("must be at most {}s", MAX_TIMEOUT.as_secs()),
                );
                base
            }
            Some(d) => d,
            None => base,
        }
    }

    pub fn defaults(&mut self, raw: &Option<RawDefaults>) -> WebhookDefaults {
        let base = WebhookDefaults {
            timeout: DEFAULT_TIMEOUT,
            retry: DEFAULT_RETRY,
            disable_after: Some(DEFAULT_DISABLE_AFTER),
        };
        let Some(d) = raw else {
            return base;
        };
        WebhookDefaults {
            timeout: self.timeout(DEFAULT_TIMEOUT, &d.timeout, "defaults.timeout"),
            retry: self.retry(DEFAULT_RETRY, &d.retry, "defaults.retry", Location::UNKNOWN),
            disable_after: self.disable_after(
                base.disable_after,
                &d.disable_after,
                "defaults.disable_after",
            ),
        }
    }

    /// `max_in_flight` / `initial_in_flight`: sends at once, 1 to 10,000.
    fn in_flight(&mut self, n: &Option<Spanned<i64>>, path: &str) -> Option<u32> {
        let n = n.as_ref()?;
        match u32::try_from(n.value) {
            Ok(v) if (1..=10_000).contains(&v) => Some(v),
            _ => {
                let msg = format!("must be between 1 and 10000, got {}", n.value);
                self.error(path.to_owned(), n.referenced, msg);
                None
            }
        }
    }

    /// `disable_after`: a duration, or `never`.
    fn disable_after(
        &mut self,
        base: Option<Duration>,
        raw: &Option<Str>,
        path: &str,
    ) -> Option<Duration> {
        let Some(s) = raw else { return base };
        if s.value.trim() == "never" {
            return None;
        }
        self.duration(s, path, false).or(base)
    }

    pub fn webhooks(
        &mut self,
        raw: &[Spanned<RawWebhook>],
        defaults: WebhookDefaults,
    ) -> Vec<Webhook> {
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, w) in raw.iter().enumerate() {
            let path = format!("webhooks[{i}]");
            if let Some(hook) = self.webhook(&w.value, w.referenced, &path, defaults) {
                if !seen.insert(hook.id.clone()) {
                    self.error(
                        format!("{path}.id"),
                        w.value.id.referenced,
                        format!("duplicate webhook id {:?}", hook.id.as_str()),
                    );
                    continue;
                }
                out.push(hook);
            }
        }
        out
    }

    fn webhook(
        &mut self,
        w: &RawWebhook,
        loc: Location,
        path: &str,
        defaults: WebhookDefaults,
    ) -> Option<Webhook> {
        let WebhookDefaults { timeout, retry, .. } = defaults;
        let before = self.errors.len();
        let id =
            self.string(&w.id, &format!("{path}.id"))
                .and_then(|id| match WebhookId::parse(&id) {
                    Ok(id) => Some(id),
                    Err(e) => {
                        self.error(format!("{path}.id"), w.id.referenced, e.to_string());
                        None
                    }
                });
        let url = self.url(&w.url, &format!("{path}.url"));
        let secrets = self.secrets(path, loc, &w.secret, &w.secrets, &w.secret_file);
        let topics = self.patterns(&w.topics, &format!("{path}.topics"));
        let retry = self.retry(retry, &w.retry, &format!("{path}.retry"), loc);
        let timeout = self.timeout(timeout, &w.timeout, &format!("{path}.timeout"));
        let disable_after = self.disable_after(
            defaults.disable_after,
            &w.disable_after,
            &format!("{path}.disable_after"),
        );
        let max_in_flight = self.in_flight(&w.max_in_flight, &format!("{path}.max_in_flight"));
        let initial_in_flight =
            self.in_flight(&w.initial_in_flight, &format!("{path}.initial_in_flight"));
        let rate_limit = w.rate_limit.as_ref().and_then(|r| {
            let text = self.string(r, &format!("{path}.rate_limit"))?;
            match parse_rate(&text) {
                Ok(per_second) => Some(per_second),
                Err(msg) => {
                    self.error(format!("{path}.rate_limit"), r.referenced, msg);
                    None
                }
            }
        });
        let ordered = w.ordering.as_ref().is_some_and(|o| {
            let Some(text) = self.string(o, &format!("{path}.ordering")) else {
                return false;
            };
            match text.as_str() {
                "key" => true,
                "none" => false,
                _ => {
                    self.error(
                        format!("{path}.ordering"),
                        o.referenced,
                        format!("unknown ordering {text:?}; expected key or none"),
                    );
                    false
                }
            }
        });
        let headers = self.headers(&w.headers, &format!("{path}.headers"), loc);
        let min_version = w.min_version.as_ref().and_then(|m| {
            let text = self.string(m, &format!("{path}.min_version"))?;
            EventVersion::parse(&text)
                .map_err(|e| self.error(format!("{path}.min_version"), m.referenced, e))
                .ok()
        });
        let payload_format = match &w.payload_format {
            None => PayloadFormat::Aion,
            Some(f) => match self.string(f, &format!("{path}.payload_format")).as_deref() {
                Some("aion") | None => PayloadFormat::Aion,
                Some("standard") => PayloadFormat::Standard,
                Some(other) => {
                    self.error(
                        format!("{path}.payload_format"),
                        f.referenced,
                        format!("unknown payload format {other:?}; expected aion or standard"),
                    );
                    PayloadFormat::Aion
                }
            },
        };
        let signature = match &w.signature {
            None => SignatureMode::Aion,
            Some(s) => {
                let text = self
                    .string(s, &format!("{path}.signature"))
                    .unwrap_or_default();
                SignatureMode::parse(&text).unwrap_or_else(|| {
                    self.error(
                        format!("{path}.signature"),
                        s.referenced,
                        format!("unknown signature mode {text:?}; expected aion, standard or both"),
                    );
                    SignatureMode::Aion
                })
            }
        };
        let keys = self.signing_keys(path, loc, signature, secrets.as_deref().unwrap_or_default());
        let tenants = w.tenants.as_ref().map(|list| {
            list.value
                .iter()
                .enumerate()
                .filter_map(|(i, t)| {
                    let p = format!("{path}.tenants[{i}]");
                    let v = self.string(t, &p)?;
                    if v.is_empty() {
                        self.error(p, t.referenced, "tenant id must not be empty");
                        return None;
                    }
                    Some(v)
                })
                .collect::<Vec<_>>()
        });
        if self.errors.len() > before {
            return None;
        }
        Some(Webhook {
            id: id?,
            url: url?,
            secrets: keys.hmac,
            standard_secrets: keys.standard,
            ed25519_keys: keys.ed25519,
            topics,
            retry,
            timeout,
            headers,
            signature,
            tenants,
            include_untenanted: w.include_untenanted.unwrap_or(false),
            enabled: w.enabled.unwrap_or(true),
            disable_after,
            max_in_flight,
            initial_in_flight,
            rate_limit,
            ordered,
            min_version,
            payload_format,
        })
    }

    /// Sorts a webhook's secrets by scheme: the prefix of each entry selects
    /// it (`whsk_` → ed25519 `v1a`; anything else is an HMAC secret, which
    /// must be `whsec_` when the webhook signs Standard Webhooks `v1`).
    fn signing_keys(
        &mut self,
        path: &str,
        loc: Location,
        signature: SignatureMode,
        secrets: &[Secret],
    ) -> SigningKeys {
        let mut keys = SigningKeys::default();
        let field = format!("{path}.secret");
        for (i, s) in secrets.iter().enumerate() {
            let n = i + 1;
            let text = s.expose();
            if text.trim_start().starts_with(PUBLIC_PREFIX) {
                self.error(
                    &field,
                    loc,
                    format!(
                        "secret #{n} is a `{PUBLIC_PREFIX}` public key: the webhook signs with the \
                         `{SIGNING_PREFIX}` signing key, the receiver keeps the public one"
                    ),
                );
            } else if text.trim_start().starts_with(SIGNING_PREFIX) {
                if !signature.signs_standard() {
                    self.error(
                        &field,
                        loc,
                        format!(
                            "secret #{n} is a `{SIGNING_PREFIX}` ed25519 key, which signs only \
                             `webhook-signature` (v1a): set `signature: standard` or `both`"
                        ),
                    );
                    continue;
                }
                match Ed25519Secret::parse(text) {
                    Ok(k) => keys.ed25519.push(k),
                    Err(e) => self.error(&field, loc, format!("secret #{n}: {e}")),
                }
            } else {
                if signature.signs_standard() {
                    match StandardSecret::parse(text) {
                        Ok(k) => keys.standard.push(k),
                        Err(e) => self.error(
                            &field,
                            loc,
                            format!(
                                "secret #{n} cannot be used with signature {}: {e} \
                                 (or `{SIGNING_PREFIX}` for an ed25519 key)",
                                signature.as_str()
                            ),
                        ),
                    }
                }
                keys.hmac.push(s.clone());
            }
        }
        if signature.signs_aion() && keys.hmac.is_empty() && !secrets.is_empty() {
            self.error(
                &field,
                loc,
                format!(
                    "X-Aion-Signature (signature {}) needs an HMAC secret; \
                     `{SIGNING_PREFIX}` keys sign only the Standard Webhooks header",
                    signature.as_str()
                ),
            );
        }
        keys
    }

    fn url(&mut self, s: &Str, path: &str) -> Option<url::Url> {
        let text = self.string(s, path)?;
        match url::Url::parse(&text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if !u.username().is_empty() || u.password().is_some() {
                    self.error(
                        path,
                        s.referenced,
                        "credentials in the URL are not allowed; use `headers` instead",
                    );
                    return None;
                }
                Some(u)
            }
            Ok(u) => {
                self.error(
                    path,
                    s.referenced,
                    format!(
                        "scheme {:?} is not allowed; expected an http or https URL with a host",
                        u.scheme()
                    ),
                );
                None
            }
            Err(e) => {
                self.error(path, s.referenced, format!("not a valid URL: {e}"));
                None
            }
        }
    }

    fn patterns(&mut self, list: &Spanned<Vec<Str>>, path: &str) -> Vec<TopicPattern> {
        if list.value.is_empty() {
            self.error(
                path,
                list.referenced,
                "must list at least one topic pattern",
            );
        }
        let mut out: Vec<TopicPattern> = Vec::new();
        for (i, s) in list.value.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let Some(text) = self.string(s, &p) else {
                continue;
            };
            match TopicPattern::parse(&text) {
                Ok(pat) if out.contains(&pat) => {
                    self.error(p, s.referenced, format!("pattern {text:?} is listed twice"))
                }
                Ok(pat) => out.push(pat),
                Err(e) => self.error(
                    p,
                    s.referenced,
                    format!("invalid topic pattern {text:?}: {e}"),
                ),
            }
        }
        out
    }

    fn headers(
        &mut self,
        raw: &BTreeMap<String, Str>,
        path: &str,
        owner: Location,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, value) in raw {
            let p = format!("{path}.{name}");
            let lower = name.to_ascii_lowercase();
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                self.error(
                    &p,
                    owner,
                    format!("{name:?} is not a valid HTTP header name"),
                );
            } else if RESERVED_HEADERS.contains(&lower.as_str())
                || lower.starts_with("x-aion-")
                || lower.starts_with("webhook-")
            {
                self.error(
                    &p,
                    value.referenced,
                    format!("header {name:?} is set by the engine and cannot be overridden"),
                );
            } else if let Some(v) = self.string(value, &p) {
                if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                    self.error(
                        &p,
                        value.referenced,
                        "header value must not contain CR, LF or NUL",
                    );
                } else {
                    out.push((name.clone(), v));
                }
            }
        }
        out
    }
}

/// A webhook's secrets sorted by the scheme each signs with.
#[derive(Debug, Default)]
struct SigningKeys {
    /// HMAC secrets as written: `X-Aion-Signature` keys.
    hmac: Vec<Secret>,
    /// The same HMAC secrets decoded from `whsec_`, when the webhook signs `v1`.
    standard: Vec<StandardSecret>,
    /// `whsk_` keys: `v1a`.
    ed25519: Vec<Ed25519Secret>,
}
