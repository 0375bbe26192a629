//! `POST /v1/events`: acceptance, duplicates, conflicts, batches, and every
//! kind of bad input (4xx JSON error, nothing stored).

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

fn policy() -> String {
    policy_yaml(&format!(
        "{}{}",
        hook(
            "orders",
            "http://127.0.0.1:9/none",
            "[\"shop.order.*\"]",
            "enabled: false"
        ),
        hook(
            "t1-only",
            "http://127.0.0.1:9/none",
            "[\"shop.**\"]",
            "enabled: false\ntenants: [t1]"
        )
    ))
}

async fn stored(app: &TestApp) -> (i64, i64) {
    (
        app.count("SELECT count(*) FROM events").await,
        app.count("SELECT count(*) FROM deliveries").await,
    )
}

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

both! {
    async fn accepted_event_gets_one_delivery_per_matching_webhook(db) {
        let app = TestApp::spawn(db, &policy()).await;
        let (status, body) = app.post_events(&json!({"id": "o-1", "topic": "shop.order.created", "payload": {"n": 1}, "tenant_id": "t1"})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(
            body,
            json!({"id": "o-1", "topic": "shop.order.created", "deliveries": 2})
        );
        let (status, body) = app
            .post_events(&json!({"topic": "shop.order.created", "payload": 1, "tenant_id": "t2"}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(
            body["deliveries"], 1,
            "tenant t2 is filtered out of t1-only"
        );
        assert!(
            body["id"].as_str().is_some_and(|id| id.starts_with("evt_")),
            "{body}"
        );
        assert_eq!(stored(&app).await, (2, 3));
    }
}

both! {
    async fn producer_field_aliases_are_accepted(db) {
        let app = TestApp::spawn(db, &policy()).await;
        let (status, body) = app
            .post_events(&json!({"event_id": "a-1", "event_type": "shop.order.paid", "data": null, "timestamp": "2026-01-01T00:00:00+02:00"}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let (_, event) = app.get("/v1/events/a-1").await;
        assert_eq!(event["topic"], "shop.order.paid");
        assert_eq!(event["payload"], Value::Null);
        assert_eq!(event["occurred_at"], "2025-12-31T22:00:00Z");
        for (alias, n) in [("type", 2), ("event_name", 3)] {
            let (status, _) = app
                .post_events(&json!({"id": format!("a-{n}"), alias: "shop.order.paid", "payload": {}}))
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{alias}");
        }
    }
}

both! {
    async fn duplicate_event_is_not_delivered_twice(db) {
        let app = TestApp::spawn(db, &policy()).await;
        let first =
            json!({"id": "d-1", "topic": "shop.order.created", "payload": {"a": 1, "b": [1, 2]}});
        assert_eq!(app.post_events(&first).await.0, StatusCode::ACCEPTED);
        // Same JSON value, different bytes (key order, whitespace).
        let same =
            br#"{"payload": { "b": [1,2], "a": 1 }, "topic": "shop.order.created", "id": "d-1"}"#
                .to_vec();
        let (status, body) = app.post_raw("/v1/events", API_KEY, same).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["duplicate"], true);
        assert_eq!(body["deliveries"], 1);
        assert_eq!(stored(&app).await, (1, 1));
    }
}

both! {
    async fn same_id_with_other_content_is_a_conflict_and_changes_nothing(db) {
        let app = TestApp::spawn(db, &policy()).await;
        app.post_events(&json!({"id": "c-1", "topic": "shop.order.created", "payload": {"a": 1}}))
            .await;
        let (status, body) = app
            .post_events(&json!({"id": "c-1", "topic": "shop.order.created", "payload": {"a": 2}}))
            .await;
        assert_error(status, &body, StatusCode::CONFLICT, "event_conflict");
        let (status, _) = app
            .post_events(&json!({"id": "c-1", "topic": "shop.order.paid", "payload": {"a": 1}}))
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (_, event) = app.get("/v1/events/c-1").await;
        assert_eq!(event["payload"], json!({"a": 1}));
        assert_eq!(stored(&app).await, (1, 1));
    }
}

both! {
    async fn batch_is_all_or_nothing(db) {
        let app = TestApp::spawn(db, &policy()).await;
        let bad = json!([
            {"id": "b-1", "topic": "shop.order.created", "payload": 1},
            {"id": "b-2", "topic": "shop.order.*", "payload": 2},
        ]);
        let (status, body) = app.post_events(&bad).await;
        assert_error(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event",
        );
        assert_eq!(body["error"]["field"], "[1].topic");
        assert_eq!(stored(&app).await, (0, 0));

        // A conflict in a batch rolls back the new events of that batch too.
        app.post_events(&json!({"id": "b-9", "topic": "shop.order.created", "payload": 9}))
            .await;
        let conflicting = json!([
            {"id": "b-3", "topic": "shop.order.created", "payload": 3},
            {"id": "b-9", "topic": "shop.order.created", "payload": "changed"},
        ]);
        assert_eq!(app.post_events(&conflicting).await.0, StatusCode::CONFLICT);
        assert_eq!(stored(&app).await, (1, 1));

        let good: Vec<Value> = (0..100)
            .map(|i| json!({"id": format!("g-{i}"), "topic": "shop.order.created", "payload": i}))
            .collect();
        let (status, body) = app.post_events(&Value::Array(good)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(body.as_array().map(Vec::len), Some(100));
        assert_eq!(stored(&app).await, (101, 101));
    }
}

both! {
    async fn same_id_twice_in_one_batch(db) {
        let app = TestApp::spawn(db, &policy()).await;
        let twice = json!([
            {"id": "t-1", "topic": "shop.order.created", "payload": 1},
            {"id": "t-1", "topic": "shop.order.created", "payload": 1},
        ]);
        let (status, body) = app.post_events(&twice).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body[1]["duplicate"], true);
        assert_eq!(stored(&app).await, (1, 1));
        let differing = json!([
            {"id": "t-2", "topic": "shop.order.created", "payload": 1},
            {"id": "t-2", "topic": "shop.order.created", "payload": 2},
        ]);
        assert_eq!(app.post_events(&differing).await.0, StatusCode::CONFLICT);
        assert_eq!(stored(&app).await, (1, 1));
    }
}

both! {
    async fn every_bad_input_gets_a_json_4xx_and_stores_nothing(db) {
        let mut config = test_config();
        config.limits.max_event_bytes = 2048;
        config.limits.max_body_bytes = 64 * 1024;
        let app = TestApp::spawn_with(db, &policy(), config).await;
        let big = "x".repeat(4096);
        let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
            (
                b"{not json".to_vec(),
                StatusCode::BAD_REQUEST,
                "malformed_json",
            ),
            (b"".to_vec(), StatusCode::BAD_REQUEST, "malformed_json"),
            (
                b"\"a string\"".to_vec(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_event",
            ),
            (
                b"[]".to_vec(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_event",
            ),
            (
                b"[1]".to_vec(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_event",
            ),
            (
                br#"{"payload": 1}"#.to_vec(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_event",
            ),
            (
                br#"{"topic": "a.b"}"#.to_vec(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_event",
            ),
            (
                br#"{"topic": "a..b", "payload": 1}"#.to_vec(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_event",
            ),
            (
                br#"{"topic": "a.**", "payload": 1}"#.to_vec(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_event",
            ),
            (
                br#"{"topic": 5, "payload": 1}"#.to_vec(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_event",
            ),
            (
                br#"{"id": "has space", "topic": "a.b", "payload": 1}"#.to_vec(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_event",
            ),
            (
                br#"{"topic": "a.b", "payload": 1, "occurred_at": "yesterday"}"#.to_vec(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_event",
            ),
            (
                br#"{"topic": "a.b", "payload": 1, "tenant_id": 7}"#.to_vec(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_event",
            ),
            (
                format!(r#"{{"topic": "a.b", "payload": "{big}"}}"#).into_bytes(),
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
            ),
            (
                vec![b' '; 70 * 1024],
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
            ),
        ];
        for (body, expected, code) in cases {
            let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
            let (status, answer) = app.post_raw("/v1/events", API_KEY, body).await;
            assert_eq!(status, expected, "{shown}: {answer}");
            assert_eq!(answer["error"]["code"], code, "{shown}: {answer}");
        }
        let batch: Vec<Value> = (0..1001)
            .map(|i| json!({"topic": "a.b", "payload": i}))
            .collect();
        let (status, _) = app
            .post_raw(
                "/v1/events",
                API_KEY,
                Value::Array(batch).to_string().into_bytes(),
            )
            .await;
        assert!(status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::PAYLOAD_TOO_LARGE);
        let r = app
            .http
            .post(format!("{}/v1/events", app.base))
            .bearer_auth(API_KEY)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 415);
        assert_eq!(stored(&app).await, (0, 0));
    }
}

both! {
    async fn credentials_and_roles_are_enforced(db) {
        let app = TestApp::spawn(db, &policy()).await;
        let event = json!({"topic": "shop.order.created", "payload": 1})
            .to_string()
            .into_bytes();
        let r = app
            .http
            .post(format!("{}/v1/events", app.base))
            .body(event.clone())
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 401);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "unauthorized");
        let (status, _) = app.post_raw("/v1/events", "wrong-key", event.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = app.post_raw("/v1/events", PUBLISHER_KEY, event).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let r = app
            .http
            .get(format!("{}/v1/deliveries", app.base))
            .bearer_auth(PUBLISHER_KEY)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 403, "listing deliveries needs admin");
        let published = app
            .count("SELECT count(*) FROM events WHERE topic <> 'aion.audit.activity'")
            .await;
        assert_eq!(published, 1);
        let denials = app
            .count("SELECT count(*) FROM audit_log WHERE actor_id = 'producer' AND action = 'list_deliveries' AND outcome = 'denied'")
            .await;
        assert_eq!(denials, 1, "the denial is audited");
    }
}

both! {
    async fn health_and_readiness_probes_answer_without_auth(db) {
        let app = TestApp::spawn(db, &policy()).await;
        let r = app
            .http
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 200);
        let r = app
            .http
            .get(format!("{}/readyz", app.base))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 200);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["database"], "ok");
        let r = app
            .http
            .get(format!("{}/nope", app.base))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 404);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "not_found");
    }
}

both! {
    async fn concurrent_single_posts_share_commits_but_not_outcomes(db) {
        let app = std::sync::Arc::new(TestApp::spawn(db, &policy()).await);
        let mut tasks = Vec::new();
        for i in 0..60 {
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                let event = match i % 3 {
                    // Twenty posts of one event: stored once, the rest duplicates.
                    0 => json!({"id": "same", "topic": "shop.order.created", "payload": {"v": 1}}),
                    // Twenty posts of one id with different payloads: one wins, the rest conflict.
                    1 => json!({"id": "contested", "topic": "shop.order.created", "payload": {"v": i}}),
                    _ => json!({"id": format!("own-{i}"), "topic": "shop.order.created", "payload": i}),
                };
                (i % 3, app.post_events(&event).await.0)
            }));
        }
        let mut by_kind = std::collections::HashMap::<(usize, u16), usize>::new();
        for t in tasks {
            let (kind, status) = t.await.expect("task");
            *by_kind.entry((kind, status.as_u16())).or_default() += 1;
        }
        assert_eq!(by_kind.get(&(0, 202)), Some(&1), "{by_kind:?}");
        assert_eq!(by_kind.get(&(0, 200)), Some(&19), "{by_kind:?}");
        assert_eq!(by_kind.get(&(1, 202)), Some(&1), "{by_kind:?}");
        assert_eq!(by_kind.get(&(1, 409)), Some(&19), "{by_kind:?}");
        assert_eq!(by_kind.get(&(2, 202)), Some(&20), "{by_kind:?}");
        assert_eq!(stored(&app).await, (22, 22));
    }
}

/// Polls `f` once: whether it is still pending.
async fn poll_once<F: std::future::Future + Unpin>(f: &mut F) -> bool {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::pin::Pin::new(&mut *f).poll(cx).is_pending())
    })
    .await
}

both! {
    async fn a_request_dropped_while_it_writes_its_group_hands_the_queue_on(db) {
        use aion_webhooks::ingest::Ingestor;
        use aion_webhooks::store::InsertOutcome;
        let store = db.store();
        store.migrate().await.expect("migrate");
        let ingestor = Ingestor::start(store.clone(), 1, None, Default::default());
        let now = chrono::Utc::now();
        let event = plain_event;
        // The first request finds its shard idle and writes on its own task;
        // five more arrive while its statement is in flight and queue.
        let mut first = Box::pin(ingestor.insert_one(event("first".into()), now));
        assert!(poll_once(&mut first).await, "the first write finished at once");
        let mut queued: Vec<_> = (0..5)
            .map(|i| Box::pin(ingestor.insert_one(event(format!("queued-{i}")), now)))
            .collect();
        for q in &mut queued {
            assert!(poll_once(q).await);
        }
        // Its client goes away mid-write: the queue is still written.
        drop(first);
        for q in queued {
            let outcome = tokio::time::timeout(std::time::Duration::from_secs(20), q)
                .await
                .expect("a queued request is answered after the writer was dropped")
                .expect("stored");
            assert!(matches!(outcome, Some(InsertOutcome::Created { deliveries: 1 })), "{outcome:?}");
        }
        // And the shard is not left marked busy.
        let after = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            ingestor.insert_one(event("after".into()), now),
        )
        .await
        .expect("a later request is answered")
        .expect("stored");
        assert!(matches!(after, Some(InsertOutcome::Created { deliveries: 1 })), "{after:?}");
        let written = db
            .count("SELECT count(*) FROM events WHERE id LIKE 'queued-%' OR id = 'after'")
            .await;
        assert_eq!(written, 6);
    }
}
