//! The test send (issue 30, item 7): `POST /v1/webhooks/{id}/test` and
//! `aion-webhooks webhooks test ID` send a signed `aion.webhooks.test`
//! event through the webhook's real path, answer with the first attempt's
//! outcome — success and each failure kind — and store it as a normal
//! delivery.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;

use super::peers::{TokenEndpoint, TokenMode};
use crate::operator::cli;
use crate::support::*;

/// A loopback server that reads a request, answers `reply` (maybe nothing)
/// and closes the connection.
async fn raw(reply: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0u8; 64 * 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(reply).await;
        }
    });
    url
}

async fn test_send(app: &TestApp, id: &str, key: &str) -> (StatusCode, Value) {
    app.post_raw(&format!("/v1/webhooks/{id}/test"), key, Vec::new())
        .await
}

both! {
    async fn a_test_send_reports_success_and_is_a_normal_delivery(db) {
        let rx = Receiver::start().await;
        let other = Receiver::start().await;
        let hooks = [
            hook("h", &rx.url, "[order.created]", ""),
            // Subscribes to every engine event: must not get another's test.
            hook("ops", &other.url, "[\"aion.**\"]", ""),
        ]
        .concat();
        let app = TestApp::spawn(db, &policy_yaml(&hooks)).await;
        let (status, body) = test_send(&app, "h", API_KEY).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["outcome"], "succeeded", "{body}");
        assert_eq!(body["status"], 200);
        assert!(body["error"].is_null() && body["duration_ms"].is_u64(), "{body}");
        let got = rx.wait_for_count(1).await;
        assert_eq!(got[0].header("x-aion-event"), "aion.webhooks.test");
        assert!(aion_webhooks::signing::aion_verify(
            got[0].header("x-aion-signature"),
            &[b"secret-h"],
            &got[0].body,
            chrono::Utc::now().timestamp(),
            300,
        )
        .is_ok());
        assert_eq!(got[0].header("idempotency-key"), body["delivery_id"].as_str().unwrap());
        // Stored like any delivery.
        let (status, d) = app
            .get(&format!("/v1/deliveries/{}", body["delivery_id"].as_str().unwrap()))
            .await;
        assert_eq!(status, StatusCode::OK, "{d}");
        assert_eq!(d["topic"], "aion.webhooks.test");
        assert_eq!(d["status"], "succeeded");
        // Audited; and only the tested webhook got the test event.
        wait_for("the audit record", || async {
            app.count("SELECT count(*) FROM audit_log WHERE action = 'test_webhook' AND target = 'h'").await == 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            other.received().iter().all(|r| r.header("x-aion-event") != "aion.webhooks.test"),
            "another webhook got the test event"
        );
        app.stop().await;
    }
}

both! {
    async fn a_test_send_reports_each_failure_kind(db) {
        let refusing = Receiver::start().await;
        refusing.script([Reply::status(500)]);
        let hanging = Receiver::start().await;
        hanging.script([Reply { delay: Duration::from_secs(5), ..Reply::status(200) }]);
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            drop(l);
            format!("http://127.0.0.1:{port}/hook")
        };
        let tokens = TokenEndpoint::start("aion", "s3cret-value").await;
        *tokens.mode.lock().unwrap() = TokenMode::Fail(500);
        let auth_rx = Receiver::start().await;
        let moved = Receiver::start().await;
        moved.script([Reply {
            headers: vec![("location", "https://elsewhere.example/x".into())],
            ..Reply::status(302)
        }]);
        let garbage = raw(b"NOT HTTP AT ALL\r\n\r\n").await;
        let hangs_up = raw(b"").await;
        let hooks = [
            hook("refusing", &refusing.url, "[t.x]", ""),
            hook("hanging", &hanging.url, "[t.x]", "timeout: 1s"),
            hook("closed", &closed, "[t.x]", ""),
            hook("private", "http://10.1.2.3/hook", "[t.x]", ""),
            hook("auth", &auth_rx.url, "[t.x]", &format!(
                "oauth2: {{ token_url: \"{}\", client_id: aion, client_secret: s3cret-value }}",
                tokens.url
            )),
            hook("moved", &moved.url, "[t.x]", ""),
            hook("garbage", &garbage, "[t.x]", ""),
            hook("hangs-up", &hangs_up, "[t.x]", ""),
            hook("off", &refusing.url, "[t.x]", "enabled: false"),
        ]
        .concat();
        let app = TestApp::spawn(db, &policy_yaml(&hooks)).await;
        for (id, kind, status) in [
            ("refusing", "http_status", Value::from(500)),
            ("hanging", "timeout", Value::Null),
            ("closed", "connect", Value::Null),
            ("private", "blocked_destination", Value::Null),
            ("auth", "auth", Value::Null),
            ("moved", "redirect", Value::from(302)),
            ("garbage", "protocol", Value::Null),
            ("hangs-up", "connection_closed", Value::Null),
        ] {
            let (code, body) = test_send(&app, id, API_KEY).await;
            assert_eq!(code, StatusCode::OK, "{id}: {body}");
            assert_eq!(body["outcome"], "failed", "{id}: {body}");
            assert_eq!(body["error_kind"], kind, "{id}: {body}");
            assert_eq!(body["status"], status, "{id}: {body}");
            assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{id}: {body}");
        }
        assert!(auth_rx.received().is_empty());
        let (code, body) = test_send(&app, "off", API_KEY).await;
        assert_eq!(code, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "webhook_disabled");
        let (code, body) = test_send(&app, "nope", API_KEY).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
        let (code, body) = test_send(&app, "refusing", PUBLISHER_KEY).await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
        app.stop().await;
    }
}

#[tokio::test]
async fn the_command_line_prints_the_outcome_and_fails_unless_it_succeeded() {
    let ok = Receiver::start().await;
    let bad = Receiver::start().await;
    bad.script([Reply::status(503)]);
    let hooks = [
        hook("ok", &ok.url, "[t.x]", ""),
        hook("bad", &bad.url, "[t.x]", ""),
    ]
    .concat();
    let app = TestApp::spawn(TestDb::sqlite().await, &policy_yaml(&hooks)).await;
    let o = cli(&app.base, API_KEY, &["webhooks", "test", "ok"]).await;
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}");
    assert!(stdout.contains("outcome      succeeded"), "{stdout}");
    let o = cli(&app.base, API_KEY, &["webhooks", "test", "bad"]).await;
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("outcome      failed") && stdout.contains("status       503"),
        "{stdout}"
    );
    app.stop().await;
}
