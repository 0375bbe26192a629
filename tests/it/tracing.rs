//! OpenTelemetry (issue 16, item 4): a real OTLP/HTTP collector in the test
//! decodes the engine's protobuf exports; one trace runs producer → ingest
//! → fan-out → every attempt, the retry included, and each attempt's id is
//! the `traceparent` the receiver got.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::json;

use crate::support::*;

/// A collector: every span of every export request, as received.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Collector {
    async fn start(&self) -> String {
        let spans = self.spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let spans = spans.clone();
                async move {
                    let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                    let mut all = spans.lock().expect("lock");
                    for rs in request.resource_spans {
                        let service = rs.resource.iter().flat_map(|r| &r.attributes).any(|kv| {
                            kv.key == "service.name"
                                && matches!(
                                    kv.value.as_ref().and_then(|v| v.value.as_ref()),
                                    Some(AnyValue::StringValue(s)) if s == "aion-webhooks"
                                )
                        });
                        assert!(service, "service.name is aion-webhooks");
                        for ss in rs.scope_spans {
                            all.extend(ss.spans);
                        }
                    }
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        );
        let url = serve_loopback(app).await;
        format!("{}/v1/traces", url.trim_end_matches("/hook"))
    }

    fn named(&self, name: &str) -> Vec<Span> {
        self.spans
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }
}

fn int_attr(span: &Span, key: &str) -> Option<i64> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::IntValue(i)) => Some(*i),
                _ => None,
            },
        )
}

fn str_attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => Some(s.clone()),
                _ => None,
            },
        )
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PRODUCER_SPAN: &str = "00f067aa0ba902b7";

both! {
    async fn one_trace_runs_from_the_producer_through_ingest_to_every_attempt(db) {
        let collector = Collector::default();
        let endpoint = collector.start().await;
        let rx = Receiver::start().await;
        rx.script([Reply::status(500)]);
        let mut config = test_config();
        config.otlp = Some(aion_webhooks::telemetry::OtlpConfig {
            endpoint: Some(endpoint),
            schedule_delay: Duration::from_millis(100),
            timeout: Duration::from_secs(2),
        });
        let app = TestApp::spawn_with(
            db,
            &policy_yaml(&hook(
                "h",
                &rx.url,
                "[\"a.**\"]",
                "retry: { initial_interval: 200ms, max_interval: 1s, max_attempts: 3 }",
            )),
            config,
        )
        .await;
        let response = app
            .http
            .post(format!("{}/v1/events", app.base))
            .bearer_auth(API_KEY)
            .header("content-type", "application/json")
            .header("traceparent", format!("00-{TRACE}-{PRODUCER_SPAN}-01"))
            .body(json!({"id": "t-1", "topic": "a.b", "payload": 1}).to_string())
            .send()
            .await
            .expect("post");
        assert_eq!(response.status().as_u16(), 202);
        // The scripted 500 goes to t-1's first attempt, not to t-2.
        rx.wait_for_count(1).await;
        // An event naming only its `trace_id`, without the header.
        let other_trace = "0af7651916cd43dd8448eb211c80319c";
        let (status, _) = app
            .post_events(&json!({"id": "t-2", "topic": "a.b", "payload": 2, "trace_id": other_trace}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let got = rx.wait_for_count(3).await;
        app.drain().await;
        let (_, event) = app.get("/v1/events/t-1").await;
        let stored = event["traceparent"].as_str().expect("stored traceparent").to_owned();
        app.stop().await;

        wait_for("the attempts exported", || async {
            collector.named("delivery attempt").len() >= 3 && collector.named("ingest").len() >= 2
        })
        .await;
        let hex = hex::encode;
        let ingest = collector
            .named("ingest")
            .into_iter()
            .find(|s| str_attr(s, "aion.event.id").as_deref() == Some("t-1"))
            .expect("ingest span of t-1");
        assert_eq!(hex(&ingest.trace_id), TRACE, "the producer's trace");
        assert_eq!(hex(&ingest.parent_span_id), PRODUCER_SPAN, "parented on the producer's span");
        assert_eq!(stored, format!("00-{TRACE}-{}-01", hex(&ingest.span_id)), "stored with the event");
        let fan_out = collector.named("fan-out");
        assert!(
            fan_out.iter().any(|s| s.parent_span_id == ingest.span_id && int_attr(s, "aion.deliveries") == Some(1)),
            "fan-out is the ingest span's child"
        );
        let mut attempts: Vec<Span> = collector
            .named("delivery attempt")
            .into_iter()
            .filter(|s| str_attr(s, "aion.event.id").as_deref() == Some("t-1"))
            .collect();
        attempts.sort_by_key(|s| int_attr(s, "aion.attempt"));
        assert_eq!(attempts.len(), 2, "the failed attempt and its retry");
        let sent: Vec<&str> = got
            .iter()
            .filter(|r| r.header("x-aion-event-id") == "t-1")
            .map(|r| r.header("traceparent"))
            .collect();
        for (i, attempt) in attempts.iter().enumerate() {
            assert_eq!(hex(&attempt.trace_id), TRACE);
            assert_eq!(attempt.parent_span_id, ingest.span_id, "attempt {} under ingest", i + 1);
            assert_eq!(str_attr(attempt, "aion.webhook").as_deref(), Some("h"));
            assert_eq!(
                sent[i],
                format!("00-{TRACE}-{}-01", hex(&attempt.span_id)),
                "the receiver's traceparent is the attempt span"
            );
        }
        assert_eq!(int_attr(&attempts[0], "http.response.status_code"), Some(500));
        assert_eq!(int_attr(&attempts[1], "http.response.status_code"), Some(200));
        let ingest2 = collector
            .named("ingest")
            .into_iter()
            .find(|s| str_attr(s, "aion.event.id").as_deref() == Some("t-2"))
            .expect("ingest span of t-2");
        assert_eq!(hex(&ingest2.trace_id), other_trace, "the event's trace_id names the trace");
    }
}

both! {
    async fn a_dead_collector_never_holds_up_ingest_or_delivery(db) {
        let rx = Receiver::start().await;
        let mut config = test_config();
        // Nothing listens on port 9 (discard) on loopback: every export fails.
        config.otlp = Some(aion_webhooks::telemetry::OtlpConfig {
            endpoint: Some("http://127.0.0.1:9/v1/traces".into()),
            schedule_delay: Duration::from_millis(50),
            timeout: Duration::from_secs(1),
        });
        let app = TestApp::spawn_with(db, &policy_yaml(&hook("h", &rx.url, "[\"a.**\"]", "")), config).await;
        for i in 0..50 {
            let (status, _) = app.post_events(&json!({"id": format!("d-{i}"), "topic": "a.b", "payload": i})).await;
            assert_eq!(status, StatusCode::ACCEPTED);
        }
        let got = rx.wait_for_count(50).await;
        assert!(got.iter().all(|r| r.header("traceparent").starts_with("00-")), "attempts still traced");
        app.drain().await;
        app.stop().await;
    }
}

both! {
    async fn a_token_in_a_webhook_url_path_never_reaches_a_span(db) {
        // Issue 27, item 4: the attempt span's status carries the error text.
        let collector = Collector::default();
        let endpoint = collector.start().await;
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let mut config = test_config();
        config.otlp = Some(aion_webhooks::telemetry::OtlpConfig {
            endpoint: Some(endpoint),
            schedule_delay: Duration::from_millis(100),
            timeout: Duration::from_secs(2),
        });
        let url = format!("http://127.0.0.1:{port}/services/T000/B000/SpanT0ken");
        let app = TestApp::spawn_with(
            db,
            &policy_yaml(&hook("h", &url, "[\"a.**\"]", "retry: { initial_interval: 50ms, max_interval: 50ms, max_attempts: 2 }")),
            config,
        )
        .await;
        app.post_events(&json!({"id": "t-1", "topic": "a.b", "payload": 1})).await;
        wait_for("both failed attempts exported", || async {
            collector.named("delivery attempt").len() >= 2
        })
        .await;
        let attempts = collector.named("delivery attempt");
        assert!(attempts.iter().all(|s| s.status.as_ref().is_some_and(|st| !st.message.is_empty())), "{attempts:?}");
        let text = format!("{:?}", collector.spans.lock().expect("lock"));
        assert!(!text.contains("SpanT0ken") && !text.contains("/services/"), "{text}");
        assert!(text.contains(&format!("http://127.0.0.1:{port}/…")), "the origin is named: {text}");
        app.stop().await;
    }
}
