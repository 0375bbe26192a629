//! One outbound attempt (contract §3): builds the signed request, sends it
//! through the SSRF-guarded client — or publishes it to a Kafka or NATS
//! destination (`sender/bus.rs`) — and reports what happened as an
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
use reqwest::header::{HeaderMap, HeaderValue};
use tokio::time::Instant;

use super::retry::{self, AttemptResult};
use super::ssrf::{GuardedResolver, SsrfGuard};
use crate::domain::Secret;
use crate::domain::redact::text_url_origin;
use crate::policy::Webhook;
use crate::policy::reach::{OAuth2, Route};

/// Response bytes kept for the attempt record (and read from the network).
pub const MAX_RESPONSE_BODY: usize = 4096;
pub(super) const USER_AGENT: &str = concat!("aion-webhooks/", env!("CARGO_PKG_VERSION"));

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
    /// The event's `key`: a Kafka destination's message key.
    pub key: Option<&'a str>,
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
    /// No OAuth2 token could be obtained for the receiver.
    Auth,
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
            Self::Auth => "auth",
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
    /// The HTTP status, if a response arrived; always `None` for a Kafka
    /// or NATS destination.
    pub status: Option<u16>,
    /// `None` exactly when the receiver answered 2xx or the broker
    /// acknowledged.
    pub error_kind: Option<ErrorKind>,
    /// Human-readable detail; never contains secrets.
    pub error: Option<String>,
    /// Up to [`MAX_RESPONSE_BODY`] bytes of the response, lossy UTF-8; a
    /// broker's acknowledgement as JSON (`partition`, `offset` or `stream`,
    /// `sequence`, `duplicate`).
    pub response_body: Option<String>,
    pub retry_after: Option<Duration>,
}

impl AttemptReport {
    pub fn result(&self) -> AttemptResult {
        match self.status {
            Some(s) if (200..300).contains(&s) => AttemptResult::Success,
            Some(410) => AttemptResult::Gone,
            // A broker's acknowledgement has no status.
            None if self.error_kind.is_none() => AttemptResult::Success,
            _ => AttemptResult::Failure,
        }
    }
}

/// The delivery HTTP clients: one per engine for plain webhooks, one per
/// route for webhooks with `tls:` or a proxy (`sender/route.rs`), each
/// pooling connections per host; the OAuth2 token cache; and the Kafka
/// producers and NATS connections (`sender/bus.rs`).
#[derive(Debug, Clone)]
pub struct Sender {
    direct: reqwest::Client,
    guard: Arc<SsrfGuard>,
    routes: Arc<Routes>,
    tokens: Arc<Tokens>,
    buses: Arc<Buses>,
}

impl Sender {
    pub fn new(guard: Arc<SsrfGuard>) -> Result<Self, SenderError> {
        let direct = route::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                guard: Arc::clone(&guard),
            }))
            .build()
            .map_err(SenderError::Client)?;
        Ok(Self {
            direct,
            guard,
            routes: Arc::default(),
            tokens: Arc::default(),
            buses: Arc::default(),
        })
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
        self.buses.sweep();
        let done = match req.webhook.bus.as_deref() {
            Some(bus) => {
                let deadline = clock + req.webhook.timeout;
                (self.buses)
                    .publish(bus, req, &self.guard, deadline, &mut report)
                    .await
            }
            None => self.attempt(req, clock, &mut report).await,
        };
        if let Err((kind, message)) = done {
            report.error_kind = Some(kind);
            report.error = Some(message);
        }
        report.duration = clock.elapsed();
        report
    }

    /// The client for `route`.
    fn client(&self, route: &Route) -> Result<reqwest::Client, (ErrorKind, String)> {
        if route.is_direct() {
            return Ok(self.direct.clone());
        }
        self.routes
            .client(route, &self.guard)
            .map_err(|e| (ErrorKind::Other, e))
    }

    /// A bearer token for `webhook`'s `oauth2:`. A fetch goes through the
    /// guard and the webhook's proxy, not its `tls:` (whose CA is for the
    /// receiver); anything that stops it is an `auth` failure.
    async fn token(
        &self,
        webhook: &Webhook,
        oauth: &OAuth2,
        deadline: Instant,
    ) -> Result<Lease, (ErrorKind, String)> {
        let route = Route {
            tls: None,
            proxy: webhook.route.proxy.clone(),
        };
        let fetch = || async {
            Routes::check_target(&self.guard, &oauth.token_url, route.proxy.is_some())
                .await
                .map_err(|(_, e)| format!("token endpoint: {e}"))?;
            let client = self.client(&route).map_err(|(_, e)| e)?;
            oauth::fetch(oauth, &client).await
        };
        self.tokens
            .get(oauth, deadline, fetch)
            .await
            .map_err(|e| (ErrorKind::Auth, e))
    }

    async fn attempt(
        &self,
        req: &Outbound<'_>,
        clock: Instant,
        report: &mut AttemptReport,
    ) -> Result<(), (ErrorKind, String)> {
        let webhook = req.webhook;
        let url = &webhook.url;
        Routes::check_target(&self.guard, url, webhook.route.proxy.is_some()).await?;
        let headers = build_headers(req).map_err(|e| (ErrorKind::Other, e))?;
        let client = self.client(&webhook.route)?;

        // One deadline for the token, connect, response and body, so a
        // receiver that answers slowly byte by byte cannot stretch an
        // attempt.
        let deadline = clock + webhook.timeout;
        let timed_out = || {
            let ms = webhook.timeout.as_millis();
            (ErrorKind::Timeout, format!("no response within {ms} ms"))
        };
        let post = |mut headers: HeaderMap, lease: Option<&Lease>| {
            if let Some(lease) = lease {
                let mut value = HeaderValue::try_from(format!("Bearer {}", lease.token.expose()))
                    .map_err(|_| {
                    (
                        ErrorKind::Auth,
                        "the token cannot go into a header".to_owned(),
                    )
                })?;
                value.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
            let sent = client
                .post(url.clone())
                .headers(headers)
                .body(req.body.clone())
                .send();
            Ok::<_, (ErrorKind, String)>(async move {
                tokio::time::timeout_at(deadline, sent)
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(|e| classify(e, url))
            })
        };
        let lease = match &webhook.oauth2 {
            Some(oauth) => Some(self.token(webhook, oauth, deadline).await?),
            None => None,
        };
        // Every token sent, to be scrubbed from an echoing answer.
        let mut sent: Vec<Secret> = lease.iter().map(|l| l.token.clone()).collect();
        // The headers are copied only where a 401 may call for a resend.
        let resend = lease.is_some().then(|| headers.clone());
        let mut response = post(headers, lease.as_ref())?.await?;
        // A refused token is dropped and the send made once more with a
        // fresh one; a second 401 is the receiver's answer.
        if response.status() == reqwest::StatusCode::UNAUTHORIZED
            && let (Some(oauth), Some(used), Some(headers)) = (&webhook.oauth2, &lease, resend)
        {
            self.tokens.refused(oauth, used, deadline).await;
            let fresh = self.token(webhook, oauth, deadline).await?;
            sent.push(fresh.token.clone());
            response = post(headers, Some(&fresh))?.await?;
        }
        self.read_response(req, response, deadline, &sent, report)
            .await
    }

    /// Records `response` in `report`: status, `Retry-After`, and the body
    /// as far as it arrives before `deadline`.
    async fn read_response(
        &self,
        req: &Outbound<'_>,
        mut response: reqwest::Response,
        deadline: Instant,
        tokens: &[Secret],
        report: &mut AttemptReport,
    ) -> Result<(), (ErrorKind, String)> {
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
        report.response_body = Some(scrub_credentials(lossy_capped(&body), req.webhook, tokens));

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

mod bus;
mod headers;
mod oauth;
mod route;
mod transport;

use bus::Buses;
use headers::build_headers;
#[cfg(test)]
use headers::traceparent;
use oauth::{Lease, Tokens};
use route::Routes;
use transport::{classify, lossy_capped, read_capped, scrub_credentials};

#[cfg(test)]
mod tests;
