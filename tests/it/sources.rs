//! Event-bus sources (issue 11, contract §9) against real brokers: the NATS
//! JetStream server on 127.0.0.1:4222 (one uniquely named stream per test)
//! and, in `kafka`, a Kafka-protocol broker the tests start themselves.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::{Value, json};

use crate::crash::Engine;
use crate::pgtmp::PrivatePg;
use crate::support::*;

#[cfg(feature = "kafka")]
pub(crate) mod kafka;

pub(crate) const NATS_URL: &str = "nats://127.0.0.1:4222";

/// A fresh stream `S<uuid>` on subjects `<prefix>.>`; deleted on drop of the test.
pub(crate) struct TestStream {
    pub js: jetstream::Context,
    pub name: String,
    pub prefix: String,
}

impl TestStream {
    pub async fn new() -> Self {
        let client = async_nats::connect(NATS_URL)
            .await
            .expect("NATS with JetStream on 127.0.0.1:4222 (scripts/test starts it; see docs/src/development.md)");
        let js = jetstream::new(client);
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("S{}", &tag[..12]);
        let prefix = format!("t{}", &tag[..12]);
        js.create_stream(jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![format!("{prefix}.>")],
            ..Default::default()
        })
        .await
        .expect("create stream");
        Self { js, name, prefix }
    }

    /// Publishes and waits for the stream's acknowledgement.
    pub async fn publish(&self, subject: &str, value: impl Into<Vec<u8>>) {
        let value: Vec<u8> = value.into();
        self.js
            .publish(format!("{}.{subject}", self.prefix), value.into())
            .await
            .expect("publish")
            .await
            .expect("stream ack");
    }

    /// Publishes `n` envelopes on `<prefix>.orders`, ids `<tag>-<i>`, in flights of 500.
    pub async fn publish_envelopes(&self, tag: &str, n: usize) {
        for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
            let mut acks = Vec::with_capacity(chunk.len());
            for &i in chunk {
                let env = json!({"event_type": "orders.created", "event_id": format!("{tag}-{i}"), "payload": {"i": i}});
                acks.push(
                    self.js
                        .publish(format!("{}.orders", self.prefix), env.to_string().into())
                        .await
                        .expect("publish"),
                );
            }
            for a in acks {
                a.await.expect("stream ack");
            }
        }
    }

    /// Whether consumer `name` has nothing pending and nothing unacknowledged.
    pub async fn all_acked(&self, name: &str) -> bool {
        let mut c: jetstream::consumer::PullConsumer = self
            .js
            .get_consumer_from_stream(name, &self.name)
            .await
            .expect("consumer");
        let info = c.info().await.expect("consumer info");
        info.num_ack_pending == 0 && info.num_pending == 0
    }

    pub async fn delete(self) {
        let _ = self.js.delete_stream(&self.name).await;
    }

    /// A `sources:` entry for this stream.
    pub fn source(&self, id: &str, consumer: &str, subjects: &str, extra: &str) -> String {
        let mut s = format!(
            "  - id: {id}\n    kind: nats\n    url: {NATS_URL}\n    stream: {}\n    consumer: {consumer}\n    subjects: [\"{}.{subjects}\"]\n",
            self.name, self.prefix
        );
        for line in extra.lines().filter(|l| !l.trim().is_empty()) {
            s.push_str(&format!("    {}\n", line.trim()));
        }
        s
    }
}

/// The test policy with `sources` (a YAML list, indented by two) added.
pub(crate) fn with_sources(webhooks: &str, sources: &str) -> String {
    format!("{}sources:\n{sources}", policy_yaml(webhooks))
}

/// A source's entry in `GET /v1/sources`.
pub(crate) async fn source_view(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get("/v1/sources").await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == id).cloned())
        .unwrap_or(Value::Null)
}

/// Event ids the receiver got, with how often.
pub(crate) fn by_event_id(rx: &Receiver) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in rx.received() {
        *seen
            .entry(r.header("x-aion-event-id").to_owned())
            .or_insert(0) += 1;
    }
    seen
}

both! {
    async fn nats_envelope_and_raw_messages_are_delivered_signed(db) {
        let stream = TestStream::new().await;
        let rx = Receiver::start().await;
        let policy = with_sources(
            &hook("h", &rx.url, "[\"orders.*\", \"**\"]", ""),
            &(stream.source("env", "env", "env.>", "")
                + &stream.source("raw", "raw", "raw.>", "format: raw")),
        );
        let app = TestApp::spawn(db, &policy).await;
        stream
            .publish("env.x", json!({"event_type": "orders.paid", "event_id": "ord-1", "tenant_id": "t1",
                "occurred_at": "2026-12-01T10:00:00Z", "payload": {"total": 12.5}, "metadata": {"schema": 3}}).to_string())
            .await;
        stream.publish("raw.orders", r#"{"sku": "A-1"}"#).await;
        // The same envelope again (its event id names it): a duplicate, not a second event.
        stream
            .publish("env.x", json!({"event_type": "orders.paid", "event_id": "ord-1", "tenant_id": "t1",
                "occurred_at": "2026-12-01T10:00:00Z", "payload": {"total": 12.5}}).to_string())
            .await;
        let got = rx.wait_for_count(2).await;
        let mut bodies: Vec<Value> = got
            .iter()
            .map(|r| serde_json::from_slice(&r.body).expect("json body"))
            .collect();
        bodies.sort_by_key(|b| b["id"].as_str().unwrap_or_default().to_owned());
        let raw_subject = format!("{}.raw.orders", stream.prefix);
        assert_eq!(bodies[0]["id"], format!("nats:{}:2", stream.name));
        assert_eq!(bodies[0]["topic"], raw_subject.as_str());
        assert_eq!(bodies[0]["source"], "raw");
        assert_eq!(bodies[0]["payload"], json!({"sku": "A-1"}));
        assert_eq!(bodies[1]["id"], "ord-1");
        assert_eq!(bodies[1]["topic"], "orders.paid");
        assert_eq!(bodies[1]["source"], "env");
        assert_eq!(bodies[1]["tenant_id"], "t1");
        assert_eq!(bodies[1]["occurred_at"], "2026-12-01T10:00:00Z");
        assert_eq!(bodies[1]["payload"], json!({"total": 12.5}));
        for r in &got {
            let sig = r.header("x-aion-signature");
            let (t, v1) = sig.split_once(",v1=").expect("t=…,v1=…");
            let t = t.strip_prefix("t=").expect("t=");
            use hmac::Mac;
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"secret-h").expect("key");
            mac.update(format!("{t}.").as_bytes());
            mac.update(&r.body);
            assert_eq!(hex::encode(mac.finalize().into_bytes()), v1, "signature over the body");
        }
        wait_for("both sources counted", || async {
            let env = source_view(&app, "env").await;
            env["events_created"] == 1 && env["duplicates"] == 1
                && source_view(&app, "raw").await["events_created"] == 1
        })
        .await;
        assert_eq!(rx.received().len(), 2, "the repeated envelope is not delivered again");
        let view = source_view(&app, "env").await;
        assert_eq!(view["connected"], true, "{view}");
        assert_eq!(view["state"], "consuming", "{view}");
        assert_eq!(view["config"]["stream"], stream.name.as_str());
        let ready = app.http.get(format!("{}/readyz", app.base)).send().await.expect("readyz");
        let ready: Value = ready.json().await.expect("json");
        assert_eq!(ready["sources"]["env"], "consuming", "{ready}");
        app.stop().await;
        stream.delete().await;
    }
}

both! {
    async fn redelivered_messages_are_duplicates_not_new_events(db) {
        let stream = TestStream::new().await;
        let rx = Receiver::start().await;
        let policy = with_sources(
            &hook("h", &rx.url, "[\"**\"]", ""),
            &stream.source("bus", "dur", ">", "format: raw"),
        );
        let app = TestApp::spawn(db.clone(), &policy).await;
        for i in 0..20 {
            stream.publish(&format!("a.n{i}"), format!("{i}")).await;
        }
        // A raw message's id is its publisher's Nats-Msg-Id when it has one.
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", "pub-id-7");
        stream
            .js
            .publish_with_headers(format!("{}.c", stream.prefix), headers, "7".into())
            .await
            .expect("publish")
            .await
            .expect("ack");
        rx.wait_for_count(21).await;
        assert!(by_event_id(&rx).contains_key("pub-id-7"), "{:?}", by_event_id(&rx).keys());
        wait_for("21 consumed", || async { source_view(&app, "bus").await["consumed"] == 21 }).await;
        // The whole stream again, as after a crash before the acks: the
        // durable consumer is deleted and made anew from the first message.
        app.stop().await;
        let s = stream.js.get_stream(&stream.name).await.expect("stream");
        s.delete_consumer("dur").await.expect("delete consumer");
        let app = TestApp::spawn(db, &policy).await;
        wait_for("the stream consumed again", || async {
            source_view(&app, "bus").await["consumed"] == 21
        })
        .await;
        let view = source_view(&app, "bus").await;
        assert_eq!((view["duplicates"].as_u64(), view["events_created"].as_u64()), (Some(21), Some(0)), "{view}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(rx.received().len(), 21, "no second delivery");
        assert_eq!(app.count("SELECT count(*) FROM events").await, 21);
        app.stop().await;
        stream.delete().await;
    }
}

both! {
    async fn every_bad_message_is_a_reject_row_and_the_stream_moves_on(db) {
        let stream = TestStream::new().await;
        let rx = Receiver::start().await;
        let policy = with_sources(
            &hook("h", &rx.url, "[\"**\"]", ""),
            &stream.source("bus", "c", ">", ""),
        );
        let mut config = test_config();
        config.limits.max_event_bytes = 2048;
        let app = TestApp::spawn_with(db, &policy, config).await;
        let big = json!({"event_type": "a.b", "payload": "x".repeat(3000)}).to_string();
        let bad: Vec<(&str, Vec<u8>)> = vec![
            ("not JSON", b"\x00not json at all".to_vec()),
            ("invalid topic", br#"{"event_type": "a..b", "payload": 1}"#.to_vec()),
            ("limit", big.into_bytes()),
            ("invalid event", br#"{"event_type": "a.b", "payload": 1, "tenant_id": 7}"#.to_vec()),
            ("reserved", br#"{"event_type": "aion.audit.x", "payload": 1}"#.to_vec()),
            ("reserved", br#"{"event_type": "a.b", "payload": 1, "source": "aion-webhooks"}"#.to_vec()),
            ("JSON object", b"[1,2,3]".to_vec()),
            ("`payload` is required", br#"{"event_type": "a.b"}"#.to_vec()),
            ("id", br#"{"event_type": "a.b", "event_id": "no spaces", "payload": 1}"#.to_vec()),
        ];
        for (_, value) in &bad {
            stream.publish("bad", value.clone()).await;
        }
        // Same id, other payload, as an event stored before: a conflict reject.
        stream.publish("bad", json!({"event_type": "a.b", "event_id": "dup", "payload": 1}).to_string()).await;
        stream.publish("bad", json!({"event_type": "a.b", "event_id": "dup", "payload": 2}).to_string()).await;
        stream.publish("good", json!({"event_type": "a.good", "payload": "after"}).to_string()).await;
        let got = rx.wait_for_count(2).await;
        assert!(got.iter().any(|r| r.header("x-aion-event-id") == format!("nats:{}:12", stream.name)), "the good message came through");
        // Rejects are recorded after the batch's events, which may be sent first.
        wait_for("every reject recorded", || async {
            source_view(&app, "bus").await["rejects"] == bad.len() as u64 + 1
        })
        .await;
        let (status, body) = app.get("/v1/sources/bus/rejects?limit=50").await;
        assert_eq!(status, 200, "{body}");
        let rows = body["data"].as_array().expect("rows").clone();
        assert_eq!(rows.len(), bad.len() + 1, "{body:#}");
        // Newest first: the conflict, then the bad ones in reverse.
        assert_eq!(rows[0]["position"], format!("nats:{}:11", stream.name));
        assert!(rows[0]["reason"].as_str().unwrap_or_default().contains("different topic or payload"), "{}", rows[0]);
        for (i, (needle, value)) in bad.iter().enumerate() {
            let row = &rows[bad.len() - i];
            assert_eq!(row["position"], format!("nats:{}:{}", stream.name, i + 1), "{row}");
            assert!(row["reason"].as_str().unwrap_or_default().contains(needle), "{needle}: {row}");
            assert_eq!(row["value_bytes"].as_u64(), Some(value.len() as u64));
            assert!(row["value"].as_str().unwrap_or_default().len() <= 4096 * 3);
        }
        let big_row = &rows[bad.len() - 2];
        assert_eq!(big_row["truncated"], false, "3 KiB is kept whole");
        // Paging with the cursor.
        let (_, page) = app.get("/v1/sources/bus/rejects?limit=4").await;
        let cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
        let (_, rest) = app.get(&format!("/v1/sources/bus/rejects?limit=50&cursor={cursor}")).await;
        assert_eq!(rest["data"].as_array().map(Vec::len), Some(rows.len() - 4));
        let (status, _) = app.get("/v1/sources/nope/rejects").await;
        assert_eq!(status, 404);
        let (status, _) = app.get("/v1/sources/bus/rejects?limit=0").await;
        assert_eq!(status, 400);
        wait_for("the counters", || async { source_view(&app, "bus").await["rejects"] == bad.len() as u64 + 1 }).await;
        // The operator commands show the same.
        let run = |args: Vec<String>| {
            let base = app.base.clone();
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_aion-webhooks"))
                    .args(&args)
                    .args(["--url", &base])
                    .env("AION_WEBHOOKS_API_KEY", API_KEY)
                    .output()
                    .expect("run the cli")
            })
        };
        let listed = run(vec!["sources".into()]).await.expect("join");
        let text = String::from_utf8_lossy(&listed.stdout).into_owned();
        assert!(listed.status.success() && text.starts_with("ID") && text.contains("bus") && text.contains("consuming"), "{text}");
        let rejects = run(vec!["sources".into(), "rejects".into(), "bus".into(), "--limit".into(), "3".into()]).await.expect("join");
        let text = String::from_utf8_lossy(&rejects.stdout).into_owned();
        assert_eq!(text.lines().count(), 4, "a header and 3 rows: {text}");
        assert!(text.contains(&format!("nats:{}:11", stream.name)) && text.contains("different topic or payload"), "{text}");
        let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.expect("metrics").text().await.expect("text");
        assert!(metrics.contains(&format!("aion_webhooks_source_messages_total{{source=\"bus\",outcome=\"rejected\"}} {}", bad.len() + 1)), "{metrics}");
        // Everything was acknowledged: nothing is pending on the consumer.
        wait_for("all acknowledged", || stream.all_acked("c")).await;
        app.stop().await;
        stream.delete().await;
    }
}

both! {
    async fn an_unreachable_broker_is_reported_and_the_engine_keeps_working(db) {
        let rx = Receiver::start().await;
        let port = crate::pgtmp::free_port();
        let policy = with_sources(
            &hook("h", &rx.url, "[\"**\"]", ""),
            &format!("  - id: nowhere\n    kind: nats\n    url: nats://127.0.0.1:{port}\n    stream: S\n    consumer: c\n  - id: nokafka\n    kind: kafka\n    brokers: [\"127.0.0.1:{port}\"]\n    group: g\n    topics: [t]\n    sasl: {{ mechanism: SCRAM-SHA-512, username: u, password: hunter2-bus-password }}\n"),
        );
        let app = TestApp::spawn(db, &policy).await;
        wait_for("both errors reported", || async {
            source_view(&app, "nowhere").await["last_error"].is_string()
                && source_view(&app, "nokafka").await["last_error"].is_string()
        })
        .await;
        let view = source_view(&app, "nowhere").await;
        assert_eq!(view["connected"], false);
        assert!(view["last_error"].as_str().unwrap_or_default().contains(&port.to_string()), "{view}");
        let view = source_view(&app, "nokafka").await;
        assert_eq!(view["connected"], false, "{view}");
        assert_eq!(view["config"]["sasl"], "SCRAM-SHA-512");
        let (_, all) = app.get("/v1/sources").await;
        assert!(!all.to_string().contains("hunter2-bus-password"), "credentials never shown: {all}");
        let (status, _) = app.post_events(&json!({"topic": "still.works", "payload": 1})).await;
        assert_eq!(status, 202);
        rx.wait_for_count(1).await;
        let ready = app.http.get(format!("{}/readyz", app.base)).send().await.expect("readyz");
        assert_eq!(ready.status(), 200, "a broker does not decide readiness");
        app.stop().await;
    }
}

both! {
    async fn a_reload_restarts_only_the_source_whose_entry_changed(db) {
        let stream = TestStream::new().await;
        let rx = Receiver::start().await;
        let hooks = hook("h", &rx.url, "[\"**\"]", "");
        let a = stream.source("a", "ca", "a.>", "format: raw");
        let b = stream.source("b", "cb", "b.>", "format: raw");
        let app = TestApp::spawn(db, &with_sources(&hooks, &(a.clone() + &b))).await;
        stream.publish("a.x", "1").await;
        stream.publish("b.x", "2").await;
        rx.wait_for_count(2).await;
        wait_for("counted", || async {
            source_view(&app, "a").await["consumed"] == 1 && source_view(&app, "b").await["consumed"] == 1
        })
        .await;
        let b2 = stream.source("b", "cb", "b.>", "format: raw\nmax_batch: 7");
        app.set_policy(&with_sources(&hooks, &(a + &b2)));
        // b restarts (its counters start again), a keeps running untouched.
        wait_for("b restarted", || async { source_view(&app, "b").await["consumed"] == 0 }).await;
        assert_eq!(source_view(&app, "a").await["consumed"], 1);
        stream.publish("b.y", "3").await;
        rx.wait_for_count(3).await;
        // The same durable consumer with other subjects: its filter follows the policy.
        let b3 = stream.source("b", "cb", "c.>", "format: raw");
        app.set_policy(&with_sources(&hooks, &(stream.source("a", "ca", "a.>", "format: raw") + &b3)));
        wait_for("b restarted on c.>", || async {
            let v = source_view(&app, "b").await;
            v["consumed"] == 0 && v["state"] == "consuming" && v["config"]["subjects"][0].as_str().is_some_and(|s| s.ends_with(".c.>"))
        })
        .await;
        stream.publish("b.z", "4").await;
        stream.publish("c.z", "5").await;
        rx.wait_for_count(4).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let topics: Vec<String> = rx
            .received()
            .iter()
            .map(|r| serde_json::from_slice::<Value>(&r.body).expect("json")["topic"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(topics.len(), 4, "b.z is no longer b's: {topics:?}");
        assert!(topics.contains(&format!("{}.c.z", stream.prefix)), "{topics:?}");
        app.set_policy(&with_sources(&hooks, &stream.source("a", "ca", "a.>", "format: raw")));
        wait_for("b removed", || async { source_view(&app, "b").await.is_null() }).await;
        assert_eq!(source_view(&app, "a").await["consumed"], 1);
        app.stop().await;
        stream.delete().await;
    }
}

pg_test! {
    async fn two_engines_on_one_durable_consumer_store_each_message_once(pool) {
        let stream = TestStream::new().await;
        let rx = Receiver::start().await;
        let policy = with_sources(&hook("h", &rx.url, "[\"**\"]", ""), &stream.source("bus", "shared", ">", "max_batch: 50"));
        let one = TestApp::spawn(pool.clone(), &policy).await;
        let two = TestApp::spawn(pool.clone(), &policy).await;
        stream.publish_envelopes("two", 2000).await;
        wait_for("2000 events", || async { one.count("SELECT count(*) FROM events").await == 2000 }).await;
        one.drain().await;
        let seen = by_event_id(&rx);
        assert_eq!(seen.len(), 2000);
        let (a, b) = (source_view(&one, "bus").await, source_view(&two, "bus").await);
        println!("engine one consumed {}, engine two {}", a["consumed"], b["consumed"]);
        assert!(a["consumed"].as_u64() > Some(0) && b["consumed"].as_u64() > Some(0), "both engines pulled: {a} {b}");
        assert_eq!(one.count("SELECT count(*) FROM deliveries").await, 2000, "one delivery per message");
        one.stop().await;
        two.stop().await;
        stream.delete().await;
    }
}

both_binary! {
    async fn engine_killed_mid_batch_delivers_every_message_after_restart(db) {
        let stream = TestStream::new().await;
        let rx = Receiver::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = dir.path().join("webhooks.yaml");
        std::fs::write(&policy, with_sources(&hook("h", &rx.url, "[\"**\"]", ""), &stream.source("bus", "c", ">", "max_batch: 100"))).expect("policy");
        let http = reqwest::Client::new();
        let mut first = Engine::spawn(&db.url(), &policy, dir.path().join("first.log"));
        first.wait_ready(&http).await;
        let publisher = {
            let js = stream.js.clone();
            let prefix = stream.prefix.clone();
            tokio::spawn(async move {
                for i in 0..3000 {
                    let env = json!({"event_type": "orders.created", "event_id": format!("k-{i}"), "payload": i});
                    js.publish(format!("{prefix}.orders"), env.to_string().into()).await.expect("publish").await.expect("ack");
                }
            })
        };
        rx.wait_for_count(300).await;
        first.kill();
        let at_kill = rx.received().len();
        publisher.await.expect("publisher");
        let mut second = Engine::spawn(&db.url(), &policy, dir.path().join("second.log"));
        second.wait_ready(&http).await;
        // Unacknowledged messages come back after the consumer's ack wait (30 s).
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let seen = by_event_id(&rx);
            if (0..3000).all(|i| seen.contains_key(&format!("k-{i}"))) {
                break;
            }
            assert!(Instant::now() < deadline, "only {} of 3000 delivered", seen.len());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let total = rx.received().len();
        println!("killed after {at_kill} deliveries; {total} requests for 3000 messages");
        assert!(at_kill < 3000, "the kill came too late to test anything");
        assert_eq!(db.count("SELECT count(*) FROM events").await, 3000);
        drop(second);
        stream.delete().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_while_messages_arrive_acks_nothing_and_loses_nothing() {
    let pg = PrivatePg::start_new();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(1))
        .connect(&pg.url())
        .await
        .expect("connect to the private PostgreSQL");
    let stream = TestStream::new().await;
    let rx = Receiver::start().await;
    let policy = with_sources(
        &hook(
            "h",
            &rx.url,
            "[\"**\"]",
            "retry: { initial_interval: 100ms, max_interval: 1s, max_attempts: 50 }",
        ),
        &stream.source("bus", "c", ">", "max_batch: 50"),
    );
    let app = TestApp::spawn(pool.clone(), &policy).await;
    stream.publish_envelopes("before", 200).await;
    wait_for("the first 200", || async { by_event_id(&rx).len() >= 200 }).await;
    tokio::task::block_in_place(|| pg.stop());
    stream.publish_envelopes("during", 500).await;
    // While the database is down: paused, and nothing of the new messages acknowledged.
    wait_for("paused", || async {
        source_view(&app, "bus").await["state"] == "paused"
    })
    .await;
    let mut c: jetstream::consumer::PullConsumer = stream
        .js
        .get_consumer_from_stream("c", &stream.name)
        .await
        .expect("consumer");
    let info = c.info().await.expect("info").clone();
    assert_eq!(
        info.ack_floor.stream_sequence, 200,
        "nothing after the outage acknowledged: {info:?}"
    );
    let view = source_view(&app, "bus").await;
    assert!(
        view["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("storing a batch failed"),
        "{view}"
    );
    let ready = app
        .http
        .get(format!("{}/readyz", app.base))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("readyz");
    let status = ready.status();
    let body: Value = ready.json().await.expect("json");
    assert_eq!(
        (status.as_u16(), &body["sources"]["bus"]),
        (503, &json!("paused")),
        "{body}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| pg.start());
    wait_for("all 700 delivered", || async {
        let seen = by_event_id(&rx);
        (0..500).all(|i| seen.contains_key(&format!("during-{i}")))
    })
    .await;
    wait_for("resumed", || async {
        source_view(&app, "bus").await["state"] == "consuming"
    })
    .await;
    wait_for("all acknowledged", || stream.all_acked("c")).await;
    app.stop().await;
    stream.delete().await;
}
