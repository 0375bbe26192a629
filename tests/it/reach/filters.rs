//! Filters on payload fields (issue 30, item 5), end to end: evaluated at
//! fan-out, so a refused event gets no delivery for that webhook (and is
//! counted), on both stores; and `policy match --payload` says which filter
//! admitted or refused an example event.

use serde_json::json;

use super::wait_state;
use crate::support::*;

both! {
    async fn an_event_the_filter_refuses_gets_no_delivery_for_that_webhook(db) {
        let rx = Receiver::start().await;
        let hooks = [
            hook("big", &rx.url, "[order.paid]", "filter: { $and: [ { payload.amount: { $gte: 1000 } }, { payload.status: { $in: [paid, refunded] } } ] }"),
            hook("eu", &rx.url, "[order.paid]", "filter: { tenant_id: { $in: [eu-1, eu-2] } }"),
            hook("all", &rx.url, "[order.paid]", ""),
        ]
        .concat();
        let app = TestApp::spawn(db, &policy_yaml(&hooks)).await;
        let events = json!([
            {"id": "e1", "topic": "order.paid", "tenant_id": "eu-1", "payload": {"amount": 1000.00, "status": "paid"}},
            {"id": "e2", "topic": "order.paid", "tenant_id": "us-1", "payload": {"amount": 999.99, "status": "paid"}},
            {"id": "e3", "topic": "order.paid", "payload": {"amount": "5000", "status": "paid"}},
            {"id": "e4", "topic": "order.paid", "tenant_id": "eu-2", "payload": {"amount": 12345678901234567890u64, "status": "refunded"}},
        ]);
        let (status, body) = app.post_events(&events).await;
        assert_eq!(status, 202, "{body}");
        let deliveries: Vec<_> = body.as_array().unwrap().iter().map(|a| a["deliveries"].as_i64().unwrap()).collect();
        assert_eq!(deliveries, [3, 1, 1, 3], "{body}");
        wait_state(&app, "all", "succeeded", 4).await;
        for hook in ["big", "eu"] {
            let sql = format!("SELECT event_id FROM deliveries WHERE webhook_id = '{hook}' ORDER BY event_id");
            let to: Vec<(String,)> = app.db.all(&sql).await;
            assert_eq!(to, [("e1".to_owned(),), ("e4".to_owned(),)], "{hook}");
        }
        let metrics = app.meters.engine.render();
        for (hook, n) in [("big", 2), ("eu", 2)] {
            let line = format!("aion_webhooks_events_filtered_total{{webhook=\"{hook}\"}} {n}");
            assert!(metrics.contains(&line), "{line} in\n{metrics}");
        }
        assert!(!metrics.contains("events_filtered_total{webhook=\"all\"}"));
        app.stop().await;
    }
}

#[test]
fn policy_match_says_which_filter_admitted_or_refused_the_example() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(
        &policy,
        "version: 1
webhooks:
  - { id: big, url: https://big.example.com/x, secret: s, topics: [order.*], filter: { payload.amount: { $gte: 1000 } } }
  - { id: all, url: https://all.example.com/x, secret: s, topics: [order.*] }
",
    )
    .unwrap();
    let payload = dir.path().join("event.json");
    // `policy match order.paid` with `body` as the payload: its output.
    let matched = |body: &str| {
        std::fs::write(&payload, body).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_aion-webhooks"))
            .args(["policy", "match", "order.paid", "--policy"])
            .arg(&policy)
            .arg("--payload")
            .arg(&payload)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}");
        stdout
    };
    let stdout = matched(r#"{"amount": 250}"#);
    assert!(
        stdout.contains("big\torder.*\thttps://big.example.com/…  (filter refuses it: payload.amount $gte 1e3: got 25e1)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("all\torder.*\thttps://all.example.com/…\n"),
        "{stdout}"
    );
    let stdout = matched(r#"{"amount": 1000.5}"#);
    assert!(
        stdout.contains("big\torder.*\thttps://big.example.com/…  (filter admits it)"),
        "{stdout}"
    );
}
