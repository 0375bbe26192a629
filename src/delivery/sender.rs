//! One outbound HTTP attempt (contract §3): builds the signed request, sends
//! it through the SSRF-guarded client, and reports what happened as an
//! [`AttemptReport`].
//!
//! It never retries, sleeps, touches the store or decides a delivery's next
//! state — that is `retry::decide` and the worker. It never follows
//! redirects and never puts secrets into error text.
//!
//! What the transport said — the response body, capped, and a failure's
//! kind and text — is read in `sender/transport.rs`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;
use url::Host;

use super::retry::{self, AttemptResult};
use super::ssrf::{GuardedResolver, SsrfGuard};
use crate::domain::redact::{text_url_origin, url_origin};
use crate::policy::Webhook;
use crate::signing::{SignError, aion_sign, standard_sign, v1a_sign};

/// Response bytes kept for the attempt record (and read from the network).
pub const MAX_RESPONSE_BODY: usize = 4096;
const USER_AGENT: &str = concat!("aion-webhooks/", env!("CARGO_PKG_VERSION"));

/// Why the delivery client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// Everything one attempt needs; the caller owns the data.
#[derive(Debug, Clone)]
pub struct Outbound<'a> {
    pub webhook: &'a Webhook,
    /// `Idempotency-Key`, `X-Aion-Delivery` and `webhook-id`.
    pub delivery_id: &'a str,
    /// `X-Aion-Attempt`, 1-based.
    pub attempt: u32,
    pub event_id: &'a str,
    pub topic: &'a str,
    /// A W3C traceparent or bare 32-hex trace id; anything else is ignored.
    pub trace_id: Option<&'a str>,
    /// The exact bytes fixed at enqueue, identical on every attempt.
    pub body: Bytes,
    /// Unix seconds for `X-Aion-Timestamp` and both signatures.
    pub timestamp: i64,
}

/// Why an attempt failed, with the stable names stored in attempt records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Timeout,
    Connect,
    BlockedDestination,
    /// A 3xx: redirects are never followed.
    Redirect,
    /// Any other non-2xx.
    HttpStatus,
    /// The answer was not HTTP, or its head broke a limit (too many or too
    /// large headers).
    Protocol,
    /// The receiver closed or reset the connection before a whole response
    /// head arrived.
    ConnectionClosed,
    Other,
}

impl ErrorKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::BlockedDestination => "blocked_destination",
            Self::Redirect => "redirect",
            Self::HttpStatus => "http_status",
            Self::Protocol => "protocol",
            Self::ConnectionClosed => "connection_closed",
            Self::Other => "other",
        }
    }
}

/// What one attempt did, ready to be recorded.
#[derive(Debug, Clone)]
pub struct AttemptReport {
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    /// The HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// `None` exactly when the receiver answered 2xx.
    pub error_kind: Option<ErrorKind>,
    /// Human-readable detail; never contains secrets.
    pub error: Option<String>,
    /// Up to [`MAX_RESPONSE_BODY`] bytes of the response, lossy UTF-8.
    pub response_body: Option<String>,
    pub retry_after: Option<Duration>,
}

impl AttemptReport {
    pub fn result(&self) -> AttemptResult {
        match self.status {
            Some(s) if (200..300).contains(&s) => AttemptResult::Success,
            Some(410) => AttemptResult::Gone,
            _ => AttemptResult::Failure,
        }
    }
}

/// The delivery HTTP client. One per engine: it pools connections per host.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    guard: Arc<SsrfGuard>,
}

impl Sender {
    pub fn new(guard: Arc<SsrfGuard>) -> Result<Self, SenderError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver {
                guard: Arc::clone(&guard),
            }))
            // A proxy from the environment would do its own DNS and connect
            // wherever it likes, bypassing the guard.
            .no_proxy()
            .user_agent(USER_AGENT)
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(SenderError::Client)?;
        Ok(Self { client, guard })
    }

    /// Makes one attempt. Never fails: every outcome is a report.
    pub async fn send(&self, req: &Outbound<'_>) -> AttemptReport {
        let started_at = Utc::now();
        let clock = Instant::now();
        let mut report = AttemptReport {
            started_at,
            duration: Duration::ZERO,
            status: None,
            error_kind: None,
            error: None,
            response_body: None,
            retry_after: None,
        };
        if let Err((kind, message)) = self.attempt(req, clock, &mut report).await {
            report.error_kind = Some(kind);
            report.error = Some(message);
        }
        report.duration = clock.elapsed();
        report
    }

    async fn attempt(
        &self,
        req: &Outbound<'_>,
        clock: Instant,
        report: &mut AttemptReport,
    ) -> Result<(), (ErrorKind, String)> {
        let url = &req.webhook.url;
        // IP literals never reach the resolver, so they are checked here,
        // before any I/O.
        let literal = match url.host() {
            Some(Host::Ipv4(v4)) => Some(v4.into()),
            Some(Host::Ipv6(v6)) => Some(v6.into()),
            Some(Host::Domain(_)) => None,
            None => {
                return Err((ErrorKind::Other, format!("{} has no host", url_origin(url))));
            }
        };
        if let Some(ip) = literal.filter(|&ip| !self.guard.permits(ip)) {
            return Err((
                ErrorKind::BlockedDestination,
                format!(
                    "{ip} is a forbidden destination (allow it with network.allow_private_targets)"
                ),
            ));
        }
        let headers = build_headers(req).map_err(|e| (ErrorKind::Other, e))?;

        // One deadline for connect, response and body, so a receiver that
        // answers slowly byte by byte cannot stretch an attempt.
        let deadline = clock + req.webhook.timeout;
        let timed_out = || {
            let ms = req.webhook.timeout.as_millis();
            (ErrorKind::Timeout, format!("no response within {ms} ms"))
        };
        let sent = self
            .client
            .post(url.clone())
            .headers(headers)
            .body(req.body.clone())
            .send();
        let mut response = tokio::time::timeout_at(deadline, sent)
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| classify(e, url))?;

        let status = response.status();
        report.status = Some(status.as_u16());
        report.retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry::parse_retry_after(v, Utc::now()));
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(text_url_origin);

        // The status is the receiver's answer; the body is only diagnostics.
        // So a body that is slow or breaks off does not change the outcome —
        // we keep whatever arrived before the deadline.
        let mut body = Vec::new();
        let _ = tokio::time::timeout_at(deadline, read_capped(&mut response, &mut body)).await;
        report.response_body = Some(scrub_credentials(lossy_capped(&body), req.webhook));

        if status.is_success() {
            Ok(())
        } else if status.is_redirection() {
            let to = location.map_or_else(String::new, |l| format!(" to {l}"));
            Err((
                ErrorKind::Redirect,
                format!("HTTP {status}: redirect{to} not followed"),
            ))
        } else {
            Err((ErrorKind::HttpStatus, format!("HTTP {status}")))
        }
    }
}

/// All request headers of contract §3. Static headers go in first so the
/// engine's own headers always win (the policy compiler also refuses
/// reserved names; this is the second line of defence).
fn build_headers(req: &Outbound<'_>) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in &req.webhook.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("static header name {name:?} is invalid"))?;
        // The value is not echoed: a static header may carry a credential.
        let mut value = HeaderValue::from_str(value.expose())
            .map_err(|_| format!("static header {name} has an invalid value"))?;
        // Masked in the map's `Debug`, and never indexed by HTTP/2's HPACK.
        value.set_sensitive(true);
        headers.append(name, value);
    }

    let mut set = |name: &'static str, value: String| -> Result<(), String> {
        let value = HeaderValue::try_from(value)
            .map_err(|_| format!("header {name} would have an invalid value"))?;
        headers.insert(HeaderName::from_static(name), value);
        Ok(())
    };
    let timestamp = req.timestamp.to_string();
    set("content-type", "application/json".into())?;
    set("user-agent", USER_AGENT.into())?;
    set("idempotency-key", req.delivery_id.into())?;
    set("x-aion-event", req.topic.into())?;
    set("x-aion-event-id", req.event_id.into())?;
    set("x-aion-delivery", req.delivery_id.into())?;
    set("x-aion-attempt", req.attempt.to_string())?;
    set("x-aion-timestamp", timestamp.clone())?;

    let webhook = req.webhook;
    if webhook.signature.signs_aion() {
        if webhook.secrets.is_empty() {
            return Err(SignError::NoSecrets.to_string());
        }
        let keys: Vec<&[u8]> = webhook
            .secrets
            .iter()
            .map(|s| s.expose().as_bytes())
            .collect();
        set(
            "x-aion-signature",
            aion_sign(&keys, req.timestamp, &req.body),
        )?;
    }
    if webhook.signature.signs_standard() {
        if webhook.standard_secrets.is_empty() && webhook.ed25519_keys.is_empty() {
            return Err(SignError::NoSecrets.to_string());
        }
        let hmac: Vec<_> = webhook.standard_secrets.iter().collect();
        let ed25519: Vec<_> = webhook.ed25519_keys.iter().collect();
        let signature = [
            standard_sign(&hmac, req.delivery_id, req.timestamp, &req.body),
            v1a_sign(&ed25519, req.delivery_id, req.timestamp, &req.body),
        ]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
        set("webhook-id", req.delivery_id.into())?;
        set("webhook-timestamp", timestamp)?;
        set("webhook-signature", signature)?;
    }
    if let Some(traceparent) = req.trace_id.and_then(traceparent) {
        set("traceparent", traceparent)?;
    }
    Ok(headers)
}

/// A W3C `traceparent` for `trace`: a valid version-00 traceparent passes
/// through (lowercased), a bare 32-hex trace id gets a fresh random span id
/// and the sampled flag, anything else yields none.
fn traceparent(trace: &str) -> Option<String> {
    let trace = trace.trim().to_ascii_lowercase();
    let is_id = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0')
    };
    if is_id(&trace, 32) {
        let span = rand::random_range(1..=u64::MAX);
        return Some(format!("00-{trace}-{span:016x}-01"));
    }
    let parts: Vec<&str> = trace.split('-').collect();
    match parts.as_slice() {
        ["00", trace_id, parent_id, flags]
            if is_id(trace_id, 32)
                && is_id(parent_id, 16)
                && flags.len() == 2
                && flags.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Some(trace)
        }
        _ => None,
    }
}

mod transport;

use transport::{classify, lossy_capped, read_capped, scrub_credentials};

#[cfg(test)]
mod tests;
