//! Bulk replay (issue 9, item 4): exactly what the filter names, same ids,
//! one audit record per call; bad requests change nothing.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

both! {
    async fn bulk_replay_takes_exactly_what_its_filter_names(db) {
        let (a, b) = (Receiver::start().await, Receiver::start().await);
        a.script((0..6).map(|_| Reply::status(500)));
        b.script((0..4).map(|_| Reply::status(500)));
        let once = "retry: { initial_interval: 10ms, max_interval: 10ms, max_attempts: 1 }";
        let app = TestApp::spawn(
            db,
            &policy_yaml(&format!(
                "{}{}",
                hook("a", &a.url, "[x.a]", once),
                hook("b", &b.url, "[x.b]", once)
            )),
        )
        .await;
        let mut batch: Vec<Value> = (0..6)
            .map(|i| json!({"topic": "x.a", "payload": i}))
            .collect();
        batch.extend((0..4).map(|i| json!({"topic": "x.b", "payload": i})));
        assert_eq!(
            app.post_events(&Value::Array(batch)).await.0,
            StatusCode::ACCEPTED
        );
        app.drain().await;
        assert_eq!(
            app.count("SELECT count(*) FROM deliveries WHERE state = 'dead'")
                .await,
            10
        );
        let dead_a: Vec<(uuid::Uuid,)> = app
            .db
            .all("SELECT id FROM deliveries WHERE webhook_id = 'a' ORDER BY id")
            .await;

        let bulk = |body: Value| {
            let app = &app;
            async move {
                app.post_raw(
                    "/v1/deliveries/replay",
                    API_KEY,
                    body.to_string().into_bytes(),
                )
                .await
            }
        };
        // Bad requests: each a 4xx naming the problem, nothing replayed.
        for (body, status, code) in [
            (
                json!({}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_replay",
            ),
            (
                json!({"webhook": "a", "colour": "red"}),
                StatusCode::BAD_REQUEST,
                "malformed_json",
            ),
            (
                json!({"webhook": "a", "limit": 0}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_replay",
            ),
            (
                json!({"webhook": "a", "limit": 10001}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_replay",
            ),
            (
                json!({"webhook": "a", "limit": "ten"}),
                StatusCode::BAD_REQUEST,
                "malformed_json",
            ),
            (
                json!({"webhook": "a", "status": "pending"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_replay",
            ),
            (
                json!({"since": "yesterday"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_replay",
            ),
            (
                json!({"since": "2030-01-02T00:00:00Z", "until": "2030-01-01T00:00:00Z"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_replay",
            ),
            (
                json!({"webhook": "nope"}),
                StatusCode::CONFLICT,
                "webhook_unknown",
            ),
        ] {
            let (got, answer) = bulk(body.clone()).await;
            assert_eq!(got, status, "{body}: {answer}");
            assert_eq!(answer["error"]["code"], code, "{body}");
        }
        let (status, _) = app
            .post_raw(
                "/v1/deliveries/replay",
                PUBLISHER_KEY,
                b"{\"webhook\":\"a\"}".to_vec(),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            app.count("SELECT count(*) FROM deliveries WHERE state = 'dead'")
                .await,
            10
        );

        let (status, answer) = bulk(json!({"webhook": "a", "limit": 4})).await;
        assert_eq!((status, answer), (StatusCode::OK, json!({"replayed": 4})));
        let (status, answer) = bulk(json!({"webhook": "a"})).await;
        assert_eq!((status, answer), (StatusCode::OK, json!({"replayed": 2})));
        app.drain().await;
        assert_eq!(a.received().len(), 12, "six failed, then six replayed");
        let mut replayed_ids: Vec<String> = a.received()[6..]
            .iter()
            .map(|r| r.header("idempotency-key").to_owned())
            .collect();
        replayed_ids.sort();
        let mut expected: Vec<String> = dead_a
            .iter()
            .map(|(id,)| format!("dlv_{}", id.simple()))
            .collect();
        expected.sort();
        assert_eq!(replayed_ids, expected, "each replay kept its delivery id");
        assert_eq!(
            app.count("SELECT count(*) FROM deliveries WHERE webhook_id = 'b' AND state = 'dead'")
                .await,
            4,
            "b was not named"
        );
        let audits: Vec<(String,)> = app
            .db
            .all("SELECT target FROM audit_log WHERE action = 'bulk_replay' AND outcome = 'applied' ORDER BY id")
            .await;
        assert_eq!(audits.len(), 2, "one audit record per call");
        assert!(audits[0].0.contains("\"webhook\":\"a\""), "{audits:?}");
    }
}
