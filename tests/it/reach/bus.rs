//! Kafka and NATS destinations (issue 30, item 6; contract §10) against a
//! real JetStream server and a real Kafka-protocol broker (`tansu`): the
//! §3 body and headers as a message, the broker's acknowledgement as the
//! success, the event's key as the Kafka key, `Nats-Msg-Id` = delivery id,
//! failures retried, dead-lettered and replayed like HTTP, and the SSRF
//! guard before any byte leaves.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use axum::http::StatusCode;
use futures::StreamExt;
use serde_json::Value;

use super::{error_kinds, post, wait_state};
use crate::sources::TestStream;
use crate::support::*;

/// A message as a destination got it.
#[derive(Debug, Clone)]
pub(crate) struct Got {
    pub key: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Got {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

/// Every message on `stream`: waits until there are at least `n`, then
/// reads until no more come.
pub(crate) async fn nats_messages(stream: &TestStream, n: usize) -> Vec<Got> {
    let s = stream.js.get_stream(&stream.name).await.expect("stream");
    let consumer = s
        .create_consumer(pull::Config {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} messages on the stream",
            out.len()
        );
        let before = out.len();
        let mut batch = consumer
            .fetch()
            .max_messages(500)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .expect("fetch");
        while let Some(m) = batch.next().await {
            let m = m.expect("message");
            let headers = m
                .headers
                .iter()
                .flat_map(|h| h.iter())
                .map(|(k, v)| (k.to_string().to_ascii_lowercase(), v[0].to_string()))
                .collect();
            out.push(Got {
                key: None,
                headers,
                body: m.payload.to_vec(),
            });
            m.ack().await.expect("ack");
        }
        if out.len() >= n && out.len() == before {
            return out;
        }
    }
}

/// The §3 headers a message must carry, signature checked with `secret`.
pub(crate) fn assert_signed(got: &Got, secret: &str, topic: &str) {
    assert_eq!(got.header("x-aion-event"), topic, "{got:?}");
    assert!(!got.header("x-aion-event-id").is_empty(), "{got:?}");
    assert_eq!(got.header("idempotency-key"), got.header("x-aion-delivery"));
    assert_eq!(got.header("content-type"), "application/json");
    assert!(
        aion_webhooks::signing::aion_verify(
            got.header("x-aion-signature"),
            &[secret.as_bytes()],
            &got.body,
            chrono::Utc::now().timestamp(),
            300,
        )
        .is_ok(),
        "the signature verifies: {got:?}"
    );
    let body: Value = serde_json::from_slice(&got.body).expect("a JSON body");
    assert_eq!(body["topic"], topic, "the §3 body: {body}");
}

/// The response bodies (acknowledgements) of `hook`'s attempts, oldest first.
pub(crate) async fn acks(app: &TestApp, hook: &str) -> Vec<Value> {
    let sql = format!(
        "SELECT a.response_body FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = '{hook}' AND a.error_kind IS NULL ORDER BY a.started_at"
    );
    let rows: Vec<(Option<String>,)> = app.db.all(&sql).await;
    rows.into_iter()
        .map(|(b,)| serde_json::from_str(&b.unwrap_or_default()).unwrap_or(Value::Null))
        .collect()
}

both! {
    async fn a_nats_destination_gets_signed_messages_deduplicated_by_delivery_id(db) {
        let stream = TestStream::new().await;
        let url = format!("nats://127.0.0.1:4222/{}.orders", stream.prefix);
        let hooks = hook("n", &url, "[t.x]", "headers: { X-Team: payments }");
        let app = TestApp::spawn(db, &policy_yaml(&hooks)).await;
        post(&app, "nats", 3).await;
        wait_state(&app, "n", "succeeded", 3).await;
        let got = nats_messages(&stream, 3).await;
        assert_eq!(got.len(), 3);
        for m in &got {
            assert_signed(m, "secret-n", "t.x");
            assert_eq!(m.header("nats-msg-id"), m.header("x-aion-delivery"));
            assert_eq!(m.header("x-team"), "payments");
        }
        let acked = acks(&app, "n").await;
        assert_eq!(acked.len(), 3);
        assert!(acked.iter().all(|a| a["stream"] == stream.name.as_str() && a["duplicate"] == false), "{acked:?}");
        // Statuses are for HTTP: a broker's acknowledgement has none.
        assert_eq!(app.count("SELECT count(*) FROM delivery_attempts WHERE status_code IS NOT NULL").await, 0);

        // A replay resends with the same delivery id: the stream drops it
        // as a duplicate and acknowledges, so the stream holds it once.
        let id = got[0].header("x-aion-delivery").to_owned();
        let (status, body) = app.post_raw(&format!("/v1/deliveries/{id}/replay"), API_KEY, Vec::new()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        wait_for("the replay's acknowledgement", || async { acks(&app, "n").await.len() == 4 }).await;
        assert_eq!(acks(&app, "n").await[3]["duplicate"], true);
        let info = stream.js.get_stream(&stream.name).await.unwrap().info().await.unwrap().clone();
        assert_eq!(info.state.messages, 3, "the resend was deduplicated by the server");

        // An event's trace goes on in the message's `traceparent`.
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let event = serde_json::json!([{"id": "traced", "topic": "t.x", "payload": {}, "trace_id": trace}]);
        let (status, body) = app.post_events(&event).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let got = nats_messages(&stream, 4).await;
        let traced = got.iter().find(|m| m.header("x-aion-event-id") == "traced").expect("the traced event");
        assert!(traced.header("traceparent").starts_with(&format!("00-{trace}-")), "{traced:?}");
    }
}

both! {
    async fn a_subject_no_stream_takes_is_retried_dead_lettered_and_replayed(db) {
        let stream = TestStream::new().await;
        // No stream takes `<prefix>x.…` yet.
        let url = format!("nats://127.0.0.1:4222/{}x.orders", stream.prefix);
        let hooks = hook("n", &url, "[t.x]", "retry: { initial_interval: 100ms, max_interval: 100ms, max_attempts: 2 }");
        let app = TestApp::spawn(db, &policy_yaml(&hooks)).await;
        post(&app, "dead", 1).await;
        wait_state(&app, "n", "dead", 1).await;
        assert_eq!(error_kinds(&app, "n").await, vec![Some("other".to_owned()); 2]);
        let (status, list) = app.get("/v1/deliveries?webhook=n").await;
        assert_eq!(status, StatusCode::OK);
        let d = &list["data"][0];
        let id = d["id"].as_str().expect("id").to_owned();
        let (_, one) = app.get(&format!("/v1/deliveries/{id}")).await;
        assert!(one.to_string().contains("no JetStream stream takes subject"), "{one}");

        // Once a stream takes the subject, a replay delivers.
        let js = &stream.js;
        js.create_stream(async_nats::jetstream::stream::Config {
            name: format!("{}X", stream.name),
            subjects: vec![format!("{}x.>", stream.prefix)],
            ..Default::default()
        })
        .await
        .expect("second stream");
        let (status, body) = app.post_raw(&format!("/v1/deliveries/{id}/replay"), API_KEY, Vec::new()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        wait_state(&app, "n", "succeeded", 1).await;
        js.delete_stream(format!("{}X", stream.name)).await.expect("delete");
    }
}

both! {
    async fn a_test_send_to_a_nats_destination_reports_the_acknowledgement(db) {
        let stream = TestStream::new().await;
        let url = format!("nats://127.0.0.1:4222/{}.orders", stream.prefix);
        let app = TestApp::spawn(db, &policy_yaml(&hook("n", &url, "[t.x]", ""))).await;
        let (status, body) = app.post_raw("/v1/webhooks/n/test", API_KEY, Vec::new()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["outcome"], "succeeded", "{body}");
        assert!(body["status"].is_null(), "no HTTP status: {body}");
        let got = nats_messages(&stream, 1).await;
        assert_signed(&got[0], "secret-n", "aion.webhooks.test");
        assert_eq!(got[0].header("x-aion-delivery"), body["delivery_id"].as_str().unwrap());
    }
}
