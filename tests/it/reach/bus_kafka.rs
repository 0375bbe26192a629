//! Kafka destinations against `tansu`, and the SSRF guard in front of
//! both kinds of broker (issue 30, item 6).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use serde_json::{Value, json};

use super::bus::{Got, acks, assert_signed};
use super::{error_kinds, post, wait_state};
use crate::sources::kafka::Broker;
use crate::support::*;

/// Every record on `topic`: waits until there are at least `n`, then reads
/// until a second passes without one; in each partition in offset order.
pub(crate) async fn kafka_records(broker: &Broker, topic: &str, n: usize) -> Vec<(i32, Got)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    loop {
        // Once `n` are in, a second without a record is the end.
        let wait = Duration::from_secs(if out.len() < n { 60 } else { 1 });
        let Ok(m) = tokio::time::timeout(wait, consumer.recv()).await else {
            assert!(
                out.len() >= n,
                "only {} of {n} records on {topic}",
                out.len()
            );
            return out;
        };
        let m = m.expect("record");
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let v = String::from_utf8_lossy(h.value.unwrap_or_default());
                        (h.key.to_owned(), v.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push((
            m.partition(),
            Got {
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                headers,
                body: m.payload().unwrap_or_default().to_vec(),
            },
        ));
    }
}

/// A TCP listener counting the connections made to it.
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (port, seen)
}

both! {
    async fn a_private_broker_is_refused_before_any_connection(db) {
        let (port, seen) = counting_listener().await;
        let hooks = [
            hook("k", &format!("kafka://127.0.0.1:{port}/t"), "[t.x]", "retry: { max_attempts: 1 }"),
            hook("n", &format!("nats://localhost:{port}/s"), "[t.x]", "retry: { max_attempts: 1 }"),
        ]
        .concat();
        // No allow_private_targets: loopback is forbidden.
        let policy = policy_yaml(&hooks).replace("  allow_private_targets: [127.0.0.0/8]\n", "  allow_private_targets: []\n");
        let app = TestApp::spawn(db, &policy).await;
        post(&app, "ssrf", 1).await;
        wait_state(&app, "k", "dead", 1).await;
        wait_state(&app, "n", "dead", 1).await;
        for h in ["k", "n"] {
            assert_eq!(error_kinds(&app, h).await, [Some("blocked_destination".to_owned())], "{h}");
        }
        assert_eq!(seen.load(Ordering::SeqCst), 0, "nothing connected to the forbidden address");
    }
}

both! {
    async fn a_kafka_destination_gets_keyed_signed_records_in_key_order(db) {
        let broker = Broker::start();
        broker.create_topic("orders", 3).await;
        let url = format!("kafka://{}/orders", broker.addr);
        // One record at a time: tansu 0.6's in-memory storage gives the
        // records of one produce batch overlapping offsets (see Broker).
        let hooks = hook("k", &url, "[t.x]", "ordering: key\nmax_in_flight: 1");
        let app = TestApp::spawn(db, &policy_yaml(&hooks)).await;
        let events: Vec<Value> = (0..24)
            .map(|i| json!({"id": format!("kafka-{i:02}"), "topic": "t.x", "key": format!("key-{}", i % 4), "payload": {"i": i}}))
            .collect();
        let (status, body) = app.post_events(&json!(events)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        wait_state(&app, "k", "succeeded", 24).await;
        let records = kafka_records(&broker, "orders", 24).await;
        assert_eq!(records.len(), 24);
        let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
        let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (partition, r) in &records {
            assert_signed(r, "secret-k", "t.x");
            let key = r.key.clone().expect("the event's key is the record's key");
            assert_eq!(*partition_of.entry(key.clone()).or_insert(*partition), *partition, "one partition per key");
            order.entry(key).or_default().push(r.header("x-aion-event-id").to_owned());
        }
        for (key, ids) in &order {
            let mut sorted = ids.clone();
            sorted.sort();
            assert_eq!(ids, &sorted, "{key}'s records in event order");
        }
        let acked = acks(&app, "k").await;
        assert!(acked.iter().all(|a| a["offset"].is_i64() && a["partition"].is_i64()), "{acked:?}");
    }
}

both! {
    async fn a_missing_kafka_topic_fails_as_other_and_a_replay_delivers_once_it_exists(db) {
        let broker = Broker::start();
        let url = format!("kafka://{}/later", broker.addr);
        let hooks = hook("k", &url, "[t.x]", "timeout: 3s\nretry: { initial_interval: 100ms, max_interval: 100ms, max_attempts: 2 }");
        let app = TestApp::spawn(db, &policy_yaml(&hooks)).await;
        post(&app, "missing", 1).await;
        wait_state(&app, "k", "dead", 1).await;
        let kinds = error_kinds(&app, "k").await;
        assert_eq!(kinds.len(), 2, "{kinds:?}");
        let (_, list) = app.get("/v1/deliveries?webhook=k").await;
        let id = list["data"][0]["id"].as_str().expect("id").to_owned();
        let (_, one) = app.get(&format!("/v1/deliveries/{id}")).await;
        assert!(kinds.iter().all(|k| k.as_deref() == Some("other")), "{kinds:?} {one}");
        assert!(one.to_string().contains("topic later"), "{one}");

        broker.create_topic("later", 1).await;
        let (status, body) = app.post_raw(&format!("/v1/deliveries/{id}/replay"), API_KEY, Vec::new()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        wait_state(&app, "k", "succeeded", 1).await;
        let records = kafka_records(&broker, "later", 1).await;
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].1.header("x-aion-delivery"), id);
    }
}

both! {
    async fn brokers_that_are_down_fail_as_connect_and_are_retried(db) {
        // A port nothing listens on.
        let port = crate::pgtmp::free_port();
        let hooks = [
            hook("k", &format!("kafka://127.0.0.1:{port}/t"), "[t.x]", "timeout: 1s\nretry: { initial_interval: 100ms, max_interval: 100ms, max_attempts: 2 }"),
            hook("n", &format!("nats://127.0.0.1:{port}/s"), "[t.x]", "timeout: 1s\nretry: { initial_interval: 100ms, max_interval: 100ms, max_attempts: 2 }"),
        ]
        .concat();
        let app = TestApp::spawn(db, &policy_yaml(&hooks)).await;
        post(&app, "down", 1).await;
        wait_state(&app, "k", "dead", 1).await;
        wait_state(&app, "n", "dead", 1).await;
        for h in ["k", "n"] {
            let kinds = error_kinds(&app, h).await;
            assert_eq!(kinds.len(), 2, "{h}: two attempts");
            assert!(kinds.iter().all(|k| matches!(k.as_deref(), Some("connect" | "timeout"))), "{h}: {kinds:?}");
        }
    }
}

both! {
    async fn a_broker_the_cluster_advertises_at_a_forbidden_address_is_refused(db) {
        // Bootstrapped at a permitted address, the broker advertises
        // 127.0.0.2, which the guard forbids.
        let broker = Broker::advertising("127.0.0.2");
        let url = format!("kafka://{}/t", broker.addr);
        let hooks = hook("k", &url, "[t.x]", "retry: { max_attempts: 1 }");
        let policy = policy_yaml(&hooks).replace("[127.0.0.0/8]", "[127.0.0.1/32]");
        let app = TestApp::spawn(db, &policy).await;
        post(&app, "advertised", 1).await;
        wait_state(&app, "k", "dead", 1).await;
        assert_eq!(error_kinds(&app, "k").await, [Some("blocked_destination".to_owned())]);
        let (_, list) = app.get("/v1/deliveries?webhook=k").await;
        let last = list["data"][0]["last_error"].as_str().unwrap_or_default().to_owned();
        assert!(last.contains("advertises 127.0.0.2"), "{last}");
    }
}
