//! Outbound delivery end to end: signing, headers, retries and backoff, dead
//! letters and replay, webhook lifecycle, the SSRF guard, several engines.

use std::collections::HashSet;
use std::time::Duration;

use axum::http::StatusCode;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use crate::support::*;

/// Recomputes the signature with the `hmac` crate directly, not our signer.
fn independent_check(secret: &str, r: &Received) {
    let header = r.header("x-aion-signature");
    let (t, v1) = header.split_once(",v1=").expect("t=...,v1=...");
    let t = t.strip_prefix("t=").expect("t=");
    assert_eq!(t, r.header("x-aion-timestamp"));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(&r.body);
    assert_eq!(
        hex::encode(mac.finalize().into_bytes()),
        v1,
        "signature mismatch"
    );
}

fn retry(initial: &str, max_attempts: u32) -> String {
    format!(
        "retry: {{ initial_interval: {initial}, max_interval: 10s, max_attempts: {max_attempts} }}"
    )
}

both! {
    async fn delivery_is_signed_and_carries_the_contract_headers(db) {
        let rx = Receiver::start().await;
        let app = TestApp::spawn(
            db,
            &policy_yaml(&hook(
                "h",
                &rx.url,
                "[\"kernel.proposal.*\"]",
                "headers: { X-Team: kernel }",
            )),
        )
        .await;
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let (status, _) = app
            .post_events(&json!({"id": "e-1", "topic": "kernel.proposal.created", "payload": {"z": 1, "a": [true]}, "tenant_id": "t", "key": "k1", "trace_id": trace}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let got = rx.wait_for_count(1).await;
        let r = &got[0];
        independent_check("secret-h", r);
        let body: Value = serde_json::from_slice(&r.body).expect("json body");
        assert_eq!(body["id"], "e-1");
        assert_eq!(body["topic"], "kernel.proposal.created");
        assert_eq!(body["tenant_id"], "t");
        assert_eq!(body["key"], "k1");
        assert_eq!(body["payload"], json!({"z": 1, "a": [true]}));
        assert!(
            body.get("source").is_none(),
            "absent fields are omitted: {body}"
        );
        assert_eq!(r.header("content-type"), "application/json");
        assert!(r.header("user-agent").starts_with("aion-webhooks/"));
        assert_eq!(r.header("x-aion-event"), "kernel.proposal.created");
        assert_eq!(r.header("x-aion-event-id"), "e-1");
        assert_eq!(r.header("x-aion-attempt"), "1");
        assert!(r.header("idempotency-key").starts_with("dlv_"));
        assert_eq!(r.header("idempotency-key"), r.header("x-aion-delivery"));
        assert_eq!(r.header("x-team"), "kernel");
        assert!(
            r.header("traceparent").starts_with(&format!("00-{trace}-")),
            "{}",
            r.header("traceparent")
        );
        app.drain().await;
        let (_, list) = app
            .get("/v1/deliveries?status=succeeded&event_id=e-1")
            .await;
        assert_eq!(list["data"].as_array().map(Vec::len), Some(1), "{list}");
    }
}

both! {
    async fn failures_are_retried_with_growing_gaps_and_the_same_key_and_body(db) {
        let rx = Receiver::start().await;
        rx.script([
            Reply::status(500),
            Reply::status(502),
            Reply::status(500),
            Reply::status(200),
        ]);
        let app = TestApp::spawn(
            db,
            &policy_yaml(&hook("h", &rx.url, "[a.b]", &retry("200ms", 5))),
        )
        .await;
        app.post_events(&json!({"id": "r-1", "topic": "a.b", "payload": 1}))
            .await;
        let got = rx.wait_for_count(4).await;
        app.drain().await;
        let keys: HashSet<&str> = got.iter().map(|r| r.header("idempotency-key")).collect();
        assert_eq!(keys.len(), 1, "one Idempotency-Key across attempts");
        assert!(
            got.iter().all(|r| r.body == got[0].body),
            "identical body on every attempt"
        );
        let attempts: Vec<&str> = got.iter().map(|r| r.header("x-aion-attempt")).collect();
        assert_eq!(attempts, ["1", "2", "3", "4"]);
        let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
        // 200ms, 400ms, 800ms with ±20 % jitter: each gap is longer than the last.
        assert!(gaps[0] >= Duration::from_millis(160), "{gaps:?}");
        assert!(gaps.windows(2).all(|g| g[1] > g[0]), "gaps grow: {gaps:?}");
        let id = got[0].header("idempotency-key");
        let (_, d) = app.get(&format!("/v1/deliveries/{id}")).await;
        assert_eq!(d["status"], "succeeded");
        let codes: Vec<i64> = d["attempts_detail"]
            .as_array()
            .expect("attempts")
            .iter()
            .map(|a| a["status_code"].as_i64().unwrap_or(0))
            .collect();
        assert_eq!(codes, [500, 502, 500, 200]);
    }
}

both! {
    async fn delivery_is_dead_after_max_attempts_and_replay_resends_it(db) {
        let rx = Receiver::start().await;
        rx.script([Reply::status(500), Reply::status(500), Reply::status(500)]);
        let app = TestApp::spawn(
            db,
            &policy_yaml(&hook("h", &rx.url, "[a.b]", &retry("50ms", 3))),
        )
        .await;
        app.post_events(&json!({"id": "x-1", "topic": "a.b", "payload": 1}))
            .await;
        rx.wait_for_count(3).await;
        app.drain().await;
        let (_, dead) = app.get("/v1/deliveries?status=dead&webhook=h").await;
        let dead = dead["data"].as_array().expect("data").clone();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0]["attempts"], 3);
        let id = dead[0]["id"].as_str().expect("id").to_owned();

        let (status, body) = app
            .post_raw(&format!("/v1/deliveries/{id}/replay"), API_KEY, Vec::new())
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let got = rx.wait_for_count(4).await;
        assert_eq!(
            got[3].header("idempotency-key"),
            id,
            "replay keeps the Idempotency-Key"
        );
        assert_eq!(got[3].header("x-aion-attempt"), "4");
        app.drain().await;
        let (_, d) = app.get(&format!("/v1/deliveries/{id}")).await;
        assert_eq!(d["status"], "succeeded");
        // Replaying a delivery that is not finished, or does not exist.
        let (status, _) = app
            .post_raw(
                "/v1/deliveries/dlv_00000000000000000000000000000000/replay",
                API_KEY,
                Vec::new(),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(rx.received().len(), 4);
    }
}

both! {
    async fn retry_after_is_honoured(db) {
        let rx = Receiver::start().await;
        rx.script([Reply {
            status: 503,
            headers: vec![("retry-after", "1".into())],
            delay: Duration::ZERO,
        }]);
        let app = TestApp::spawn(
            db,
            &policy_yaml(&hook("h", &rx.url, "[a.b]", &retry("50ms", 3))),
        )
        .await;
        app.post_events(&json!({"topic": "a.b", "payload": 1}))
            .await;
        let got = rx.wait_for_count(2).await;
        assert!(
            got[1].at - got[0].at >= Duration::from_millis(950),
            "{:?}",
            got[1].at - got[0].at
        );
    }
}

both! {
    async fn disabled_webhook_keeps_deliveries_pending_until_enabled(db) {
        let rx = Receiver::start().await;
        let disabled = policy_yaml(&hook("h", &rx.url, "[a.b]", "enabled: false"));
        let app = TestApp::spawn(db, &disabled).await;
        app.post_events(&json!({"topic": "a.b", "payload": 1}))
            .await;
        // Let the worker run several claim rounds (poll interval is 50 ms).
        let rounds = app.count("SELECT count(*) FROM deliveries").await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(rounds, 1);
        assert!(rx.received().is_empty(), "a disabled webhook sends nothing");
        assert_eq!(
            app.count("SELECT count(*) FROM deliveries WHERE state = 'pending' AND attempts = 0")
                .await,
            1
        );
        app.set_policy(&policy_yaml(&hook("h", &rx.url, "[a.b]", "")));
        rx.wait_for_count(1).await;
        app.drain().await;
    }
}

both! {
    async fn removed_webhook_keeps_deliveries_until_it_returns(db) {
        let rx = Receiver::start().await;
        let with = policy_yaml(&hook("h", &rx.url, "[a.b]", "enabled: false"));
        let app = TestApp::spawn(db, &with).await;
        app.post_events(&json!({"topic": "a.b", "payload": 1}))
            .await;
        app.set_policy(&policy_yaml(&hook("other", &rx.url, "[c.d]", "")));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(rx.received().is_empty());
        assert_eq!(
            app.count("SELECT count(*) FROM deliveries WHERE webhook_id = 'h' AND state = 'pending'")
                .await,
            1
        );
        app.set_policy(&policy_yaml(&hook("h", &rx.url, "[a.b]", "")));
        rx.wait_for_count(1).await;
        app.drain().await;
    }
}

both! {
    async fn ssrf_guard_blocks_loopback_without_the_allow_list(db) {
        let rx = Receiver::start().await;
        let localhost = rx.url.replace("127.0.0.1", "localhost");
        let policy = policy_yaml(&format!(
            "{}{}",
            hook("ip", &rx.url, "[a.b]", &retry("50ms", 1)),
            hook("name", &localhost, "[a.b]", &retry("50ms", 1))
        ))
        .replace(
            "allow_private_targets: [127.0.0.0/8]",
            "allow_private_targets: []",
        );
        let app = TestApp::spawn(db, &policy).await;
        app.post_events(&json!({"topic": "a.b", "payload": 1}))
            .await;
        app.drain().await;
        assert!(
            rx.received().is_empty(),
            "nothing reached the loopback receiver"
        );
        let blocked = app
            .count("SELECT count(*) FROM delivery_attempts WHERE error_kind = 'blocked_destination'")
            .await;
        assert_eq!(blocked, 2);
    }
}

pg_test! {
    async fn two_engines_on_one_database_deliver_each_event_once(pool) {
        let rx = Receiver::start().await;
        let policy = policy_yaml(&hook("h", &rx.url, "[a.b]", ""));
        let a = TestApp::spawn(pool.clone(), &policy).await;
        let b = TestApp::spawn(pool, &policy).await;
        for chunk in 0..4 {
            let batch: Vec<Value> = (0..100)
                .map(|i| json!({"id": format!("e-{chunk}-{i}"), "topic": "a.b", "payload": i}))
                .collect();
            let target = if chunk % 2 == 0 { &a } else { &b };
            assert_eq!(
                target.post_events(&Value::Array(batch)).await.0,
                StatusCode::ACCEPTED
            );
        }
        a.drain().await;
        let got = rx.received();
        let ids: HashSet<&str> = got.iter().map(|r| r.header("x-aion-event-id")).collect();
        assert_eq!(ids.len(), 400);
        assert_eq!(got.len(), 400, "no event was sent twice");
        a.stop().await;
        b.stop().await;
    }
}

both! {
    async fn graceful_shutdown_lets_in_flight_sends_finish(db) {
        let rx = Receiver::start().await;
        rx.script([Reply {
            status: 200,
            headers: Vec::new(),
            delay: Duration::from_millis(500),
        }]);
        let app = TestApp::spawn(db.clone(), &policy_yaml(&hook("h", &rx.url, "[a.b]", ""))).await;
        app.post_events(&json!({"topic": "a.b", "payload": 1}))
            .await;
        rx.wait_for_count(1).await;
        app.stop().await;
        let succeeded = db
            .count("SELECT count(*) FROM deliveries WHERE state = 'succeeded'")
            .await;
        assert_eq!(
            succeeded, 1,
            "the send in flight at shutdown finished and was recorded"
        );
    }
}

both! {
    async fn admin_queries_refuse_bad_parameters_with_json_errors(db) {
        let app = TestApp::spawn(
            db,
            &policy_yaml(&hook(
                "h",
                "http://127.0.0.1:9/x",
                "[a.b]",
                "enabled: false",
            )),
        )
        .await;
        for path in [
            "/v1/deliveries?limit=0",
            "/v1/deliveries?limit=abc",
            "/v1/deliveries?status=bogus",
            "/v1/deliveries?cursor=nope",
            "/v1/audit?since=yesterday",
            "/v1/audit?limit=100000",
        ] {
            let (status, body) = app.get(path).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
            assert_eq!(body["error"]["code"], "invalid_query", "{path}: {body}");
        }
        let (status, body) = app.get("/v1/deliveries/not-an-id").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, body) = app.get("/v1/deliveries?limit=2").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = app.get("/v1/webhooks").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["data"][0]["id"], "h");
        assert!(
            body["data"][0].get("secret").is_none() && !body.to_string().contains("secret-h"),
            "secrets are never returned: {body}"
        );
    }
}

both! {
    async fn webhook_health_comes_from_maintained_counts(db) {
        let rx = Receiver::start().await;
        rx.script([Reply::status(503)]);
        let policy = policy_yaml(&format!(
            "{}{}",
            hook("h", &rx.url, "[a.b]", &retry("10ms", 1)),
            hook("idle", &rx.url, "[never.used]", "")
        ));
        let app = TestApp::spawn(db, &policy).await;
        for i in 0..3 {
            app.post_events(&json!({"id": format!("e{i}"), "topic": "a.b", "payload": i}))
                .await;
        }
        app.drain().await;
        let (status, body) = app.get("/v1/webhooks").await;
        assert_eq!(status, StatusCode::OK);
        let h = &body["data"][0];
        assert_eq!(h["id"], "h");
        assert_eq!(
            (&h["pending"], &h["in_flight"], &h["dead"]),
            (&json!(0), &json!(0), &json!(1))
        );
        assert_eq!(h["last_error_kind"], "http_status");
        assert_eq!(h["attempts_last_hour"], 3);
        let rate = h["success_rate_last_hour"].as_f64().expect("rate");
        assert!((rate - 2.0 / 3.0).abs() < 1e-9, "{rate}");
        assert!(h["last_success_at"].is_string() && h["last_failure_at"].is_string());
        let idle = &body["data"][1];
        assert_eq!(idle["id"], "idle");
        assert_eq!(idle["attempts_last_hour"], 0);
        assert!(idle["success_rate_last_hour"].is_null());
        assert!(idle["last_success_at"].is_null());
    }
}

both! {
    /// Events posted the moment the engine serves are sent at once, not left
    /// to the claim: the API accepts nothing before the worker's first claim
    /// has shown that the webhook has nothing due. (Before, under load, an
    /// engine that took events in those first milliseconds could stay
    /// claim-driven, at twice the database's work per delivery, for as long
    /// as producers outpaced its claims.)
    async fn events_posted_as_the_engine_starts_are_sent_at_once(db) {
        let rx = Receiver::start().await;
        // Room for all 20 at once from the start (slow start would leave
        // those past its initial 8 to the claim).
        let room = "initial_in_flight: 32";
        let app = TestApp::spawn(db, &policy_yaml(&hook("h", &rx.url, "[\"a.*\"]", room))).await;
        let posts = (0..20).map(|i| {
            let app = &app;
            async move {
                app.post_events(&json!({"id": format!("e-{i}"), "topic": "a.b", "payload": i}))
                    .await
                    .0
            }
        });
        let statuses = futures::future::join_all(posts).await;
        assert!(statuses.iter().all(|s| *s == StatusCode::ACCEPTED), "{statuses:?}");
        rx.wait_for_count(20).await;
        let http = reqwest::Client::new();
        assert_eq!(crate::crash::sends_started(&http, &app.base, "claim").await, 0);
        assert_eq!(crate::crash::sends_started(&http, &app.base, "ingest").await, 20);
        app.stop().await;
    }
}
