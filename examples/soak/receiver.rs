//! The webhook receiver: an axum server in this process that records every
//! delivery by event id (and, for commands, by `command_id`) and fails a
//! share of them with 503 so retries get exercised. It only records; it does
//! not know what was accepted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use rand::Rng;
use serde_json::Value;

/// What arrived for one event id.
#[derive(Debug, Default)]
pub struct Seen {
    pub topic: String,
    /// For `command.*`: the `command_id` in the payload.
    pub command_id: Option<String>,
    /// Requests answered 200 / answered 503 on purpose.
    pub ok: u32,
    pub failed: u32,
}

#[derive(Debug, Default)]
pub struct Receipts {
    pub events: HashMap<String, Seen>,
    /// Requests without an `X-Aion-Event-Id`.
    pub anonymous: u64,
}

/// An axum receiver on a free loopback port; returns its URL. Answers 200
/// after 0–20 ms (so kills catch sends in flight), or 503 at `fail_rate`.
pub async fn start_receiver(
    receipts: Arc<Mutex<Receipts>>,
    fail_rate: f64,
) -> anyhow::Result<String> {
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let receipts = receipts.clone();
        async move {
            let (delay, fail) = {
                let mut rng = rand::rng();
                (rng.random_range(0..=20), rng.random_bool(fail_rate))
            };
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let mut r = receipts.lock().expect("receipts lock");
            let Some(id) = header("x-aion-event-id") else {
                r.anonymous += 1;
                return StatusCode::OK;
            };
            let seen = r.events.entry(id).or_default();
            if seen.topic.is_empty() {
                seen.topic = header("x-aion-event").unwrap_or_default();
                if seen.topic.starts_with("command.") {
                    seen.command_id = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| v["payload"]["command_id"].as_str().map(str::to_owned));
                }
            }
            if fail {
                seen.failed += 1;
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                seen.ok += 1;
                StatusCode::OK
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/sink", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
