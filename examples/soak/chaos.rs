//! The chaos: which steps a run takes (engine kills with PostgreSQL
//! restarts spread between them), their random timing, and how long each
//! recovery took. It restarts what it breaks before the next step and never
//! produces load or judges the outcome.

use std::time::{Duration, Instant};

use rand::Rng;

use crate::engine::{Engine, EngineSpec, readyz};
use crate::pgtmp::PrivatePg;
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
    /// Stops `pg` this way and waits until it is down.
    fn stop(self, pg: &PrivatePg) {
        match self {
            Self::Fast => pg.stop(),
            Self::Immediate => pg.stop_immediate(),
        }
    }

    /// The `pg_ctl -m` mode name, for the report.
    pub fn mode(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Immediate => "immediate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    KillEngine,
    RestartPg,
}

/// `kills` engine kills with the PostgreSQL restarts spread evenly between.
fn plan(kills: usize, pg_restarts: usize) -> Vec<Step> {
    let mut plan = vec![Step::KillEngine; kills];
    for j in (0..pg_restarts).rev() {
        plan.insert((j + 1) * kills / (pg_restarts + 1), Step::RestartPg);
    }
    plan
}

#[derive(Debug, Default)]
pub struct ChaosLog {
    pub kill_recovery: Vec<Duration>,
    pub pg_outage: Vec<Duration>,
    pub pg_recovery: Vec<Duration>,
    pub readyz_while_down: Vec<String>,
    pub unexpected_exits: Vec<String>,
}

pub async fn run_chaos(
    args: &Args,
    spec: &EngineSpec,
    engine: &mut Engine,
    pg: &PrivatePg,
    http: &reqwest::Client,
    started: Instant,
) -> anyhow::Result<ChaosLog> {
    let base = spec.base();
    let steps = plan(args.kills, args.pg_restarts);
    let mut log = ChaosLog::default();
    let mut incarnation = 0;
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
            incarnation += 1;
            *engine = spec.spawn(incarnation)?;
            engine.wait_ready(http, &base).await?;
        }
        let n = i + 1;
        match step {
            Step::KillEngine => {
                engine.kill()?;
                incarnation += 1;
                *engine = spec.spawn(incarnation)?;
                let took = engine.wait_ready(http, &base).await?;
                log.kill_recovery.push(took);
                println!(
                    "[{at:>6.1}s] step {n}/{}: SIGKILL #{}, ready {:.0} ms after restart",
                    steps.len(),
                    log.kill_recovery.len(),
                    ms(took)
                );
            }
            Step::RestartPg => {
                tokio::task::block_in_place(|| args.pg_stop.stop(pg));
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
                    "[{at:>6.1}s] step {n}/{}: PostgreSQL restart #{} (down {:.1} s, /readyz {seen} while down), ready {:.0} ms after start",
                    steps.len(),
                    log.pg_recovery.len(),
                    outage.as_secs_f64(),
                    ms(took)
                );
            }
        }
    }
    Ok(log)
}
