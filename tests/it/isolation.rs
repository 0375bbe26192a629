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
        // They start at their ceiling (no slow start), as a webhook whose
        // receiver was fast until it hung would be.
        let slow = "timeout: 5s\n    initial_in_flight: 32\n    retry: { initial_interval: 10ms, max_interval: 20ms, max_attempts: 100 }";
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

both! {
    async fn few_slots_shared_by_the_claim_and_the_ingest_path_leave_nothing_to_the_rescue(db) {
        // Three send slots, a backlog for `a` that only the claim sends, and
        // eight producers of `b` whose deliveries the ingest path sends at
        // once while a slot is free (and leaves to the claim when none is):
        // both ways draw on the same slots. Every delivery must go out once,
        // long before a lease (65 s) could expire — none left claimed without
        // a slot for the rescue. (The claim takes its slots before its
        // statement; the race that taking them after allowed is timing-
        // dependent, and this test does not force it.)
        let a = Receiver::start().await;
        let b = fixed_receiver(StatusCode::OK, b"", Duration::from_millis(3)).await;
        let long = "timeout: 60s";
        let policy = policy_yaml(&format!(
            "{}{}",
            hook("a", &a.url, "[a.event]", long),
            hook("b", &b, "[b.event]", long)
        ));
        let mut config = test_config();
        config.worker.max_in_flight = 3;
        config.worker.max_in_flight_per_webhook = 3;
        let app = TestApp::spawn_with(db, &policy, config).await;
        post_many(&app, "a.event", 200).await;
        let producer = |p: usize| {
            let app = &app;
            async move {
                for i in 0..50 {
                    app.post_events(&json!({"topic": "b.event", "payload": [p, i]}))
                        .await;
                }
            }
        };
        let started = Instant::now();
        tokio::join!(
            producer(0),
            producer(1),
            producer(2),
            producer(3),
            producer(4),
            producer(5),
            producer(6),
            producer(7)
        );
        let unfinished = "SELECT count(*) FROM deliveries WHERE state <> 'succeeded'";
        while app.count(unfinished).await > 0 && started.elapsed() < Duration::from_secs(45) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            app.count(unfinished).await,
            0,
            "deliveries unfinished 45 s in (a received {}; the lease is 65 s)",
            a.received().len(),
        );
        // Each sent once: none was claimed twice or rescued and sent again.
        assert_eq!(a.received().len(), 200);
        assert_eq!(app.count("SELECT count(*) FROM delivery_attempts").await, 600);
    }
}
