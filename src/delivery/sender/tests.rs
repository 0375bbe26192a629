//! Tests for `sender`.

use std::net::SocketAddr;
use std::sync::Mutex;

use axum::http::{HeaderMap as AxumHeaders, StatusCode};
use axum::response::{IntoResponse, Response};

use super::*;
use crate::domain::{Secret, WebhookId};
use crate::policy::{RetryPolicy, SignatureMode};
use crate::signing::{Ed25519Secret, StandardSecret, aion_verify, standard_verify, v1a_verify};

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
        bus: None,
        secrets: vec![Secret::new("first-secret"), Secret::new("old-secret")],
        standard_secrets: vec![StandardSecret::parse(WHSEC).unwrap()],
        ed25519_keys: Vec::new(),
        min_version: None,
        payload_format: Default::default(),
        route: Default::default(),
        oauth2: None,
        filter: None,
        topics: Vec::new(),
        retry: RetryPolicy {
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(60),
            max_attempts: 5,
        },
        timeout: Duration::from_secs(5),
        headers: vec![("X-Team".into(), crate::domain::Secret::new("analytics"))],
        signature: mode,
        tenants: None,
        include_untenanted: false,
        disable_after: None,
        max_in_flight: None,
        initial_in_flight: None,
        rate_limit: None,
        ordered: false,
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
        key: None,
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
        !standard.contains_key("x-aion-signature") && standard.contains_key("webhook-signature")
    );
}

#[tokio::test]
async fn an_ed25519_key_adds_a_v1a_entry_beside_the_hmac_v1() {
    let (addr, seen) = answering(StatusCode::NO_CONTENT, "").await;
    let mut webhook = hook(&format!("http://{addr}/"), SignatureMode::Standard);
    let key = Ed25519Secret::from_seed([9; 32]);
    webhook.ed25519_keys = vec![key.clone()];
    assert_eq!(
        loopback_sender().send(&outbound(&webhook)).await.status,
        Some(204)
    );
    webhook.standard_secrets.clear();
    assert_eq!(
        loopback_sender().send(&outbound(&webhook)).await.status,
        Some(204)
    );

    let seen = seen.lock().unwrap();
    for (i, (_, h, _)) in seen.iter().enumerate() {
        let (id, t, sig) = (
            header(h, "webhook-id"),
            header(h, "webhook-timestamp"),
            header(h, "webhook-signature"),
        );
        assert_eq!(sig.matches("v1a,").count(), 1, "{sig}");
        assert_eq!(sig.matches("v1,").count(), usize::from(i == 0), "{sig}");
        assert_eq!(
            v1a_verify(id, t, sig, &[&key.public()], BODY, T, 300),
            Ok(T)
        );
    }
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
    let error = report.error.unwrap();
    assert!(error.contains("redirect to /… not followed"), "{error}");
    assert!(!error.contains("elsewhere"), "{error}");
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
        report.duration >= Duration::from_millis(300) && report.duration < Duration::from_secs(3)
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
        ErrorKind::Protocol,
        ErrorKind::ConnectionClosed,
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
            "protocol",
            "connection_closed",
            "other"
        ]
    );
}

#[tokio::test]
async fn url_paths_and_queries_never_reach_the_attempt_record() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let webhook = hook(
        &format!("http://{addr}/services/T000/B000/pathtoken?token=s3cr3t-token"),
        SignatureMode::Aion,
    );
    let report = loopback_sender().send(&outbound(&webhook)).await;
    let error = report.error.unwrap();
    assert_eq!(report.error_kind, Some(ErrorKind::Connect), "{error}");
    assert!(!error.contains("s3cr3t"), "{error}");
    assert!(
        !error.contains("pathtoken") && !error.contains("services"),
        "{error}"
    );
    assert!(error.contains(&format!("http://{addr}/…")), "{error}");

    let (addr, _) = receiver(|| async {
        (
            StatusCode::FOUND,
            [("location", "https://elsewhere.example.com/cb?sig=abc123")],
        )
            .into_response()
    })
    .await;
    let webhook = hook(&format!("http://{addr}/"), SignatureMode::Aion);
    let error = loopback_sender()
        .send(&outbound(&webhook))
        .await
        .error
        .unwrap();
    assert!(error.contains("https://elsewhere.example.com/…"), "{error}");
    assert!(
        !error.contains("abc123") && !error.contains("/cb"),
        "{error}"
    );
}

#[tokio::test]
async fn a_static_credential_echoed_by_the_receiver_is_not_kept() {
    let (addr, _) = receiver(|| async {
        (
            StatusCode::UNAUTHORIZED,
            "bad credentials: Authorization: Bearer tok-0123456789; token tok-0123456789; team analytics; short ok12",
        )
            .into_response()
    })
    .await;
    let mut webhook = hook(&format!("http://{addr}/hook"), SignatureMode::Aion);
    webhook
        .headers
        .push(("Authorization".into(), Secret::new("Bearer tok-0123456789")));
    webhook
        .headers
        .push(("X-Short".into(), Secret::new("ok12")));
    let report = loopback_sender().send(&outbound(&webhook)).await;
    assert_eq!(report.status, Some(401));
    let body = report.response_body.expect("the body is kept");
    assert!(!body.contains("tok-0123456789"), "{body}");
    assert_eq!(
        body, "bad credentials: Authorization: ***; token ***; team ***; short ok12",
        "the whole value, then the credential alone; a value under 8 bytes stays"
    );
}

#[test]
fn echoed_static_headers_and_tokens_are_scrubbed_from_the_stored_body() {
    let webhook = hook("http://127.0.0.1:1/", SignatureMode::Aion);
    let body = "you sent X-Team: analytics-team-value and Authorization: Bearer tok-abcdefgh1234"
        .to_owned();
    let mut webhook = webhook;
    webhook.headers = vec![("X-Team".into(), Secret::new("analytics-team-value"))];
    let scrubbed = super::scrub_credentials(body, &webhook, &[Secret::new("tok-abcdefgh1234")]);
    assert_eq!(
        scrubbed,
        "you sent X-Team: *** and Authorization: Bearer ***"
    );
}
