//! Delivery reach (issue 30, contract §10): mutual TLS, OAuth2 client
//! credentials and an egress proxy, each against real peers on loopback.

mod bus;
mod bus_crash;
#[cfg(feature = "kafka")]
mod bus_kafka;
mod filters;
mod oauth;
mod peers;
mod proxy;
mod test_send;
mod tls;

use serde_json::json;

use crate::support::*;

/// Posts `n` events of topic `t.x` (ids `{prefix}-{i}`) in one batch.
async fn post(app: &TestApp, prefix: &str, n: usize) {
    let events: Vec<_> = (0..n)
        .map(|i| json!({"id": format!("{prefix}-{i}"), "topic": "t.x", "payload": {"i": i}}))
        .collect();
    let (status, body) = app.post_events(&json!(events)).await;
    assert_eq!(status, axum::http::StatusCode::ACCEPTED, "{body}");
}

/// Waits until webhook `hook` has `n` deliveries in `state`.
async fn wait_state(app: &TestApp, hook: &str, state: &str, n: i64) {
    let sql = format!(
        "SELECT count(*) FROM deliveries WHERE webhook_id = '{hook}' AND state = '{state}'"
    );
    wait_for(&format!("{n} {state} deliveries of {hook}"), || async {
        app.count(&sql).await >= n
    })
    .await;
}

/// The error kinds of webhook `hook`'s attempts, oldest first.
async fn error_kinds(app: &TestApp, hook: &str) -> Vec<Option<String>> {
    let sql = format!(
        "SELECT a.error_kind FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = '{hook}' ORDER BY a.started_at"
    );
    let rows: Vec<(Option<String>,)> = app.db.all(&sql).await;
    rows.into_iter().map(|(k,)| k).collect()
}
