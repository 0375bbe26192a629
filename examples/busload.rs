//! Bus load tool (issue 11): events published to the bus → deliveries
//! received. Starts the real `aion-webhooks serve` (this checkout's release
//! build) with one webhook and one event-bus source, a fast local receiver,
//! and the bus's own producer in this process; then measures
//!
//! 1. **backlog**: `--events N` (default 20,000) envelopes published before
//!    the engine starts; deliveries/s from the first delivery to the last;
//! 2. **throughput**: N more envelopes published as
//!    fast as the broker takes them; deliveries/s from the first publish to
//!    the last delivery, and the engine's CPU per delivery;
//! 3. **burst**: `--burst N` (default 10,000) more at `--rate R` per second
//!    (default 5,000); how long after the last publish the source has
//!    consumed (stored and committed) everything — the consume lag back to
//!    0 — and how long until the last delivery.
//!
//! ```text
//! cargo run --release --example busload -- --kind nats    # NATS JetStream on 127.0.0.1:4222
//! cargo run --release --example busload -- --kind kafka   # a tansu broker on a free port
//! cargo run --release --example busload -- --kind kafka --store sqlite --repeat 3
//! ```
//! `DATABASE_URL` names the PostgreSQL server (a database `aion_bus_<pid>`
//! is made and dropped); `--store sqlite` uses a file in a temp dir. Kafka
//! needs `tansu` (`cargo install --locked tansu --features dynostore`; or
//! `$TANSU`).

#[path = "common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::http::HeaderMap;
use common::process::{CpuMark, EngineProcess};
use sha2::Digest;

const KEY: &str = "busload-key";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Nats,
    Kafka,
}

#[derive(Debug, Clone)]
struct Args {
    kind: Kind,
    events: usize,
    burst: usize,
    rate: f64,
    sqlite: bool,
    repeat: usize,
}

impl Args {
    fn parse() -> anyhow::Result<Self> {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        let mut a = Self {
            kind: Kind::Nats,
            events: 20_000,
            burst: 10_000,
            rate: 5_000.0,
            sqlite: false,
            repeat: 1,
        };
        let mut it = argv.iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--kind" => {
                    a.kind = match value()?.as_str() {
                        "nats" => Kind::Nats,
                        "kafka" => Kind::Kafka,
                        other => bail!("unknown --kind {other:?}; use nats or kafka"),
                    }
                }
                "--events" => a.events = value()?.parse()?,
                "--burst" => a.burst = value()?.parse()?,
                "--rate" => a.rate = value()?.parse()?,
                "--repeat" => a.repeat = value()?.parse::<usize>()?.max(1),
                "--store" => a.sqlite = value()? == "sqlite",
                other => {
                    bail!("unknown flag {other:?}; see the doc comment of examples/busload.rs")
                }
            }
        }
        Ok(a)
    }
}

type Receipts = Arc<Mutex<HashMap<String, Instant>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let bin = common::process::build_this().await?;
    println!(
        "bus {:?}, store {}, {} events flat out, then {} at {}/s; 1 webhook",
        args.kind,
        if args.sqlite { "SQLite" } else { "PostgreSQL" },
        args.events,
        args.burst,
        args.rate
    );
    for run in 1..=args.repeat {
        let dir = tempfile::Builder::new().prefix("aion-bus-").tempdir()?;
        let path = dir.path().to_path_buf();
        let result = if args.sqlite {
            let url = format!("sqlite://{}", path.join("aion-webhooks.db").display());
            one_run(&args, &bin, &path, &url).await
        } else {
            let (a, b, p) = (&args, &bin, &path);
            common::with_fresh_database(
                "aion_bus",
                |url| async move { one_run(a, b, p, &url).await },
            )
            .await
        };
        if let Err(e) = result {
            let kept = dir.keep();
            bail!("run {run} failed ({e:#}); logs kept in {}", kept.display());
        }
    }
    Ok(())
}

/// The broker side: where to publish, and the source entry that reads it.
enum Bus {
    Nats {
        js: Box<async_nats::jetstream::Context>,
        stream: String,
        subject: String,
    },
    Kafka {
        _broker: KafkaBroker,
        producer: rdkafka::producer::FutureProducer,
        topic: String,
    },
}

struct KafkaBroker {
    child: std::process::Child,
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bus {
    async fn open(kind: Kind, dir: &Path) -> anyhow::Result<(Self, String)> {
        let tag = std::process::id();
        match kind {
            Kind::Nats => {
                let client = async_nats::connect("nats://127.0.0.1:4222")
                    .await
                    .context("NATS on 127.0.0.1:4222")?;
                let js = async_nats::jetstream::new(client);
                let stream = format!("BUSLOAD{tag}");
                let subject = format!("busload{tag}.events");
                let _ = js.delete_stream(&stream).await;
                js.create_stream(async_nats::jetstream::stream::Config {
                    name: stream.clone(),
                    subjects: vec![subject.clone()],
                    ..Default::default()
                })
                .await?;
                let source = format!(
                    "  - id: bus\n    kind: nats\n    url: nats://127.0.0.1:4222\n    stream: {stream}\n    consumer: engine\n"
                );
                Ok((
                    Self::Nats {
                        js: Box::new(js),
                        stream,
                        subject,
                    },
                    source,
                ))
            }
            Kind::Kafka => {
                let port = std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port();
                let addr = format!("127.0.0.1:{port}");
                let tansu = std::env::var("TANSU").unwrap_or_else(|_| {
                    let home = std::env::var("HOME").unwrap_or_default();
                    let p = format!("{home}/.cargo/bin/tansu");
                    if Path::new(&p).exists() {
                        p
                    } else {
                        "tansu".into()
                    }
                });
                let log = std::fs::File::create(dir.join("tansu.log"))?;
                let child = std::process::Command::new(&tansu)
                    .args(["broker", "--listener-url", &format!("tcp://{addr}")])
                    .args(["--advertised-listener-url", &format!("tcp://{addr}")])
                    .args(["--storage-engine", "memory://tansu/"])
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .spawn()
                    .with_context(|| format!("starting {tansu}"))?;
                let broker = KafkaBroker { child };
                let t0 = Instant::now();
                while std::net::TcpStream::connect(&addr).is_err() {
                    anyhow::ensure!(
                        t0.elapsed() < Duration::from_secs(20),
                        "tansu did not listen"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let topic = "busload.events".to_owned();
                let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
                    rdkafka::ClientConfig::new()
                        .set("bootstrap.servers", &addr)
                        .create()?;
                for r in admin
                    .create_topics(
                        &[rdkafka::admin::NewTopic::new(
                            &topic,
                            1,
                            rdkafka::admin::TopicReplication::Fixed(1),
                        )],
                        &rdkafka::admin::AdminOptions::new(),
                    )
                    .await?
                {
                    r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
                }
                // Batched, as real producers send. tansu 0.6's in-memory
                // storage gives a whole batch one offset (its high watermark
                // counts batches), so committed offsets are not meaningful
                // here; every record is still fetched once, which is what
                // this tool measures. The tests, which check offsets, send
                // one record per batch (tests/it/sources/kafka.rs).
                let producer = rdkafka::ClientConfig::new()
                    .set("bootstrap.servers", &addr)
                    .set("linger.ms", "2")
                    .create()?;
                let source = format!(
                    "  - id: bus\n    kind: kafka\n    brokers: [\"{addr}\"]\n    group: engine\n    topics: [{topic}]\n"
                );
                Ok((
                    Self::Kafka {
                        _broker: broker,
                        producer,
                        topic,
                    },
                    source,
                ))
            }
        }
    }

    /// Publishes envelopes `<tag>-<from..to>`, at most `rate` per second
    /// (`None` = as fast as the broker acknowledges, 1,000 in flight).
    async fn publish(
        &self,
        tag: &str,
        range: std::ops::Range<usize>,
        rate: Option<f64>,
    ) -> anyhow::Result<()> {
        let t0 = Instant::now();
        let ids: Vec<usize> = range.collect();
        let chunk = if rate.is_some() { 50 } else { 1000 };
        let mut sent = 0usize;
        for part in ids.chunks(chunk) {
            if let Some(r) = rate {
                let due = Duration::from_secs_f64(sent as f64 / r);
                if let Some(wait) = due.checked_sub(t0.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            let values: Vec<String> = part
                .iter()
                .map(|i| {
                    serde_json::json!({"event_type": "load.bus", "event_id": format!("{tag}-{i}"),
                        "tenant_id": "tenant-001", "payload": {"n": i, "note": "x".repeat(200)}})
                    .to_string()
                })
                .collect();
            match self {
                Self::Nats { js, subject, .. } => {
                    let mut acks = Vec::with_capacity(values.len());
                    for v in values {
                        acks.push(js.publish(subject.clone(), v.into()).await?);
                    }
                    for a in acks {
                        a.await?;
                    }
                }
                Self::Kafka {
                    producer, topic, ..
                } => {
                    let sends = values.iter().map(|v| {
                        producer.send(
                            rdkafka::producer::FutureRecord::<str, str>::to(topic).payload(v),
                            Duration::from_secs(30),
                        )
                    });
                    for r in futures::future::join_all(sends).await {
                        r.map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
                    }
                }
            }
            sent += part.len();
        }
        Ok(())
    }

    async fn close(self) {
        if let Self::Nats { js, stream, .. } = self {
            let _ = js.delete_stream(&stream).await;
        }
    }
}

async fn one_run(args: &Args, bin: &Path, dir: &Path, db_url: &str) -> anyhow::Result<()> {
    let receipts: Receipts = Arc::default();
    let (rx_url, _rx) = start_receiver(receipts.clone()).await?;
    let (bus, source) = Bus::open(args.kind, dir).await?;
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "version: 1\nwebhooks:\n  - id: sink\n    url: {rx_url}\n    secret: load-secret\n    topics: [\"load.**\"]\n    retry: {{ initial_interval: 100ms, max_interval: 1s, max_attempts: 20 }}\nauth:\n  api_keys:\n    - id: load\n      sha256: \"{}\"\n      roles: [admin]\nnetwork:\n  allow_private_targets: [127.0.0.0/8]\nsources:\n{source}",
            hex::encode(sha2::Sha256::digest(KEY.as_bytes()))
        ),
    )?;
    // 1a. A backlog on the bus before the engine starts.
    let t = Instant::now();
    bus.publish("p", 0..args.events, None).await?;
    let backlog_published = t.elapsed();
    let mut engine = EngineProcess::spawn(bin, &policy, db_url, &[], dir.join("engine.log"))?;
    engine.wait_healthy().await?;
    let http = reqwest::Client::new();
    let consumed = || async {
        let v: serde_json::Value = http
            .get(format!("{}/v1/sources", engine.base))
            .bearer_auth(KEY)
            .send()
            .await?
            .json()
            .await?;
        anyhow::Ok(v["data"][0]["consumed"].as_u64().unwrap_or(0) as usize)
    };
    // Connected and idle before the clock starts.
    let t0 = Instant::now();
    while !matches!(
        http.get(format!("{}/readyz", engine.base))
            .send()
            .await?
            .json::<serde_json::Value>()
            .await?["sources"]["bus"]
            .as_str(),
        Some("consuming")
    ) {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(30),
            "the source did not connect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let last = wait_received(&receipts, "p", args.events, Duration::from_secs(300)).await?;
    let first = first_received(&receipts, "p");
    let took = last.duration_since(first);
    println!(
        "backlog     {:>7.0} deliveries/s draining {} messages already on the bus (first to last delivery {:.2} s; published in {:.2} s)",
        args.events as f64 / took.as_secs_f64(),
        args.events,
        took.as_secs_f64(),
        backlog_published.as_secs_f64()
    );

    // 1b. Throughput while publishing.
    let cpu = CpuMark::now(engine.pid());
    let start = Instant::now();
    bus.publish("t", 0..args.events, None).await?;
    let published = start.elapsed();
    let last = wait_received(&receipts, "t", args.events, Duration::from_secs(300)).await?;
    let took = last.duration_since(start);
    let spent = CpuMark::now(engine.pid()).since(&cpu);
    println!(
        "throughput  {:>7.0} deliveries/s end to end ({} in {:.2} s; published in {:.2} s)  engine CPU {:.3} ms/delivery  peak RSS {} MB",
        args.events as f64 / took.as_secs_f64(),
        args.events,
        took.as_secs_f64(),
        published.as_secs_f64(),
        spent.engine_ms / args.events as f64,
        engine.peak_rss_bytes().unwrap_or(0) / (1 << 20)
    );

    // 2. A burst at a given rate: lag back to 0 after the last publish.
    let before = consumed().await?;
    let start = Instant::now();
    bus.publish("b", 0..args.burst, Some(args.rate)).await?;
    let last_published = Instant::now();
    let mut caught_up = None;
    while caught_up.is_none() {
        if consumed().await? >= before + args.burst {
            caught_up = Some(last_published.elapsed());
        } else if last_published.elapsed() > Duration::from_secs(120) {
            bail!("the source never caught up");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let last = wait_received(&receipts, "b", args.burst, Duration::from_secs(120)).await?;
    println!(
        "burst       {} at {:.0}/s offered (published in {:.2} s): stored (offsets stored / messages acked) {} ms after the last publish, last delivery {} ms after it",
        args.burst,
        args.rate,
        last_published.duration_since(start).as_secs_f64(),
        caught_up.unwrap_or_default().as_millis(),
        last.saturating_duration_since(last_published).as_millis()
    );
    engine.stop().await?;
    bus.close().await;
    Ok(())
}

/// The first arrival of a `<tag>-…` delivery.
fn first_received(receipts: &Receipts, tag: &str) -> Instant {
    let prefix = format!("{tag}-");
    let got = receipts.lock().expect("lock");
    got.iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| *v)
        .min()
        .unwrap_or_else(Instant::now)
}

/// Waits until every `<tag>-<i>`, i < n, has arrived; returns the last arrival.
async fn wait_received(
    receipts: &Receipts,
    tag: &str,
    n: usize,
    within: Duration,
) -> anyhow::Result<Instant> {
    let t0 = Instant::now();
    loop {
        {
            let got = receipts.lock().expect("lock");
            let prefix = format!("{tag}-");
            let mine: Vec<&Instant> = got
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(_, v)| v)
                .collect();
            if mine.len() >= n {
                return Ok(**mine.iter().max().expect("some"));
            }
            if t0.elapsed() > within {
                bail!("{} of {n} `{tag}` deliveries after {within:?}", mine.len());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn start_receiver(
    receipts: Receipts,
) -> anyhow::Result<(
    String,
    tokio_util::task::AbortOnDropHandle<std::io::Result<()>>,
)> {
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let receipts = receipts.clone();
        async move {
            let now = Instant::now();
            if let Some(id) = headers.get("x-aion-event-id").and_then(|v| v.to_str().ok()) {
                receipts
                    .lock()
                    .expect("lock")
                    .entry(id.to_owned())
                    .or_insert(now);
            }
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/sink", listener.local_addr()?);
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, tokio_util::task::AbortOnDropHandle::new(task)))
}
