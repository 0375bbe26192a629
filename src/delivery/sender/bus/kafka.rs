//! `kafka://broker1:9092,broker2:9092/TOPIC`: one record per attempt, its
//! key the event's `key` (so Kafka keeps a key's records in one partition,
//! in order), the §3 headers as record headers; the brokers'
//! acknowledgement (`acks=all`) is the success.
//!
//! One producer per destination and timeout (librdkafka's
//! `message.timeout.ms` is per producer), bootstrapped from the addresses
//! the guard permitted. Before its first record, and every [`RECHECK`]
//! after, the cluster's metadata is read and every broker it names is
//! checked against the guard: one that resolves to a forbidden address
//! refuses the destination and drops the producer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use url::Host;

use super::{Ack, RECHECK, Slots, all_permitted, permitted};
use crate::delivery::sender::{ErrorKind, Outbound};
use crate::delivery::ssrf::SsrfGuard;
use crate::policy::bus::BrokerAddr;

/// librdkafka's log lines, into ours.
struct Logs;

impl ClientContext for Logs {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if crate::telemetry::librdkafka_warns(level) {
            tracing::warn!(facility = fac, "librdkafka producer: {message}")
        } else {
            tracing::debug!(facility = fac, "librdkafka producer: {message}")
        }
    }
}

/// A producer that is destroyed off the runtime: destroying a librdkafka
/// handle blocks while it flushes and joins its threads, and the last
/// reference may go on any task (a failed check, a cancelled attempt).
struct Producer(Option<FutureProducer<Logs>>);

impl std::ops::Deref for Producer {
    type Target = FutureProducer<Logs>;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("taken only in drop")
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn_blocking(move || drop(p))),
                Err(_) => drop(p),
            }
        }
    }
}

type Key = (Vec<BrokerAddr>, String, Duration);

#[derive(Default)]
pub(super) struct Producers {
    slots: Slots<Key, Ready>,
}

struct Ready {
    producer: Arc<Producer>,
    /// When the cluster's brokers last passed the guard; `None` = not yet
    /// (the metadata could not be read).
    checked: Option<Instant>,
}

impl Producers {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn publish(
        &self,
        brokers: &[BrokerAddr],
        topic: &str,
        timeout: Duration,
        req: &Outbound<'_>,
        headers: &[(String, String)],
        guard: &SsrfGuard,
        deadline: tokio::time::Instant,
    ) -> Result<Ack, (ErrorKind, String)> {
        let producer = self
            .producer(brokers, topic, timeout, guard, deadline)
            .await?;
        let mut record_headers = OwnedHeaders::new_with_capacity(headers.len());
        for (name, value) in headers {
            record_headers = record_headers.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        let mut record = FutureRecord::<str, [u8]>::to(topic)
            .payload(&req.body[..])
            .headers(record_headers);
        if let Some(key) = req.key {
            record = record.key(key);
        }
        match producer.send(record, timeout).await {
            Ok(d) => {
                Ok(serde_json::json!({"partition": d.partition, "offset": d.offset}).to_string())
            }
            Err((e, _)) => Err(classify(&e, topic, timeout)),
        }
    }

    /// Drops the producers unused for ten minutes.
    pub(super) fn sweep(&self) {
        self.slots.sweep();
    }

    /// The producer for this destination, built on first use, its brokers
    /// checked before its first record and again after [`RECHECK`].
    async fn producer(
        &self,
        brokers: &[BrokerAddr],
        topic: &str,
        timeout: Duration,
        guard: &SsrfGuard,
        deadline: tokio::time::Instant,
    ) -> Result<Arc<Producer>, (ErrorKind, String)> {
        let slot = self
            .slots
            .get(&(brokers.to_vec(), topic.to_owned(), timeout));
        // Held across the build and the check, so one send does them while
        // the others wait; a cancelled send leaves the slot as it was.
        let mut ready = slot.lock().await;
        if ready.is_none() {
            *ready = Some(Ready {
                producer: Arc::new(Producer(Some(build(brokers, timeout, guard).await?))),
                checked: None,
            });
        }
        let r = ready.as_mut().expect("just set");
        if r.checked.is_some_and(|c| c.elapsed() < RECHECK) {
            return Ok(Arc::clone(&r.producer));
        }
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        match check_metadata(&r.producer, topic, wait, guard).await {
            Ok(()) => {
                r.checked = Some(Instant::now());
                Ok(Arc::clone(&r.producer))
            }
            Err(e) => {
                if e.0 == ErrorKind::BlockedDestination {
                    // A forbidden broker: the next send starts afresh.
                    *ready = None;
                }
                // Otherwise (brokers unreachable, an unknown topic) the
                // producer is kept for the next check.
                Err(e)
            }
        }
    }
}

async fn build(
    brokers: &[BrokerAddr],
    timeout: Duration,
    guard: &SsrfGuard,
) -> Result<FutureProducer<Logs>, (ErrorKind, String)> {
    let mut bootstrap = Vec::new();
    for broker in brokers {
        bootstrap.extend(permitted(guard, broker).await?);
    }
    let list: Vec<String> = bootstrap.iter().map(ToString::to_string).collect();
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128).to_string();
    ClientConfig::new()
        .set("bootstrap.servers", list.join(","))
        .set("client.id", "aion-webhooks")
        .set("acks", "all")
        // Retries inside librdkafka neither reorder nor duplicate records.
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", &ms)
        .set("linger.ms", "2")
        .set_log_level(RDKafkaLogLevel::Warning)
        .create_with_context(Logs)
        .map_err(|e| {
            (
                ErrorKind::Other,
                format!("cannot create the Kafka producer: {e}"),
            )
        })
}

/// Reads the cluster's metadata for `topic` and refuses it if any broker
/// it names resolves to a forbidden address, or the topic is unknown.
async fn check_metadata(
    producer: &Arc<Producer>,
    topic: &str,
    timeout: Duration,
    guard: &SsrfGuard,
) -> Result<(), (ErrorKind, String)> {
    let p = Arc::clone(producer);
    let t = topic.to_owned();
    // Read into owned values: librdkafka's metadata is not `Send`.
    let read = move || {
        let m = p.client().fetch_metadata(Some(&t), timeout)?;
        let brokers: Vec<(i32, String, i32)> = m
            .brokers()
            .iter()
            .map(|b| (b.id(), b.host().to_owned(), b.port()))
            .collect();
        let topic_error = m
            .topics()
            .iter()
            .find(|x| x.name() == t)
            .and_then(|x| x.error())
            .map(RDKafkaErrorCode::from);
        Ok::<_, KafkaError>((brokers, topic_error))
    };
    let (brokers, topic_error) = tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| (ErrorKind::Other, format!("reading Kafka metadata: {e}")))?
        .map_err(|e| {
            (
                ErrorKind::Connect,
                format!("reading the metadata of {topic}: {e}"),
            )
        })?;
    for (id, host, port) in brokers {
        // Kafka gives an IPv6 address without brackets.
        let host = match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(v4)) => Host::Ipv4(v4),
            Ok(std::net::IpAddr::V6(v6)) => Host::Ipv6(v6),
            Err(_) => Host::parse(&host).map_err(|_| {
                (
                    ErrorKind::Other,
                    format!("broker {id} advertises an invalid host"),
                )
            })?,
        };
        let addr = BrokerAddr {
            host,
            port: u16::try_from(port).unwrap_or(0),
        };
        // librdkafka resolves this name itself and may pick any address.
        all_permitted(guard, &addr)
            .await
            .map_err(|(kind, e)| (kind, format!("broker {id} advertises {e}")))?;
    }
    if let Some(code) = topic_error {
        return Err((ErrorKind::Other, format!("topic {topic}: {code}")));
    }
    Ok(())
}

fn classify(e: &KafkaError, topic: &str, timeout: Duration) -> (ErrorKind, String) {
    let code = e.rdkafka_error_code();
    let kind = match code {
        Some(RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::RequestTimedOut) => {
            return (
                ErrorKind::Timeout,
                format!(
                    "no acknowledgement for {topic} within {} ms",
                    timeout.as_millis()
                ),
            );
        }
        Some(
            RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::BrokerNotAvailable,
        ) => ErrorKind::Connect,
        _ => ErrorKind::Other,
    };
    (kind, format!("producing to {topic}: {e}"))
}
