//! The engine under test as a child process: how to start it (the release
//! binary, the run's policy, one fixed port for every incarnation), wait for
//! `/readyz`, SIGKILL it and finally SIGTERM it. It knows nothing of the
//! load or the verdict; every start and kill is the chaos loop's decision.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow, bail};
use sha2::Digest;

use crate::powercut::PowerCut;
use crate::{ACTION, API_KEY, INBOUND_SECRET, TOPIC};

/// Longest the engine may take to answer `/readyz` 200 after a restart.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start the engine; every incarnation uses the same port, so
/// producers never need to learn a new address.
#[derive(Debug)]
pub struct EngineSpec {
    pub bin: PathBuf,
    pub policy: PathBuf,
    pub listen: String,
    pub database_url: String,
    pub dir: PathBuf,
    /// Set for every incarnation, after the soak's own settings.
    pub extra_env: Vec<(&'static str, OsString)>,
    /// On SQLite with power cuts: the shim, and the baseline taken before
    /// every start.
    pub power: Option<PowerCut>,
}

impl EngineSpec {
    pub fn base(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// Starts incarnation `n`, logging to `engine-<n>.log` in the run dir.
    pub fn spawn(&self, n: usize) -> anyhow::Result<Engine> {
        if let Some(power) = &self.power {
            tokio::task::block_in_place(|| power.baseline())?;
        }
        let log = self.dir.join(format!("engine-{n:02}.log"));
        let file = std::fs::File::create(&log)?;
        let child = Command::new(&self.bin)
            .arg("serve")
            .arg("--policy")
            .arg(&self.policy)
            .args(["--listen", &self.listen])
            .env("DATABASE_URL", &self.database_url)
            // A killed engine's leases expire 2 s after its 2 s send timeout
            // and are looked for twice a second: rescues come quickly.
            .env("AION_WEBHOOKS_LEASE_MARGIN_SECS", "2")
            .env("AION_WEBHOOKS_RESCUE_INTERVAL_MS", "500")
            .env("AION_WEBHOOKS_WATCH_POLICY", "0")
            .env("AION_WEBHOOKS_LOG", "warn")
            .env_remove("AION_WEBHOOKS_POLICY")
            .env_remove("AION_WEBHOOKS_LISTEN")
            .env_remove("AION_WEBHOOKS_LOG_FORMAT")
            .env_remove("RUST_LOG")
            .env_remove("AION_WEBHOOKS_SQLITE_SYNCHRONOUS")
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        Ok(Engine { child, log })
    }
}

/// One engine process. Dropping it SIGKILLs it if it still runs.
#[derive(Debug)]
pub struct Engine {
    child: Child,
    pub log: PathBuf,
}

impl Engine {
    /// Polls `/readyz` until 200; returns how long that took. Fails if the
    /// process exits or is not ready within [`READY_TIMEOUT`].
    pub async fn wait_ready(
        &mut self,
        http: &reqwest::Client,
        base: &str,
    ) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "engine exited before it was ready ({status}); log {}:\n{}",
                    self.log.display(),
                    tail(&self.log, 30)
                );
            }
            if readyz(http, base).await == "200" {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > READY_TIMEOUT {
                bail!(
                    "/readyz not 200 after {READY_TIMEOUT:?}; log {}:\n{}",
                    self.log.display(),
                    tail(&self.log, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// SIGKILL (what `Child::kill` sends on Unix): no shutdown code runs.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().context("SIGKILL the engine")?;
        self.child.wait().context("reap the engine")?;
        Ok(())
    }

    /// SIGTERM, then up to 20 s for the drain; describes how it ended.
    pub async fn terminate(&mut self) -> String {
        let pid = self.child.id().to_string();
        if !Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|s| s.success())
        {
            return "SIGTERM could not be sent".into();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.to_string(),
                Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => return format!("wait failed: {e}"),
            }
        }
        "still running 20 s after SIGTERM (killed)".into()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `/readyz`'s status code as text, or why there was none.
pub async fn readyz(http: &reqwest::Client, base: &str) -> String {
    readyz_within(http, base, Duration::from_secs(3)).await
}

/// [`readyz`] with its own timeout.
pub async fn readyz_within(http: &reqwest::Client, base: &str, timeout: Duration) -> String {
    match http
        .get(format!("{base}/readyz"))
        .timeout(timeout)
        .send()
        .await
    {
        Ok(r) => r.status().as_u16().to_string(),
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(_) => "no connection".into(),
    }
}

/// `target/release/aion-webhooks`, refusing to run without it and warning
/// when it is older than the sources.
pub fn engine_binary() -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bin = target.join("release").join("aion-webhooks");
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .map_err(|_| {
            anyhow!(
                "{} not found: run `cargo build --release` first",
                bin.display()
            )
        })?;
    if newest_mtime(&root.join("src")).is_some_and(|src| src > built) {
        eprintln!(
            "warning: {} is older than src/; run `cargo build --release` to soak the current code",
            bin.display()
        );
    }
    Ok(bin)
}

fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            if meta.is_dir() {
                newest_mtime(&e.path())
            } else {
                meta.modified().ok()
            }
        })
        .max()
}

pub fn policy_yaml(rx_url: &str) -> String {
    let key_sha = hex::encode(sha2::Sha256::digest(API_KEY.as_bytes()));
    format!(
        r#"version: 1
webhooks:
  - id: soak-sink
    url: {rx_url}
    secret: soak-webhook-secret
    topics: ["{TOPIC}", "command.*"]
    timeout: 2s
    retry: {{ initial_interval: 100ms, max_interval: 1s, max_attempts: 1000 }}
inbound:
  secret: {INBOUND_SECRET}
  actions:
    {ACTION}: {{ roles: [soak-runner] }}
auth:
  api_keys:
    - id: soak
      sha256: "{key_sha}"
      roles: [publisher, admin, soak-runner]
network:
  allow_private_targets: [127.0.0.0/8]
"#
    )
}

/// The last `n` lines of a log file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
