//! Event contracts and interop (issue 16): Standard Webhooks `v1a`
//! signatures and payload shape, JSON Schemas per topic, event versions.

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

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

/// The router-decision schema, version 1 (Draft 2020-12) and version 2
/// (Draft-07, adds a required `model`), written to `dir`.
fn write_schemas(dir: &std::path::Path) -> (String, String) {
    let v1 = dir.join("decision.v1.json");
    std::fs::write(
        &v1,
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["decision_id", "latency_ms"],
            "properties": {
                "decision_id": {"type": "string"},
                "latency_ms": {"type": "number", "minimum": 0}
            }
        })
        .to_string(),
    )
    .expect("write v1");
    let v2 = dir.join("decision.v2.json");
    std::fs::write(
        &v2,
        json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "required": ["decision_id", "latency_ms", "model"],
            "properties": {
                "decision_id": {"type": "string"},
                "latency_ms": {"type": "number"},
                "model": {"type": "string"}
            }
        })
        .to_string(),
    )
    .expect("write v2");
    (v1.display().to_string(), v2.display().to_string())
}

/// `aion_webhooks_schema_violations_total` for one schema entry and mode.
async fn schema_violations(app: &TestApp, pattern: &str, mode: &str) -> Option<f64> {
    let scrape = crate::metrics::scrape(app).await;
    crate::metrics::value(
        &scrape,
        "aion_webhooks_schema_violations_total",
        &[("topic", pattern), ("mode", mode)],
    )
}

fn with_schemas(webhooks: &str, schemas: &str) -> String {
    format!("{}schemas:\n{schemas}", policy_yaml(webhooks))
}

fn good() -> Value {
    json!({"decision_id": "d-1", "latency_ms": 12})
}

both! {
    async fn a_payload_failing_its_schema_is_refused_naming_the_pointer_and_nothing_is_stored(db) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (v1, _) = write_schemas(dir.path());
        let rx = Receiver::start().await;
        let app = TestApp::spawn(
            db,
            &with_schemas(
                &hook("h", &rx.url, "[\"a.**\"]", ""),
                &format!("  - topic: a.decisions\n    file: {v1}\n"),
            ),
        )
        .await;
        let bad = json!({"decision_id": "d-2", "latency_ms": "slow"});
        let (status, body) = app
            .post_events(&json!({"id": "bad-1", "topic": "a.decisions", "payload": bad}))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "schema_violation");
        assert_eq!(body["error"]["field"], "payload");
        assert_eq!(body["error"]["violations"][0]["pointer"], "/latency_ms", "{body}");
        assert_eq!(body["error"]["violations"][0]["keyword"], "type");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("/latency_ms") && message.contains("a.decisions"), "{message}");
        assert!(!message.contains("slow"), "the offending value is not echoed: {message}");

        // A batch with one bad event stores nothing, and names its index.
        let (status, body) = app
            .post_events(&json!([
                {"id": "ok-1", "topic": "a.decisions", "payload": good()},
                {"id": "bad-2", "topic": "a.decisions", "payload": {"latency_ms": -1}}
            ]))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], "[1].payload");
        let pointers: Vec<&str> = body["error"]["violations"]
            .as_array()
            .expect("violations")
            .iter()
            .filter_map(|v| v["keyword"].as_str())
            .collect();
        assert!(pointers.contains(&"required") && pointers.contains(&"minimum"), "{body}");
        assert_eq!(app.count("SELECT count(*) FROM events").await, 0, "nothing stored");

        // 50,000 levels deep against a schema: a clear 4xx, no stall.
        let deep = format!(
            "{{\"topic\":\"a.decisions\",\"payload\":{}{}}}",
            "[".repeat(50_000),
            "]".repeat(50_000)
        );
        let (status, body) = app.post_raw("/v1/events", API_KEY, deep.into_bytes()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], "payload");

        // Valid payloads, and topics without a schema, go through as before.
        let (status, _) = app
            .post_events(&json!({"id": "ok-2", "topic": "a.decisions", "payload": good()}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let (status, _) = app
            .post_events(&json!({"id": "ok-3", "topic": "a.other", "payload": "anything"}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        rx.wait_for_count(2).await;
        app.drain().await;
        let ids: Vec<String> = rx.received().iter().map(|r| r.header("x-aion-event-id").to_owned()).collect();
        assert_eq!(ids.len(), 2, "nothing refused was delivered: {ids:?}");
        assert_eq!(
            schema_violations(&app, "a.decisions", "enforce").await,
            Some(2.0)
        );
        app.stop().await;
    }
}

both! {
    async fn warn_mode_stores_delivers_marks_and_counts(db) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (v1, _) = write_schemas(dir.path());
        let rx = Receiver::start().await;
        let app = TestApp::spawn(
            db,
            &with_schemas(
                &hook("h", &rx.url, "[\"a.**\"]", ""),
                &format!("  - topic: \"a.*\"\n    file: {v1}\n    mode: warn\n"),
            ),
        )
        .await;
        let (status, body) = app
            .post_events(&json!({"id": "w-1", "topic": "a.decisions", "payload": {"decision_id": 5}}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        rx.wait_for_count(1).await;
        let (status, event) = app.get("/v1/events/w-1").await;
        assert_eq!(status, StatusCode::OK);
        let errors = event["schema_errors"].as_array().expect("schema_errors").clone();
        let keywords: Vec<&str> = errors.iter().filter_map(|e| e["keyword"].as_str()).collect();
        assert!(keywords.contains(&"required") && keywords.contains(&"type"), "{event}");
        assert!(errors.iter().any(|e| e["pointer"] == "/decision_id"), "{event}");
        app.post_events(&json!({"id": "w-2", "topic": "a.decisions", "payload": good()})).await;
        rx.wait_for_count(2).await;
        let (_, event) = app.get("/v1/events/w-2").await;
        assert!(event.get("schema_errors").is_none(), "a valid event is not marked: {event}");
        assert_eq!(
            schema_violations(&app, "a.*", "warn").await,
            Some(1.0)
        );
        app.stop().await;
    }
}

both! {
    async fn the_event_version_selects_the_schema_travels_in_the_body_and_gates_min_version(db) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (v1, v2) = write_schemas(dir.path());
        let rx = Receiver::start().await;
        let rx2 = Receiver::start().await;
        let webhooks = format!(
            "{}{}",
            hook("all", &rx.url, "[\"a.**\"]", ""),
            hook("v2only", &rx2.url, "[\"a.**\"]", "min_version: 2")
        );
        let app = TestApp::spawn(
            db,
            &with_schemas(
                &webhooks,
                &format!("  - topic: a.decisions\n    versions:\n      1: {v1}\n      2: {v2}\n"),
            ),
        )
        .await;
        let post = |id: &'static str, version: Value, payload: Value| {
            let app = &app;
            async move {
                let mut e = json!({"id": id, "topic": "a.decisions", "payload": payload});
                if !version.is_null() {
                    e["event_version"] = version;
                }
                app.post_events(&e).await
            }
        };
        // Valid under v1; the same payload under v2 lacks `model`.
        assert_eq!(post("e1", json!(1), good()).await.0, StatusCode::ACCEPTED);
        assert_eq!(post("e0", Value::Null, good()).await.0, StatusCode::ACCEPTED, "no version = 1");
        let (status, body) = post("e2", json!(2), good()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["violations"][0]["keyword"], "required");
        let with_model = json!({"decision_id": "d", "latency_ms": 1, "model": "m"});
        assert_eq!(post("e3", json!("2.1.0"), with_model.clone()).await.0, StatusCode::ACCEPTED);
        let (status, body) = post("e4", json!(3), with_model.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body["error"]["message"].as_str().unwrap_or_default().contains("no schema for version 3"), "{body}");
        let (status, body) = post("e5", json!("v2"), with_model.clone()).await;
        assert_eq!((status, &body["error"]["field"]), (StatusCode::UNPROCESSABLE_ENTITY, &json!("event_version")));
        // The `version` alias.
        let (status, _) = app
            .post_events(&json!({"id": "e6", "topic": "a.decisions", "version": 2, "payload": with_model}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);

        rx.wait_for_count(4).await;
        app.drain().await;
        let versions: std::collections::HashMap<String, Value> = rx
            .received()
            .iter()
            .map(|r| {
                let body: Value = serde_json::from_slice(&r.body).expect("json");
                (body["id"].as_str().unwrap_or_default().to_owned(), body.get("version").cloned().unwrap_or(Value::Null))
            })
            .collect();
        assert_eq!(versions.len(), 4, "{versions:?}");
        assert_eq!(versions["e1"], json!(1));
        assert_eq!(versions["e0"], Value::Null, "no version, no member");
        assert_eq!(versions["e3"], json!("2.1.0"), "as the producer wrote it");
        assert_eq!(versions["e6"], json!(2));
        let mut to_v2: Vec<String> = rx2.received().iter().map(|r| r.header("x-aion-event-id").to_owned()).collect();
        to_v2.sort();
        assert_eq!(to_v2, ["e3", "e6"], "min_version: 2 gets versions 2 and up only");
        let (_, event) = app.get("/v1/events/e3").await;
        assert_eq!(event["version"], "2.1.0");
        let scrape = crate::metrics::scrape(&app).await;
        assert_eq!(
            crate::metrics::value(&scrape, "aion_webhooks_events_below_min_version_total", &[("webhook", "v2only")]),
            Some(2.0)
        );
        app.stop().await;
    }
}

both! {
    async fn payload_format_standard_is_read_by_the_standard_webhooks_library(db) {
        let rx = Receiver::start().await;
        let app = TestApp::spawn(
            db,
            &policy_yaml(&hook_with(
                "h",
                &rx.url,
                &[WHSEC],
                "signature: standard\npayload_format: standard",
            )),
        )
        .await;
        let (status, _) = app
            .post_events(&json!({"id": "s-1", "topic": "a.b", "occurred_at": "2026-12-05T10:00:00Z", "payload": {"x": [1, 2]}}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let got = rx.wait_for_count(1).await;
        let r = &got[0];
        let reference = standardwebhooks::Webhook::new(WHSEC).expect("secret");
        let mut headers = axum::http::HeaderMap::new();
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            headers.insert(name, r.header(name).parse().expect("header"));
        }
        reference.verify(&r.body, &headers).expect("the reference library verifies it");
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(body, json!({"type": "a.b", "timestamp": "2026-12-05T10:00:00Z", "data": {"x": [1, 2]}}));
        assert!(r.header("webhook-id").starts_with("dlv_"));
        app.stop().await;
    }
}

both! {
    async fn schemas_reload_with_the_policy_and_a_broken_one_keeps_the_old(db) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (v1, v2) = write_schemas(dir.path());
        let file = dir.path().join("webhooks.yaml");
        let yaml = with_schemas(
            &hook("h", "http://127.0.0.1:9/", "[\"a.**\"]", ""),
            &format!("  - topic: a.decisions\n    file: {v1}\n"),
        );
        std::fs::write(&file, &yaml).expect("write policy");
        let mut config = test_config();
        config.policy_path = file.clone();
        config.watch_policy = false;
        let app = TestApp::spawn_with(db, &yaml, config).await;
        let post = |id: &'static str, payload: Value| {
            let app = &app;
            async move {
                app.post_events(&json!({"id": id, "topic": "a.decisions", "payload": payload}))
                    .await
                    .0
            }
        };
        let reload = || app.post_raw("/v1/policy/reload", API_KEY, Vec::new());
        assert_eq!(post("r1", good()).await, StatusCode::ACCEPTED);

        // A schema file that is no longer JSON: refused, the old one stays.
        std::fs::write(&v1, "{ broken").expect("break schema");
        let (status, body) = reload().await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["error"]["errors"].to_string().contains("decision.v1.json: not JSON"), "{body}");
        assert_eq!(post("r2", json!({"latency_ms": 1})).await, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(post("r3", good()).await, StatusCode::ACCEPTED);

        // The same policy text with an edited schema file applies.
        std::fs::copy(&v2, &v1).expect("edit schema");
        let (status, body) = reload().await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["outcome"], "applied", "{body}");
        assert_eq!(post("r4", good()).await, StatusCode::UNPROCESSABLE_ENTITY, "now `model` is required");
        assert_eq!(
            post("r5", json!({"decision_id": "d", "latency_ms": 1, "model": "m"})).await,
            StatusCode::ACCEPTED
        );
        app.stop().await;
    }
}

both! {
    async fn a_bus_message_failing_its_schema_becomes_a_reject(db) {
        use crate::sources::{TestStream, source_view};
        let dir = tempfile::tempdir().expect("tempdir");
        let (v1, _) = write_schemas(dir.path());
        let stream = TestStream::new().await;
        let rx = Receiver::start().await;
        let policy = format!(
            "{}sources:\n{}",
            with_schemas(
                &hook("h", &rx.url, "[\"**\"]", ""),
                &format!("  - topic: \"{}.decisions\"\n    file: {v1}\n", stream.prefix),
            ),
            stream.source("bus", "c", ">", "")
        );
        let app = TestApp::spawn(db, &policy).await;
        let topic = format!("{}.decisions", stream.prefix);
        stream
            .publish("decisions", json!({"event_type": topic, "payload": {"latency_ms": "x"}}).to_string())
            .await;
        stream
            .publish("decisions", json!({"event_type": topic, "payload": good()}).to_string())
            .await;
        let got = rx.wait_for_count(1).await;
        assert_eq!(got[0].header("x-aion-event-id"), format!("nats:{}:2", stream.name));
        wait_for("the reject recorded", || async { source_view(&app, "bus").await["rejects"] == 1 }).await;
        let (_, body) = app.get("/v1/sources/bus/rejects").await;
        let reason = body["data"][0]["reason"].as_str().unwrap_or_default().to_owned();
        assert!(reason.contains("schema_violation") && reason.contains("/latency_ms"), "{reason}");
        assert_eq!(
            schema_violations(&app, &topic, "enforce").await,
            Some(1.0),
            "labelled with the schema entry's pattern"
        );
        app.stop().await;
        stream.delete().await;
    }
}
