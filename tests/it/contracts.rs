//! Event contracts and interop (issue 16): Standard Webhooks `v1a`
//! signatures and payload shape, JSON Schemas per topic, event versions.

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;

use crate::support::*;

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
// RFC 8032 test 1's key pair as Standard Webhooks keys.
const WHSK: &str = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
const WHPK: &str = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

/// A webhook entry with its own `secrets` list and extra lines.
fn hook_with(id: &str, url: &str, secrets: &[&str], extra: &str) -> String {
    let list = secrets
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut s =
        format!("  - id: {id}\n    url: {url}\n    secrets: [{list}]\n    topics: [\"a.**\"]\n");
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        s.push_str(&format!("    {}\n", line.trim()));
    }
    s
}

/// Verifies every `v1a` entry the receiver got with ring (not the dalek
/// crate that signed), over exactly `id.timestamp.body`.
fn ring_verifies(r: &Received, public: &str, body: &[u8]) -> bool {
    use ring::signature::{ED25519, UnparsedPublicKey};
    let public = BASE64
        .decode(public.strip_prefix("whpk_").expect("whpk_"))
        .expect("base64");
    let key = UnparsedPublicKey::new(&ED25519, public);
    let mut message = format!(
        "{}.{}.",
        r.header("webhook-id"),
        r.header("webhook-timestamp")
    )
    .into_bytes();
    message.extend_from_slice(body);
    r.header("webhook-signature")
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1a,"))
        .any(|sig| {
            key.verify(&message, &BASE64.decode(sig).expect("base64"))
                .is_ok()
        })
}

both! {
    async fn an_ed25519_key_signs_v1a_that_an_independent_library_verifies(db) {
        let rx = Receiver::start().await;
        let app = TestApp::spawn(
            db,
            &policy_yaml(&hook_with("h", &rx.url, &[WHSK, WHSEC], "signature: both")),
        )
        .await;
        let (status, _) = app
            .post_events(&json!({"id": "e-1", "topic": "a.b", "payload": {"x": 1}}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let got = rx.wait_for_count(1).await;
        let r = &got[0];
        let signature = r.header("webhook-signature");
        assert_eq!(signature.matches("v1a,").count(), 1, "{signature}");
        assert_eq!(signature.matches("v1,").count(), 1, "{signature}");
        assert!(r.header("x-aion-signature").starts_with("t="), "HMAC secret signs X-Aion");
        assert!(ring_verifies(r, WHPK, &r.body));
        let mut tampered = r.body.to_vec();
        tampered.push(b' ');
        assert!(!ring_verifies(r, WHPK, &tampered), "a tampered body is refused");
        // The Standard Webhooks reference library checks the `v1` entry
        // beside it (and skips the `v1a` one).
        let reference = standardwebhooks::Webhook::new(WHSEC).expect("secret");
        let mut headers = axum::http::HeaderMap::new();
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            headers.insert(name, r.header(name).parse().expect("header"));
        }
        reference.verify(&r.body, &headers).expect("reference verifies v1");
        app.stop().await;
    }
}
