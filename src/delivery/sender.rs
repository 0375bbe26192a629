//! One outbound HTTP attempt (contract §3): builds the signed request, sends
//! it through the SSRF-guarded client, and reports what happened as an
//! [`AttemptReport`].
//!
//! It never retries, sleeps, touches the store or decides a delivery's next
//! state — that is `retry::decide` and the worker. It never follows
//! redirects and never puts secrets into error text.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;
use url::Host;

use super::retry::{self, AttemptResult};
use super::ssrf::{GuardedResolver, SsrfGuard, is_blocked_destination};
use crate::policy::Webhook;
use crate::signing::{SignError, aion_sign, standard_sign};

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
            None => return Err((ErrorKind::Other, format!("{url} has no host"))),
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
            .map_err(classify)?;

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
            .map(str::to_owned);

        // The status is the receiver's answer; the body is only diagnostics.
        // So a body that is slow or breaks off does not change the outcome —
        // we keep whatever arrived before the deadline.
        let mut body = Vec::new();
        let _ = tokio::time::timeout_at(deadline, read_capped(&mut response, &mut body)).await;
        report.response_body = Some(lossy_capped(&body));

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

/// Reads into `buf` until it holds [`MAX_RESPONSE_BODY`] bytes or the body
/// ends. Writes through `buf` so the caller keeps partial data if this is
/// cancelled by the deadline.
async fn read_capped(response: &mut reqwest::Response, buf: &mut Vec<u8>) -> reqwest::Result<()> {
    while buf.len() < MAX_RESPONSE_BODY {
        let Some(chunk) = response.chunk().await? else {
            break;
        };
        let room = MAX_RESPONSE_BODY - buf.len();
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(())
}

/// Lossy UTF-8 of at most [`MAX_RESPONSE_BODY`] bytes: a character cut in
/// half by the cap is dropped rather than turned into U+FFFD, and the result
/// is re-trimmed because replacement characters are longer than the bytes
/// they replace.
fn lossy_capped(bytes: &[u8]) -> String {
    let bytes = match std::str::from_utf8(bytes) {
        Err(e) if e.error_len().is_none() => &bytes[..e.valid_up_to()],
        _ => bytes,
    };
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if text.len() > MAX_RESPONSE_BODY {
        let mut end = MAX_RESPONSE_BODY;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Maps a transport error to a kind and a message with its whole cause
/// chain (reqwest's top-level text alone is just "error sending request").
fn classify(err: reqwest::Error) -> (ErrorKind, String) {
    let kind = if err.is_timeout() {
        ErrorKind::Timeout
    } else if is_blocked_destination(&err) {
        // Checked before `is_connect`: a refused resolution is also a
        // connect error, but the attempt record must say why.
        ErrorKind::BlockedDestination
    } else if err.is_connect() {
        ErrorKind::Connect
    } else {
        ErrorKind::Other
    };
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    (kind, message)
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
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("static header {name} has an invalid value"))?;
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
        if webhook.standard_secrets.is_empty() {
            return Err(SignError::NoSecrets.to_string());
        }
        let keys: Vec<_> = webhook.standard_secrets.iter().collect();
        let signature = standard_sign(&keys, req.delivery_id, req.timestamp, &req.body);
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use axum::http::{HeaderMap as AxumHeaders, StatusCode};
    use axum::response::{IntoResponse, Response};

    use super::*;
    use crate::domain::{Secret, WebhookId};
    use crate::policy::{RetryPolicy, SignatureMode};
    use crate::signing::{StandardSecret, aion_verify, standard_verify};

    const BODY: &[u8] = br#"{"id":"evt_1","topic":"a.b","payload":{"x":"\u00e9"}}"#;
    const T: i64 = 1_700_000_000;
    const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    /// What the receiver saw: path, headers, body.
    type Seen = Arc<Mutex<Vec<(String, AxumHeaders, Bytes)>>>;

    /// A loopback receiver answering every request with `respond()` after
    /// recording it.
    async fn receiver<F, Fut>(respond: F) -> (SocketAddr, Seen)
    where
        F: Fn() -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        let seen: Seen = Arc::default();
        let record = Arc::clone(&seen);
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (record, respond) = (Arc::clone(&record), respond.clone());
            async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                record
                    .lock()
                    .unwrap()
                    .push((parts.uri.path().to_owned(), parts.headers, body));
                respond().await
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (addr, seen)
    }

    async fn answering(status: StatusCode, body: &'static str) -> (SocketAddr, Seen) {
        receiver(move || async move { (status, body).into_response() }).await
    }

    fn hook(url: &str, mode: SignatureMode) -> Webhook {
        Webhook {
            id: WebhookId::parse("test-hook").unwrap(),
            url: url.parse().unwrap(),
            secrets: vec![Secret::new("first-secret"), Secret::new("old-secret")],
            standard_secrets: vec![StandardSecret::parse(WHSEC).unwrap()],
            topics: Vec::new(),
            retry: RetryPolicy {
                initial_interval: Duration::from_secs(1),
                max_interval: Duration::from_secs(60),
                max_attempts: 5,
            },
            timeout: Duration::from_secs(5),
            headers: vec![("X-Team".into(), "analytics".into())],
            signature: mode,
            tenants: None,
            enabled: true,
        }
    }

    fn outbound(webhook: &Webhook) -> Outbound<'_> {
        Outbound {
            webhook,
            delivery_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            attempt: 3,
            event_id: "evt_1",
            topic: "a.b",
            trace_id: None,
            body: Bytes::from_static(BODY),
            timestamp: T,
        }
    }

    fn sender(allow: &[&str]) -> Sender {
        let allow = allow.iter().map(|n| n.parse().unwrap()).collect();
        Sender::new(Arc::new(SsrfGuard::new(allow))).unwrap()
    }

    fn loopback_sender() -> Sender {
        sender(&["127.0.0.0/8"])
    }

    fn header<'a>(h: &'a AxumHeaders, name: &str) -> &'a str {
        h.get(name)
            .unwrap_or_else(|| panic!("missing {name}"))
            .to_str()
            .unwrap()
    }

    #[tokio::test]
    async fn sends_every_contract_header_and_verifiable_signatures() {
        let (addr, seen) = answering(StatusCode::OK, "ok").await;
        let webhook = hook(&format!("http://{addr}/hook"), SignatureMode::Both);
        let report = loopback_sender().send(&outbound(&webhook)).await;

        assert_eq!(
            (report.status, report.error_kind),
            (Some(200), None),
            "{:?}",
            report.error
        );
        assert_eq!(report.result(), AttemptResult::Success);
        assert_eq!(report.response_body.as_deref(), Some("ok"));
        let seen = seen.lock().unwrap();
        let (path, h, body) = &seen[0];
        assert_eq!(path, "/hook");
        assert_eq!(&body[..], BODY, "body bytes are sent unchanged");
        let id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        assert_eq!(header(h, "content-type"), "application/json");
        assert_eq!(
            header(h, "user-agent"),
            format!("aion-webhooks/{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(header(h, "idempotency-key"), id);
        assert_eq!(header(h, "x-aion-event"), "a.b");
        assert_eq!(header(h, "x-aion-event-id"), "evt_1");
        assert_eq!(header(h, "x-aion-delivery"), id);
        assert_eq!(header(h, "x-aion-attempt"), "3");
        assert_eq!(header(h, "x-aion-timestamp"), T.to_string());
        assert_eq!(header(h, "x-team"), "analytics");
        assert!(h.get("traceparent").is_none());

        let signature = header(h, "x-aion-signature");
        assert!(signature.starts_with(&format!("t={T},v1=")));
        assert_eq!(signature.matches(",v1=").count(), 2, "one v1 per secret");
        for secret in ["first-secret", "old-secret"] {
            assert_eq!(
                aion_verify(signature, &[secret.as_bytes()], BODY, T, 300),
                Ok(T)
            );
        }
        assert_eq!(header(h, "webhook-id"), id);
        assert_eq!(header(h, "webhook-timestamp"), T.to_string());
        let secret = StandardSecret::parse(WHSEC).unwrap();
        let verified = standard_verify(
            id,
            header(h, "webhook-timestamp"),
            header(h, "webhook-signature"),
            &[&secret],
            BODY,
            T,
            300,
        );
        assert_eq!(verified, Ok(T));
    }

    #[tokio::test]
    async fn signature_mode_selects_the_header_sets() {
        let (addr, seen) = answering(StatusCode::NO_CONTENT, "").await;
        let sender = loopback_sender();
        for mode in [SignatureMode::Aion, SignatureMode::Standard] {
            let webhook = hook(&format!("http://{addr}/"), mode);
            assert_eq!(sender.send(&outbound(&webhook)).await.status, Some(204));
        }
        let seen = seen.lock().unwrap();
        let (aion, standard) = (&seen[0].1, &seen[1].1);
        assert!(aion.contains_key("x-aion-signature") && !aion.contains_key("webhook-signature"));
        assert!(
            !standard.contains_key("x-aion-signature")
                && standard.contains_key("webhook-signature")
        );
    }

    #[tokio::test]
    async fn server_error_captures_at_most_4_kib_of_the_body() {
        let big: &'static str = "x".repeat(100_000).leak();
        let (addr, _) = answering(StatusCode::INTERNAL_SERVER_ERROR, big).await;
        let webhook = hook(&format!("http://{addr}/"), SignatureMode::Aion);
        let report = loopback_sender().send(&outbound(&webhook)).await;
        assert_eq!(report.status, Some(500));
        assert_eq!(report.error_kind, Some(ErrorKind::HttpStatus));
        assert_eq!(report.result(), AttemptResult::Failure);
        assert_eq!(report.response_body.unwrap().len(), MAX_RESPONSE_BODY);
    }

    #[tokio::test]
    async fn redirect_is_a_failure_and_is_not_followed() {
        let (addr, seen) = receiver(|| async {
            (StatusCode::FOUND, [("location", "/elsewhere")], "moved").into_response()
        })
        .await;
        let webhook = hook(&format!("http://{addr}/hook"), SignatureMode::Aion);
        let report = loopback_sender().send(&outbound(&webhook)).await;
        assert_eq!(
            (report.status, report.error_kind),
            (Some(302), Some(ErrorKind::Redirect))
        );
        assert_eq!(report.result(), AttemptResult::Failure);
        assert!(report.error.unwrap().contains("/elsewhere"));
        let paths: Vec<String> = seen.lock().unwrap().iter().map(|s| s.0.clone()).collect();
        assert_eq!(paths, ["/hook"]);
    }

    #[tokio::test]
    async fn gone_and_retry_after_are_reported() {
        let (addr, _) = answering(StatusCode::GONE, "bye").await;
        let webhook = hook(&format!("http://{addr}/"), SignatureMode::Aion);
        let report = loopback_sender().send(&outbound(&webhook)).await;
        assert_eq!(
            (report.result(), report.error_kind),
            (AttemptResult::Gone, Some(ErrorKind::HttpStatus))
        );

        let (addr, _) = receiver(|| async {
            (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "120")]).into_response()
        })
        .await;
        let webhook = hook(&format!("http://{addr}/"), SignatureMode::Aion);
        let report = loopback_sender().send(&outbound(&webhook)).await;
        assert_eq!(report.status, Some(503));
        assert_eq!(report.retry_after, Some(Duration::from_secs(120)));
    }

    #[tokio::test]
    async fn slow_receiver_times_out_within_the_webhook_timeout() {
        let (addr, _) = receiver(|| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            "late".into_response()
        })
        .await;
        let mut webhook = hook(&format!("http://{addr}/"), SignatureMode::Aion);
        webhook.timeout = Duration::from_millis(300);
        let report = loopback_sender().send(&outbound(&webhook)).await;
        assert_eq!(
            (report.status, report.error_kind),
            (None, Some(ErrorKind::Timeout))
        );
        assert!(
            report.duration >= Duration::from_millis(300)
                && report.duration < Duration::from_secs(3)
        );
    }

    #[tokio::test]
    async fn closed_port_is_a_connect_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let webhook = hook(&format!("http://{addr}/"), SignatureMode::Aion);
        let report = loopback_sender().send(&outbound(&webhook)).await;
        assert_eq!(
            (report.status, report.error_kind),
            (None, Some(ErrorKind::Connect)),
            "{:?}",
            report.error
        );
        assert_eq!(report.result(), AttemptResult::Failure);
    }

    #[tokio::test]
    async fn private_destinations_are_blocked_without_an_allow_list() {
        let (addr, seen) = answering(StatusCode::OK, "ok").await;
        let port = addr.port();
        let sender = sender(&[]);
        for url in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://localhost:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            format!("http://[::1]:{port}/"),
        ] {
            let webhook = hook(&url, SignatureMode::Aion);
            let report = sender.send(&outbound(&webhook)).await;
            assert_eq!(
                report.error_kind,
                Some(ErrorKind::BlockedDestination),
                "{url}: {:?}",
                report.error
            );
            assert_eq!(report.status, None);
            let error = report.error.unwrap();
            assert!(!error.contains("first-secret"), "{error}");
        }
        assert!(
            seen.lock().unwrap().is_empty(),
            "nothing reached the receiver"
        );
    }

    #[tokio::test]
    async fn traceparent_is_passed_through_or_generated() {
        let (addr, seen) = answering(StatusCode::OK, "").await;
        let webhook = hook(&format!("http://{addr}/"), SignatureMode::Aion);
        let sender = loopback_sender();
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let bare = "4bf92f3577b34da6a3ce929d0e0e4736";
        for trace in [given, bare, "not-a-trace"] {
            let req = Outbound {
                trace_id: Some(trace),
                ..outbound(&webhook)
            };
            assert_eq!(sender.send(&req).await.status, Some(200));
        }
        let seen = seen.lock().unwrap();
        assert_eq!(header(&seen[0].1, "traceparent"), given);
        let generated = header(&seen[1].1, "traceparent");
        assert!(generated.starts_with(&format!("00-{bare}-")) && generated.ends_with("-01"));
        assert_eq!(
            traceparent(generated).as_deref(),
            Some(generated),
            "generated value is valid"
        );
        assert!(seen[2].1.get("traceparent").is_none());
    }

    #[test]
    fn traceparent_validation() {
        let zero_trace = format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32));
        let zero_span = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
        for bad in [
            "",
            "abc",
            &"0".repeat(32),
            &zero_trace,
            zero_span,
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(traceparent(bad), None, "{bad:?}");
        }
        let upper = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01";
        assert_eq!(traceparent(upper), Some(upper.to_ascii_lowercase()));
    }

    #[tokio::test]
    async fn missing_secret_fails_without_sending_unsigned() {
        let (addr, seen) = answering(StatusCode::OK, "").await;
        let mut webhook = hook(&format!("http://{addr}/"), SignatureMode::Aion);
        webhook.secrets.clear();
        let report = loopback_sender().send(&outbound(&webhook)).await;
        assert_eq!(report.error_kind, Some(ErrorKind::Other));
        assert!(seen.lock().unwrap().is_empty());
    }

    #[test]
    fn captured_body_is_capped_on_a_char_boundary() {
        assert_eq!(lossy_capped(b"plain"), "plain");
        assert_eq!(lossy_capped(b"a\xffb"), "a\u{fffd}b");
        let mut cut = vec![b'a'; MAX_RESPONSE_BODY - 1];
        cut.extend_from_slice(&"é".as_bytes()[..1]);
        assert_eq!(
            lossy_capped(&cut).len(),
            MAX_RESPONSE_BODY - 1,
            "half a char is dropped"
        );
        let invalid = vec![0xff; MAX_RESPONSE_BODY];
        assert!(lossy_capped(&invalid).len() <= MAX_RESPONSE_BODY);
    }

    #[test]
    fn error_kinds_have_stable_names() {
        let all = [
            ErrorKind::Timeout,
            ErrorKind::Connect,
            ErrorKind::BlockedDestination,
            ErrorKind::Redirect,
            ErrorKind::HttpStatus,
            ErrorKind::Other,
        ];
        let names: Vec<_> = all.iter().map(ErrorKind::as_str).collect();
        assert_eq!(
            names,
            [
                "timeout",
                "connect",
                "blocked_destination",
                "redirect",
                "http_status",
                "other"
            ]
        );
    }
}
