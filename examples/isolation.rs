//! Isolation benchmark (issue 29): does a misbehaving webhook slow a healthy
//! one down? The engine is the real binary in a process of its own, the
//! receivers are the `neighbour` example in another, and this tool only
//! posts events and reads counters.
//!
//! `--scenario isolation` (the default): two webhooks, `ok` (the neighbour's
//! `ok` port, 200 at once) and `busy` (the misbehaving neighbour), both with
//! timeout 1 s, retry 100 ms–300 ms, 60 attempts. For each neighbour
//! behaviour, on a fresh engine and a fresh store: `--busy-events` (300)
//! events go to `busy`; 2 s later, when they are retrying, `--events` (300)
//! go to `ok` singly (16 clients), timed from the first post to the last
//! receipt at `ok`; then as many again in batches of 50. `none` (no
//! neighbour, `ok` alone) is the baseline the ratios are to; one unmeasured
//! baseline run warms each store up first. The neighbour's columns: its
//! peak of requests open at once over the row, and its requests during the
//! two measured phases (`-` for `refused`: nothing listens to count them).
//! At the end, every store's ratios side by side as a Markdown table for the
//! performance docs.
//!
//! `--scenario first-contact`: a fresh engine sends a fresh webhook
//! (`ok-50ms`) 2,000 events; the peak of requests open at the receiver in
//! the first 100 ms and over the run. Then a receiver with an accept queue
//! of 5 (`backlog-5`) gets 300 events: how many requests it saw, and how
//! many deliveries needed more than one attempt or hit the timeout.
//! `--initial-in-flight N` sets the webhook's slow start (default: unset,
//! the engine's default); run with and without to compare.
//!
//! ```text
//! cargo build --release --bin aion-webhooks --example neighbour --example isolation
//! target/release/examples/isolation                            # every neighbour, SQLite then PostgreSQL
//! target/release/examples/isolation --store sqlite --neighbour hang --repeat 3
//! target/release/examples/isolation --busy-events 5000 --neighbour 500
//! target/release/examples/isolation --scenario first-contact --store sqlite
//! target/release/examples/isolation --scenario first-contact --initial-in-flight 8
//! ```
//! Neighbours: `429-fast`, `429-slow`, `429-retry-after`, `503`, `500`,
//! `slow-200`, `hang`, `refused`, `410`. The engine is `--engine PATH`, else
//! this checkout's `target/release/aion-webhooks`, else `target/debug/…`;
//! the neighbour is `--neighbour-bin PATH`, else the `neighbour` example
//! beside this program. `--store sqlite|postgres|both` (default both):
//! SQLite keeps a file in the row's temp dir; PostgreSQL gets a fresh
//! database `aion_iso_<pid>` on the server `DATABASE_URL` names (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped after the row.
//! `--repeat N` runs every row N times (interleaved) and reports medians.
//! A failed row's temp dir (policy, engine log) is kept. Everything stays on
//! loopback; every wait has a deadline.

#[path = "common/mod.rs"]
// Some of its helpers are other tools'.
#[allow(dead_code)]
mod common;
#[path = "isolation/first_contact.rs"]
mod first_contact;
#[path = "isolation/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use harness::{Neighbour, Store};

/// The misbehaving neighbours, in the table's order.
const NEIGHBOURS: &[&str] = &[
    "429-fast",
    "429-slow",
    "429-retry-after",
    "503",
    "500",
    "slow-200",
    "hang",
    "refused",
    "410",
];
/// Longest one measured phase may take.
const PHASE_LIMIT: Duration = Duration::from_secs(180);
/// Events per batch in the batched phase.
const BATCH: usize = 50;
/// How long the neighbour's backlog retries before the measurement.
const SETTLE: Duration = Duration::from_secs(2);

/// Flags that take a value.
const FLAGS: &[&str] = &[
    "--scenario",
    "--engine",
    "--neighbour-bin",
    "--store",
    "--neighbour",
    "--busy-events",
    "--events",
    "--repeat",
    "--initial-in-flight",
    "--timeout",
];

#[derive(Debug)]
pub struct Args {
    scenario: String,
    engine: PathBuf,
    neighbour_bin: PathBuf,
    stores: Vec<Store>,
    neighbours: Vec<&'static str>,
    busy_events: usize,
    events: usize,
    repeat: usize,
    /// `--initial-in-flight` (first contact): the webhook's slow start.
    pub initial_in_flight: Option<u32>,
    /// `--timeout` (first contact): the webhook's timeout, default `10s`.
    pub timeout: String,
}

impl Args {
    fn parse() -> anyhow::Result<Self> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        for pair in args.chunks(2) {
            anyhow::ensure!(
                FLAGS.contains(&pair[0].as_str()) && pair.len() == 2,
                "{:?}: expected one of {} with a value",
                pair[0],
                FLAGS.join(", ")
            );
        }
        let pick = |flag: &str| args.chunks(2).find(|p| p[0] == flag).map(|p| p[1].clone());
        let num = |flag: &str, default: usize| -> anyhow::Result<usize> {
            pick(flag).map_or(Ok(default), |v| {
                v.parse().with_context(|| format!("{flag} {v:?}"))
            })
        };
        let stores = match pick("--store").as_deref().unwrap_or("both") {
            "sqlite" => vec![Store::Sqlite],
            "postgres" => vec![Store::Postgres],
            "both" => vec![Store::Sqlite, Store::Postgres],
            other => bail!("--store {other:?}: sqlite, postgres or both"),
        };
        let neighbours = match pick("--neighbour") {
            None => NEIGHBOURS.to_vec(),
            Some(n) => match NEIGHBOURS.iter().find(|x| **x == n) {
                Some(x) => vec![*x],
                None => bail!("--neighbour {n:?}: one of {}", NEIGHBOURS.join(", ")),
            },
        };
        let engine = harness::engine_binary(pick("--engine").map(PathBuf::from))?;
        let neighbour_bin = harness::neighbour_binary(pick("--neighbour-bin").map(PathBuf::from))?;
        let initial_in_flight = pick("--initial-in-flight")
            .map(|v| {
                v.parse()
                    .with_context(|| format!("--initial-in-flight {v:?}"))
            })
            .transpose()?;
        Ok(Self {
            scenario: pick("--scenario").unwrap_or_else(|| "isolation".into()),
            engine,
            neighbour_bin,
            stores,
            neighbours,
            busy_events: num("--busy-events", 300)?,
            events: num("--events", 300)?.max(1),
            repeat: num("--repeat", 1)?.max(1),
            initial_in_flight,
            timeout: pick("--timeout").unwrap_or_else(|| "10s".into()),
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    println!("engine: {}", args.engine.display());
    println!("neighbour: {}", args.neighbour_bin.display());
    match args.scenario.as_str() {
        "isolation" => isolation(&args).await,
        "first-contact" => {
            for &store in &args.stores {
                first_contact::run(&args, store, &args.engine, &args.neighbour_bin).await?;
            }
            Ok(())
        }
        other => bail!("--scenario {other:?}: isolation or first-contact"),
    }
}

/// One measured row.
#[derive(Debug, Clone, Copy)]
struct Row {
    singly: f64,
    batched: f64,
    /// The neighbour's peak of open requests over the row (`None`: it
    /// keeps no counters, `refused`).
    peak: Option<u64>,
    /// The neighbour's requests during the two measured phases.
    requests: Option<u64>,
}

async fn isolation(args: &Args) -> anyhow::Result<()> {
    let rows: Vec<&str> = std::iter::once("none")
        .chain(args.neighbours.iter().copied())
        .collect();
    let mut tables = Vec::new();
    for &store in &args.stores {
        println!(
            "\n{}: {} events to ok (singly, then in batches of {BATCH}); {} to the neighbour first; {} run(s) per row",
            store.name(),
            args.events,
            args.busy_events,
            args.repeat
        );
        // The store's first run is slower (a cold page cache, PostgreSQL's
        // first database); measured, it would make every ratio look better.
        let warm = one_row(args, store, "none")
            .await
            .with_context(|| format!("{} warm-up", store.name()))?;
        println!(
            "  warm-up (not counted)  singly {:.2} s  batched {:.2} s",
            warm.singly, warm.batched
        );
        let mut runs: Vec<Vec<Row>> = vec![Vec::new(); rows.len()];
        for r in 0..args.repeat {
            for (i, &neighbour) in rows.iter().enumerate() {
                let row = one_row(args, store, neighbour).await.with_context(|| {
                    format!("{} row {neighbour:?}, run {}", store.name(), r + 1)
                })?;
                println!(
                    "  run {}  {neighbour:<16} singly {:.2} s  batched {:.2} s  peak {}  requests {}",
                    r + 1,
                    row.singly,
                    row.batched,
                    show(row.peak),
                    show(row.requests)
                );
                runs[i].push(row);
            }
        }
        tables.push((store, print_table(store, &rows, &runs, args.repeat)));
    }
    print_markdown(&rows, &tables, args.repeat);
    Ok(())
}

/// Every store's ratios side by side as a Markdown table for the docs, with
/// the command line that made it.
fn print_markdown(rows: &[&str], tables: &[(Store, Vec<Medians>)], repeat: usize) {
    let command: Vec<String> = std::env::args().skip(1).collect();
    println!("\n```\nisolation {}\n```\n", command.join(" "));
    let mut head = "| neighbour |".to_string();
    let mut rule = "|---|".to_string();
    for (store, _) in tables {
        head += &format!(" {0} singly | {0} batched |", store.name());
        rule += "---|---|";
    }
    println!("{head} neighbour's requests |\n{rule}---|");
    for (i, name) in rows.iter().enumerate() {
        let mut line = format!("| `{name}` |");
        let mut requests = Vec::new();
        for (_, medians) in tables {
            let (alone, m) = (medians[0], medians[i]);
            if i == 0 {
                line += &format!(" {:.2} s | {:.2} s |", m.0, m.1);
            } else {
                line += &format!(" {:.2} | {:.2} |", m.0 / alone.0, m.1 / alone.1);
            }
            requests.push(show(m.3));
        }
        println!("{line} {} |", requests.join(", "));
    }
    println!(
        "\n(`none`: the healthy webhook alone, in seconds; the other rows: its time as a ratio to alone; medians of {repeat} run(s).)"
    );
}

fn show(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |n| n.to_string())
}

/// One row's medians: singly s, batched s, the neighbour's peak and requests.
type Medians = (f64, f64, Option<u64>, Option<u64>);

/// The store's table; returns its medians for the Markdown table.
fn print_table(store: Store, rows: &[&str], runs: &[Vec<Row>], repeat: usize) -> Vec<Medians> {
    let medians: Vec<Medians> = runs
        .iter()
        .map(|r| {
            let pick = |f: fn(&Row) -> f64| harness::median(&r.iter().map(f).collect::<Vec<_>>());
            let opt = |f: fn(&Row) -> Option<u64>| {
                harness::median(&r.iter().filter_map(f).collect::<Vec<_>>())
            };
            (
                pick(|x| x.singly).unwrap_or(f64::NAN),
                pick(|x| x.batched).unwrap_or(f64::NAN),
                opt(|x| x.peak),
                opt(|x| x.requests),
            )
        })
        .collect();
    let (alone_singly, alone_batched) =
        medians.first().map_or((f64::NAN, f64::NAN), |m| (m.0, m.1));
    let what = if repeat > 1 {
        format!(", medians of {repeat} runs")
    } else {
        String::new()
    };
    println!("\n{}{what}:", store.name());
    println!(
        "{:<16} {:>9} {:>9} {:>10} {:>9} {:>10} {:>12}",
        "neighbour", "singly s", "vs alone", "batched s", "vs alone", "nb peak", "nb requests"
    );
    for (name, m) in rows.iter().zip(&medians) {
        let name = if *name == "none" {
            "none (alone)"
        } else {
            name
        };
        println!(
            "{name:<16} {:>9.2} {:>8.2}x {:>10.2} {:>8.2}x {:>10} {:>12}",
            m.0,
            m.0 / alone_singly,
            m.1,
            m.1 / alone_batched,
            show(m.2),
            show(m.3)
        );
    }
    medians
}

/// A fresh temp dir, neighbour process, engine and store; the row's two
/// phases. The temp dir is kept if the row fails.
async fn one_row(args: &Args, store: Store, neighbour: &str) -> anyhow::Result<Row> {
    let dir = tempfile::Builder::new().prefix("aion-iso-").tempdir()?;
    let result = measure(args, store, neighbour, dir.path()).await;
    if result.is_err() {
        let kept = dir.keep();
        eprintln!(
            "row {neighbour}: failed; policy and engine log kept in {}",
            kept.display()
        );
    }
    result
}

async fn measure(args: &Args, store: Store, neighbour: &str, dir: &Path) -> anyhow::Result<Row> {
    let alone = neighbour == "none";
    let behaviours: Vec<&str> = if alone {
        vec!["ok"]
    } else {
        vec!["ok", neighbour]
    };
    let nb = Neighbour::spawn(&args.neighbour_bin, &behaviours).await?;
    let mut hooks = vec![harness::hook("ok", &nb.url("ok")?, "ok.event", "1s", "")];
    if !alone {
        hooks.push(harness::hook(
            "busy",
            &nb.url(neighbour)?,
            "busy.event",
            "1s",
            "",
        ));
    }
    let policy = harness::policy_yaml(&hooks);
    let events = args.events;
    let busy_events = args.busy_events;
    let nb_ref = &nb;
    let row = harness::with_engine(store, &args.engine, dir, &policy, |mut engine| async move {
        if !alone && busy_events > 0 {
            harness::post(&engine.base, "busy.event", "busy", busy_events, 1000).await?;
        }
        // The baseline waits too, so that every row starts alike.
        tokio::time::sleep(SETTLE).await;
        let before = nb_ref.stats(neighbour_or_ok(neighbour)).await?;
        let mut phases = [0.0; 2];
        for (phase, (batch, prefix)) in [(1, "single"), (BATCH, "batch")].into_iter().enumerate() {
            let seen = nb_ref.stats("ok").await?.map_or(0, |s| s.requests);
            let start = harness::unix_us();
            harness::post(&engine.base, "ok.event", prefix, events, batch).await?;
            let target = seen + events as u64;
            let stats = harness::wait_requests(nb_ref, "ok", target, &mut engine, PHASE_LIMIT)
                .await
                .with_context(|| format!("phase {prefix}"))?;
            phases[phase] = harness::secs_since(start, &stats);
        }
        let after = nb_ref.stats(neighbour_or_ok(neighbour)).await?;
        engine.stop().await?;
        let (peak, requests) = match (alone, before, after) {
            (false, Some(b), Some(a)) => {
                (Some(a.peak), Some(a.requests.saturating_sub(b.requests)))
            }
            _ => (None, None),
        };
        Ok(Row {
            singly: phases[0],
            batched: phases[1],
            peak,
            requests,
        })
    })
    .await;
    nb.stop().await;
    row
}

/// The behaviour whose counters a row reads (the baseline reads `ok`'s and
/// shows none).
fn neighbour_or_ok(neighbour: &str) -> &str {
    if neighbour == "none" { "ok" } else { neighbour }
}
