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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use url::Host;

use super::{Ack, KEEP_UNUSED, RECHECK, permitted};
use crate::delivery::sender::{ErrorKind, Outbound};
use crate::delivery::ssrf::SsrfGuard;
use crate::policy::bus::BrokerAddr;

/// librdkafka's log lines, into ours.
struct Logs;

impl ClientContext for Logs {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => {
                tracing::warn!(facility = fac, "librdkafka producer: {message}")
            }
            _ => tracing::debug!(facility = fac, "librdkafka producer: {message}"),
        }
    }
}

type Producer = FutureProducer<Logs>;
type Key = (Vec<BrokerAddr>, String, Duration);

#[derive(Default)]
pub(super) struct Producers {
    slots: Mutex<HashMap<Key, Arc<Slot>>>,
}

#[derive(Default)]
struct Slot {
    ready: tokio::sync::Mutex<Option<Ready>>,
    used: Mutex<Option<Instant>>,
}

struct Ready {
    producer: Arc<Producer>,
    checked: Instant,
}

impl Producers {
    pub(super) async fn publish(
        &self,
        brokers: &[BrokerAddr],
        topic: &str,
        timeout: Duration,
        req: &Outbound<'_>,
        headers: &[(String, String)],
        guard: &SsrfGuard,
    ) -> Result<Ack, (ErrorKind, String)> {
        let producer = self.producer(brokers, topic, timeout, guard).await?;
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

    /// The producer for this destination, built and checked on first use
    /// and checked again after [`RECHECK`].
    async fn producer(
        &self,
        brokers: &[BrokerAddr],
        topic: &str,
        timeout: Duration,
        guard: &SsrfGuard,
    ) -> Result<Arc<Producer>, (ErrorKind, String)> {
        let slot = {
            let now = Instant::now();
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let mut idle = Vec::new();
            slots.retain(|_, s| {
                let used = *s.used.lock().unwrap_or_else(|e| e.into_inner());
                let keep = used.is_none_or(|u| now.duration_since(u) < KEEP_UNUSED);
                if !keep {
                    idle.push(Arc::clone(s));
                }
                keep
            });
            if !idle.is_empty() {
                // Destroying a librdkafka handle blocks while it closes.
                tokio::task::spawn_blocking(move || drop(idle));
            }
            let key = (brokers.to_vec(), topic.to_owned(), timeout);
            let slot = Arc::clone(slots.entry(key).or_default());
            *slot.used.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
            slot
        };
        let mut ready = slot.ready.lock().await;
        if let Some(r) = ready.as_ref().filter(|r| r.checked.elapsed() < RECHECK) {
            return Ok(Arc::clone(&r.producer));
        }
        let producer = match ready.take() {
            Some(r) => r.producer,
            None => Arc::new(build(brokers, timeout, guard).await?),
        };
        if let Err(e) = check_metadata(&producer, topic, timeout, guard).await {
            // Dropped on a failed check, off the runtime (destroying a
            // librdkafka handle blocks): the next send builds a new one.
            tokio::task::spawn_blocking(move || drop(producer));
            return Err(e);
        }
        *ready = Some(Ready {
            producer: Arc::clone(&producer),
            checked: Instant::now(),
        });
        Ok(producer)
    }
}

async fn build(
    brokers: &[BrokerAddr],
    timeout: Duration,
    guard: &SsrfGuard,
) -> Result<Producer, (ErrorKind, String)> {
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
        let addr = BrokerAddr {
            host: Host::parse(&host).map_err(|_| {
                (
                    ErrorKind::Other,
                    format!("broker {id} advertises an invalid host"),
                )
            })?,
            port: u16::try_from(port).unwrap_or(0),
        };
        permitted(guard, &addr)
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
