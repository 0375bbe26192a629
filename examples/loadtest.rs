//! Load tool: starts a fresh database, the engine (in this process, the real
//! `App`), and a fast local receiver, posts events from N concurrent clients,
//! and reports ingest rate, end-to-end deliveries/s and accept→receive
//! latency. Everything stays on loopback; every loop is bounded.
//!
//! ```text
//! cargo run --release --example loadtest -- --scenario a   # 1 webhook, 20,000 events, 64 clients
//! cargo run --release --example loadtest -- --scenario b   # 10 webhooks (fan-out), 5,000 events
//! cargo run --release --example loadtest -- --scenario c   # batches of 100
//! cargo run --release --example loadtest -- --scenario latency   # 1,000 events/s for 10 s
//! cargo run --release --example loadtest -- --scenario a --ordered-keys 100   # ordering: key, 100 keys
//! cargo run --release --example loadtest -- --scenario backlog --events 1000000   # drain a backlog
//! cargo run --release --example loadtest -- --scenario backlog --events 1000000 --via-api   # the same, posted through the API
//! cargo run --release --example loadtest -- --scenario a --history 5000000   # (a) over 5M finished deliveries
//! cargo run --release --example loadtest -- --scenario latency --rate 300 --seconds 60   # paced: latency, CPU per delivery
//! ```
//! `backlog`: N pending deliveries are written straight into the database
//! (or posted through the API with `--via-api`) with the workers off, then an engine with workers starts and the tool
//! times the drain. `--history N` first writes N finished (succeeded)
//! deliveries, each with its attempt, the way the engine leaves them.
//! `DATABASE_URL` names the server (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! a database `aion_load_<pid>` is created there and dropped at the end.

#[path = "common/mod.rs"]
mod common;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aion_webhooks::app::Config;
use aion_webhooks::delivery::worker::WorkerConfig;
use aion_webhooks::http::Limits;
use aion_webhooks::policy::PolicySet;
use axum::http::HeaderMap;
use sha2::Digest;

const KEY: &str = "loadtest-key";

#[derive(Debug, Clone, Copy)]
struct Scenario {
    name: &'static str,
    webhooks: usize,
    events: usize,
    clients: usize,
    batch: usize,
    /// Events per second across all clients; 0 = as fast as possible.
    rate: u64,
}

fn scenario(name: &str) -> anyhow::Result<Scenario> {
    Ok(match name {
        "a" => Scenario {
            name: "a: 1 webhook, single events",
            webhooks: 1,
            events: 20_000,
            clients: 64,
            batch: 1,
            rate: 0,
        },
        "b" => Scenario {
            name: "b: 10 webhooks (fan-out)",
            webhooks: 10,
            events: 5_000,
            clients: 64,
            batch: 1,
            rate: 0,
        },
        "c" => Scenario {
            name: "c: 1 webhook, batches of 100",
            webhooks: 1,
            events: 20_000,
            clients: 8,
            batch: 100,
            rate: 0,
        },
        "latency" => Scenario {
            name: "latency: 1 webhook, 1,000 events/s",
            webhooks: 1,
            events: 10_000,
            clients: 16,
            batch: 1,
            rate: 1000,
        },
        "backlog" => Scenario {
            name: "backlog: 1 webhook, drain N pending",
            webhooks: 1,
            events: 100_000,
            clients: 1,
            batch: 0,
            rate: 0,
        },
        other => anyhow::bail!("unknown scenario {other:?}; use a, b, c, latency or backlog"),
    })
}

/// Engine settings the tool can vary (`--db-connections`, `--max-in-flight`, `--per-webhook`).
#[derive(Debug, Clone, Copy)]
struct Tuning {
    db_connections: u32,
    max_in_flight: u32,
    per_webhook: u32,
    debounce_ms: u64,
    /// With `Some(n)`: every webhook has `ordering: key` and events carry
    /// one of `n` keys, round-robin.
    ordered_keys: Option<usize>,
    /// Finished deliveries written before the run.
    history: u64,
    /// `backlog`: post the backlog through the API instead of writing rows.
    backlog_via_api: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        let engine = WorkerConfig::default();
        Self {
            db_connections: 16,
            max_in_flight: engine.max_in_flight,
            per_webhook: engine.max_in_flight_per_webhook,
            debounce_ms: u64::try_from(engine.claim_debounce.as_millis()).unwrap_or(2),
            ordered_keys: None,
            history: 0,
            backlog_via_api: false,
        }
    }
}

/// Receive times by event id (one entry per delivery).
type Receipts = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let pick = |flag: &str| args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone());
    let mut sc = scenario(&pick("--scenario").unwrap_or_else(|| "a".into()))?;
    if let Some(n) = pick("--events") {
        sc.events = n.parse()?;
    }
    if let Some(n) = pick("--clients") {
        sc.clients = n.parse()?;
    }
    let mut tuning = Tuning::default();
    if let Some(n) = pick("--db-connections") {
        tuning.db_connections = n.parse()?;
    }
    if let Some(n) = pick("--max-in-flight") {
        tuning.max_in_flight = n.parse()?;
    }
    if let Some(n) = pick("--debounce-ms") {
        tuning.debounce_ms = n.parse()?;
    }
    if let Some(n) = pick("--per-webhook") {
        tuning.per_webhook = n.parse()?;
    }
    tuning.backlog_via_api = args.iter().any(|a| a == "--via-api");
    if let Some(r) = pick("--rate") {
        // Paced at R events/s for `--seconds` (default 60).
        sc.rate = r.parse()?;
        anyhow::ensure!(sc.rate > 0, "--rate needs at least 1 event/s");
        let secs: u64 = pick("--seconds").map_or(Ok(60), |s| s.parse())?;
        sc.events = usize::try_from(sc.rate * secs)?;
        sc.name = "rate: 1 webhook, paced single events";
    }
    if let Some(n) = pick("--history") {
        tuning.history = n.parse()?;
    }
    if let Some(n) = pick("--ordered-keys") {
        let n: usize = n.parse()?;
        anyhow::ensure!(n > 0, "--ordered-keys needs at least 1 key");
        tuning.ordered_keys = Some(n);
    }

    common::with_fresh_database("aion_load", |db_url| async move {
        run(sc, tuning, &db_url).await
    })
    .await
}

async fn run(sc: Scenario, tuning: Tuning, db_url: &str) -> anyhow::Result<()> {
    let receipts: Receipts = Arc::default();
    let rx_url = start_receiver(receipts.clone()).await?;

    let mut yaml = String::from("version: 1\nwebhooks:\n");
    let ordering = if tuning.ordered_keys.is_some() {
        "    ordering: key\n"
    } else {
        ""
    };
    for i in 0..sc.webhooks {
        yaml.push_str(&format!(
            "  - id: sink-{i}\n    url: {rx_url}\n    secret: load-secret-{i}\n    topics: [\"load.**\"]\n    timeout: 5s\n    retry: {{ initial_interval: 100ms, max_interval: 1s, max_attempts: 20 }}\n{ordering}"
        ));
    }
    yaml.push_str(&format!(
        "auth:\n  api_keys:\n    - id: load\n      sha256: \"{}\"\n      roles: [publisher]\nnetwork:\n  allow_private_targets: [127.0.0.0/8]\n",
        hex::encode(sha2::Sha256::digest(KEY.as_bytes()))
    ));
    let parse = || {
        PolicySet::parse(&yaml, "loadtest", std::path::Path::new("."), &|_| None)
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    let policy = parse()?;
    let config = Config {
        database_url: db_url.into(),
        listen: "127.0.0.1:0".into(),
        policy_path: "loadtest".into(),
        limits: Limits::default(),
        server: aion_webhooks::http::serve::ServerLimits::default(),
        worker: WorkerConfig {
            max_in_flight: tuning.max_in_flight,
            max_in_flight_per_webhook: tuning.per_webhook,
            claim_debounce: Duration::from_millis(tuning.debounce_ms),
            ..WorkerConfig::default()
        },
        run_workers: true,
        db_max_connections: tuning.db_connections,
        watch_policy: false,
        ingest_writers: 2,
    };
    if tuning.history > 0 || sc.batch == 0 {
        // An engine that sends nothing: it migrates, and takes the
        // backlog posted through the API; rows are written beside it.
        let idle = common::Engine::start(
            Config {
                run_workers: false,
                ..config.clone()
            },
            parse()?,
        )
        .await?;
        let db = sqlx::PgPool::connect(db_url).await?;
        if tuning.history > 0 {
            let t = Instant::now();
            prefill(&db, "hist", tuning.history, "succeeded").await?;
            println!(
                "history         {} finished deliveries written in {:.1} s",
                tuning.history,
                t.elapsed().as_secs_f64()
            );
        }
        if sc.batch == 0 {
            let t = Instant::now();
            if tuning.backlog_via_api {
                // Through the API, as producers make it: batches of 1,000
                // from 4 clients.
                post_backlog(&idle.base, sc.events).await?;
            } else {
                prefill(&db, "bl", sc.events as u64, "pending").await?;
            }
            println!(
                "backlog         {} pending deliveries written in {:.1} s{}",
                sc.events,
                t.elapsed().as_secs_f64(),
                if tuning.backlog_via_api {
                    " through the API"
                } else {
                    ""
                }
            );
            idle.stop().await?;
            db.close().await;
            return drain(sc, config, policy, receipts).await;
        }
        idle.stop().await?;
        db.close().await;
    }
    let engine = common::Engine::start(config, policy).await?;
    let base = engine.base.clone();

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(sc.clients)
        .build()?;
    // Per event: when its request was sent and when its 202 came back.
    let accepted: Arc<Mutex<HashMap<String, (Instant, Instant)>>> = Arc::default();
    let per_client = sc.events / sc.clients;
    let cpu_before = cpu::Ticks::now();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..sc.clients {
        let (client, base, accepted) = (client.clone(), base.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            let mut sent = 0;
            while sent < per_client {
                let n = sc.batch.min(per_client - sent);
                if sc.rate > 0 {
                    // Paced: this client's share of the rate, on a fixed schedule.
                    let due = started + Duration::from_secs_f64((sent * sc.clients + c) as f64 / sc.rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let ids: Vec<String> = (sent..sent + n).map(|i| format!("c{c}-e{i}")).collect();
                let events: Vec<serde_json::Value> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| {
                        let mut e = serde_json::json!({"id": id, "topic": "load.test.event", "payload": {"client": c, "n": id, "pad": "x".repeat(200)}});
                        if let Some(keys) = tuning.ordered_keys {
                            e["key"] = format!("k{}", ((sent + i) * sc.clients + c) % keys).into();
                        }
                        e
                    })
                    .collect();
                let body = if sc.batch == 1 { events[0].to_string() } else { serde_json::Value::Array(events).to_string() };
                let sent_at = Instant::now();
                let r = client.post(format!("{base}/v1/events")).bearer_auth(KEY).header("content-type", "application/json").body(body).send().await?;
                anyhow::ensure!(r.status().as_u16() == 202, "ingest answered {}", r.status());
                let now = Instant::now();
                let mut acc = accepted.lock().expect("lock");
                for id in ids {
                    acc.insert(id, (sent_at, now));
                }
                sent += n;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let ingest_done = Instant::now();
    let total_events = per_client * sc.clients;
    let expected = total_events * sc.webhooks;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let got: usize = receipts.lock().expect("lock").values().map(Vec::len).sum();
        if got >= expected {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {got} of {expected} deliveries arrived in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cpu = cpu::Ticks::now().since(&cpu_before);
    let receipts = receipts.lock().expect("lock").clone();
    let last = receipts
        .values()
        .flatten()
        .max()
        .copied()
        .unwrap_or(ingest_done);
    let accepted = accepted.lock().expect("lock").clone();
    // Milliseconds from `pick(sent, accepted)` to each receipt, sorted.
    let spans = |pick: fn((Instant, Instant)) -> Instant| {
        let mut ms: Vec<f64> = receipts
            .iter()
            .flat_map(|(id, times)| {
                let from = accepted.get(id).copied().map(pick);
                times.iter().filter_map(move |t| {
                    from.map(|a| t.saturating_duration_since(a).as_secs_f64() * 1000.0)
                })
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        ms
    };
    let latencies = spans(|(_, accepted)| accepted);
    let from_send = spans(|(sent, _)| sent);
    let at = |v: &[f64], p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let pct = |p: f64| at(&latencies, p);
    let ingest_secs = (ingest_done - started).as_secs_f64();
    let e2e_secs = (last - started).as_secs_f64();
    println!("scenario        {}", sc.name);
    if let Some(keys) = tuning.ordered_keys {
        println!("ordering        key, {keys} keys");
    }
    println!(
        "events          {total_events} ({} clients, batch {})",
        sc.clients, sc.batch
    );
    println!("deliveries      {expected}");
    println!(
        "ingest          {:.0} events/s ({ingest_secs:.2} s)",
        total_events as f64 / ingest_secs
    );
    println!(
        "end-to-end      {:.0} deliveries/s (first post to last receipt, {e2e_secs:.2} s)",
        expected as f64 / e2e_secs
    );
    println!(
        "accept→receive  p50 {:.1} ms, p99 {:.1} ms",
        pct(0.50),
        pct(0.99)
    );
    println!(
        "send→receive    p50 {:.1} ms, p90 {:.1}, p99 {:.1}, max {:.1} ms",
        at(&from_send, 0.50),
        at(&from_send, 0.90),
        at(&from_send, 0.99),
        at(&from_send, 1.0)
    );
    println!(
        "cpu/delivery    engine {:.3} ms, PostgreSQL {:.3} ms (first post to last receipt; load tool and receiver count as engine)",
        cpu.process_ms / expected as f64,
        cpu.postgres_ms / expected as f64
    );
    engine.stop().await?;
    Ok(())
}

/// Posts `n` events in batches of 1,000 from 4 clients.
async fn post_backlog(base: &str, n: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let batches = n.div_ceil(1000);
    let mut tasks = Vec::new();
    for c in 0..4 {
        let (client, base) = (client.clone(), base.to_owned());
        tasks.push(tokio::spawn(async move {
            for b in (c..batches).step_by(4) {
                let events: Vec<serde_json::Value> = (b * 1000..((b + 1) * 1000).min(n))
                    .map(|i| serde_json::json!({"id": format!("bl-{i}"), "topic": "load.test.event", "payload": {"n": i, "pad": "x".repeat(200)}}))
                    .collect();
                let r = client.post(format!("{base}/v1/events")).bearer_auth(KEY).json(&events).send().await?;
                anyhow::ensure!(r.status().as_u16() == 202, "ingest answered {}", r.status());
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Starts an engine on a database holding `sc.events` pending deliveries
/// and times how long until the receiver has them all.
async fn drain(
    sc: Scenario,
    config: Config,
    policy: PolicySet,
    receipts: Receipts,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let engine = common::Engine::start(config, policy).await?;
    let deadline = started + Duration::from_secs(1800);
    loop {
        let got = receipts.lock().expect("lock").len();
        if got >= sc.events {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {got} of {} drained in 30 min",
            sc.events
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("scenario        {}", sc.name);
    println!(
        "drain           {:.0} deliveries/s ({} in {secs:.1} s, engine start included)",
        sc.events as f64 / secs,
        sc.events
    );
    engine.stop().await?;
    Ok(())
}

async fn start_receiver(receipts: Receipts) -> anyhow::Result<String> {
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let receipts = receipts.clone();
        async move {
            let now = Instant::now();
            if let Some(id) = headers.get("x-aion-event-id").and_then(|v| v.to_str().ok()) {
                receipts
                    .lock()
                    .expect("lock")
                    .entry(id.to_owned())
                    .or_default()
                    .push(now);
            }
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/sink", listener.local_addr()?);
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// Writes `n` events to `sink-0`, each with one delivery in `state`
/// (`pending`, due now; or `succeeded`, with its attempt), in chunks of
/// 100,000 rows, straight into the tables the engine's migrations made.
async fn prefill(db: &sqlx::PgPool, prefix: &str, n: u64, state: &str) -> anyhow::Result<()> {
    const CHUNK: u64 = 100_000;
    let finished = state != "pending";
    let mut from = 0;
    while from < n {
        let to = (from + CHUNK).min(n);
        let mut tx = db.begin().await?;
        sqlx::query(
            "INSERT INTO events (id, topic, payload, body, occurred_at, received_at)
             SELECT $1 || '-' || g, 'load.test.event', '{\"n\":' || g || '}',
                    convert_to('{\"payload\":{\"n\":' || g || ',\"pad\":\"' || repeat('x', 200) || '\"}}', 'UTF8'),
                    now(), now()
             FROM generate_series($2::bigint, $3::bigint - 1) AS g",
        )
        .bind(prefix)
        .bind(i64::try_from(from)?)
        .bind(i64::try_from(to)?)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "WITH d AS (
                 INSERT INTO deliveries (id, event_id, webhook_id, state, attempts, next_attempt_at,
                                         created_at, updated_at, completed_at, last_status)
                 SELECT gen_random_uuid(), $1 || '-' || g, 'sink-0', $4, CASE WHEN $5 THEN 1 ELSE 0 END,
                        now(), now(), now(), CASE WHEN $5 THEN now() END, CASE WHEN $5 THEN 200 END
                 FROM generate_series($2::bigint, $3::bigint - 1) AS g
                 RETURNING id
             )
             INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, response_body)
             SELECT id, 1, now(), 2, 200, 'ok' FROM d WHERE $5",
        )
        .bind(prefix)
        .bind(i64::try_from(from)?)
        .bind(i64::try_from(to)?)
        .bind(state)
        .bind(finished)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        from = to;
    }
    sqlx::query("ANALYZE").execute(db).await?;
    Ok(())
}

/// CPU time from `/proc`: this process (the engine, with the load tool and
/// the receiver) and every process named `postgres`.
mod cpu {
    pub struct Ticks {
        process: u64,
        postgres: std::collections::HashMap<u32, u64>,
    }

    pub struct Spent {
        pub process_ms: f64,
        pub postgres_ms: f64,
    }

    /// utime + stime of one `/proc/<pid>/stat`, in clock ticks.
    fn ticks(stat: &str) -> Option<(String, u64)> {
        let (head, tail) = stat.rsplit_once(") ")?;
        let comm = head.split_once(" (")?.1.to_owned();
        let fields: Vec<&str> = tail.split_whitespace().collect();
        let user: u64 = fields.get(11)?.parse().ok()?;
        let system: u64 = fields.get(12)?.parse().ok()?;
        Some((comm, user + system))
    }

    impl Ticks {
        pub fn now() -> Self {
            let process = std::fs::read_to_string("/proc/self/stat")
                .ok()
                .and_then(|s| ticks(&s))
                .map_or(0, |t| t.1);
            let mut postgres = std::collections::HashMap::new();
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
                if let Some((comm, t)) = ticks(&stat)
                    && comm == "postgres"
                {
                    postgres.insert(pid, t);
                }
            }
            Self { process, postgres }
        }

        /// Time spent since `before` (100 ticks a second, Linux's USER_HZ).
        /// A PostgreSQL backend that started meanwhile counts from zero; one
        /// that ended meanwhile is lost, so the engine's pooled sessions,
        /// which live through the run, are what is counted.
        pub fn since(&self, before: &Ticks) -> Spent {
            let pg: u64 = self
                .postgres
                .iter()
                .map(|(pid, t)| t.saturating_sub(before.postgres.get(pid).copied().unwrap_or(0)))
                .sum();
            Spent {
                process_ms: self.process.saturating_sub(before.process) as f64 * 10.0,
                postgres_ms: pg as f64 * 10.0,
            }
        }
    }
}
