//! Adaptive concurrency and throttling (issue 15, item 2): a receiver
//! answering `429` sees the engine's concurrency fall to one send at a time
//! and climb back on 2xx; a `Retry-After` pauses the whole endpoint, shown
//! as `throttled`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// A receiver that answers after 50 ms, `429` while `overloaded`, and
/// tracks the most requests it had open at once since the last reset.
#[derive(Clone, Default)]
struct Gauge {
    overloaded: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
}

impl Gauge {
    async fn start(&self) -> String {
        let g = self.clone();
        let app = axum::Router::new().fallback(move || {
            let g = g.clone();
            async move {
                let now_open = g.open.fetch_add(1, Ordering::SeqCst) + 1;
                g.peak.fetch_max(now_open, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                g.open.fetch_sub(1, Ordering::SeqCst);
                if g.overloaded.load(Ordering::SeqCst) {
                    StatusCode::TOO_MANY_REQUESTS
                } else {
                    g.served.fetch_add(1, Ordering::SeqCst);
                    StatusCode::OK
                }
            }
        });
        serve_loopback(app).await
    }

    /// The peak of open requests over the next `window`.
    async fn peak_over(&self, window: Duration) -> usize {
        self.peak
            .store(self.open.load(Ordering::SeqCst), Ordering::SeqCst);
        tokio::time::sleep(window).await;
        self.peak.load(Ordering::SeqCst)
    }
}

both! {
    async fn a_429_endpoint_falls_to_one_send_at_a_time_and_recovers_on_2xx(db) {
        let gauge = Gauge::default();
        gauge.overloaded.store(true, Ordering::SeqCst);
        let url = gauge.start().await;
        let extra = "max_in_flight: 32\nretry: { initial_interval: 10ms, max_interval: 50ms, max_attempts: 1000 }";
        let app = TestApp::spawn(db, &policy_yaml(&hook("busy", &url, "[a.b]", extra))).await;
        let batch: Vec<Value> = (0..300)
            .map(|i| json!({"topic": "a.b", "payload": i}))
            .collect();
        assert_eq!(
            app.post_events(&Value::Array(batch)).await.0,
            StatusCode::ACCEPTED
        );

        wait_for("the limit to reach the floor", || async {
            app.limit_of("busy") == Some(1)
        })
        .await;
        // Sends started before the last decrease finish within 50 ms.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let peak = gauge.peak_over(Duration::from_millis(600)).await;
        assert_eq!(peak, 1, "one send at a time while the endpoint answers 429");

        gauge.overloaded.store(false, Ordering::SeqCst);
        wait_for("the limit to climb back", || async {
            app.limit_of("busy").is_some_and(|l| l >= 16)
        })
        .await;
        let peak = gauge.peak_over(Duration::from_millis(300)).await;
        assert!(peak > 4, "concurrency grew back on 2xx (peak {peak})");
        app.drain().await;
        assert_eq!(gauge.served.load(Ordering::SeqCst), 300);
    }
}

both! {
    async fn retry_after_pauses_the_whole_endpoint_until_then(db) {
        let rx = Receiver::start().await;
        rx.script([Reply {
            status: 429,
            headers: vec![("retry-after", "2".into())],
            delay: Duration::ZERO,
        }]);
        let app = TestApp::spawn(db, &policy_yaml(&hook("h", &rx.url, "[a.b]", ""))).await;
        let started = Instant::now();
        app.post_events(&json!({"topic": "a.b", "payload": 0}))
            .await;
        rx.wait_for_count(1).await;
        wait_for("the endpoint to show as throttled", || async {
            let (_, body) = app.get("/v1/webhooks").await;
            body["data"][0]["state"] == "throttled"
        })
        .await;
        let (_, body) = app.get("/v1/webhooks").await;
        assert_eq!(body["data"][0]["state_reason"], "retry_after", "{body}");
        assert!(body["data"][0]["throttled_until"].is_string(), "{body}");
        // New events wait for the pause too, not only the delivery that got 429.
        for i in 1..=5 {
            app.post_events(&json!({"topic": "a.b", "payload": i}))
                .await;
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(rx.received().len(), 1, "sent during the pause");
        let got = rx.wait_for_count(7).await;
        let resumed = got[1].at.duration_since(got[0].at);
        assert!(
            resumed >= Duration::from_millis(1900),
            "resumed {resumed:?} after the 429 (Retry-After: 2)"
        );
        assert!(started.elapsed() < Duration::from_secs(20));
        app.drain().await;
        let (_, body) = app.get("/v1/webhooks").await;
        assert_eq!(
            body["data"][0]["state"], "active",
            "the pause ran out: {body}"
        );
    }
}

pg_test! {
    async fn a_rate_limit_holds_across_two_engines_and_loses_nothing(pool) {
        let rx = Receiver::start().await;
        let policy = policy_yaml(&hook("limited", &rx.url, "[a.b]", "rate_limit: 40/s"));
        let one = TestApp::spawn(pool.clone(), &policy).await;
        let two = TestApp::spawn(pool, &policy).await;
        let batch: Vec<Value> = (0..200)
            .map(|i| json!({"topic": "a.b", "payload": i}))
            .collect();
        assert_eq!(
            one.post_events(&Value::Array(batch)).await.0,
            StatusCode::ACCEPTED
        );
        let got = rx.wait_for_count(200).await;
        one.drain().await;
        assert_eq!(rx.received().len(), 200, "each delivery once, none lost");
        // Any one-second window: at most the rate plus the bucket (4), with a
        // little slack for the receiver's own timestamps.
        let times: Vec<_> = got.iter().map(|r| r.at).collect();
        let busiest = times
            .iter()
            .map(|start| {
                times
                    .iter()
                    .filter(|t| **t >= *start && t.duration_since(*start) < Duration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap_or(0);
        assert!(
            busiest <= 46,
            "{busiest} attempts within one second (limit 40/s)"
        );
        let span = times[times.len() - 1].duration_since(times[0]);
        assert!(
            span >= Duration::from_millis(4500),
            "200 at 40/s took only {span:?}"
        );
        println!("busiest one-second window: {busiest}; 200 deliveries over {span:?}");
        two.stop().await;
    }
}
