//! What the isolation tool's scenarios share: the neighbour process (the
//! receivers), the engine binary on a fresh store, the policy, posting
//! events and waiting for them. It measures nothing itself.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use sha2::Digest;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use crate::common;
use crate::common::process::EngineProcess;

/// The tool's API key (roles `publisher` and `admin`).
pub const KEY: &str = "isolation-key";
/// Longest the neighbour may take to print its `ready` lines.
const NEIGHBOUR_READY: Duration = Duration::from_secs(10);
/// Concurrent clients posting events.
pub const CLIENTS: usize = 16;

/// Where the engine keeps its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Postgres,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Store::Sqlite => "sqlite",
            Store::Postgres => "postgres",
        }
    }
}

/// The engine binary: `given`, else this checkout's `release`, else its
/// `debug` build.
pub fn engine_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(bin) = given {
        anyhow::ensure!(bin.is_file(), "--engine {}: no such file", bin.display());
        return Ok(bin);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    ["release", "debug"]
        .iter()
        .map(|profile| target.join(profile).join("aion-webhooks"))
        .find(|bin| bin.is_file())
        .with_context(|| {
            format!(
                "no aion-webhooks in {}/{{release,debug}}: build it (cargo build --release --bin aion-webhooks) or pass --engine PATH",
                target.display()
            )
        })
}

/// The neighbour binary: `given`, else the `neighbour` example beside this
/// one (same profile).
pub fn neighbour_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let bin = match given {
        Some(bin) => bin,
        None => std::env::current_exe()
            .context("locating this program")?
            .with_file_name("neighbour"),
    };
    anyhow::ensure!(
        bin.is_file(),
        "{} not found: build it (cargo build [--release] --example neighbour) or pass --neighbour-bin PATH",
        bin.display()
    );
    Ok(bin)
}

/// One port's counters, as the neighbour's `GET /_stats` gives them.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct Stats {
    pub requests: u64,
    pub peak: u64,
    pub peak_first_100ms: u64,
    pub last_unix_us: Option<u64>,
}

/// The neighbour process: one loopback port per behaviour. Dropping it
/// kills the process (and it ends by itself when this one's pipe closes).
#[derive(Debug)]
pub struct Neighbour {
    child: Child,
    ports: HashMap<String, u16>,
    http: reqwest::Client,
}

impl Neighbour {
    pub async fn spawn(bin: &Path, behaviours: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            .arg("--exit-with-stdin")
            .args(behaviours)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("the neighbour's stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut ports = HashMap::new();
        while ports.len() < behaviours.len() {
            let line = tokio::time::timeout(NEIGHBOUR_READY, lines.next_line())
                .await
                .context("the neighbour did not say it was ready in time")?
                .context("reading the neighbour's stdout")?
                .context("the neighbour exited before it was ready")?;
            let mut words = line.split_whitespace();
            if let (Some("ready"), Some(name), Some(port)) =
                (words.next(), words.next(), words.next())
            {
                let port = port
                    .parse()
                    .with_context(|| format!("neighbour: {line:?}"))?;
                ports.insert(name.to_owned(), port);
            }
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self { child, ports, http })
    }

    fn port(&self, behaviour: &str) -> anyhow::Result<u16> {
        self.ports
            .get(behaviour)
            .copied()
            .with_context(|| format!("the neighbour has no {behaviour:?} port"))
    }

    /// The URL a webhook to `behaviour` posts to.
    pub fn url(&self, behaviour: &str) -> anyhow::Result<String> {
        Ok(format!("http://127.0.0.1:{}/hook", self.port(behaviour)?))
    }

    /// `behaviour`'s counters; `None` for `refused`, where nothing listens.
    pub async fn stats(&self, behaviour: &str) -> anyhow::Result<Option<Stats>> {
        if behaviour == "refused" {
            return Ok(None);
        }
        let url = format!("http://127.0.0.1:{}/_stats", self.port(behaviour)?);
        let stats = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("GET {url}"))?
            .json()
            .await
            .with_context(|| format!("GET {url}: not the stats"))?;
        Ok(Some(stats))
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// Microseconds since the epoch: the neighbour's stamps are in the same
/// clock (same machine).
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// One webhook of the policy: retry 100 ms–300 ms, 60 attempts.
pub fn hook(id: &str, url: &str, topic: &str, timeout: &str, extra: &str) -> String {
    format!(
        "  - id: {id}\n    url: {url}\n    secret: s-{id}\n    topics: [{topic}]\n    timeout: {timeout}\n    retry: {{ initial_interval: 100ms, max_interval: 300ms, max_attempts: 60 }}\n{extra}"
    )
}

/// The policy: `hooks`, the tool's key, loopback targets allowed.
pub fn policy_yaml(hooks: &[String]) -> String {
    format!(
        "version: 1\nwebhooks:\n{}auth:\n  api_keys:\n    - id: isolation\n      sha256: \"{}\"\n      roles: [publisher, admin]\nnetwork:\n  allow_private_targets: [127.0.0.0/8]\n",
        hooks.concat(),
        hex::encode(sha2::Sha256::digest(KEY.as_bytes()))
    )
}

/// Runs `body` with a healthy engine (`bin`, `policy`) on a fresh store in
/// `dir` (SQLite: a file there; PostgreSQL: a fresh database, dropped
/// after). The engine's log is `dir/engine.log`.
pub async fn with_engine<T, F, Fut>(
    store: Store,
    bin: &Path,
    dir: &Path,
    policy: &str,
    body: F,
) -> anyhow::Result<T>
where
    F: FnOnce(EngineProcess) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let policy_path = dir.join("policy.yaml");
    std::fs::write(&policy_path, policy)
        .with_context(|| format!("writing {}", policy_path.display()))?;
    let run = |db_url: String| async move {
        let mut engine =
            EngineProcess::spawn(bin, &policy_path, &db_url, &[], dir.join("engine.log"))?;
        engine.wait_healthy().await?;
        body(engine).await
    };
    match store {
        Store::Sqlite => {
            let db = dir.join("aion-webhooks.db");
            run(format!("sqlite://{}", db.display())).await
        }
        Store::Postgres => {
            let mut out = None;
            let slot = &mut out;
            common::with_fresh_database("aion_iso", |url| async move {
                *slot = Some(run(url).await?);
                Ok(())
            })
            .await
            .context("on PostgreSQL")?;
            out.context("the run returned nothing")
        }
    }
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// Posts `n` events of `topic` (ids `<prefix>-<i>`) in requests of `batch`
/// (1: a single event object; more: an array) from up to [`CLIENTS`]
/// clients at once.
pub async fn post(
    base: &str,
    topic: &str,
    prefix: &str,
    n: usize,
    batch: usize,
) -> anyhow::Result<()> {
    let client = client()?;
    let requests = n.div_ceil(batch.max(1));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS.min(requests) {
        let (client, url, topic, prefix) = (
            client.clone(),
            format!("{base}/v1/events"),
            topic.to_owned(),
            prefix.to_owned(),
        );
        tasks.spawn(async move {
            for r in (c..requests).step_by(CLIENTS) {
                let events: Vec<serde_json::Value> = (r * batch..((r + 1) * batch).min(n))
                    .map(|i| serde_json::json!({"id": format!("{prefix}-{i}"), "topic": topic, "payload": {"n": i}}))
                    .collect();
                let body = match events.as_slice() {
                    [one] if batch == 1 => one.clone(),
                    _ => serde_json::Value::Array(events),
                };
                let answer = client
                    .post(&url)
                    .bearer_auth(KEY)
                    .json(&body)
                    .send()
                    .await
                    .with_context(|| format!("POST {url}"))?;
                let status = answer.status();
                if status.as_u16() != 202 {
                    let text = answer.text().await.unwrap_or_default();
                    bail!("POST {url}: {status} {text}");
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a posting client panicked")??;
    }
    Ok(())
}

/// Waits until `behaviour` has seen `target` requests (the engine still
/// running), within `limit`; its counters then.
pub async fn wait_requests(
    neighbour: &Neighbour,
    behaviour: &str,
    target: u64,
    engine: &mut EngineProcess,
    limit: Duration,
) -> anyhow::Result<Stats> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let stats = neighbour
            .stats(behaviour)
            .await?
            .with_context(|| format!("{behaviour} keeps no counters"))?;
        if stats.requests >= target {
            return Ok(stats);
        }
        engine.check_running()?;
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "{behaviour}: {} of {target} requests after {limit:?}",
                stats.requests
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Seconds from `start_us` to `stats`'s last request.
pub fn secs_since(start_us: u64, stats: &Stats) -> f64 {
    stats
        .last_unix_us
        .unwrap_or(start_us)
        .saturating_sub(start_us) as f64
        / 1e6
}

/// The median of `values` (the lower of the middle two).
pub fn median<T: Copy + PartialOrd>(values: &[T]) -> Option<T> {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v.get(v.len().saturating_sub(1) / 2).copied()
}
