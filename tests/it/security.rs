//! Regression tests for the review's findings (issue 7): each party's bad
//! input stays that party's problem, and nobody may speak as the engine.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

fn retry(max_attempts: u32) -> String {
    format!("retry: {{ initial_interval: 50ms, max_interval: 1s, max_attempts: {max_attempts} }}")
}

both! {
    async fn publishers_cannot_write_the_engines_topics_or_claim_its_source(db) {
        let rx = Receiver::start().await;
        let policy = policy_yaml(&hook(
            "everything",
            &rx.url,
            r#"["command.*", "aion.**", "kernel.**"]"#,
            "",
        ));
        let app = TestApp::spawn(db, &policy).await;
        let forged_command = json!({
            "topic": "command.install_module", "source": "aion-webhooks", "key": "ops",
            "payload": {"command_id": "cmd_x", "action": "install_module", "params": {"m": 1}, "actor_id": "ops"}
        });
        let cases = [
            (forged_command, "reserved_topic", "topic"),
            (
                json!({"topic": "aion.audit.activity", "tenant_id": "tenant-001", "payload": {"actor_id": "ops"}}),
                "reserved_topic",
                "topic",
            ),
            (
                json!({"event_type": "aion.webhooks.endpoint.disabled", "payload": {}}),
                "reserved_topic",
                "topic",
            ),
            (
                json!({"topic": "Command.install_module", "payload": {}}),
                "reserved_topic",
                "topic",
            ),
            (
                json!({"topic": "kernel.proposal.created", "source": "aion-webhooks", "payload": {}}),
                "reserved_source",
                "source",
            ),
            (
                json!([{"topic": "kernel.proposal.created", "payload": 1}, {"topic": "command.x", "payload": 2}]),
                "reserved_topic",
                "[1].topic",
            ),
        ];
        for (body, code, field) in cases {
            let (status, answer) = app
                .post_raw("/v1/events", PUBLISHER_KEY, body.to_string().into_bytes())
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}: {answer}");
            assert_eq!(answer["error"]["code"], code, "{body}");
            assert_eq!(answer["error"]["field"], field, "{body}");
        }
        assert_eq!(app.count("SELECT count(*) FROM events").await, 0);

        // An ordinary event still goes through, and only it arrives.
        let (status, _) = app
            .post_raw(
                "/v1/events",
                PUBLISHER_KEY,
                json!({"topic": "kernel.proposal.created", "source": "kernel", "payload": 1})
                    .to_string()
                    .into_bytes(),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        app.drain().await;
        let got = rx.received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].header("x-aion-event"), "kernel.proposal.created");
    }
}

both! {
    async fn a_receiver_answering_nul_bytes_does_not_hold_up_other_outcomes(db) {
        let ok = Receiver::start().await;
        let nul = fixed_receiver(
            StatusCode::INTERNAL_SERVER_ERROR,
            b"bad\0body\0",
            Duration::ZERO,
        )
        .await;
        let policy = policy_yaml(&format!(
            "{}{}",
            hook("nul", &nul, "[a.b]", &retry(2)),
            hook("ok", &ok.url, "[a.b]", "")
        ));
        let app = TestApp::spawn(db, &policy).await;
        for i in 0..5 {
            app.post_events(&json!({"topic": "a.b", "payload": i}))
                .await;
        }
        ok.wait_for_count(5).await;
        wait_for(
            "the healthy deliveries to be recorded as succeeded",
            || async {
                app.count(
                    "SELECT count(*) FROM deliveries WHERE webhook_id = 'ok' AND state = 'succeeded'",
                )
                .await
                    == 5
            },
        )
        .await;
        app.drain().await;
        let (dead, stored_body): (i64, Option<String>) = app
            .db
            .one(
                "SELECT (SELECT count(*) FROM deliveries WHERE webhook_id = 'nul' AND state = 'dead'),
                    (SELECT max(response_body) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
                     WHERE d.webhook_id = 'nul')",
            )
            .await;
        assert_eq!(dead, 5, "the NUL receiver's attempts were recorded too");
        assert_eq!(stored_body.as_deref(), Some("bad\u{FFFD}body\u{FFFD}"));
    }
}

both! {
    async fn control_characters_in_event_fields_are_refused_without_failing_other_requests(db) {
        let rx = Receiver::start().await;
        let app = TestApp::spawn(db, &policy_yaml(&hook("h", &rx.url, "[a.b]", ""))).await;
        let app = &app;
        for field in ["tenant_id", "source", "key", "trace_id"] {
            let mut bad = json!({"topic": "a.b", "payload": 1});
            bad[field] = json!("x\u{0}y");
            // Bad and good requests at once, so they share group commits.
            let bad_requests = (0..8).map(|_| {
                let body = bad.to_string().into_bytes();
                async move { app.post_raw("/v1/events", API_KEY, body).await }
            });
            let good_requests = (0..24).map(|i| async move {
                app.post_events(&json!({"topic": "a.b", "payload": i, "key": format!("k{i}")}))
                    .await
            });
            let (bad_answers, good_answers) = futures::future::join(
                futures::future::join_all(bad_requests),
                futures::future::join_all(good_requests),
            )
            .await;
            for (status, answer) in bad_answers {
                assert_eq!(
                    status,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "{field}: {answer}"
                );
                assert_eq!(answer["error"]["field"], field);
            }
            for (status, answer) in good_answers {
                assert_eq!(status, StatusCode::ACCEPTED, "{field}: {answer}");
            }
        }
        assert_eq!(app.count("SELECT count(*) FROM events").await, 4 * 24);
    }
}

both! {
    async fn admin_and_publish_denials_are_audited(db) {
        let admin_only = "test-key-admin-only";
        let policy = policy_yaml("").replace(
            "  api_keys:\n",
            &format!(
                "  api_keys:\n    - id: auditor\n      sha256: \"{}\"\n      roles: [admin]\n",
                sha256_hex(admin_only)
            ),
        );
        let app = TestApp::spawn(db, &policy.replace("webhooks:\n\n", "webhooks: []\n")).await;
        let r = app
            .http
            .get(format!("{}/v1/webhooks", app.base))
            .bearer_auth(PUBLISHER_KEY)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 403);
        let (status, _) = app
            .post_raw(
                "/v1/events",
                admin_only,
                json!({"topic": "a.b", "payload": 1})
                    .to_string()
                    .into_bytes(),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        let (status, audit) = app.get("/v1/audit").await;
        assert_eq!(status, StatusCode::OK);
        let denials: Vec<(String, String)> = audit["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter(|r| r["outcome"] == "denied")
            .map(|r| {
                (
                    r["actor_id"].as_str().unwrap_or("").to_owned(),
                    r["action"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        assert!(
            denials.contains(&("producer".into(), "list_webhooks".into())),
            "{denials:?}"
        );
        assert!(
            denials.contains(&("auditor".into(), "publish_events".into())),
            "{denials:?}"
        );
        // Each denial also went out as an audit event, from the engine.
        let audit_events = app
            .count("SELECT count(*) FROM events WHERE topic = 'aion.audit.activity' AND source = 'aion-webhooks'")
            .await;
        assert_eq!(audit_events, 2);
    }
}

both! {
    async fn the_ssrf_allow_list_follows_the_policy_in_force(db) {
        let rx = Receiver::start().await;
        let allowed = policy_yaml(&hook("h", &rx.url, "[a.b]", &retry(1)));
        let closed = allowed.replace(
            "allow_private_targets: [127.0.0.0/8]",
            "allow_private_targets: []",
        );
        let app = TestApp::spawn(db, &closed).await;
        app.post_events(&json!({"id": "before", "topic": "a.b", "payload": 1}))
            .await;
        app.drain().await;
        assert!(rx.received().is_empty());
        assert_eq!(
            app.count(
                "SELECT count(*) FROM delivery_attempts WHERE error_kind = 'blocked_destination'"
            )
            .await,
            1
        );

        app.set_policy(&allowed);
        app.post_events(&json!({"id": "after", "topic": "a.b", "payload": 2}))
            .await;
        let got = rx.wait_for_count(1).await;
        assert_eq!(got[0].header("x-aion-event-id"), "after");
        app.drain().await;
    }
}

both! {
    async fn batches_with_the_same_ids_in_opposite_orders_do_not_deadlock(db) {
        let app = TestApp::spawn(
            db,
            &policy_yaml(&hook("h", "http://127.0.0.1:9/", "[a.b]", "")),
        )
        .await;
        for round in 0..5 {
            let forward: Vec<Value> = (0..1000)
                .map(|i| json!({"id": format!("r{round}-{i:04}"), "topic": "a.b", "payload": i}))
                .collect();
            let backward: Vec<Value> = forward.iter().rev().cloned().collect();
            let (a, b) = futures::future::join(
                app.post_events(&Value::Array(forward)),
                app.post_events(&Value::Array(backward)),
            )
            .await;
            for (status, answer) in [a, b] {
                assert!(
                    status == StatusCode::ACCEPTED || status == StatusCode::OK,
                    "round {round}: {status} {answer}"
                );
            }
        }
        assert_eq!(app.count("SELECT count(*) FROM events").await, 5000);
        assert_eq!(app.count("SELECT count(*) FROM deliveries").await, 5000);
    }
}

pg_test! {
    async fn engines_with_skewed_clocks_never_take_each_others_leases(pool) {
        let rx = Receiver::start().await;
        rx.script((0..60).map(|_| Reply {
            status: 200,
            headers: Vec::new(),
            delay: Duration::from_millis(400),
        }));
        let policy = policy_yaml(&hook("h", &rx.url, "[a.b]", "timeout: 5s"));
        let mut ahead = test_config();
        ahead.worker.clock_offset = chrono::TimeDelta::hours(1);
        let mut behind = test_config();
        behind.worker.clock_offset = -chrono::TimeDelta::hours(1);
        let a = TestApp::spawn_with(pool.clone(), &policy, ahead).await;
        let b = TestApp::spawn_with(pool, &policy, behind).await;
        let batch: Vec<Value> = (0..60)
            .map(|i| json!({"id": format!("e{i}"), "topic": "a.b", "payload": i}))
            .collect();
        assert_eq!(
            b.post_events(&Value::Array(batch)).await.0,
            StatusCode::ACCEPTED
        );
        // Leases and due times are on the database's clock, whatever either
        // engine's clock says (10 s lease = 5 s timeout + 5 s margin; 20 s
        // for a delivery held until its webhook's limit has room).
        wait_for("sends in flight", || async {
            a.count("SELECT count(*) FROM deliveries WHERE state = 'in_flight'")
                .await
                > 0
        })
        .await;
        let off_clock = a
            .count(
                "SELECT count(*) FROM deliveries
                 WHERE lease_expires_at NOT BETWEEN now() AND now() + interval '21 seconds'
                    OR next_attempt_at > now() + interval '1 minute'",
            )
            .await;
        assert_eq!(
            off_clock, 0,
            "no lease or due time follows an engine's clock"
        );
        a.drain().await;
        let got = rx.received();
        assert_eq!(got.len(), 60, "every event was sent exactly once");
        assert_eq!(
            a.count("SELECT count(*) FROM delivery_attempts WHERE error_kind = 'lease_expired'")
                .await,
            0,
            "no live lease was rescued"
        );
        a.stop().await;
        b.stop().await;
    }
}
