//! The engine's configuration. Every `AION_WEBHOOKS_*` variable is read
//! once, at start, into one typed struct ([`Settings`]); a value that does
//! not parse stops the engine with the variable's name, and a variable no
//! setting knows is logged (a misspelt name would otherwise be silently
//! ignored). [`Config`] is what the application is built from; tests build
//! it directly.
//!
//! `AION_WEBHOOKS_POLICY`, `_LISTEN`, `_URL` and `_API_KEY` are read by the
//! command line (clap); `_LOG` and `_LOG_FORMAT` before anything else, to
//! start logging; `_SQLITE_SYNCHRONOUS` when the store opens and
//! `_KAFKA_DEBUG` when a Kafka source starts. They are settings here too,
//! so a malformed value is refused at start.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::delivery::worker::WorkerConfig;
use crate::http::Limits;
use crate::http::console::{ConsoleConfig, SecureCookie};
use crate::http::serve::ServerLimits;

mod env;

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub listen: String,
    pub policy_path: PathBuf,
    pub limits: Limits,
    /// Connection limits of the API listener.
    pub server: ServerLimits,
    pub worker: WorkerConfig,
    /// Run delivery workers in this process (false = API only).
    pub run_workers: bool,
    pub db_max_connections: u32,
    /// Reload the policy when its file changes (SIGHUP and the API reload
    /// it whatever this says).
    pub watch_policy: bool,
    /// Group-commit writers for single-event ingest. Few is better: each
    /// writer's group waits for the statement before it, so groups grow and
    /// commits shrink; two keep one statement in flight while the next fills.
    pub ingest_writers: usize,
    /// Run the policy's event-bus sources in this process.
    pub run_sources: bool,
    /// Export OpenTelemetry spans with OTLP/HTTP (`None` = tracing off).
    pub otlp: Option<crate::telemetry::OtlpConfig>,
    /// The web console's sessions and cookie.
    pub console: crate::http::console::ConsoleConfig,
}

/// Every `AION_WEBHOOKS_*` variable, by its name without the prefix, in
/// lower case. Unset = the default (see `docs/src/reference/configuration.md`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub max_in_flight: Option<u64>,
    pub max_in_flight_per_webhook: Option<u64>,
    pub initial_in_flight: Option<u64>,
    pub db_max_connections: Option<u64>,
    pub ingest_writers: Option<u64>,
    pub max_event_bytes: Option<u64>,
    pub max_inbound_bytes: Option<u64>,
    pub http_header_timeout_secs: Option<u64>,
    pub http_body_timeout_secs: Option<u64>,
    pub http_write_timeout_secs: Option<u64>,
    pub http_max_connections: Option<u64>,
    pub http_max_headers: Option<u64>,
    pub http_max_header_bytes: Option<u64>,
    pub shutdown_grace_secs: Option<u64>,
    pub lease_margin_secs: Option<u64>,
    pub rescue_interval_ms: Option<u64>,
    pub poll_interval_ms: Option<u64>,
    pub claim_debounce_ms: Option<u64>,
    pub completion_gather_ms: Option<u64>,
    pub watch_policy: Option<bool>,
    pub sources: Option<bool>,
    pub workers: Option<bool>,
    pub console_idle_secs: Option<u64>,
    pub console_max_age_secs: Option<u64>,
    pub console_secure_cookie: Option<SecureCookie>,
    /// `normal`; anything else means `full` (read by the store).
    pub sqlite_synchronous: Option<String>,
    pub log: Option<String>,
    pub log_format: Option<LogFormat>,
    pub kafka_debug: Option<String>,
    pub policy: Option<String>,
    pub listen: Option<String>,
    pub url: Option<String>,
    pub api_key: Option<String>,
}

/// `AION_WEBHOOKS_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Settings {
    /// The settings in this process's environment, and the
    /// `AION_WEBHOOKS_*` names none of them is. Other variables are not
    /// read (one that is not UTF-8 does not matter); an `AION_WEBHOOKS_*`
    /// value that is not UTF-8 is refused, naming it.
    pub fn from_env() -> anyhow::Result<(Self, Vec<String>)> {
        let mut vars = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().filter(|n| n.starts_with(env::PREFIX)) else {
                continue;
            };
            match value.into_string() {
                Ok(value) => vars.push((name.to_owned(), value)),
                Err(_) => anyhow::bail!("{name}: the value is not UTF-8"),
            }
        }
        Self::from_vars(vars)
    }

    /// The settings among `vars`, and the `AION_WEBHOOKS_*` names none of
    /// them is. An empty value counts as unset.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<(Self, Vec<String>)> {
        env::from_vars(vars).map_err(|e| anyhow::anyhow!(e))
    }
}

/// `n` as a `usize`, saturating.
fn size(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl Config {
    /// The defaults, overridden by the environment's `AION_WEBHOOKS_*`
    /// variables (and the OpenTelemetry ones).
    pub fn from_env(
        database_url: String,
        listen: String,
        policy_path: PathBuf,
    ) -> anyhow::Result<Self> {
        let (settings, unknown) = Settings::from_env()?;
        for name in unknown {
            tracing::warn!(variable = %name, "unknown AION_WEBHOOKS_ variable, ignored");
        }
        let otlp = crate::telemetry::OtlpConfig::from_env(|name| std::env::var(name).ok());
        Ok(Self::with(
            database_url,
            listen,
            policy_path,
            settings,
            otlp,
        ))
    }

    /// The defaults, overridden by `s`.
    pub fn with(
        database_url: String,
        listen: String,
        policy_path: PathBuf,
        s: Settings,
        otlp: Option<crate::telemetry::OtlpConfig>,
    ) -> Self {
        let mut worker = WorkerConfig::default();
        let mut limits = Limits::default();
        let mut server = ServerLimits::default();
        let mut console = ConsoleConfig::default();
        let set = |target: &mut u32, v: Option<u64>| {
            if let Some(v) = v {
                *target = u32::try_from(v).unwrap_or(u32::MAX).max(1);
            }
        };
        set(&mut worker.max_in_flight, s.max_in_flight);
        set(
            &mut worker.max_in_flight_per_webhook,
            s.max_in_flight_per_webhook,
        );
        set(&mut worker.initial_in_flight, s.initial_in_flight);
        let secs = |v: Option<u64>, min: u64| v.map(|n| Duration::from_secs(n.max(min)));
        let millis = |v: Option<u64>, min: u64, max: u64| {
            v.map(|n| Duration::from_millis(n.clamp(min, max)))
        };
        if let Some(d) = secs(s.shutdown_grace_secs, 0) {
            worker.shutdown_grace = d;
        }
        if let Some(d) = secs(s.lease_margin_secs, 0) {
            worker.lease_margin = d;
        }
        if let Some(d) = millis(s.rescue_interval_ms, 10, u64::MAX) {
            worker.rescue_interval = d;
        }
        if let Some(d) = millis(s.poll_interval_ms, 1, u64::MAX) {
            worker.poll_interval = d;
        }
        if let Some(d) = millis(s.claim_debounce_ms, 0, 1000) {
            worker.claim_debounce = d;
        }
        if let Some(d) = millis(s.completion_gather_ms, 0, 1000) {
            worker.completion_gather = d;
        }
        if let Some(n) = s.max_event_bytes {
            limits.max_event_bytes = size(n);
        }
        if let Some(n) = s.max_inbound_bytes {
            limits.max_inbound_bytes = size(n);
        }
        if let Some(d) = secs(s.http_body_timeout_secs, 1) {
            limits.body_timeout = d;
        }
        if let Some(d) = secs(s.http_header_timeout_secs, 1) {
            server.header_timeout = d;
        }
        if let Some(d) = secs(s.http_write_timeout_secs, 1) {
            server.write_timeout = d;
        }
        if let Some(n) = s.http_max_connections {
            server.max_connections = size(n).max(1);
        }
        if let Some(n) = s.http_max_headers {
            server.max_headers = size(n).clamp(8, 1024);
        }
        if let Some(n) = s.http_max_header_bytes {
            server.max_header_bytes = size(n).clamp(1024, 1024 * 1024);
        }
        if let Some(d) = secs(s.console_idle_secs, 1) {
            console.sessions.idle = d;
        }
        if let Some(d) = secs(s.console_max_age_secs, 1) {
            console.sessions.max_age = d;
        }
        if let Some(c) = s.console_secure_cookie {
            console.secure_cookie = c;
        }
        Self {
            database_url,
            listen,
            policy_path,
            limits,
            server,
            worker,
            run_workers: s.workers.unwrap_or(true),
            db_max_connections: s
                .db_max_connections
                .map_or(16, |n| u32::try_from(n).unwrap_or(u32::MAX).max(2)),
            watch_policy: s.watch_policy.unwrap_or(true),
            ingest_writers: s.ingest_writers.map_or(2, |n| size(n).clamp(1, 64)),
            run_sources: s.sources.unwrap_or(true),
            otlp,
            console,
        }
    }
}

#[cfg(test)]
mod tests;
