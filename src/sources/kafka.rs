//! `kind: kafka`: a consumer in a consumer group (librdkafka, through
//! `rdkafka`). Offsets are committed only for messages already stored:
//! auto-commit is on, but librdkafka's automatic offset store is off, and an
//! offset is stored after its batch is in the database. librdkafka then
//! commits the stored offsets every 250 ms, when partitions are revoked in
//! a rebalance, and on close. A message fetched but not stored when its
//! partition moves, or when the engine dies, is consumed again by the next
//! owner and is a duplicate by its event id; none is skipped.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::FutureExt;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::statistics::Statistics;
use tokio_util::sync::CancellationToken;

use super::{Lag, Message, PartitionLag, Pipeline, Status};
use crate::policy::sources::{KafkaSource, Source, StartAt};

/// Hands librdkafka's errors, logs and statistics to the source's status.
struct Context {
    status: Arc<Status>,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if crate::telemetry::librdkafka_warns(level) {
            tracing::warn!(source = %self.status.id(), facility = fac, "librdkafka: {message}")
        } else {
            tracing::debug!(source = %self.status.id(), facility = fac, "librdkafka: {message}")
        }
    }

    fn stats(&self, stats: Statistics) {
        let up = stats.brokers.values().any(|b| b.state == "UP");
        self.status.set_connected(up);
        let mut partitions = Vec::new();
        for (topic, t) in &stats.topics {
            for (&partition, p) in &t.partitions {
                // -1 is librdkafka's internal "unassigned" partition.
                if partition >= 0 && p.fetch_state != "none" && p.consumer_lag >= 0 {
                    partitions.push(PartitionLag {
                        topic: topic.clone(),
                        partition,
                        lag: p.consumer_lag_stored.max(p.consumer_lag) as u64,
                    });
                }
            }
        }
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        self.status.set_lag(Lag::Kafka { partitions });
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.status.set_connected(false);
        }
        self.status.error(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Context {}

fn client_config(source: &Source, cfg: &KafkaSource) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cfg.brokers.join(","))
        .set("group.id", &cfg.group)
        .set("client.id", format!("aion-webhooks-{}", source.id))
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "250")
        .set(
            "auto.offset.reset",
            match cfg.start {
                StartAt::Earliest => "earliest",
                StartAt::Latest => "latest",
            },
        )
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", "1000")
        .set("socket.timeout.ms", "10000")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        // A fetched but unconsumed backlog stays small: bounded memory.
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.wait.max.ms", "20")
        .set_log_level(RDKafkaLogLevel::Warning);
    // librdkafka's own debug contexts (`cgrp,fetch,…`), for operators chasing a problem.
    if let Ok(contexts) = std::env::var("AION_WEBHOOKS_KAFKA_DEBUG")
        && !contexts.is_empty()
    {
        c.set("debug", contexts)
            .set_log_level(RDKafkaLogLevel::Debug);
    }
    let protocol = match (cfg.tls.is_some(), cfg.sasl.is_some()) {
        (false, false) => "plaintext",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    c.set("security.protocol", protocol);
    if let Some(tls) = &cfg.tls {
        for (name, file) in [
            ("ssl.ca.location", &tls.ca_file),
            ("ssl.certificate.location", &tls.cert_file),
            ("ssl.key.location", &tls.key_file),
        ] {
            if let Some(f) = file {
                c.set(name, f.display().to_string());
            }
        }
    }
    if let Some(sasl) = &cfg.sasl {
        c.set("sasl.mechanisms", sasl.mechanism.as_str())
            .set("sasl.username", &sasl.username)
            .set("sasl.password", sasl.password.expose());
    }
    c
}

pub(super) async fn run(
    source: &Source,
    cfg: &KafkaSource,
    status: &Arc<Status>,
    pipeline: &Pipeline,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let consumer: StreamConsumer<Context> = client_config(source, cfg)
        .create_with_context(Context {
            status: status.clone(),
        })
        .map_err(|e| format!("creating the Kafka consumer: {e}"))?;
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| format!("subscribing to {topics:?}: {e}"))?;
    let max = source.max_batch as usize;
    let mut batch: Vec<Message> = Vec::with_capacity(max);
    loop {
        let first = tokio::select! {
            m = consumer.recv() => m,
            () = cancel.cancelled() => return Ok(()),
        };
        match first {
            Ok(m) => {
                status.set_connected(true);
                batch.push(owned(&m));
            }
            Err(e) => {
                status.error(format!("consuming: {e}"));
                continue;
            }
        }
        // Whatever librdkafka has fetched already joins this batch.
        while batch.len() < max {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => batch.push(owned(&m)),
                Some(Err(e)) => {
                    status.error(format!("consuming: {e}"));
                    break;
                }
                None => break,
            }
        }
        if pipeline
            .store_batch(source, status, &batch, cancel)
            .await
            .is_err()
        {
            // Stopped before the batch was stored: its offsets are not stored.
            return Ok(());
        }
        // The next offset to read, per partition: stored now, committed by librdkafka.
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for m in &batch {
            let Some((topic, partition, offset)) = &m.kafka else {
                continue;
            };
            let e = next.entry((topic.as_str(), *partition)).or_insert(*offset);
            *e = (*e).max(*offset);
        }
        for ((topic, partition), offset) in next {
            // Fails for a partition revoked meanwhile: its new owner reads it again.
            if let Err(e) = consumer.store_offset(topic, partition, offset) {
                tracing::debug!(source = %source.id, topic, partition, error = %e, "offset not stored");
            }
        }
        batch.clear();
    }
}

fn owned(m: &rdkafka::message::BorrowedMessage<'_>) -> Message {
    let topic = m.topic().to_owned();
    Message {
        value: m.payload().unwrap_or_default().to_vec(),
        position: crate::domain::derived_id::kafka_id(&topic, m.partition(), m.offset()),
        key: m.key().map(<[u8]>::to_vec),
        kafka: Some((topic.clone(), m.partition(), m.offset())),
        topic,
        msg_id: None,
    }
}
