//! One bad endpoint never slows the others (issue 15, item 1): a failing
//! webhook's backlog of due retries, or webhooks that hang, leave a healthy
//! webhook's deliveries on time. The exact figures are in the isolation
//! benchmark (`examples/isolation.rs`); the bounds here are generous.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

async fn post_many(app: &TestApp, topic: &str, n: usize) {
    for start in (0..n).step_by(1000) {
        let batch: Vec<Value> = (start..n.min(start + 1000))
            .map(|i| json!({"topic": topic, "payload": i}))
            .collect();
        assert_eq!(
            app.post_events(&Value::Array(batch)).await.0,
            StatusCode::ACCEPTED
        );
    }
}

/// Posts `n` events to `ok` and returns how long until all arrived.
async fn time_healthy(app: &TestApp, ok: &Receiver, n: usize) -> Duration {
    let started = Instant::now();
    for i in 0..n {
        app.post_events(&json!({"topic": "ok.event", "payload": i}))
            .await;
    }
    ok.wait_for_count(n).await;
    started.elapsed()
}

both! {
    async fn a_failing_webhooks_backlog_of_due_retries_does_not_delay_a_healthy_one(db) {
        let ok = Receiver::start().await;
        let busy = fixed_receiver(StatusCode::INTERNAL_SERVER_ERROR, b"", Duration::ZERO).await;
        let retry = "retry: { initial_interval: 50ms, max_interval: 100ms, max_attempts: 1000 }";
        let policy = policy_yaml(&format!(
            "{}{}",
            hook("busy", &busy, "[busy.event]", retry),
            hook("ok", &ok.url, "[ok.event]", "")
        ));
        let app = TestApp::spawn(db, &policy).await;
        // 3,000 deliveries failing at once and due again within 100 ms: a
        // backlog of due retries that keeps the machine busy. (The round-robin
        // property itself is checked exactly on the store, in `queue.rs`; this
        // is the end-to-end smoke test, with a bound generous enough for a
        // loaded CI machine.)
        post_many(&app, "busy.event", 3000).await;
        wait_for("busy to be failing", || async {
            app.count("SELECT count(*) FROM delivery_attempts").await >= 500
        })
        .await;
        let took = time_healthy(&app, &ok, 50).await;
        assert!(
            took < Duration::from_secs(10),
            "the healthy webhook waited {took:?} behind the failing one"
        );
    }
}

both! {
    async fn hanging_webhooks_cannot_take_every_slot_of_the_engine(db) {
        let ok = Receiver::start().await;
        let hang = fixed_receiver(StatusCode::OK, b"", Duration::from_secs(60)).await;
        let slow =
            "timeout: 5s\n    retry: { initial_interval: 10ms, max_interval: 20ms, max_attempts: 100 }";
        let policy = policy_yaml(&format!(
            "{}{}{}",
            hook("hang-1", &hang, "[busy.event]", slow),
            hook("hang-2", &hang, "[busy.event]", slow),
            hook("ok", &ok.url, "[ok.event]", "")
        ));
        let mut config = test_config();
        // Each hanging webhook alone could fill the engine.
        config.worker.max_in_flight = 32;
        config.worker.max_in_flight_per_webhook = 32;
        let app = TestApp::spawn_with(db, &policy, config).await;
        post_many(&app, "busy.event", 100).await;
        wait_for("the hanging webhooks to hold their sends", || async {
            app.count("SELECT count(*) FROM deliveries WHERE state = 'in_flight'")
                .await
                >= 20
        })
        .await;
        let took = time_healthy(&app, &ok, 20).await;
        assert!(
            took < Duration::from_secs(3),
            "the healthy webhook waited {took:?} for a slot (hanging sends time out after 5 s)"
        );
    }
}
