//! Payload edge cases (issue 12, item 3): each is either stored and
//! delivered byte for byte, or refused with a clear 4xx — never a 5xx, never
//! stored but undeliverable — and a re-sent duplicate is recognised whatever
//! its depth, size or spelling.

use axum::http::StatusCode;
use serde_json::Value;

use crate::support::*;

async fn app_with_receiver(db: TestDb) -> (TestApp, Receiver) {
    let rx = Receiver::start().await;
    let policy = policy_yaml(&hook("edge", &rx.url, "[\"edge.*\"]", ""));
    (TestApp::spawn(db, &policy).await, rx)
}

fn event(id: &str, payload: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","topic":"edge.case","payload":{payload}}}"#).into_bytes()
}

async fn post(app: &TestApp, body: Vec<u8>) -> (StatusCode, Value) {
    app.post_raw("/v1/events", API_KEY, body).await
}

/// The payload text inside a delivery body, which ends with `"payload":<text>}`.
fn delivered_payload(body: &[u8]) -> &[u8] {
    let marker = b"\"payload\":";
    let at = body
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("a payload member");
    &body[at + marker.len()..body.len() - 1]
}

both! {
    async fn a_duplicate_of_a_deeply_nested_payload_is_a_duplicate_at_any_depth(db) {
        let (app, rx) = app_with_receiver(db).await;
        let deep = |inner: &str| format!("{}{inner}{}", "[".repeat(50_000), "]".repeat(50_000));
        let (status, body) = post(&app, event("deep-1", &deep("1"))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        // The same bytes, and the same value spelled differently.
        for again in [deep("1"), deep(" 1.0 ")] {
            let (status, body) = post(&app, event("deep-1", &again)).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["duplicate"], true, "{body}");
        }
        let (status, body) = post(&app, event("deep-1", &deep("2"))).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "event_conflict");
        let got = rx.wait_for_count(1).await;
        assert_eq!(delivered_payload(&got[0].body), deep("1").as_bytes());
        // And it reads back as posted, past any parser's recursion limit.
        let text = app
            .http
            .get(format!("{}/v1/events/deep-1", app.base))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("text");
        assert!(
            text.contains(&format!("\"payload\":{}", deep("1"))),
            "{}",
            &text[..200]
        );
        app.drain().await;
        assert_eq!(rx.received().len(), 1, "delivered once");
    }
}

both! {
    async fn duplicate_member_names_are_refused_naming_the_object(db) {
        let (app, _rx) = app_with_receiver(db).await;
        let (status, body) = post(&app, event("dup-1", r#"{"a":{"k":1,"k":2}}"#)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "invalid_event");
        assert_eq!(body["error"]["field"], "payload");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("duplicate member name \"k\""), "{message}");
        assert!(message.contains("\"/a\""), "{message}");
        // In a batch the whole call is refused and the field names the index.
        let batch = format!(
            "[{},{}]",
            String::from_utf8(event("dup-2", "1")).expect("utf8"),
            String::from_utf8(event("dup-3", r#"{"x":1,"x":1}"#)).expect("utf8")
        );
        let (status, body) = post(&app, batch.into_bytes()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], "[1].payload");
        assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
    }
}

both! {
    async fn nul_escapes_lone_surrogates_huge_numbers_and_big_strings_are_delivered_byte_exact(db) {
        let (app, rx) = app_with_receiver(db).await;
        // Just under the 1 MiB event limit once the envelope is added.
        let big_string = format!("\"{}\"", "x".repeat(1024 * 1024 - 200));
        let cases = [
            ("nul", r#"{"s":"a\u0000b"}"#.to_owned()),
            (
                "surrogates",
                r#"["\ud800","\udc00x","\ud83d\ude00"]"#.to_owned(),
            ),
            (
                "numbers",
                "[1e400,-1e-400,123456789012345678901234567890.123456789]".to_owned(),
            ),
            ("escapes", r#""\"\\\/\b\f\n\r\t é 😀""#.to_owned()),
            ("big", big_string),
        ];
        for (id, payload) in &cases {
            let (status, body) = post(&app, event(id, payload)).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{id}: {body}");
        }
        let got = rx.wait_for_count(cases.len()).await;
        for (id, payload) in &cases {
            let r = got
                .iter()
                .find(|r| r.header("x-aion-event-id") == *id)
                .unwrap_or_else(|| panic!("{id} delivered"));
            assert_eq!(delivered_payload(&r.body), payload.as_bytes(), "{id}");
        }
        // A number beyond f64 is compared exactly, not through a float.
        let (status, _) = post(
            &app,
            event(
                "numbers",
                "[10e399,-1e-400,123456789012345678901234567890.1234567890]",
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = post(
            &app,
            event(
                "numbers",
                "[1e401,-1e-400,123456789012345678901234567890.123456789]",
            ),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        // The NUL escape is part of the value: without it, another value.
        let (status, _) = post(&app, event("nul", r#"{"s":"ab"}"#)).await;
        assert_eq!(status, StatusCode::CONFLICT);
    }
}

both! {
    async fn raw_nul_bytes_invalid_utf8_and_oversized_strings_are_refused_with_4xx(db) {
        let (app, _rx) = app_with_receiver(db).await;
        let mut raw_nul = event("bad-1", "\"a\0b\"");
        let (status, body) = post(&app, std::mem::take(&mut raw_nul)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "malformed_json");
        let mut invalid_utf8 = event("bad-2", "\"ab\"");
        let at = invalid_utf8.len() - 4;
        invalid_utf8[at] = 0xff;
        let (status, body) = post(&app, invalid_utf8).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let over = format!("\"{}\"", "x".repeat(1024 * 1024));
        let (status, body) = post(&app, event("bad-3", &over)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        assert_eq!(body["error"]["code"], "payload_too_large");
        assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
    }
}
