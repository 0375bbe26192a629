//! What must never leave the engine, and what must reach the audit log
//! (issue 27, items 3, 4, 6 and 8): a credential in a webhook URL's path
//! reaches no error, event, API answer or log line; a NATS URL with userinfo
//! is refused by `policy check`; text from outside is shown escaped by the
//! CLI; every audit record an HTTP request causes names the request and
//! its peer.

use std::process::Command;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

const TOKEN: &str = "XoXbT0kenInThePath";

both! {
    async fn a_token_in_a_webhook_url_path_reaches_no_error_event_answer_or_log(db) {
        let (capture, _guard) = Capture::install();

        // Connection refused: the kind of error whose text named the URL.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let slack = format!("http://127.0.0.1:{port}/services/T000/B000/{TOKEN}?x={TOKEN}");
        let ops = Receiver::start().await;
        let policy = policy_yaml(&format!(
            "{}{}",
            hook(
                "slack",
                &slack,
                "[\"shop.*\"]",
                "disable_after: 1s\nretry: { initial_interval: 50ms, max_interval: 100ms, max_attempts: 1000 }"
            ),
            hook("ops", &ops.url, "[\"aion.webhooks.**\"]", "")
        ));
        let app = TestApp::spawn(db, &policy).await;
        let (status, _) = app.post_events(&json!({"id": "o-1", "topic": "shop.order", "payload": 1})).await;
        assert_eq!(status, StatusCode::ACCEPTED);

        // The endpoint is disabled; the announcement goes to another receiver.
        let announced = ops.wait_for_count(1).await;
        let event: Value = serde_json::from_slice(&announced[0].body).expect("json");
        let last_error = event["payload"]["last_error"].as_str().unwrap_or_default().to_owned();
        assert!(last_error.contains(&format!("http://127.0.0.1:{port}/…")), "{event}");
        let (_, deliveries) = app.get("/v1/deliveries?webhook=slack").await;
        let id = deliveries["data"][0]["id"].as_str().unwrap_or_default().to_owned();
        let (_, delivery) = app.get(&format!("/v1/deliveries/{id}")).await;
        let (_, webhooks) = app.get("/v1/webhooks").await;
        let stored: Vec<(Option<String>,)> =
            app.db.all("SELECT error FROM delivery_attempts").await;
        let rows: Vec<(Option<String>,)> = app.db.all("SELECT last_error FROM deliveries").await;
        assert!(stored.iter().any(|(e,)| e.is_some()), "{stored:?}");
        let logs = String::from_utf8_lossy(&capture.0.lock().expect("lock")).into_owned();
        assert!(logs.len() > 200, "the capture saw the app's logs");
        for (what, text) in [
            ("the disabled event", announced[0].body.escape_ascii().to_string()),
            ("the deliveries list", deliveries.to_string()),
            ("the delivery and its attempts", delivery.to_string()),
            ("the webhooks list", webhooks.to_string()),
            ("stored attempt errors", format!("{stored:?}")),
            ("stored last errors", format!("{rows:?}")),
            ("the logs", logs),
        ] {
            assert!(!text.contains(TOKEN) && !text.contains("/services/"), "{what} holds the URL path: {text}");
        }
        app.stop().await;
    }
}

#[test]
fn policy_check_refuses_a_nats_url_with_credentials_and_does_not_echo_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("webhooks.yaml");
    std::fs::write(
        &file,
        "version: 1\nwebhooks: []\nsources:\n  - id: bus\n    kind: nats\n    url: nats://alice:hunter2pw@127.0.0.1:4222\n    stream: S\n    consumer: c\n    subjects: [\"a.>\"]\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_aion-webhooks"))
        .args(["policy", "check"])
        .arg(&file)
        .output()
        .expect("run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(":6:") && text.contains("sources[0].url"),
        "line:column and path: {text}"
    );
    assert!(
        text.contains("credentials:"),
        "points to `credentials:`: {text}"
    );
    assert!(
        !text.contains("hunter2pw") && !text.contains("alice"),
        "{text}"
    );
}

both! {
    async fn the_cli_shows_escape_bytes_from_outside_escaped(db) {
        use aion_webhooks::store::NewReject;
        let app = TestApp::spawn(db.clone(), &policy_yaml(&hook("h", "http://127.0.0.1:9/", "[a.b]", ""))).await;
        let hostile = "payload: schema_violation: /\u{1b}]0;pwned\u{7}\u{1b}[31mred\u{9b}2J: additionalProperties";
        db.store()
            .record_rejects(&[NewReject::new("bus", "nats:S:1".into(), hostile.into(), b"{}", chrono::Utc::now())])
            .await
            .expect("record");
        let base = app.base.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_aion-webhooks"))
                .args(["sources", "rejects", "bus", "--url", &base])
                .env("AION_WEBHOOKS_API_KEY", API_KEY)
                .output()
                .expect("run")
        })
        .await
        .expect("join");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let shown = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            !out.stdout.iter().any(|b| *b == 0x1b || *b == 0x07) && !shown.contains('\u{9b}'),
            "raw control bytes reached the terminal: {shown:?}"
        );
        assert!(shown.contains("/\\e]0;pwned\\u{7}\\e[31mred\\u{9b}2J"), "{shown}");
        app.stop().await;
    }
}

both! {
    async fn audit_records_of_http_requests_carry_their_request_id_and_peer(db) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("webhooks.yaml");
        let rx = Receiver::start().await;
        rx.script([Reply::status(500)]);
        let once = "retry: { initial_interval: 10ms, max_interval: 10ms, max_attempts: 1 }";
        let yaml = policy_yaml(&hook("h", &rx.url, "[a.b]", once));
        std::fs::write(&file, &yaml).expect("write");
        let mut config = test_config();
        config.policy_path = file.clone();
        let app = TestApp::spawn_with(db, &yaml, config).await;
        app.post_events(&json!({"id": "e-1", "topic": "a.b", "payload": 1})).await;
        app.drain().await;
        let (_, listed) = app.get("/v1/deliveries?webhook=h").await;
        let delivery = listed["data"][0]["id"].as_str().unwrap_or_default().to_owned();

        let call = |method: reqwest::Method, path: String, key: &'static str, request_id: Option<&'static str>| {
            let mut r = app.http.request(method, format!("{}{path}", app.base)).bearer_auth(key);
            if let Some(id) = request_id {
                r = r.header("x-request-id", id);
            }
            async move {
                let answer = r.header("content-type", "application/json").body("{}").send().await.expect("send");
                (
                    answer.status().as_u16(),
                    answer.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned(),
                )
            }
        };
        // A denial (publisher asks for an admin route), a replay, a bulk
        // replay, a disable, a reload: given ids are kept, missing ones made.
        let denied = call(reqwest::Method::GET, "/v1/deliveries".into(), PUBLISHER_KEY, Some("req-denied-1")).await;
        assert_eq!(denied, (403, "req-denied-1".to_owned()));
        let replayed = call(reqwest::Method::POST, format!("/v1/deliveries/{delivery}/replay"), API_KEY, None).await;
        assert_eq!(replayed.0, 202, "{replayed:?}");
        assert!(replayed.1.starts_with("req_"), "a generated id is answered: {replayed:?}");
        app.drain().await;
        std::fs::write(&file, policy_yaml(&hook("h", &rx.url, "[a.*]", once))).expect("write");
        let reloaded = call(reqwest::Method::POST, "/v1/policy/reload".into(), API_KEY, Some("req-reload-1")).await;
        assert_eq!(reloaded.0, 200);
        let disabled = call(reqwest::Method::POST, "/v1/webhooks/h/disable".into(), API_KEY, Some("req-disable-1")).await;
        assert_eq!(disabled.0, 200, "{disabled:?}");

        tokio::time::sleep(Duration::from_millis(100)).await;
        let rows: Vec<(String, Option<String>, Option<String>)> = app
            .db
            .all("SELECT action, request_id, source_ip FROM audit_log ORDER BY id")
            .await;
        let find = |action: &str| {
            rows.iter()
                .find(|r| r.0 == action)
                .cloned()
                .unwrap_or_else(|| panic!("no {action} record in {rows:?}"))
        };
        let local = Some("127.0.0.1".to_owned());
        assert_eq!(find("list_deliveries").1.as_deref(), Some("req-denied-1"), "{rows:?}");
        assert_eq!(find("replay_delivery").1.as_deref(), Some(replayed.1.as_str()), "{rows:?}");
        assert_eq!(find("policy.reload").1.as_deref(), Some("req-reload-1"), "{rows:?}");
        assert_eq!(find("disable_webhook").1.as_deref(), Some("req-disable-1"), "{rows:?}");
        for action in ["list_deliveries", "replay_delivery", "policy.reload", "disable_webhook"] {
            assert_eq!(find(action).2, local, "{action}: {rows:?}");
        }
        app.stop().await;
    }
}
