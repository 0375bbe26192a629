//! Crash soak: "nothing accepted is ever lost", with numbers.
//!
//! Runs the real release binary (`target/release/aion-webhooks serve`) as a
//! child process on a store of its own — a private PostgreSQL cluster (never
//! the shared server on :5432) with `--store postgres`, the default, or the
//! embedded SQLite file in the run directory with `--store sqlite` — feeds it
//! continuously — single events, batches and signed inbound commands — and
//! meanwhile SIGKILLs the engine `--kills` times at random moments
//! (restarting it at once) and crashes the store in between: PostgreSQL is
//! restarted `--pg-restarts` times; SQLite, which lives in the engine's
//! process and so crashes with every kill, gets `--power-cuts` power cuts
//! (the files as only their fsynced writes left them, see [`powercut`]) and
//! `--startup-kills` kills of an engine that is still starting. Producers
//! behave like real ones: a request whose
//! outcome is unknown (connection error, timeout, 5xx) is sent again unchanged
//! — same event ids, same `Idempotency-Key`, a fresh signature — until it gets
//! a definite answer. That makes "accepted" exact: an event is accepted iff an
//! answer was 202 or 200 (duplicate), a command iff an answer was 202.
//!
//! When the chaos is over the producers stop, the engine keeps running, and
//! the tool waits until the receiver (an axum server in this process that
//! fails `--fail-rate` of requests with 503 to exercise retries) has answered
//! 200 for every accepted event and command. It then prints one block of
//! figures and exits non-zero if anything accepted was lost, anything not
//! accepted was delivered, a request never got a definite answer, or the
//! engine exited by itself.
//!
//! ```text
//! cargo build --release && cargo run --release --example soak
//! cargo run --release --example soak -- --kills 5 --pg-restarts 1   # quicker
//! cargo run --release --example soak -- --store sqlite
//! ```
//! PostgreSQL needs its server tools (`pg_config --bindir`: initdb, pg_ctl;
//! as root they run as the `postgres` user); power cuts need `cc` (the shim
//! is built per run; `--power-cuts 0` does without). With the defaults (23
//! chaos steps 2–8 s apart on PostgreSQL, 26 on SQLite) a run takes about
//! two minutes plus a few seconds of drain.
//! PostgreSQL restarts stop it with `pg_ctl stop -m immediate` by default
//! (`PrivatePg::stop_immediate`: no shutdown checkpoint, as in a crash, so
//! every start replays the WAL); `--pg-stop fast` uses `-m fast`
//! (`PrivatePg::stop`) instead. `--sqlite-synchronous normal` runs the
//! engine with `AION_WEBHOOKS_SQLITE_SYNCHRONOUS=normal`, which does not sync
//! each commit: the power cuts should then lose events, the check that they
//! can. It is a tool, not a CI test: slow, and random by design. Engine
//! logs, the policy and the store's files or log are kept in a temp dir on
//! failure (`--keep` keeps them always).
//!
//! This file owns the arguments and the order of a run; the pieces live in
//! [`engine`] (the child process), [`db`] (the store, and the verdict's
//! questions to it), [`chaos`] (kills, restarts, power cuts),
//! [`powercut`] (what a power cut leaves), [`producers`] (load and the
//! ledger of answers), [`receiver`] (what arrived) and [`verdict`]
//! (comparing the two, and the report).

#[path = "../../tests/it/pgtmp.rs"]
mod pgtmp;

mod chaos;
mod db;
mod engine;
mod powercut;
mod producers;
mod receiver;
mod verdict;

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use clap::Parser;
use tokio_util::sync::CancellationToken;

use chaos::{PgStop, Step, run_chaos};
use db::{Db, StoreKind};
use engine::{EngineSpec, engine_binary, policy_yaml};
use pgtmp::free_port;
use powercut::PowerCut;
use producers::{Ledger, spawn_producers};
use receiver::{Receipts, start_receiver};
use verdict::{Summary, drain, explain_losses, judge, print_summary, scan_logs};

const API_KEY: &str = "aionk_soak_4b1d7c0e9f2a6d3851e7c4a09b6f2d8e1c5a7b3f9e0d2c4a6b8f1e3d5c7a9b0e";
const INBOUND_SECRET: &str = "soak-inbound-secret";
const TOPIC: &str = "soak.event";
const ACTION: &str = "approve_kernel_proposal";

#[derive(Debug, Parser)]
#[command(about = "Crash soak: SIGKILLs the engine and crashes its store under load")]
struct Args {
    /// The engine's store: a private PostgreSQL cluster, or the embedded
    /// SQLite file in the run directory.
    #[arg(long, value_enum, default_value_t = StoreKind::Postgres)]
    store: StoreKind,
    /// SIGKILLs of the engine (each followed by a restart).
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// Restarts of the private PostgreSQL, spread over the run [postgres
    /// only; default 3].
    #[arg(long)]
    pg_restarts: Option<usize>,
    /// How each PostgreSQL restart stops the server (`pg_ctl stop -m <mode>`).
    #[arg(long, value_enum, default_value_t = PgStop::Immediate)]
    pg_stop: PgStop,
    /// Power cuts: SIGKILL, then the database files as only their synced
    /// writes left them [sqlite only; default 3].
    #[arg(long)]
    power_cuts: Option<usize>,
    /// SIGKILLs of an engine that is still starting (after a kill and
    /// restart) [default 3 on sqlite, 0 on postgres].
    #[arg(long)]
    startup_kills: Option<usize>,
    /// With power cuts: each sync of the database takes this much longer (a
    /// slow disk), so that cuts find written but unsynced data more often.
    #[arg(long, default_value_t = 0)]
    sync_delay_ms: u64,
    /// The engine's `AION_WEBHOOKS_SQLITE_SYNCHRONOUS` [sqlite only; unset:
    /// the engine's default, full]. `normal` should fail the power cuts.
    #[arg(long)]
    sqlite_synchronous: Option<String>,
    /// Shortest pause between two chaos steps.
    #[arg(long, default_value_t = 2000)]
    min_gap_ms: u64,
    /// Longest pause between two chaos steps.
    #[arg(long, default_value_t = 8000)]
    max_gap_ms: u64,
    /// Single events per second, shared by 4 producers (0: none).
    #[arg(long, default_value_t = 160.0)]
    rate: f64,
    /// Events per batch.
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
    /// Batches per second, from one producer (0: none).
    #[arg(long, default_value_t = 2.0)]
    batch_rate: f64,
    /// Inbound commands per second, from one producer (0: none).
    #[arg(long, default_value_t = 5.0)]
    command_rate: f64,
    /// Share of deliveries the receiver answers 503 (they are retried).
    #[arg(long, default_value_t = 0.05)]
    fail_rate: f64,
    /// How long to wait for every accepted item once producing stops.
    #[arg(long, default_value_t = 120)]
    drain_secs: u64,
    /// Keep the run directory (engine logs, policy, PostgreSQL log).
    #[arg(long)]
    keep: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    ensure!(
        args.min_gap_ms <= args.max_gap_ms,
        "--min-gap-ms must not exceed --max-gap-ms"
    );
    ensure!(
        (0.0..1.0).contains(&args.fail_rate),
        "--fail-rate must be in [0, 1)"
    );
    let sqlite = args.store == StoreKind::Sqlite;
    ensure!(
        !sqlite || args.pg_restarts.is_none(),
        "--pg-restarts is for --store postgres"
    );
    ensure!(
        sqlite || (args.power_cuts.is_none() && args.sqlite_synchronous.is_none()),
        "--power-cuts and --sqlite-synchronous are for --store sqlite"
    );
    // Dropping `run` on Ctrl-C drops the engine (SIGKILL) and the private
    // PostgreSQL (stopped) with it.
    let passed = tokio::select! {
        result = run(&args) => result?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    };
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

impl Args {
    /// The store's crashes, in the order they are spread over the kills.
    fn store_steps(&self) -> Vec<Step> {
        let (crash, n, startup) = match self.store {
            StoreKind::Postgres => (Step::RestartPg, self.pg_restarts.unwrap_or(3), 0),
            StoreKind::Sqlite => (Step::PowerCut, self.power_cuts.unwrap_or(3), 3),
        };
        let startup = self.startup_kills.unwrap_or(startup);
        let mut steps = Vec::new();
        for i in 0..n.max(startup) {
            if i < n {
                steps.push(crash);
            }
            if i < startup {
                steps.push(Step::KillStarting);
            }
        }
        steps
    }
}

/// True if the soak passed; an error if it could not run to the end.
async fn run(args: &Args) -> anyhow::Result<bool> {
    let started = Instant::now();
    let bin = engine_binary()?;
    let dir = tempfile::Builder::new().prefix("aion-soak-").tempdir()?;
    let db = Db::start(args.store, dir.path())?;
    let result = soak(args, &bin, dir.path(), &db, started).await;
    db.save_log(dir.path());
    drop(db);
    if !matches!(result, Ok(true)) || args.keep {
        let kept = dir.keep();
        eprintln!("run directory kept: {}", kept.display());
    }
    result
}

async fn soak(
    args: &Args,
    bin: &Path,
    dir: &Path,
    db: &Db,
    started: Instant,
) -> anyhow::Result<bool> {
    let receipts: Arc<Mutex<Receipts>> = Arc::default();
    let rx_url = start_receiver(receipts.clone(), args.fail_rate).await?;
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, policy_yaml(&rx_url))?;
    let mut extra_env = Vec::new();
    if let Some(level) = &args.sqlite_synchronous {
        extra_env.push(("AION_WEBHOOKS_SQLITE_SYNCHRONOUS", level.into()));
    }
    let power = match db {
        Db::Sqlite(path) if args.power_cuts.unwrap_or(3) > 0 => {
            let db_dir = path.parent().expect("the database file's directory");
            let power = PowerCut::build(dir, db_dir, args.sync_delay_ms)?;
            extra_env.extend(power.env());
            Some(power)
        }
        _ => None,
    };
    let spec = EngineSpec {
        bin: bin.to_owned(),
        policy,
        listen: format!("127.0.0.1:{}", free_port()),
        database_url: db.url(),
        dir: dir.to_owned(),
        extra_env,
        power,
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut engine = spec.spawn(0)?;
    engine.wait_ready(&http, &spec.base()).await?;
    println!(
        "engine {} up at {} on {}{}; receiver {rx_url}",
        bin.display(),
        spec.base(),
        db.url(),
        if spec.power.is_some() {
            " (powercut.so preloaded)"
        } else {
            ""
        }
    );

    let ledger: Arc<Mutex<Ledger>> = Arc::default();
    let stop = CancellationToken::new();
    let batches: Arc<AtomicUsize> = Arc::default();
    let producers = spawn_producers(args, &spec.base(), &http, &ledger, &batches, &stop);
    let mut chaos = run_chaos(args, &spec, &mut engine, db, &http, &batches, started).await?;
    // Some load after the last recovery too, then stop and let retries settle.
    tokio::time::sleep(Duration::from_millis(args.min_gap_ms)).await;
    stop.cancel();
    for p in producers {
        p.await?;
    }
    let producing_ended = Instant::now();
    println!("[{:>6.1}s] producers stopped; draining", secs(started));

    let reader = db.reader().await?;
    let not_succeeded = drain(args, &ledger, &receipts, &reader, started).await?;
    let drain_time = producing_ended.elapsed();

    let ledger = std::mem::take(&mut *ledger.lock().expect("ledger lock"));
    let receipts = std::mem::take(&mut *receipts.lock().expect("receipts lock"));
    let verdict = judge(&ledger, &receipts);
    let rescued = reader.rescued().await?;
    let accepted: Vec<String> = ledger.accepted.iter().cloned().collect();
    let commands: Vec<String> = ledger.commands.keys().cloned().collect();
    let not_stored = reader.not_stored(&accepted, &commands).await?;
    if !verdict.lost_events.is_empty() || !verdict.lost_commands.is_empty() {
        explain_losses(&verdict, &reader).await?;
    }
    if let Some(status) = engine.exited()? {
        chaos.unexpected_exits.push(format!(
            "{} ended by itself: {status}",
            engine.log.display()
        ));
    }
    let exit = engine.terminate().await;
    let logs = scan_logs(dir)?;

    let pass = verdict.lost() == 0
        && not_stored == (0, 0)
        && verdict.unexpected.is_empty()
        && ledger.unresolved.is_empty()
        && chaos.unexpected_exits.is_empty();
    print_summary(&Summary {
        ledger: &ledger,
        verdict: &verdict,
        store: store_line(args),
        chaos: chaos.report(args),
        unexpected_exits: &chaos.unexpected_exits,
        rescued,
        not_stored,
        not_succeeded,
        engine_exit: exit,
        logs,
        drain_time,
        wall: started.elapsed(),
        pass,
    });
    if !pass {
        eprintln!(
            "soak FAILED: {} lost, {} not stored, {} unexpected, {} unresolved, {} unexpected engine exits",
            verdict.lost(),
            not_stored.0 + not_stored.1,
            verdict.unexpected.len(),
            ledger.unresolved.len(),
            chaos.unexpected_exits.len()
        );
    }
    Ok(pass)
}

/// The summary's description of the store.
fn store_line(args: &Args) -> String {
    match args.store {
        StoreKind::Postgres => "PostgreSQL (private cluster, fsync=off)".to_owned(),
        StoreKind::Sqlite => format!(
            "SQLite (WAL, synchronous={})",
            args.sqlite_synchronous
                .as_deref()
                .unwrap_or("full, the engine's default")
        ),
    }
}

/// Seconds since `since`, for the progress lines.
fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
