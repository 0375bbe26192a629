//! Mutual TLS (issue 30, item 2): a receiver that demands a client
//! certificate from the test CA gets the webhook's deliveries with `tls:`
//! and refuses them without; a private CA is trusted for its webhook only;
//! a certificate close to expiry shows in `GET /v1/webhooks` and a metric.

use super::peers::{Pki, Server};
use super::{error_kinds, post, wait_state};
use crate::support::*;

both! {
    async fn a_receiver_demanding_a_client_certificate_takes_only_the_webhook_presenting_it(db) {
        let pki = Pki::new();
        pki.client("aion", 90);
        let rx = Server::https(&pki, true).await;
        let ca = pki.path("ca.pem");
        let hooks = [
            hook("with", &rx.url, "[t.x]", &pki.tls_yaml("aion")),
            // Trusts the receiver, presents nothing.
            hook("without", &rx.url, "[t.x]", &format!("tls: {{ ca_file: {} }}\nretry: {{ max_attempts: 1 }}", ca.display())),
            // Presents the certificate, but trusts only the public roots.
            hook("public-roots", &rx.url, "[t.x]", &format!(
                "tls: {{ client_cert_file: {}, client_key_file: {} }}\nretry: {{ max_attempts: 1 }}",
                pki.path("aion.crt").display(), pki.path("aion.key").display()
            )),
        ]
        .concat();
        let app = TestApp::spawn(db, &policy_yaml(&hooks)).await;
        post(&app, "m", 3).await;
        wait_state(&app, "with", "succeeded", 3).await;
        wait_state(&app, "without", "dead", 3).await;
        wait_state(&app, "public-roots", "dead", 3).await;
        // Only the webhook with the certificate got its requests through.
        assert_eq!(rx.seen().len(), 3, "{:?}", rx.seen());
        assert!(rx.refused.load(std::sync::atomic::Ordering::SeqCst) >= 3);
        // The receiver's refusal is in the attempt's error.
        let errors: Vec<(Option<String>,)> = app
            .db
            .all("SELECT a.error FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = 'without'")
            .await;
        assert_eq!(errors.len(), 3);
        for (e,) in &errors {
            assert!(e.as_deref().is_some_and(|e| e.contains("CertificateRequired")), "{e:?}");
        }
        // An unknown server certificate is a connect error, not a 2xx.
        let kinds = error_kinds(&app, "public-roots").await;
        assert!(kinds.iter().all(|k| k.as_deref() == Some("connect")), "{kinds:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_rotated_client_certificate_is_presented_after_the_reload() {
    let pki = Pki::new();
    pki.client("aion", 90);
    let rx = Server::https(&pki, true).await;
    let file = pki.path("policy.yaml");
    let yaml = policy_yaml(&hook("h", &rx.url, "[t.x]", &pki.tls_yaml("aion")));
    let app = crate::reload::spawn_watching(TestDb::sqlite().await, &file, &yaml, false).await;
    let first = pki.client_der("aion");
    post(&app, "one", 1).await;
    wait_state(&app, "h", "succeeded", 1).await;
    // The same files, re-issued: a new certificate and key.
    pki.client("aion", 90);
    let second = pki.client_der("aion");
    assert_ne!(first, second);
    let (status, body) = app.post_raw("/v1/policy/reload", API_KEY, Vec::new()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "applied", "{body}");
    assert_eq!(body["diff"]["changed"], serde_json::json!(["h"]), "{body}");
    post(&app, "two", 1).await;
    wait_state(&app, "h", "succeeded", 2).await;
    let presented: Vec<_> = rx
        .seen()
        .into_iter()
        .map(|s| s.client_cert.unwrap())
        .collect();
    assert_eq!(presented, [first, second]);
    app.stop().await;
}

both! {
    async fn a_certificate_near_expiry_shows_in_webhooks_and_metrics(db) {
        let pki = Pki::new();
        pki.client("soon", 10);
        pki.client("later", 60);
        let rx = Server::https(&pki, true).await;
        let hooks = [
            hook("soon", &rx.url, "[t.x]", &pki.tls_yaml("soon")),
            hook("later", &rx.url, "[t.x]", &pki.tls_yaml("later")),
            hook("plain", &rx.url, "[t.y]", ""),
        ]
        .concat();
        let app = TestApp::spawn(db, &policy_yaml(&hooks)).await;
        let (status, list) = app.get("/v1/webhooks").await;
        assert_eq!(status, 200, "{list}");
        let row = |id: &str| {
            list["data"].as_array().unwrap().iter().find(|w| w["id"] == id).unwrap().clone()
        };
        assert_eq!(row("soon")["client_cert_expires_soon"], true);
        assert_eq!(row("later")["client_cert_expires_soon"], false);
        assert!(row("later")["client_cert_expires_at"].is_string());
        assert!(row("plain")["client_cert_expires_at"].is_null());
        let metrics = app.meters.engine.render();
        let line = metrics
            .lines()
            .find(|l| l.starts_with("aion_webhooks_webhook_client_cert_expiry_timestamp_seconds{webhook=\"soon\"}"))
            .unwrap_or_else(|| panic!("{metrics}"));
        let at: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        let days = (at - chrono::Utc::now().timestamp() as f64) / 86_400.0;
        assert!((8.0..=11.0).contains(&days), "{days}");
        assert!(!metrics.contains("client_cert_expiry_timestamp_seconds{webhook=\"plain\"}"));
        // Both still deliver.
        post(&app, "e", 1).await;
        wait_state(&app, "soon", "succeeded", 1).await;
        wait_state(&app, "later", "succeeded", 1).await;
        app.stop().await;
    }
}
