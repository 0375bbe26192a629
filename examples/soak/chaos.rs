//! The chaos: which steps a run takes (engine kills, with the store's own
//! crashes spread between them), their random timing, and how long each
//! recovery took. It restarts what it breaks before the next step and never
//! produces load or judges the outcome.
//!
//! The store's crashes: on PostgreSQL, restarts of the private cluster
//! (`--pg-restarts`). On SQLite the database lives in the engine's process,
//! so every SIGKILL already crashes it; on top come power cuts
//! (`--power-cuts`, see [`crate::powercut`]) and kills while the engine is
//! still starting (`--startup-kills`: opening the file, WAL recovery,
//! migrations, the first rescue of leases).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::db::Db;
use crate::engine::{Engine, EngineSpec, readyz, readyz_within};
use crate::powercut::CutReport;
use crate::{Args, ms, secs};

/// How a PostgreSQL restart stops the server (`pg_ctl stop -m <mode>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PgStop {
    /// Clients disconnected, a shutdown checkpoint written.
    Fast,
    /// As a crash would: no checkpoint, so the next start replays the WAL.
    Immediate,
}

impl PgStop {
    /// The `pg_ctl -m` mode name, for the report.
    pub fn mode(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Immediate => "immediate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    KillEngine,
    RestartPg,
    PowerCut,
    /// SIGKILL, restart, and SIGKILL again before `/readyz` answers 200.
    KillStarting,
}

/// `kills` engine kills with the `extra` steps spread evenly between.
pub fn plan(kills: usize, extra: &[Step]) -> Vec<Step> {
    let mut plan = vec![Step::KillEngine; kills];
    for (j, step) in extra.iter().enumerate().rev() {
        plan.insert((j + 1) * kills / (extra.len() + 1), *step);
    }
    plan
}

#[derive(Debug, Default)]
pub struct ChaosLog {
    pub kill_recovery: Vec<Duration>,
    pub pg_outage: Vec<Duration>,
    pub pg_recovery: Vec<Duration>,
    pub readyz_while_down: Vec<String>,
    /// Per cut: ready after, what it threw away, whether a batch post was
    /// in flight.
    pub power_cuts: Vec<(Duration, CutReport, bool)>,
    /// Per startup kill: ms after the restart, `/readyz` just before it,
    /// ready after the restart that followed.
    pub startup_kills: Vec<(u64, String, Duration)>,
    pub unexpected_exits: Vec<String>,
}

pub async fn run_chaos(
    args: &Args,
    spec: &EngineSpec,
    engine: &mut Engine,
    db: &Db,
    http: &reqwest::Client,
    batches_in_flight: &AtomicUsize,
    started: Instant,
) -> anyhow::Result<ChaosLog> {
    let base = spec.base();
    let steps = plan(args.kills, &args.store_steps());
    let mut log = ChaosLog::default();
    let mut incarnation = 0;
    let mut respawn = |engine: &mut Engine| -> anyhow::Result<()> {
        incarnation += 1;
        *engine = spec.spawn(incarnation)?;
        Ok(())
    };
    for (i, step) in steps.iter().enumerate() {
        let gap = rand::rng().random_range(args.min_gap_ms..=args.max_gap_ms);
        tokio::time::sleep(Duration::from_millis(gap)).await;
        let at = secs(started);
        if let Some(status) = engine.exited()? {
            log.unexpected_exits.push(format!(
                "{} ended by itself: {status}",
                engine.log.display()
            ));
            println!("[{at:>6.1}s] engine ended by itself ({status}); restarting");
            respawn(engine)?;
            engine.wait_ready(http, &base).await?;
        }
        let n = format!("step {}/{}", i + 1, steps.len());
        match step {
            Step::KillEngine => {
                engine.kill()?;
                respawn(engine)?;
                let took = engine.wait_ready(http, &base).await?;
                log.kill_recovery.push(took);
                println!(
                    "[{at:>6.1}s] {n}: SIGKILL #{}, ready {:.0} ms after restart",
                    log.kill_recovery.len(),
                    ms(took)
                );
            }
            Step::RestartPg => {
                let Db::Postgres(pg) = db else {
                    anyhow::bail!("a PostgreSQL restart on {}", db.url());
                };
                tokio::task::block_in_place(|| match args.pg_stop {
                    PgStop::Fast => pg.stop(),
                    PgStop::Immediate => pg.stop_immediate(),
                });
                let down = Instant::now();
                let seen = readyz(http, &base).await;
                let pause = rand::rng().random_range(1000..=3000);
                tokio::time::sleep(Duration::from_millis(pause).saturating_sub(down.elapsed()))
                    .await;
                tokio::task::block_in_place(|| pg.start());
                let outage = down.elapsed();
                let took = engine.wait_ready(http, &base).await?;
                log.pg_outage.push(outage);
                log.pg_recovery.push(took);
                log.readyz_while_down.push(seen.clone());
                println!(
                    "[{at:>6.1}s] {n}: PostgreSQL restart #{} (down {:.1} s, /readyz {seen} while down), ready {:.0} ms after start",
                    log.pg_recovery.len(),
                    outage.as_secs_f64(),
                    ms(took)
                );
            }
            Step::PowerCut => {
                let power = spec
                    .power
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("a power cut without powercut.so"))?;
                // While the engine writes, so that the cut can catch writes
                // not yet synced: during a batch post when one comes soon.
                let during = during_batch(batches_in_flight).await;
                engine.kill()?;
                let report = tokio::task::block_in_place(|| power.cut())?;
                respawn(engine)?;
                let took = engine.wait_ready(http, &base).await?;
                println!(
                    "[{at:>6.1}s] {n}: power cut #{}{} ({} syncs kept; not synced, dropped: {}), ready {:.0} ms after restart",
                    log.power_cuts.len() + 1,
                    if during { " during a batch post" } else { "" },
                    report.syncs,
                    describe_dropped(&report),
                    ms(took)
                );
                log.power_cuts.push((took, report, during));
            }
            Step::KillStarting => {
                engine.kill()?;
                respawn(engine)?;
                // Within the time a start has taken so far: before it is ready.
                let usual = median(&log.kill_recovery).max(Duration::from_millis(10));
                let after = rand::rng().random_range(0..=ms(usual) as u64);
                tokio::time::sleep(Duration::from_millis(after)).await;
                let seen = readyz_within(http, &base, Duration::from_millis(5)).await;
                engine.kill()?;
                respawn(engine)?;
                let took = engine.wait_ready(http, &base).await?;
                println!(
                    "[{at:>6.1}s] {n}: SIGKILL, restart, SIGKILL {after} ms into the start (/readyz {seen}), ready {:.0} ms after restart",
                    ms(took)
                );
                log.startup_kills.push((after, seen, took));
            }
        }
    }
    Ok(log)
}

/// Waits up to 2 s for a batch post in flight, then 0–5 ms more; true if
/// one was.
async fn during_batch(batches_in_flight: &AtomicUsize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while batches_in_flight.load(Ordering::SeqCst) == 0 {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let after = rand::rng().random_range(0..=5);
    tokio::time::sleep(Duration::from_millis(after)).await;
    true
}

fn describe_dropped(r: &CutReport) -> String {
    r.dropped
        .iter()
        .map(|(name, pages, len)| format!("{name} {pages} pages, length {len:+} B"))
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn median(d: &[Duration]) -> Duration {
    let mut d = d.to_vec();
    d.sort();
    d.get(d.len() / 2).copied().unwrap_or_default()
}

fn longest(d: &[Duration]) -> f64 {
    d.iter().max().map_or(0.0, |d| ms(*d))
}

impl ChaosLog {
    /// The summary's lines about the chaos, label and text.
    pub fn report(&self, args: &Args) -> Vec<(&'static str, String)> {
        let mut lines = vec![(
            "engine kills",
            format!(
                "{} (/readyz 200 after each; longest {:.0} ms, median {:.0} ms after restart)",
                self.kill_recovery.len(),
                longest(&self.kill_recovery),
                ms(median(&self.kill_recovery))
            ),
        )];
        if args.store == crate::db::StoreKind::Postgres {
            lines.push((
                "pg restarts",
                format!(
                    "{}, -m {} (/readyz while down: {}; 200 again longest {:.0} ms after start; outages {})",
                    self.pg_recovery.len(),
                    args.pg_stop.mode(),
                    self.readyz_while_down.join(", "),
                    longest(&self.pg_recovery),
                    self.pg_outage
                        .iter()
                        .map(|d| format!("{:.1} s", d.as_secs_f64()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        } else {
            let ready: Vec<Duration> = self.power_cuts.iter().map(|c| c.0).collect();
            lines.push((
                "power cuts",
                format!(
                    "{} ({} during a batch post; unsynced 4 KiB pages dropped: {}; /readyz 200 again longest {:.0} ms after restart)",
                    self.power_cuts.len(),
                    self.power_cuts.iter().filter(|c| c.2).count(),
                    self.power_cuts
                        .iter()
                        .map(|c| c.1.pages().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    longest(&ready)
                ),
            ));
        }
        if !self.startup_kills.is_empty() {
            let ready: Vec<Duration> = self.startup_kills.iter().map(|k| k.2).collect();
            lines.push((
                "kills while starting",
                format!(
                    "{} (ms into the start / /readyz then: {}; 200 longest {:.0} ms after the next restart)",
                    self.startup_kills.len(),
                    self.startup_kills
                        .iter()
                        .map(|k| format!("{} {}", k.0, k.1))
                        .collect::<Vec<_>>()
                        .join(", "),
                    longest(&ready)
                ),
            ));
        }
        lines
    }
}
