//! `nats://host:4222/SUBJECT`: a JetStream publish with `Nats-Msg-Id` = the
//! delivery id, so the stream drops a resend of a message it already has
//! (within its duplicate window); the stream's acknowledgement is the
//! success.
//!
//! One connection per server, to an address the guard permitted (an IP
//! literal, servers the cluster announces ignored), opened on first use
//! and again after [`RECHECK`] so a changed DNS answer is followed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishErrorKind};
use bytes::Bytes;

use super::{Ack, KEEP_UNUSED, RECHECK, permitted};
use crate::delivery::sender::{ErrorKind, Outbound};
use crate::delivery::ssrf::SsrfGuard;
use crate::policy::bus::BrokerAddr;

/// The longest a connection attempt waits, whatever the webhook's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
pub(super) struct Servers {
    slots: Mutex<HashMap<BrokerAddr, Arc<Slot>>>,
}

/// One server's connection: opened by one send while the others wait.
#[derive(Default)]
struct Slot {
    ready: tokio::sync::Mutex<Option<Ready>>,
    used: Mutex<Option<Instant>>,
}

struct Ready {
    js: jetstream::Context,
    opened: Instant,
}

impl Servers {
    pub(super) async fn publish(
        &self,
        server: &BrokerAddr,
        subject: &str,
        req: &Outbound<'_>,
        headers: &[(String, String)],
        guard: &SsrfGuard,
        deadline: tokio::time::Instant,
    ) -> Result<Ack, (ErrorKind, String)> {
        let js = self.context(server, guard, deadline).await?;
        let mut map = async_nats::HeaderMap::new();
        for (name, value) in headers {
            map.append(name.as_str(), value.as_str());
        }
        map.insert("Nats-Msg-Id", req.delivery_id);
        let failed = |e: jetstream::context::PublishError| {
            let kind = match e.kind() {
                PublishErrorKind::TimedOut => ErrorKind::Timeout,
                PublishErrorKind::BrokenPipe => ErrorKind::Connect,
                _ => ErrorKind::Other,
            };
            let text = match e.kind() {
                PublishErrorKind::StreamNotFound => {
                    format!("no JetStream stream takes subject {subject} on {server}")
                }
                _ => format!("publishing to {subject} on {server}: {e}"),
            };
            (kind, text)
        };
        let body = Bytes::copy_from_slice(&req.body);
        let ack = js
            .publish_with_headers(subject.to_owned(), map, body)
            .await
            .map_err(failed)?
            .await
            .map_err(failed)?;
        Ok(serde_json::json!({
            "stream": ack.stream,
            "sequence": ack.sequence,
            "duplicate": ack.duplicate,
        })
        .to_string())
    }

    /// The JetStream context for `server`, connecting if there is none or
    /// it is older than [`RECHECK`].
    async fn context(
        &self,
        server: &BrokerAddr,
        guard: &SsrfGuard,
        deadline: tokio::time::Instant,
    ) -> Result<jetstream::Context, (ErrorKind, String)> {
        let slot = {
            let now = Instant::now();
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.retain(|_, s| {
                let used = *s.used.lock().unwrap_or_else(|e| e.into_inner());
                used.is_none_or(|u| now.duration_since(u) < KEEP_UNUSED)
            });
            let slot = Arc::clone(slots.entry(server.clone()).or_default());
            *slot.used.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
            slot
        };
        let mut ready = slot.ready.lock().await;
        if let Some(r) = ready.as_ref().filter(|r| r.opened.elapsed() < RECHECK) {
            return Ok(r.js.clone());
        }
        let wait = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(CONNECT_TIMEOUT);
        let js = connect(server, guard, wait).await?;
        *ready = Some(Ready {
            js: js.clone(),
            opened: Instant::now(),
        });
        Ok(js)
    }
}

async fn connect(
    server: &BrokerAddr,
    guard: &SsrfGuard,
    wait: Duration,
) -> Result<jetstream::Context, (ErrorKind, String)> {
    let addrs = permitted(guard, server).await?;
    let mut last = String::new();
    for addr in addrs {
        let options = async_nats::ConnectOptions::new()
            .name("aion-webhooks")
            .connection_timeout(wait.max(Duration::from_millis(1)))
            // Servers the cluster announces are not checked by the guard.
            .ignore_discovered_servers();
        match options.connect(format!("nats://{addr}")).await {
            Ok(client) => return Ok(jetstream::new(client)),
            Err(e) => last = format!("connecting to {server} ({addr}): {e}"),
        }
    }
    Err((ErrorKind::Connect, last))
}
