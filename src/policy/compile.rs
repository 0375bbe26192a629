//! Raw policy → validated model. Every check lives here and records an error
//! with the YAML path and position instead of returning early, so one run of
//! `policy check` lists everything wrong with a file.
//!
//! The webhook entry's checks are here; its signing keys and static headers
//! are checked in `compile/keys.rs` and `compile/headers.rs`, and the other
//! sections of the file in `compile/`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::duration::parse_duration;
use super::error::PolicyError;
use super::interp::interpolate;
use super::model::{PayloadFormat, RetryPolicy, SignatureMode, Webhook};
use super::raw::{RawDefaults, RawRetry, RawWebhook, Str};
use super::reach::EgressProxy;
use crate::domain::{EventVersion, WebhookId};

mod access;
mod bus;
mod control;
mod files;
mod filter;
mod headers;
mod keys;
mod reach;
mod retention;
mod schemas;
mod sources;
mod tls;
mod topics;

pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a webhook may fail every attempt before the engine disables it.
pub(crate) const DEFAULT_DISABLE_AFTER: Duration = Duration::from_secs(5 * 24 * 3600);

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

    /// The value of the word `raw` names among `options`; `default` when
    /// it is absent, and after an error, which is recorded at `path`.
    pub(crate) fn one_of<T: Copy>(
        &mut self,
        raw: &Option<Str>,
        path: &str,
        what: &str,
        options: &[(&str, T)],
        default: T,
    ) -> T {
        let Some(s) = raw else { return default };
        let Some(text) = self.string(s, path) else {
            return default;
        };
        if let Some(&(_, v)) = options.iter().find(|(word, _)| *word == text) {
            return v;
        }
        let words: Vec<&str> = options.iter().map(|(word, _)| *word).collect();
        let (last, rest) = words.split_last().expect("options");
        let expected = if rest.is_empty() {
            (*last).to_owned()
        } else {
            format!("{} or {last}", rest.join(", "))
        };
        self.error(
            path,
            s.referenced,
            format!("unknown {what} {text:?}; expected {expected}"),
        );
        default
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

    pub fn webhooks(
        &mut self,
        raw: &[Spanned<RawWebhook>],
        defaults: WebhookDefaults,
        network_proxy: Option<&Arc<EgressProxy>>,
    ) -> Vec<Webhook> {
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, w) in raw.iter().enumerate() {
            let path = format!("webhooks[{i}]");
            if let Some(hook) = self.webhook(&w.value, w.referenced, &path, defaults, network_proxy)
            {
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
        network_proxy: Option<&Arc<EgressProxy>>,
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
        let (url, bus) = self.destination(&w.url, &format!("{path}.url")).unzip();
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
        let rate_limit = self.rate_limit(&w.rate_limit, &format!("{path}.rate_limit"));
        let ordered = self.one_of(
            &w.ordering,
            &format!("{path}.ordering"),
            "ordering",
            &[("key", true), ("none", false)],
            false,
        );
        let headers = self.headers(&w.headers, &w.header_files, path, w.oauth2.is_some());
        let bus = bus.flatten();
        let (route, oauth2) = self.route(w, path, loc, bus.as_deref(), network_proxy);
        let filter = w
            .filter
            .as_ref()
            .and_then(|f| self.filter(f, &format!("{path}.filter")));
        let min_version = w.min_version.as_ref().and_then(|m| {
            let text = self.string(m, &format!("{path}.min_version"))?;
            EventVersion::parse(&text)
                .map_err(|e| self.error(format!("{path}.min_version"), m.referenced, e))
                .ok()
        });
        let payload_format = self.one_of(
            &w.payload_format,
            &format!("{path}.payload_format"),
            "payload format",
            &[
                ("aion", PayloadFormat::Aion),
                ("standard", PayloadFormat::Standard),
            ],
            PayloadFormat::Aion,
        );
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
            bus,
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
            route,
            oauth2,
            filter: filter.map(Arc::new),
        })
    }
}
