//! `nats://host:4222/SUBJECT`: a JetStream publish with `Nats-Msg-Id` = the
//! delivery id, so the stream drops a resend of a message it already has
//! (within its duplicate window); the stream's acknowledgement is the
//! success.
//!
//! One connection per server, to an address the guard permitted (an IP
//! literal, servers the cluster announces ignored), opened on first use.
//! After [`RECHECK`] the name is resolved again and the connection replaced
//! if its address is no longer among the permitted ones; a publish that
//! finds the connection broken drops it, so the next send connects anew.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::jetstream::{self, context::PublishErrorKind};
use bytes::Bytes;

use super::{Ack, RECHECK, Slot, Slots, permitted};
use crate::delivery::sender::{ErrorKind, Outbound};
use crate::delivery::ssrf::SsrfGuard;
use crate::policy::bus::BrokerAddr;

/// The longest a connection attempt waits, whatever the webhook's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// async-nats' own waits, far past any webhook's `timeout`, which bounds
/// each publish.
const NO_CLIENT_TIMEOUT: Duration = Duration::from_secs(3600);
/// How often a lost connection is retried in the background before the
/// client gives up; the next send then connects anew. Without a bound a
/// dropped client whose server is gone would retry for ever.
const MAX_RECONNECTS: usize = 3;

#[derive(Default)]
pub(super) struct Servers {
    slots: Slots<BrokerAddr, Ready>,
}

struct Ready {
    js: jetstream::Context,
    addr: std::net::SocketAddr,
    checked: Instant,
}

impl Servers {
    /// Drops the connections unused for ten minutes.
    pub(super) fn sweep(&self) {
        self.slots.sweep();
    }

    pub(super) async fn publish(
        &self,
        server: &BrokerAddr,
        subject: &str,
        req: &Outbound<'_>,
        headers: &[(String, String)],
        guard: &SsrfGuard,
        deadline: tokio::time::Instant,
    ) -> Result<Ack, (ErrorKind, String)> {
        let (js, slot) = self.context(server, guard, deadline).await?;
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
        let sent = async {
            js.publish_with_headers(subject.to_owned(), map, body)
                .await?
                .await
        };
        let ack = match sent.await {
            Ok(ack) => ack,
            Err(e) => {
                let e = failed(e);
                if e.0 == ErrorKind::Connect {
                    // The next send connects anew.
                    *slot.lock().await = None;
                }
                return Err(e);
            }
        };
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
    ) -> Result<(jetstream::Context, Arc<Slot<Ready>>), (ErrorKind, String)> {
        let slot = self.slots.get(server);
        let mut ready = slot.lock().await;
        // A connection the client has given up on is replaced at once.
        let up = |r: &Ready| r.js.client().connection_state() != State::Disconnected;
        if let Some(r) = ready.as_mut().filter(|r| up(r)) {
            if r.checked.elapsed() < RECHECK {
                return Ok((r.js.clone(), Arc::clone(&slot)));
            }
            // Still where the name points, and still permitted: kept.
            let addrs = permitted(guard, server).await?;
            if addrs.contains(&r.addr) {
                r.checked = Instant::now();
                return Ok((r.js.clone(), Arc::clone(&slot)));
            }
        }
        let wait = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(CONNECT_TIMEOUT);
        let (js, addr) = connect(server, guard, wait).await?;
        *ready = Some(Ready {
            js: js.clone(),
            addr,
            checked: Instant::now(),
        });
        Ok((js, Arc::clone(&slot)))
    }
}

async fn connect(
    server: &BrokerAddr,
    guard: &SsrfGuard,
    wait: Duration,
) -> Result<(jetstream::Context, std::net::SocketAddr), (ErrorKind, String)> {
    let addrs = permitted(guard, server).await?;
    let mut last = String::new();
    for addr in addrs {
        let options = async_nats::ConnectOptions::new()
            .name("aion-webhooks")
            .connection_timeout(wait.max(Duration::from_millis(1)))
            .max_reconnects(MAX_RECONNECTS)
            // Servers the cluster announces are not checked by the guard.
            .ignore_discovered_servers();
        match options.connect(format!("nats://{addr}")).await {
            Ok(client) => {
                let js = jetstream::ContextBuilder::new()
                    .timeout(NO_CLIENT_TIMEOUT)
                    .ack_timeout(NO_CLIENT_TIMEOUT)
                    .build(client);
                return Ok((js, addr));
            }
            Err(e) => last = format!("connecting to {server} ({addr}): {e}"),
        }
    }
    Err((ErrorKind::Connect, last))
}
