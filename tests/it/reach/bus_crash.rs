//! Kafka and NATS destinations across a SIGKILL of the engine binary
//! (issue 30, item 6): every accepted event reaches the topic or stream at
//! least once, and with `ordering: key` each key's events arrive in the
//! order they were accepted. JetStream drops the resend of a message it
//! already has (`Nats-Msg-Id` = delivery id), so a stream holds each once.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};

use super::bus::Got;
use crate::crash::Engine;
use crate::support::*;

const KEYS: usize = 8;
const BATCHES: usize = 8;
const PER_BATCH: usize = 100;

/// Runs the engine on a policy delivering `crash.test` to `url` with
/// `ordering: key` (and `extra`), posts `BATCHES` × `PER_BATCH` keyed
/// events, SIGKILLs it once `kill_after` are delivered, restarts it and
/// waits until nothing is left to do. Returns the accepted ids in order.
async fn across_a_kill(
    db: &crate::db::TestDb,
    url: &str,
    extra: &str,
    kill_after: i64,
) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("webhooks.yaml");
    let settings = format!(
        "ordering: key\nretry: {{ initial_interval: 100ms, max_interval: 1s, max_attempts: 30 }}\n{extra}"
    );
    std::fs::write(
        &policy,
        policy_yaml(&hook("b", url, "[crash.test]", &settings)),
    )
    .expect("write policy");
    let http = reqwest::Client::new();
    let mut first = Engine::spawn(&db.url(), &policy, dir.path().join("first.log"));
    first.wait_ready(&http).await;
    let mut accepted = Vec::new();
    for b in 0..BATCHES {
        let batch: Vec<Value> = (0..PER_BATCH)
            .map(|i| {
                json!({"id": format!("bus-{b}-{i:03}"), "topic": "crash.test", "key": format!("key-{}", i % KEYS), "payload": {"b": b, "i": i}})
            })
            .collect();
        accepted.extend(post(&http, &first.base, &batch).await);
    }
    assert_eq!(accepted.len(), BATCHES * PER_BATCH);
    let done = "SELECT count(*) FROM deliveries WHERE state = 'succeeded'";
    wait_for("deliveries to start succeeding", || async {
        db.try_count(done).await.is_some_and(|n| n >= kill_after)
    })
    .await;
    first.kill();
    let at_kill = db.try_count(done).await.unwrap_or_default();
    println!("killed with {at_kill} of {} succeeded", accepted.len());
    assert!(
        at_kill < i64::try_from(accepted.len()).unwrap(),
        "the kill came after everything was delivered"
    );
    let mut second = Engine::spawn(&db.url(), &policy, dir.path().join("second.log"));
    second.wait_ready(&http).await;
    let left = "SELECT count(*) FROM deliveries WHERE state <> 'succeeded'";
    wait_for("every delivery to succeed after the restart", || async {
        db.try_count(left).await == Some(0)
    })
    .await;
    second.kill();
    db.engine_sessions_gone().await;
    accepted
}

async fn post(http: &reqwest::Client, base: &str, batch: &[Value]) -> Vec<String> {
    let r = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(API_KEY)
        .json(batch)
        .send()
        .await
        .expect("post events");
    assert_eq!(r.status().as_u16(), 202);
    let body: Value = r.json().await.expect("answer");
    body.as_array()
        .expect("an array")
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Every accepted id arrived; each key's ids, first arrivals only, in
/// acceptance order. Returns how many arrivals were resends.
fn assert_complete_and_in_key_order(accepted: &[String], got: &[Got]) -> usize {
    let ids: HashSet<&str> = got.iter().map(|g| g.header("x-aion-event-id")).collect();
    let missing: Vec<&String> = accepted
        .iter()
        .filter(|a| !ids.contains(a.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} accepted events never arrived: {missing:?}",
        missing.len()
    );
    let rank: BTreeMap<&str, usize> = accepted
        .iter()
        .enumerate()
        .map(|(i, a)| (a.as_str(), i))
        .collect();
    let mut by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for g in got {
        let id = g.header("x-aion-event-id");
        if seen.insert(id.to_owned()) {
            let body: Value = serde_json::from_slice(&g.body).expect("body");
            let key = body["key"]
                .as_str()
                .expect("a key in the §3 body")
                .to_owned();
            by_key.entry(key).or_default().push(rank[id]);
        }
    }
    assert_eq!(by_key.len(), KEYS);
    for (key, ranks) in &by_key {
        assert!(ranks.is_sorted(), "{key}'s events out of order: {ranks:?}");
    }
    got.len() - seen.len()
}

both_binary! {
    async fn a_nats_stream_gets_every_event_once_in_key_order_across_a_sigkill(db) {
        let stream = crate::sources::TestStream::new().await;
        let url = format!("nats://127.0.0.1:4222/{}.orders", stream.prefix);
        let accepted = across_a_kill(&db, &url, "", 150).await;
        let got = crate::reach::bus::nats_messages(&stream, accepted.len()).await;
        let resent = assert_complete_and_in_key_order(&accepted, &got);
        assert_eq!(resent, 0, "the stream deduplicated every resend by its Nats-Msg-Id");
    }
}

#[cfg(feature = "kafka")]
both_binary! {
    async fn a_kafka_topic_gets_every_event_in_key_order_across_a_sigkill(db) {
        let broker = crate::sources::kafka::Broker::start();
        broker.create_topic("orders", 3).await;
        let url = format!("kafka://{}/orders", broker.addr);
        // One record at a time for tansu (see Broker::producer).
        let accepted = across_a_kill(&db, &url, "max_in_flight: 1", 100).await;
        let records = crate::reach::bus_kafka::kafka_records(&broker, "orders", accepted.len()).await;
        let got: Vec<Got> = records.into_iter().map(|(_, g)| g).collect();
        let resent = assert_complete_and_in_key_order(&accepted, &got);
        println!("{resent} records were resends of ones the killed engine had produced");
    }
}
