//! Kafka and NATS destinations (contract §10): one attempt publishes the
//! §3 body with the §3 headers as message headers, and the broker's
//! acknowledgement is the success. The queue, retries, dead letters,
//! replay and ordering around it are the same as for HTTP.
//!
//! One producer (Kafka) or connection (NATS) per destination, built on
//! first use, shared by every send to it and dropped after
//! [`KEEP_UNUSED`] without one.
//!
//! Where the SSRF guard checks what: every broker or server name is
//! resolved here and only the addresses the guard permits are used, as IP
//! literals, so the client connects to nothing else (a name with only
//! forbidden addresses is `blocked_destination`). Kafka brokers named in
//! the cluster's metadata are checked the same way before the first
//! message and again every [`RECHECK`]; librdkafka resolves those names
//! itself, so a DNS answer that changes between that check and its own
//! lookup is not caught (see docs/src/guide/bus-destinations.md).

use std::net::SocketAddr;
use std::time::Duration;

use url::Host;

use super::{AttemptReport, ErrorKind, Outbound, headers::build_headers};
use crate::delivery::ssrf::SsrfGuard;
use crate::policy::bus::{BrokerAddr, Bus};

#[cfg(feature = "kafka")]
mod kafka;
mod nats;

/// How long an unused producer or connection is kept.
const KEEP_UNUSED: Duration = Duration::from_secs(600);
/// How often a destination's brokers are checked against the guard again
/// (Kafka metadata) or its name resolved again (NATS).
const RECHECK: Duration = Duration::from_secs(60);

/// The producers and connections, by destination.
#[derive(Default)]
pub(super) struct Buses {
    #[cfg(feature = "kafka")]
    kafka: kafka::Producers,
    nats: nats::Servers,
    /// When the last sweep ran, in seconds since `epoch`.
    swept: std::sync::atomic::AtomicU64,
    epoch: std::sync::OnceLock<std::time::Instant>,
}

impl std::fmt::Debug for Buses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Buses")
    }
}

/// What a broker acknowledged: kept as the attempt's response body.
pub(super) type Ack = String;

impl Buses {
    /// Drops producers and connections unused for [`KEEP_UNUSED`] (a
    /// removed webhook's): called by every attempt, HTTP ones included,
    /// and does the work at most once a minute.
    pub(super) fn sweep(&self) {
        use std::sync::atomic::Ordering;
        let now = self
            .epoch
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_secs();
        let last = self.swept.load(Ordering::Relaxed);
        if now < last + 60
            || self
                .swept
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        #[cfg(feature = "kafka")]
        self.kafka.sweep();
        self.nats.sweep();
    }

    /// Publishes `req` to `bus` and waits for the acknowledgement, until
    /// `deadline`.
    pub(super) async fn publish(
        &self,
        bus: &Bus,
        req: &Outbound<'_>,
        guard: &SsrfGuard,
        deadline: tokio::time::Instant,
        report: &mut AttemptReport,
    ) -> Result<(), (ErrorKind, String)> {
        let headers: Vec<(String, String)> = build_headers(req)
            .map_err(|e| (ErrorKind::Other, e))?
            .iter()
            .filter_map(|(name, value)| {
                // Header values the engine builds are visible ASCII; a
                // static one that is not cannot go into a NATS header.
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        let timeout = req.webhook.timeout;
        let timed_out = || {
            let ms = timeout.as_millis();
            (
                ErrorKind::Timeout,
                format!("no acknowledgement within {ms} ms from {bus}"),
            )
        };
        let sent = async {
            match bus {
                #[cfg(feature = "kafka")]
                Bus::Kafka { brokers, topic } => {
                    self.kafka
                        .publish(brokers, topic, timeout, req, &headers, guard, deadline)
                        .await
                }
                #[cfg(not(feature = "kafka"))]
                Bus::Kafka { .. } => Err((
                    ErrorKind::Other,
                    "this build has no Kafka support".to_owned(),
                )),
                Bus::Nats { server, subject } => {
                    self.nats
                        .publish(server, subject, req, &headers, guard, deadline)
                        .await
                }
            }
        };
        let ack = tokio::time::timeout_at(deadline, sent)
            .await
            .map_err(|_| timed_out())??;
        report.response_body = Some(ack);
        Ok(())
    }
}

/// The addresses of `addr` the guard permits; refused when it has none.
pub(super) async fn permitted(
    guard: &SsrfGuard,
    addr: &BrokerAddr,
) -> Result<Vec<SocketAddr>, (ErrorKind, String)> {
    let resolved = resolve(addr).await?;
    let allowed: Vec<SocketAddr> = resolved
        .iter()
        .copied()
        .filter(|a| guard.permits(a.ip()))
        .collect();
    if allowed.is_empty() {
        return Err(forbidden(addr));
    }
    Ok(allowed)
}

/// Refuses `addr` if any address it resolves to is forbidden: for a name
/// a client resolves and connects to itself, which may pick any of them.
pub(super) async fn all_permitted(
    guard: &SsrfGuard,
    addr: &BrokerAddr,
) -> Result<(), (ErrorKind, String)> {
    if resolve(addr).await?.iter().all(|a| guard.permits(a.ip())) {
        Ok(())
    } else {
        Err(forbidden(addr))
    }
}

fn forbidden(addr: &BrokerAddr) -> (ErrorKind, String) {
    (
        ErrorKind::BlockedDestination,
        format!(
            "{addr} resolves to an address the SSRF guard forbids (allow it with network.allow_private_targets)"
        ),
    )
}

async fn resolve(addr: &BrokerAddr) -> Result<Vec<SocketAddr>, (ErrorKind, String)> {
    let resolved: Vec<SocketAddr> = match &addr.host {
        Host::Ipv4(ip) => vec![SocketAddr::new((*ip).into(), addr.port)],
        Host::Ipv6(ip) => vec![SocketAddr::new((*ip).into(), addr.port)],
        Host::Domain(name) => tokio::net::lookup_host((name.as_str(), addr.port))
            .await
            .map_err(|e| (ErrorKind::Connect, format!("cannot resolve {name}: {e}")))?
            .collect(),
    };
    if resolved.is_empty() {
        return Err((ErrorKind::Connect, format!("{addr} resolves to no address")));
    }
    Ok(resolved)
}

/// One producer or connection per key, each opened by one send while the
/// others wait for it, and dropped once unused for [`KEEP_UNUSED`].
pub(super) struct Slots<K, R> {
    /// Each slot with when it was last asked for.
    map: std::sync::Mutex<std::collections::HashMap<K, Used<R>>>,
}

/// A producer or connection: held while it is made or checked.
pub(super) type Slot<R> = tokio::sync::Mutex<Option<R>>;

type Used<R> = (std::sync::Arc<Slot<R>>, std::time::Instant);

impl<K, R> Default for Slots<K, R> {
    fn default() -> Self {
        Self {
            map: std::sync::Mutex::default(),
        }
    }
}

impl<K: Eq + std::hash::Hash + Clone, R> Slots<K, R> {
    /// The slot for `key`, marked used now.
    pub(super) fn get(&self, key: &K) -> std::sync::Arc<Slot<R>> {
        let now = std::time::Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map
            .entry(key.clone())
            .or_insert_with(|| (std::sync::Arc::default(), now));
        entry.1 = now;
        std::sync::Arc::clone(&entry.0)
    }

    /// Drops the slots unused for [`KEEP_UNUSED`].
    pub(super) fn sweep(&self) {
        let now = std::time::Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (_, used)| now.duration_since(*used) < KEEP_UNUSED);
    }
}
