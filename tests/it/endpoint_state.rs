//! Runtime endpoint state (issue 15, item 3): an admin disables a webhook;
//! its deliveries stay pending (not sent, no attempts used) until it is
//! enabled; every change is audited and announced on
//! `aion.webhooks.endpoint.*`; the state survives restarts and reloads.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

fn policy(target: &Receiver, ops: &Receiver) -> String {
    policy_yaml(&format!(
        "{}{}",
        hook("target", &target.url, "[\"shop.*\"]", ""),
        hook("ops", &ops.url, "[\"aion.webhooks.**\"]", "")
    ))
}

async fn post_admin(app: &TestApp, path: &str, key: &str) -> (StatusCode, Value) {
    app.post_raw(path, key, b"{}".to_vec()).await
}

async fn state_of(app: &TestApp, id: &str) -> Value {
    let (_, body) = app.get("/v1/webhooks").await;
    body["data"]
        .as_array()
        .and_then(|a| a.iter().find(|w| w["id"] == id).cloned())
        .unwrap_or(Value::Null)
}

async fn post_orders(app: &TestApp, n: usize) {
    for i in 0..n {
        let (status, body) = app
            .post_events(&json!({"topic": "shop.order", "payload": i}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
}

both! {
    async fn a_disabled_webhook_keeps_its_deliveries_pending_until_enabled(db) {
        let (target, ops) = (Receiver::start().await, Receiver::start().await);
        let app = TestApp::spawn(db, &policy(&target, &ops)).await;

        let (status, body) = post_admin(&app, "/v1/webhooks/target/disable", API_KEY).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["state"], "disabled");
        assert_eq!(body["changed"], true);
        let listed = state_of(&app, "target").await;
        assert_eq!(listed["state"], "disabled", "{listed}");
        assert_eq!(listed["state_reason"], "manual");
        assert!(listed["state_since"].is_string());

        post_orders(&app, 5).await;
        // The announcement reaches a subscriber; the disabled webhook gets nothing.
        let announced = ops.wait_for_count(1).await;
        assert_eq!(
            announced[0].header("x-aion-event"),
            "aion.webhooks.endpoint.disabled"
        );
        let body: Value = serde_json::from_slice(&announced[0].body).expect("json");
        assert_eq!(body["payload"]["webhook_id"], "target");
        assert_eq!(body["source"], "aion-webhooks");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(target.received().is_empty(), "sent while disabled");
        assert_eq!(
            app.count("SELECT count(*) FROM deliveries WHERE webhook_id = 'target' AND state = 'pending' AND attempts = 0")
                .await,
            5
        );

        let (status, body) = post_admin(&app, "/v1/webhooks/target/enable", API_KEY).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["state"], "active");
        target.wait_for_count(5).await;
        let announced = ops.wait_for_count(2).await;
        assert_eq!(
            announced[1].header("x-aion-event"),
            "aion.webhooks.endpoint.enabled"
        );
        assert_eq!(state_of(&app, "target").await["state"], "active");

        // Both changes are audited, as the admin who made them.
        let (_, audit) = app.get("/v1/audit").await;
        let actions: Vec<&str> = audit["data"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["action"].as_str()).collect())
            .unwrap_or_default();
        assert!(actions.contains(&"disable_webhook"), "{audit}");
        assert!(actions.contains(&"enable_webhook"), "{audit}");
        let text = app.meters.engine.render();
        assert!(
            text.contains(
                r#"aion_webhooks_endpoint_transitions_total{webhook="target",to="disabled"} 1"#
            ),
            "{text}"
        );
    }
}

both! {
    async fn repeated_unknown_and_unauthorised_changes_are_answered_without_effect(db) {
        let (target, ops) = (Receiver::start().await, Receiver::start().await);
        let app = TestApp::spawn(db, &policy(&target, &ops)).await;
        let (status, _) = post_admin(&app, "/v1/webhooks/target/disable", API_KEY).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = post_admin(&app, "/v1/webhooks/target/disable", API_KEY).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["changed"], false, "{body}");
        let (status, body) = post_admin(&app, "/v1/webhooks/nope/disable", API_KEY).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, body) = post_admin(&app, "/v1/webhooks/target/enable", PUBLISHER_KEY).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(state_of(&app, "target").await["state"], "disabled");
        assert_eq!(
            app.count("SELECT count(*) FROM audit_log WHERE action = 'disable_webhook'")
                .await,
            1,
            "a change that changed nothing is not audited again"
        );
    }
}

both! {
    async fn the_runtime_state_survives_a_restart_and_a_policy_reload(db) {
        let (target, ops) = (Receiver::start().await, Receiver::start().await);
        let yaml = policy(&target, &ops);
        let app = TestApp::spawn(db.clone(), &yaml).await;
        let (status, _) = post_admin(&app, "/v1/webhooks/target/disable", API_KEY).await;
        assert_eq!(status, StatusCode::OK);
        app.stop().await;

        let app = TestApp::spawn(db, &yaml).await;
        assert_eq!(state_of(&app, "target").await["state"], "disabled");
        // A reload (here: the same file with a new webhook) keeps it disabled.
        let other = Receiver::start().await;
        app.set_policy(&policy_yaml(&format!(
            "{}{}{}",
            hook("target", &target.url, "[\"shop.*\"]", ""),
            hook("ops", &ops.url, "[\"aion.webhooks.**\"]", ""),
            hook("other", &other.url, "[\"shop.*\"]", "")
        )));
        post_orders(&app, 3).await;
        other.wait_for_count(3).await;
        assert!(
            target.received().is_empty(),
            "sent after a restart or reload"
        );
        assert_eq!(state_of(&app, "target").await["state"], "disabled");
        let (status, _) = post_admin(&app, "/v1/webhooks/target/enable", API_KEY).await;
        assert_eq!(status, StatusCode::OK);
        target.wait_for_count(3).await;
    }
}

async fn endpoint_row(app: &TestApp, id: &str) -> Option<(String, String)> {
    app.db
        .optional(&format!(
            "SELECT state, reason FROM webhook_state WHERE webhook_id = '{id}'"
        ))
        .await
}

both! {
    async fn gone_disables_the_webhook_and_keeps_the_delivery_for_when_it_returns(db) {
        let (target, ops) = (Receiver::start().await, Receiver::start().await);
        target.script([Reply::status(410)]);
        let app = TestApp::spawn(db, &policy(&target, &ops)).await;
        post_orders(&app, 1).await;
        let announced = ops.wait_for_count(1).await;
        assert_eq!(
            announced[0].header("x-aion-event"),
            "aion.webhooks.endpoint.disabled"
        );
        let body: Value = serde_json::from_slice(&announced[0].body).expect("json");
        assert_eq!(body["payload"]["reason"], "gone", "{body}");
        assert_eq!(body["payload"]["actor_id"], "aion-webhooks");
        assert!(
            body["payload"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("410")),
            "{body}"
        );
        assert_eq!(
            endpoint_row(&app, "target").await,
            Some(("disabled".into(), "gone".into()))
        );
        // The attempt is recorded; the delivery is kept pending, not dead.
        wait_for("the 410 attempt to be recorded", || async {
            app.count("SELECT count(*) FROM delivery_attempts WHERE status_code = 410")
                .await
                == 1
        })
        .await;
        assert_eq!(
            app.count(
                "SELECT count(*) FROM deliveries WHERE webhook_id = 'target' AND state = 'pending'"
            )
            .await,
            1
        );
        post_orders(&app, 2).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            target.received().len(),
            1,
            "nothing more sent while disabled"
        );

        let (status, _) = post_admin(&app, "/v1/webhooks/target/enable", API_KEY).await;
        assert_eq!(status, StatusCode::OK);
        // The first delivery again (attempt 2), and the two queued meanwhile.
        let got = target.wait_for_count(4).await;
        let again = got
            .iter()
            .find(|r| r.header("x-aion-attempt") == "2")
            .expect("the first delivery sent again");
        assert_eq!(
            again.header("idempotency-key"),
            got[0].header("idempotency-key")
        );
        app.drain().await;
        assert_eq!(
            app.count(
                "SELECT count(*) FROM deliveries WHERE webhook_id = 'target' AND state = 'succeeded'"
            )
            .await,
            3
        );
    }
}

both! {
    async fn a_webhook_failing_for_disable_after_is_disabled_and_not_before(db) {
        let ops = Receiver::start().await;
        let failing = fixed_receiver(StatusCode::INTERNAL_SERVER_ERROR, b"down", Duration::ZERO).await;
        let policy = policy_yaml(&format!(
            "{}{}",
            hook(
                "target",
                &failing,
                "[\"shop.*\"]",
                "disable_after: 3s\nretry: { initial_interval: 100ms, max_interval: 200ms, max_attempts: 1000 }"
            ),
            hook("ops", &ops.url, "[\"aion.webhooks.**\"]", "")
        ));
        let app = TestApp::spawn(db, &policy).await;
        post_orders(&app, 1).await;
        wait_for("a few failed attempts", || async {
            app.count("SELECT count(*) FROM delivery_attempts").await >= 4
        })
        .await;
        // Failing, but not yet for 3 s.
        assert_eq!(
            endpoint_row(&app, "target").await,
            None,
            "disabled too early"
        );
        wait_for("the failing webhook to be disabled", || async {
            endpoint_row(&app, "target").await.is_some()
        })
        .await;
        assert_eq!(
            endpoint_row(&app, "target").await,
            Some(("disabled".into(), "failing".into()))
        );
        // Not before `disable_after` had passed since the first failure (by the
        // database's clock, which both times come from).
        let (waited,): (f64,) = app
            .db
            .one(&format!(
                "SELECT {} FROM webhook_state s, delivery_attempts a
                 WHERE s.webhook_id = 'target' GROUP BY s.since",
                app.db.seconds("s.since - min(a.started_at)")
            ))
            .await;
        assert!(waited >= 3.0, "disabled {waited} s after the first failure");
        let announced = ops.wait_for_count(1).await;
        let body: Value = serde_json::from_slice(&announced[0].body).expect("json");
        assert_eq!(body["payload"]["reason"], "failing", "{body}");
        // Its delivery is kept, pending (once the attempt that was in flight
        // when the webhook was disabled has been recorded).
        wait_for("the delivery to be kept, pending", || async {
            app.count(
                "SELECT count(*) FROM deliveries WHERE webhook_id = 'target' AND state = 'pending'",
            )
            .await
                == 1
        })
        .await;
    }
}
