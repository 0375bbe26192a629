//! Isolation benchmark: how long a healthy webhook's deliveries take while
//! another webhook is failing beside it (issue 15, item 1).
//!
//! Two webhooks, `ok` and `busy` (retry 100 ms–300 ms, 60 attempts, 1 s
//! timeout). First 300 events (`--busy-events`) go to `busy`, whose receiver misbehaves; once
//! they are retrying, 300 events go to `ok` (16 clients, single events) and
//! the tool times first post → 300th receipt at `ok`.
//!
//! ```text
//! cargo run --release --example isolation -- --busy none   # ok alone (the baseline)
//! cargo run --release --example isolation -- --busy 500    # busy answers 500 at once
//! cargo run --release --example isolation -- --busy 429    # busy answers 429 after 20 ms
//! cargo run --release --example isolation -- --busy hang   # busy never answers (1 s timeout)
//! cargo run --release --example isolation -- --busy 500 --busy-events 5000   # a deeper backlog
//! # the integration tests' shapes: a slow failing backlog, hanging webhooks filling the engine
//! cargo run --release --example isolation -- --busy slow500 --busy-events 3000 --per-webhook 16
//! cargo run --release --example isolation -- --busy hang --busy-webhooks 2 --max-in-flight 32 --per-webhook 32
//! ```
//! `DATABASE_URL` names the server (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! a database `aion_iso_<pid>` is created there and dropped at the end.
//! Everything stays on loopback; every loop is bounded.

#[path = "common/mod.rs"]
mod common;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aion_webhooks::app::Config;
use aion_webhooks::delivery::worker::WorkerConfig;
use aion_webhooks::http::Limits;
use aion_webhooks::policy::PolicySet;
use anyhow::Context;
use axum::http::StatusCode;
use sha2::Digest;

const KEY: &str = "isolation-key";
const EVENTS: usize = 300;
/// Events to `busy` unless `--busy-events N` says otherwise.
const BUSY_EVENTS: usize = 300;
const CLIENTS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    None,
    Fail500,
    Slow500,
    Throttle429,
    Hang,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicUsize,
    open: AtomicUsize,
    max_open: AtomicUsize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let pick = |flag: &str| args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone());
    let busy = match pick("--busy").as_deref().unwrap_or("500") {
        "none" => Busy::None,
        "500" => Busy::Fail500,
        "slow500" => Busy::Slow500,
        "429" => Busy::Throttle429,
        "hang" => Busy::Hang,
        other => anyhow::bail!("unknown --busy {other:?}; use none, 500, slow500, 429 or hang"),
    };
    let num = |flag: &str, default: usize| -> anyhow::Result<usize> {
        pick(flag).map_or(Ok(default), |n| n.parse().context(flag.to_owned()))
    };
    let engine = WorkerConfig::default();
    let knobs = Knobs {
        busy_events: num("--busy-events", BUSY_EVENTS)?,
        busy_webhooks: num("--busy-webhooks", 1)?,
        max_in_flight: u32::try_from(num("--max-in-flight", engine.max_in_flight as usize)?)?,
        per_webhook: u32::try_from(num(
            "--per-webhook",
            engine.max_in_flight_per_webhook as usize,
        )?)?,
    };
    common::with_fresh_database("aion_iso", |db_url| async move {
        run(busy, knobs, &db_url).await
    })
    .await
}

/// What the command line can vary.
#[derive(Debug, Clone, Copy)]
struct Knobs {
    busy_events: usize,
    busy_webhooks: usize,
    max_in_flight: u32,
    per_webhook: u32,
}

async fn run(busy: Busy, knobs: Knobs, db_url: &str) -> anyhow::Result<()> {
    let busy_events = knobs.busy_events;
    let ok = Arc::new(Counters::default());
    let bad = Arc::new(Counters::default());
    let ok_url = receiver(ok.clone(), Busy::None).await?;
    let bad_url = receiver(bad.clone(), busy).await?;
    let hook = |id: &str, url: &str, topic: &str| {
        format!(
            "  - id: {id}\n    url: {url}\n    secret: s-{id}\n    topics: [{topic}]\n    timeout: 1s\n    retry: {{ initial_interval: 100ms, max_interval: 300ms, max_attempts: 60 }}\n"
        )
    };
    let busy_hooks: String = (0..knobs.busy_webhooks)
        .map(|i| hook(&format!("busy-{i}"), &bad_url, "busy.event"))
        .collect();
    let yaml = format!(
        "version: 1\nwebhooks:\n{}{busy_hooks}auth:\n  api_keys:\n    - id: load\n      sha256: \"{}\"\n      roles: [publisher]\nnetwork:\n  allow_private_targets: [127.0.0.0/8]\n",
        hook("ok", &ok_url, "ok.event"),
        hex::encode(sha2::Sha256::digest(KEY.as_bytes()))
    );
    let policy = PolicySet::parse(&yaml, "isolation", std::path::Path::new("."), &|_| None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = Config {
        database_url: db_url.into(),
        listen: "127.0.0.1:0".into(),
        policy_path: "isolation".into(),
        limits: Limits::default(),
        server: aion_webhooks::http::serve::ServerLimits::default(),
        worker: WorkerConfig {
            max_in_flight: knobs.max_in_flight,
            max_in_flight_per_webhook: knobs.per_webhook,
            ..WorkerConfig::default()
        },
        run_workers: true,
        db_max_connections: 16,
        watch_policy: false,
        ingest_writers: 2,
        run_sources: false,
        otlp: None,
        console: Default::default(),
    };
    let engine = common::Engine::start(config, policy).await?;
    let base = engine.base.clone();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;

    if busy != Busy::None {
        for chunk in (0..busy_events).collect::<Vec<_>>().chunks(1000) {
            let batch: Vec<serde_json::Value> = chunk
                .iter()
                .map(|i| serde_json::json!({"topic": "busy.event", "payload": {"n": i}}))
                .collect();
            let r = client
                .post(format!("{base}/v1/events"))
                .bearer_auth(KEY)
                .json(&batch)
                .send()
                .await?;
            anyhow::ensure!(r.status().as_u16() == 202, "ingest answered {}", r.status());
        }
        // Let its deliveries fail and retry for a while first.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let busy_before = bad.requests.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (client, base) = (client.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            for i in (c..EVENTS).step_by(CLIENTS) {
                let r = client
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(KEY)
                    .json(&serde_json::json!({"topic": "ok.event", "payload": {"n": i}}))
                    .send()
                    .await?;
                anyhow::ensure!(r.status().as_u16() == 202, "ingest answered {}", r.status());
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while ok.requests.load(Ordering::Relaxed) < EVENTS {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {EVENTS} reached ok in 120 s",
            ok.requests.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = started.elapsed();
    println!(
        "busy={busy:?} x{}  ok: {EVENTS} received in {:.2} s  busy: {} attempts meanwhile, at most {} open at once",
        knobs.busy_webhooks,
        took.as_secs_f64(),
        bad.requests.load(Ordering::Relaxed) - busy_before,
        bad.max_open.load(Ordering::Relaxed)
    );
    engine.stop().await?;
    Ok(())
}

/// Decrements `open` when the request ends, however it ends.
struct OpenGuard(Arc<Counters>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn receiver(counters: Arc<Counters>, behaviour: Busy) -> anyhow::Result<String> {
    let app = axum::Router::new().fallback(move || {
        let counters = counters.clone();
        async move {
            counters.requests.fetch_add(1, Ordering::Relaxed);
            let open = counters.open.fetch_add(1, Ordering::Relaxed) + 1;
            counters.max_open.fetch_max(open, Ordering::Relaxed);
            let _guard = OpenGuard(counters.clone());
            match behaviour {
                Busy::None => StatusCode::OK,
                Busy::Fail500 => StatusCode::INTERNAL_SERVER_ERROR,
                Busy::Slow500 => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                Busy::Throttle429 => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    StatusCode::TOO_MANY_REQUESTS
                }
                Busy::Hang => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    StatusCode::OK
                }
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
