//! Load tool: on a fresh database, starts the engine as a child process (the
//! real `aion-webhooks serve`) and a fast local receiver, posts events from N
//! concurrent clients, and reports ingest rate, end-to-end deliveries/s,
//! send→receive and accept→receive latency, CPU per delivery (the engine
//! process and PostgreSQL, from `/proc`), PostgreSQL's WAL bytes per delivery
//! (`pg_current_wal_lsn()` at the first post and after the engine stops; the
//! server's whole WAL) and the engine's peak RSS. The receiver and the
//! clients run in this process, so they do not count as engine. Everything
//! stays on loopback; every loop is bounded.
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
//! cargo run --release --example loadtest -- --scenario a --repeat 5   # 5 runs, then the medians
//! cargo run --release --example loadtest -- --scenario a --against HEAD~1   # this checkout vs HEAD~1, 3 runs each, alternating
//! cargo run --release --example loadtest -- --scenario latency --rate 300 --seconds 30 --against main --repeat 5
//! cargo run --release --example loadtest -- --scenario a --against main --markdown   # then the docs' table: median (every run) per side, and the ratio
//! cargo run --release --example loadtest -- --scenario a --engine /path/to/aion-webhooks   # a given binary
//! cargo run --release --example loadtest -- --scenario a --store sqlite   # the embedded store
//! cargo run --release --example loadtest -- --scenario a --schema on   # 1 KiB orders checked against a JSON Schema (`off`: the same orders, no schema)
//! cargo run --release --example loadtest -- --scenario a --readyz-flood 16   # 16 clients asking /readyz back to back meanwhile
//! ```
//! The engine is this checkout's: the tool first runs `cargo build --release
//! --bin aion-webhooks` here (`--engine PATH` runs a given binary instead).
//! `--against REV` checks REV out in a worktree
//! `$TMPDIR/aion-webhooks-against-<sha>` (kept, and reused next time), builds
//! its engine there, and runs the scenario `--repeat N` times (default 3) with
//! each binary in turn, each run on its own fresh database: one line per run,
//! then each side's medians and this/REV. `--repeat N` alone repeats one binary.
//!
//! Engine knobs become `AION_WEBHOOKS_*` variables, set only when given, so
//! each binary otherwise runs with its own defaults: `--db-connections`,
//! `--max-in-flight`, `--per-webhook`, `--debounce-ms`, `--ingest-writers`.
//! Other `AION_WEBHOOKS_*` variables in the environment reach the engine.
//!
//! `backlog`: N pending deliveries are written straight into the database
//! (or posted through the API with `--via-api`) with the workers off, then an engine with workers starts and the tool
//! times the drain. `--history N` first writes N finished (succeeded)
//! deliveries, each with its attempt, the way the engine leaves them.
//! `DATABASE_URL` names the server (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! each run creates a database `aion_load_<pid>` there and drops it at the end.
//! `--store sqlite` runs the engine on the embedded store instead (a fresh
//! file in the run's temp dir; a backlog then needs `--via-api`, and
//! `--history` is not available).
//! The policy and the engine's log go to a temp dir, kept if the run fails.

#[path = "common/mod.rs"]
// Some of its helpers are other tools'.
#[allow(dead_code)]
mod common;
#[path = "loadtest/report.rs"]
mod report;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::http::HeaderMap;
use common::process::{CpuMark, CpuSpent, EngineProcess};
use sha2::Digest;

const KEY: &str = "loadtest-key";

/// Flags that take a value, and those that do not.
const FLAGS: &[&str] = &[
    "--scenario",
    "--store",
    "--events",
    "--clients",
    "--rate",
    "--seconds",
    "--history",
    "--ordered-keys",
    "--db-connections",
    "--max-in-flight",
    "--per-webhook",
    "--debounce-ms",
    "--ingest-writers",
    "--repeat",
    "--against",
    "--engine",
    "--schema",
    "--readyz-flood",
];
const SWITCHES: &[&str] = &["--via-api", "--markdown"];

/// Flags that become the engine's environment.
const KNOBS: &[(&str, &str)] = &[
    ("--db-connections", "AION_WEBHOOKS_DB_MAX_CONNECTIONS"),
    ("--max-in-flight", "AION_WEBHOOKS_MAX_IN_FLIGHT"),
    ("--per-webhook", "AION_WEBHOOKS_MAX_IN_FLIGHT_PER_WEBHOOK"),
    ("--debounce-ms", "AION_WEBHOOKS_CLAIM_DEBOUNCE_MS"),
    ("--ingest-writers", "AION_WEBHOOKS_INGEST_WRITERS"),
];

#[derive(Debug, Clone, Copy)]
struct Scenario {
    key: &'static str,
    name: &'static str,
    webhooks: usize,
    events: usize,
    clients: usize,
    batch: usize,
    /// Events per second across all clients; 0 = as fast as possible.
    rate: u64,
}

fn scenario(name: &str) -> anyhow::Result<Scenario> {
    let base = Scenario {
        key: "a",
        name: "a: 1 webhook, single events",
        webhooks: 1,
        events: 20_000,
        clients: 64,
        batch: 1,
        rate: 0,
    };
    Ok(match name {
        "a" => base,
        "b" => Scenario {
            key: "b",
            name: "b: 10 webhooks (fan-out)",
            webhooks: 10,
            events: 5_000,
            ..base
        },
        "c" => Scenario {
            key: "c",
            name: "c: 1 webhook, batches of 100",
            clients: 8,
            batch: 100,
            ..base
        },
        "latency" => Scenario {
            key: "latency",
            name: "latency: 1 webhook, 1,000 events/s",
            events: 10_000,
            clients: 16,
            rate: 1000,
            ..base
        },
        "backlog" => Scenario {
            key: "backlog",
            name: "backlog: 1 webhook, drain N pending",
            events: 100_000,
            clients: 1,
            batch: 0,
            ..base
        },
        other => anyhow::bail!("unknown scenario {other:?}; use a, b, c, latency or backlog"),
    })
}

/// What the tool does besides the scenario's shape.
#[derive(Debug, Clone, Default)]
struct Tuning {
    /// `AION_WEBHOOKS_*` variables for the engine, only those given.
    knobs: Vec<(&'static str, String)>,
    /// With `Some(n)`: every webhook has `ordering: key` and events carry
    /// one of `n` keys, round-robin.
    ordered_keys: Option<usize>,
    /// Finished deliveries written before each run.
    history: u64,
    /// `backlog`: post the backlog through the API instead of writing rows.
    backlog_via_api: bool,
    /// The engine keeps its queue in an SQLite file instead of PostgreSQL.
    sqlite: bool,
    /// `--schema off|on`: events carry a realistic 1 KiB order payload, and
    /// with `on` the policy checks it against a JSON Schema (issue 16).
    schema: Option<bool>,
    /// `--readyz-flood N`: N clients ask `/readyz` back to back for the
    /// whole run (issue 27, item 7: does an unauthenticated probe flood
    /// slow ingest and delivery?).
    readyz_flood: usize,
}

impl Tuning {
    /// The engine's environment: the knobs, and whether it sends.
    fn engine_env(&self, workers: bool) -> Vec<(&'static str, String)> {
        let mut env = self.knobs.clone();
        env.push((
            "AION_WEBHOOKS_WORKERS",
            if workers { "1" } else { "0" }.into(),
        ));
        env
    }
}

#[derive(Debug)]
struct Args {
    sc: Scenario,
    tuning: Tuning,
    repeat: usize,
    engine: Option<PathBuf>,
    against: Option<String>,
    /// `--markdown`: the medians again as a Markdown table with every run.
    markdown: bool,
}

impl Args {
    fn parse() -> anyhow::Result<Self> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut rest = args.iter();
        while let Some(a) = rest.next() {
            if FLAGS.contains(&a.as_str()) {
                anyhow::ensure!(rest.next().is_some(), "{a} needs a value");
            } else {
                anyhow::ensure!(SWITCHES.contains(&a.as_str()), "unknown argument {a:?}");
            }
        }
        let pick = |flag: &str| args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone());
        let num = |flag: &str| -> anyhow::Result<Option<u64>> {
            pick(flag)
                .map(|v| v.parse().with_context(|| format!("{flag} {v:?}")))
                .transpose()
        };
        let mut sc = scenario(&pick("--scenario").unwrap_or_else(|| "a".into()))?;
        if let Some(n) = num("--events")? {
            sc.events = usize::try_from(n)?;
        }
        if let Some(n) = num("--clients")? {
            sc.clients = usize::try_from(n)?;
        }
        anyhow::ensure!(sc.clients > 0, "--clients needs at least 1");
        if let Some(rate) = num("--rate")? {
            // Paced at R events/s for `--seconds` (default 60).
            anyhow::ensure!(rate > 0, "--rate needs at least 1 event/s");
            sc.rate = rate;
            sc.events = usize::try_from(rate * num("--seconds")?.unwrap_or(60))?;
            sc.name = "rate: 1 webhook, paced single events";
        }
        let sqlite = match pick("--store").as_deref() {
            None | Some("postgres") => false,
            Some("sqlite") => true,
            Some(other) => anyhow::bail!("--store {other:?}: postgres or sqlite"),
        };
        let mut tuning = Tuning {
            history: num("--history")?.unwrap_or(0),
            backlog_via_api: args.iter().any(|a| a == "--via-api"),
            sqlite,
            ..Tuning::default()
        };
        anyhow::ensure!(
            !sqlite || (tuning.history == 0 && (sc.batch > 0 || tuning.backlog_via_api)),
            "--store sqlite writes nothing beside the engine: no --history, and a backlog needs --via-api"
        );
        for &(flag, var) in KNOBS {
            if let Some(n) = num(flag)? {
                tuning.knobs.push((var, n.to_string()));
            }
        }
        tuning.schema = match pick("--schema").as_deref() {
            None => None,
            Some("off") => Some(false),
            Some("on") => Some(true),
            Some(other) => anyhow::bail!("--schema {other:?}: off or on"),
        };
        tuning.readyz_flood = usize::try_from(num("--readyz-flood")?.unwrap_or(0))?;
        if let Some(n) = num("--ordered-keys")? {
            anyhow::ensure!(n > 0, "--ordered-keys needs at least 1 key");
            tuning.ordered_keys = Some(usize::try_from(n)?);
        }
        let against = pick("--against");
        let default_repeat = if against.is_some() { 3 } else { 1 };
        let repeat = usize::try_from(num("--repeat")?.unwrap_or(default_repeat))?;
        anyhow::ensure!(repeat > 0, "--repeat needs at least 1");
        Ok(Self {
            sc,
            tuning,
            repeat,
            engine: pick("--engine").map(PathBuf::from),
            against,
            markdown: args.iter().any(|a| a == "--markdown"),
        })
    }
}

/// One engine binary under test, its label and its runs' figures.
#[derive(Debug)]
struct Side {
    label: String,
    bin: PathBuf,
    runs: Vec<Figures>,
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
struct Figures {
    deliveries: usize,
    /// First post to last receipt, or (`backlog`) engine start to drained.
    secs: f64,
    /// Events accepted per second; `None` for `backlog`.
    ingest: Option<f64>,
    /// send→receive p50, p90, p99, max then accept→receive p50, p99, in ms.
    latency: Option<[f64; 6]>,
    /// Per delivery, over `secs`.
    cpu: CpuSpent,
    /// PostgreSQL's WAL bytes per delivery, first post (or engine start) to
    /// the engine's stop; `None` on SQLite.
    wal_bytes: Option<f64>,
    peak_rss_mb: Option<f64>,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.deliveries as f64 / self.secs
    }

    /// (name, value, decimals) of every figure, for the medians.
    fn named(&self) -> Vec<(&'static str, f64, usize)> {
        let mut v = vec![("deliveries/s", self.rate(), 0)];
        if let Some(ingest) = self.ingest {
            v.push(("ingest events/s", ingest, 0));
        }
        if let Some(l) = self.latency {
            let names = [
                "send→receive p50 ms",
                "send→receive p90 ms",
                "send→receive p99 ms",
                "send→receive max ms",
                "accept→receive p50 ms",
                "accept→receive p99 ms",
            ];
            v.extend(names.into_iter().zip(l).map(|(n, x)| (n, x, 1)));
        }
        v.push(("cpu/delivery engine ms", self.cpu.engine_ms, 3));
        v.push(("cpu/delivery PostgreSQL ms", self.cpu.postgres_ms, 3));
        if let Some(wal) = self.wal_bytes {
            v.push(("WAL/delivery bytes", wal, 0));
        }
        if let Some(mb) = self.peak_rss_mb {
            v.push(("peak RSS MB", mb, 0));
        }
        v
    }

    /// The run's one line.
    fn line(&self) -> String {
        let mut s = match self.ingest {
            Some(ingest) => format!(
                "{} deliveries/s, ingest {} events/s",
                report::thousands(self.rate()),
                report::thousands(ingest)
            ),
            None => format!(
                "drain {} deliveries/s ({} in {:.1} s, engine start included)",
                report::thousands(self.rate()),
                report::thousands(self.deliveries as f64),
                self.secs
            ),
        };
        if let Some([p50, p90, p99, max, a50, a99]) = self.latency {
            s += &format!(
                ", send→receive p50 {p50:.1} p90 {p90:.1} p99 {p99:.1} max {max:.1} ms, accept→receive p50 {a50:.1} p99 {a99:.1} ms"
            );
        }
        s += &format!(
            ", cpu/delivery engine {:.3} ms PostgreSQL {:.3} ms",
            self.cpu.engine_ms, self.cpu.postgres_ms
        );
        if let Some(wal) = self.wal_bytes {
            s += &format!(", WAL/delivery {wal:.0} B");
        }
        if let Some(mb) = self.peak_rss_mb {
            s += &format!(", peak RSS {mb:.0} MB");
        }
        s
    }
}

/// The figure a comparison is judged by: latency when paced, else throughput.
fn headline(sc: &Scenario) -> &'static str {
    if sc.rate > 0 {
        "send→receive p50 ms"
    } else {
        "deliveries/s"
    }
}

/// Receive times by event id (one entry per delivery).
type Receipts = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    // Dropping `compare` on Ctrl-C drops the running engine, which SIGKILLs
    // it; that run's database is left behind.
    tokio::select! {
        done = compare(args) => done,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    }
}

/// Builds the engines, runs them in turn and prints the figures.
async fn compare(args: Args) -> anyhow::Result<()> {
    let this = match &args.engine {
        Some(bin) => {
            anyhow::ensure!(bin.is_file(), "--engine {} is not a file", bin.display());
            bin.clone()
        }
        None => common::process::build_this().await?,
    };
    let mut sides = vec![Side {
        label: "this".into(),
        bin: this,
        runs: Vec::new(),
    }];
    if let Some(rev) = &args.against {
        let (short, bin) = common::process::build_rev(rev).await?;
        sides.push(Side {
            label: short,
            bin,
            runs: Vec::new(),
        });
    }
    report::print_header(&args, &sides);
    let width = sides.iter().map(|s| s.label.len()).max().unwrap_or(4);
    for i in 1..=args.repeat {
        for side in &mut sides {
            let label = format!(
                "{} {:<width$} run {i}/{}",
                args.sc.key, side.label, args.repeat
            );
            let figures = one_run(&args, &side.bin, &label).await?;
            println!("{label}: {}", figures.line());
            side.runs.push(figures);
        }
    }
    if args.repeat > 1 || sides.len() > 1 {
        report::print_medians(&args.sc, &sides);
    }
    if args.markdown {
        report::print_markdown(&args, &sides);
    }
    Ok(())
}

/// One run of `bin` on its own fresh database; the temp dir with the policy
/// and the engine's logs is kept if it fails.
async fn one_run(args: &Args, bin: &Path, label: &str) -> anyhow::Result<Figures> {
    let dir = tempfile::Builder::new().prefix("aion-load-").tempdir()?;
    let path = dir.path();
    let mut figures = None;
    let out = &mut figures;
    let result = if args.tuning.sqlite {
        let db_url = format!("sqlite://{}", path.join("aion-webhooks.db").display());
        run(args, bin, path, &db_url, label)
            .await
            .map(|f| *out = Some(f))
    } else {
        common::with_fresh_database("aion_load", |db_url| async move {
            *out = Some(run(args, bin, path, &db_url, label).await?);
            Ok(())
        })
        .await
    };
    if result.is_err() {
        let kept = dir.keep();
        eprintln!(
            "{label}: failed; policy and engine logs kept in {}",
            kept.display()
        );
    }
    result?;
    figures.context("the run measured nothing")
}

async fn run(
    args: &Args,
    bin: &Path,
    dir: &Path,
    db_url: &str,
    label: &str,
) -> anyhow::Result<Figures> {
    let (sc, tuning) = (args.sc, &args.tuning);
    let receipts: Receipts = Arc::default();
    let (rx_url, _receiver) = start_receiver(receipts.clone()).await?;
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, policy_yaml(&sc, tuning, &rx_url))?;
    std::fs::write(dir.join("order.schema.json"), ORDER_SCHEMA)?;
    let spawn = |name: &str, workers: bool| {
        EngineProcess::spawn(
            bin,
            &policy,
            db_url,
            &tuning.engine_env(workers),
            dir.join(format!("{name}.log")),
        )
    };
    if tuning.history > 0 || sc.batch == 0 {
        // An engine that sends nothing: it migrates the fresh database, and
        // takes the backlog posted through the API; rows are written beside it.
        let mut idle = spawn("engine-idle", false)?;
        idle.wait_healthy().await?;
        // Rows are written beside the engine only on PostgreSQL.
        let db = if tuning.sqlite {
            None
        } else {
            Some(sqlx::PgPool::connect(db_url).await?)
        };
        let pg = || db.as_ref().context("writing rows needs PostgreSQL");
        if tuning.history > 0 {
            let t = Instant::now();
            prefill(pg()?, "hist", tuning.history, "succeeded").await?;
            println!(
                "{label}: history of {} finished deliveries written in {:.1} s",
                report::thousands(tuning.history as f64),
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
                prefill(pg()?, "bl", sc.events as u64, "pending").await?;
            }
            println!(
                "{label}: backlog of {} pending deliveries written in {:.1} s{}",
                report::thousands(sc.events as f64),
                t.elapsed().as_secs_f64(),
                if tuning.backlog_via_api {
                    " through the API"
                } else {
                    ""
                }
            );
        }
        if let Some(db) = db {
            db.close().await;
        }
        idle.stop().await?;
        if sc.batch == 0 {
            let started = Instant::now();
            let wal = Wal::at(db_url).await;
            return drain(sc, spawn("engine", true)?, started, &receipts, wal).await;
        }
    }
    let mut engine = spawn("engine", true)?;
    engine.wait_healthy().await?;
    let wal = Wal::at(db_url).await;
    load(sc, tuning, engine, &receipts, wal).await
}

/// PostgreSQL's WAL position at a moment of the run (`pg_current_wal_lsn`),
/// read on a connection of its own; the server's whole WAL, so other work
/// on the same server counts too.
struct Wal(Option<(String, i64)>);

impl Wal {
    async fn position(url: &str) -> Option<i64> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url).await.ok()?;
        let lsn = sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8")
            .fetch_one(&mut conn)
            .await
            .ok();
        let _ = conn.close().await;
        lsn
    }

    /// The position now (nothing on SQLite).
    async fn at(db_url: &str) -> Self {
        if !db_url.starts_with("postgres") {
            return Self(None);
        }
        Self(
            Self::position(db_url)
                .await
                .map(|lsn| (db_url.to_owned(), lsn)),
        )
    }

    /// Bytes written since, per delivery.
    async fn per_delivery(&self, deliveries: usize) -> Option<f64> {
        let (url, before) = self.0.as_ref()?;
        let now = Self::position(url).await?;
        Some((now - before) as f64 / deliveries.max(1) as f64)
    }
}

/// Posts the scenario's events and waits for every delivery.
async fn load(
    sc: Scenario,
    tuning: &Tuning,
    mut engine: EngineProcess,
    receipts: &Receipts,
    wal: Wal,
) -> anyhow::Result<Figures> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(sc.clients)
        .timeout(Duration::from_secs(30))
        .build()?;
    // Per event: when its request was sent and when its 202 came back.
    let accepted: Arc<Mutex<HashMap<String, (Instant, Instant)>>> = Arc::default();
    let per_client = sc.events / sc.clients;
    let ordered_keys = tuning.ordered_keys;
    let order_payload = tuning.schema.is_some();
    // Probe flood: bounded by the run (the set is dropped, and its tasks
    // aborted, when this function returns).
    let probes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..tuning.readyz_flood {
        let (client, url, probes) = (
            client.clone(),
            format!("{}/readyz", engine.base),
            probes.clone(),
        );
        flood.spawn(async move {
            loop {
                if let Ok(r) = client.get(&url).send().await {
                    let _ = r.bytes().await;
                    probes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    let cpu_before = CpuMark::now(engine.pid());
    let started = Instant::now();
    // Dropping the set (on an error) aborts the other clients.
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..sc.clients {
        let (client, base, accepted) = (client.clone(), engine.base.clone(), accepted.clone());
        tasks.spawn(async move {
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
                        let payload = if order_payload {
                            order(c, id)
                        } else {
                            serde_json::json!({"client": c, "n": id, "pad": "x".repeat(200)})
                        };
                        let mut e = serde_json::json!({"id": id, "topic": "load.test.event", "payload": payload});
                        if let Some(keys) = ordered_keys {
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
        });
    }
    while let Some(posted) = tasks.join_next().await {
        // A dead engine explains a failed post better than the post does.
        if !matches!(posted, Ok(Ok(()))) {
            engine.check_running()?;
        }
        posted??;
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
        engine.check_running()?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {got} of {expected} deliveries arrived in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cpu = CpuMark::now(engine.pid()).since(&cpu_before);
    flood.abort_all();
    if tuning.readyz_flood > 0 {
        let n = probes.load(std::sync::atomic::Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "readyz flood: {n} probes answered, {:.0}/s",
            n as f64 / secs
        );
    }
    let peak_rss = engine.peak_rss_bytes();
    engine.stop().await?;
    let wal_bytes = wal.per_delivery(expected).await;

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
    let from_accept = spans(|(_, accepted)| accepted);
    let from_send = spans(|(sent, _)| sent);
    let at = |v: &[f64], p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let ingest_secs = (ingest_done - started).as_secs_f64();
    Ok(Figures {
        deliveries: expected,
        secs: (last - started).as_secs_f64(),
        ingest: Some(total_events as f64 / ingest_secs),
        latency: Some([
            at(&from_send, 0.50),
            at(&from_send, 0.90),
            at(&from_send, 0.99),
            at(&from_send, 1.0),
            at(&from_accept, 0.50),
            at(&from_accept, 0.99),
        ]),
        cpu: per_delivery(cpu, expected),
        wal_bytes,
        peak_rss_mb: peak_rss.map(|b| b as f64 / (1024.0 * 1024.0)),
    })
}

fn per_delivery(cpu: CpuSpent, deliveries: usize) -> CpuSpent {
    let n = deliveries.max(1) as f64;
    CpuSpent {
        engine_ms: cpu.engine_ms / n,
        postgres_ms: cpu.postgres_ms / n,
    }
}

/// The policy: `sc.webhooks` webhooks to the receiver, the tool's API key.
fn policy_yaml(sc: &Scenario, tuning: &Tuning, rx_url: &str) -> String {
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
    if tuning.schema == Some(true) {
        yaml.push_str("schemas:\n  - topic: load.test.event\n    file: order.schema.json\n");
    }
    yaml.push_str(&format!(
        "auth:\n  api_keys:\n    - id: load\n      sha256: \"{}\"\n      roles: [publisher]\nnetwork:\n  allow_private_targets: [127.0.0.0/8]\n",
        hex::encode(sha2::Sha256::digest(KEY.as_bytes()))
    ));
    yaml
}

/// A realistic 1 KiB order event's payload (`--schema`).
fn order(client: usize, id: &str) -> serde_json::Value {
    let items: Vec<serde_json::Value> = (0..8)
        .map(|i| serde_json::json!({"sku": format!("SKU-{i:05}"), "name": format!("Item number {i} with a name"), "qty": i, "price": i as f64 * 3.0 + 0.99, "tags": ["a", "b", "c"]}))
        .collect();
    serde_json::json!({
        "order_id": format!("ord-{client}-{id}"),
        "customer": {"id": "cus-7", "email": "someone@example.com", "tier": "gold"},
        "total": 1234.5,
        "currency": "EUR",
        "items": items,
        "shipping": {"city": "Lyon", "zip": "69001", "express": true}
    })
}

/// What `--schema on` checks every order against: required members, types
/// and bounds of every item.
const ORDER_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["order_id", "customer", "total", "currency", "items"],
  "properties": {
    "order_id": {"type": "string", "pattern": "^ord-"},
    "customer": {"type": "object", "required": ["id", "email"],
                 "properties": {"id": {"type": "string"}, "email": {"type": "string", "maxLength": 254},
                                "tier": {"enum": ["bronze", "silver", "gold"]}}},
    "total": {"type": "number", "minimum": 0},
    "currency": {"type": "string", "minLength": 3, "maxLength": 3},
    "items": {"type": "array", "minItems": 1,
              "items": {"type": "object", "required": ["sku", "qty", "price"], "additionalProperties": false,
                        "properties": {"sku": {"type": "string"}, "name": {"type": "string"},
                                       "qty": {"type": "integer", "minimum": 0}, "price": {"type": "number"},
                                       "tags": {"type": "array", "items": {"type": "string"}}}}},
    "shipping": {"type": "object"}
  }
}"#;

/// Posts `n` events in batches of 1,000 from 4 clients.
async fn post_backlog(base: &str, n: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let batches = n.div_ceil(1000);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..4 {
        let (client, base) = (client.clone(), base.to_owned());
        tasks.spawn(async move {
            for b in (c..batches).step_by(4) {
                let events: Vec<serde_json::Value> = (b * 1000..((b + 1) * 1000).min(n))
                    .map(|i| serde_json::json!({"id": format!("bl-{i}"), "topic": "load.test.event", "payload": {"n": i, "pad": "x".repeat(200)}}))
                    .collect();
                let r = client.post(format!("{base}/v1/events")).bearer_auth(KEY).json(&events).send().await?;
                anyhow::ensure!(r.status().as_u16() == 202, "ingest answered {}", r.status());
            }
            anyhow::Ok(())
        });
    }
    while let Some(posted) = tasks.join_next().await {
        posted??;
    }
    Ok(())
}

/// Waits until the receiver has all `sc.events` pending deliveries from
/// `engine`, started at `started` on a database holding them.
async fn drain(
    sc: Scenario,
    mut engine: EngineProcess,
    started: Instant,
    receipts: &Receipts,
    wal: Wal,
) -> anyhow::Result<Figures> {
    let cpu_before = CpuMark::now(engine.pid());
    let deadline = started + Duration::from_secs(1800);
    loop {
        let got = receipts.lock().expect("lock").len();
        if got >= sc.events {
            break;
        }
        engine.check_running()?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {got} of {} drained in 30 min",
            sc.events
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = CpuMark::now(engine.pid()).since(&cpu_before);
    let peak_rss = engine.peak_rss_bytes();
    engine.stop().await?;
    Ok(Figures {
        deliveries: sc.events,
        secs,
        ingest: None,
        latency: None,
        cpu: per_delivery(cpu, sc.events),
        wal_bytes: wal.per_delivery(sc.events).await,
        peak_rss_mb: peak_rss.map(|b| b as f64 / (1024.0 * 1024.0)),
    })
}

/// The receiver: records each delivery's arrival; stops when the handle drops.
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
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, tokio_util::task::AbortOnDropHandle::new(task)))
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
    // A database that has held these rows for a while has been vacuumed;
    // without this, autovacuum's pass over the freshly written rows would
    // run during the measurement.
    sqlx::raw_sql("VACUUM ANALYZE").execute(db).await?;
    Ok(())
}
