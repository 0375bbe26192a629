//! Shared by the benchmark tools: a fresh database for one run.

use std::future::Future;

use anyhow::Context;
use sqlx::Connection;

/// Creates `<prefix>_<pid>` on the server `DATABASE_URL` names (default
/// `postgres://postgres@127.0.0.1:5432/postgres`), runs `body` with its URL,
/// and drops it afterwards, whatever `body` returned.
pub async fn with_fresh_database<F, Fut>(prefix: &str, body: F) -> anyhow::Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let server = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = format!("{prefix}_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .context("connecting to DATABASE_URL")?;
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await?;
    let base = server
        .rsplit_once('/')
        .map_or(server.as_str(), |(base, _)| base);
    let result = body(format!("{base}/{db}")).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    result
}

/// The engine as a child process (the real `aion-webhooks serve`), the
/// binaries to run, and the CPU and memory they use (the load and
/// isolation tools); each tool compiles this file on its own, hence the
/// `allow`.
#[allow(dead_code)]
pub mod process {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    use anyhow::{Context, bail};
    use tokio::process::{Child, Command};

    /// Longest an engine may take to answer `/healthz` (migrations included).
    const READY_TIMEOUT: Duration = Duration::from_secs(60);
    /// Longest a SIGTERMed engine may take to drain before it is SIGKILLed.
    const STOP_TIMEOUT: Duration = Duration::from_secs(20);

    /// One `aion-webhooks serve` on a free loopback port, logging to a file.
    /// Dropping it SIGKILLs the process, so a failed run leaves none behind.
    #[derive(Debug)]
    pub struct EngineProcess {
        child: Child,
        pid: u32,
        pub base: String,
        pub log: PathBuf,
    }

    impl EngineProcess {
        /// Starts `bin serve` with `policy`, `DATABASE_URL=database_url`,
        /// `AION_WEBHOOKS_LOG=warn` and `env`; other `AION_WEBHOOKS_*`
        /// variables of this process reach it unchanged.
        pub fn spawn(
            bin: &Path,
            policy: &Path,
            database_url: &str,
            env: &[(&str, String)],
            log: PathBuf,
        ) -> anyhow::Result<Self> {
            let listen = format!("127.0.0.1:{}", free_port()?);
            let file = std::fs::File::create(&log)
                .with_context(|| format!("creating {}", log.display()))?;
            let child = Command::new(bin)
                .arg("serve")
                .arg("--policy")
                .arg(policy)
                .args(["--listen", &listen])
                .env("DATABASE_URL", database_url)
                .env("AION_WEBHOOKS_LOG", "warn")
                .env("AION_WEBHOOKS_WATCH_POLICY", "0")
                .env_remove("AION_WEBHOOKS_LOG_FORMAT")
                .env_remove("RUST_LOG")
                .envs(env.iter().map(|(k, v)| (*k, v)))
                .stdin(Stdio::null())
                .stdout(file.try_clone()?)
                .stderr(file)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            let pid = child.id().context("the engine has no pid")?;
            Ok(Self {
                child,
                pid,
                base: format!("http://{listen}"),
                log,
            })
        }

        pub fn pid(&self) -> u32 {
            self.pid
        }

        /// Polls `/healthz` until 200 (the binary migrates before it
        /// listens, so that also means migrated); returns how long it took.
        pub async fn wait_healthy(&mut self) -> anyhow::Result<Duration> {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()?;
            let t0 = Instant::now();
            loop {
                self.check_running()?;
                let url = format!("{}/healthz", self.base);
                if http
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
                {
                    return Ok(t0.elapsed());
                }
                if t0.elapsed() > READY_TIMEOUT {
                    bail!(
                        "engine: /healthz not 200 after {READY_TIMEOUT:?}; log {}:\n{}",
                        self.log.display(),
                        tail(&self.log, 20)
                    );
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }

        /// An error, with the log's path and tail, if the process has ended.
        pub fn check_running(&mut self) -> anyhow::Result<()> {
            match self.child.try_wait()? {
                None => Ok(()),
                Some(status) => bail!(
                    "engine exited ({status}); log {}:\n{}",
                    self.log.display(),
                    tail(&self.log, 20)
                ),
            }
        }

        /// Peak resident set size (`VmHWM`) in bytes, while it runs.
        pub fn peak_rss_bytes(&self) -> Option<u64> {
            let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
            let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
            let kb: u64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kb * 1024)
        }

        /// SIGTERM, up to [`STOP_TIMEOUT`] for the drain, then SIGKILL. An
        /// error unless it exited cleanly in time.
        pub async fn stop(mut self) -> anyhow::Result<()> {
            let sent = Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .status()
                .await
                .is_ok_and(|s| s.success());
            if sent && let Ok(status) = tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await
            {
                let status = status?;
                anyhow::ensure!(
                    status.success(),
                    "engine exited with {status} after SIGTERM; log {}:\n{}",
                    self.log.display(),
                    tail(&self.log, 20)
                );
                return Ok(());
            }
            self.child.kill().await.context("SIGKILL the engine")?;
            bail!(
                "engine did not stop within {STOP_TIMEOUT:?} of SIGTERM (killed); log {}",
                self.log.display()
            )
        }
    }

    /// A loopback port free a moment ago (the engine binds it next).
    fn free_port() -> anyhow::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    }

    /// The last `n` lines of a log file.
    fn tail(path: &Path, n: usize) -> String {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Builds this checkout's engine (`cargo build --release --bin
    /// aion-webhooks` in the manifest dir) and returns the binary:
    /// `$CARGO_TARGET_DIR` or `<manifest dir>/target`, then `release/`.
    pub async fn build_this() -> anyhow::Result<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
        cargo_build("the engine", root, None).await?;
        binary_in(&target)
    }

    /// Checks out `rev` in a worktree under the temp dir (made once, then
    /// reused), builds its engine there and returns (short sha, binary).
    pub async fn build_rev(rev: &str) -> anyhow::Result<(String, PathBuf)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let sha = git(
            root,
            &["rev-parse", "--verify", &format!("{rev}^{{commit}}")],
        )
        .await?;
        let short = git(root, &["rev-parse", "--short", &sha]).await?;
        let dir = std::env::temp_dir().join(format!("aion-webhooks-against-{sha}"));
        if dir.exists() {
            let head = git(&dir, &["rev-parse", "HEAD"]).await.ok();
            anyhow::ensure!(
                head.as_deref() == Some(sha.as_str()),
                "{} exists but is not a worktree of {sha}; remove it (and run `git worktree prune`)",
                dir.display()
            );
            println!("reusing the worktree of {short} at {}", dir.display());
        } else {
            let dir_arg = dir.to_string_lossy().into_owned();
            git(root, &["worktree", "add", "--detach", &dir_arg, &sha]).await?;
            println!("made a worktree of {short} at {}", dir.display());
        }
        let target = dir.join("target");
        let what = format!("{short}'s engine (the first build may take minutes)");
        cargo_build(&what, &dir, Some(&target)).await?;
        Ok((short, binary_in(&target)?))
    }

    /// `cargo build --release --bin aion-webhooks` in `dir`, its output
    /// shown as it goes.
    async fn cargo_build(what: &str, dir: &Path, target_dir: Option<&Path>) -> anyhow::Result<()> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(&cargo);
        cmd.args(["build", "--release", "--bin", "aion-webhooks"])
            .current_dir(dir)
            .stdin(Stdio::null());
        // Under `cargo run` this process carries the variables cargo sets
        // for a program (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, …); build
        // scripts watch some of them (`rerun-if-env-changed`), so passing
        // them on would rebuild those crates here and again at the next
        // `cargo run`.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            let set_by_cargo_run = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_"]
                .iter()
                .any(|p| key.starts_with(p))
                || matches!(
                    &*key,
                    "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_RUSTC_CURRENT_DIR"
                        | "OUT_DIR"
                );
            if set_by_cargo_run {
                cmd.env_remove(&*key);
            }
        }
        if let Some(target) = target_dir {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        println!(
            "building {what}: cargo build --release --bin aion-webhooks in {}",
            dir.display()
        );
        let status = cmd
            .status()
            .await
            .with_context(|| format!("running {}", cargo.to_string_lossy()))?;
        anyhow::ensure!(
            status.success(),
            "cargo build --release --bin aion-webhooks in {} failed ({status})",
            dir.display()
        );
        Ok(())
    }

    fn binary_in(target: &Path) -> anyhow::Result<PathBuf> {
        let bin = target.join("release").join("aion-webhooks");
        anyhow::ensure!(bin.is_file(), "{} not found after the build", bin.display());
        Ok(bin)
    }

    /// `git -C dir args…`'s trimmed stdout; its stderr is shown.
    async fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .await
            .context("running git")?;
        anyhow::ensure!(
            out.status.success(),
            "git {} failed ({})",
            args.join(" "),
            out.status
        );
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// CPU time (utime + stime) of the engine and of every process named
    /// `postgres`, read from `/proc`.
    #[derive(Debug)]
    pub struct CpuMark {
        engine: u64,
        postgres: HashMap<u32, u64>,
    }

    /// CPU spent between two marks, in milliseconds.
    #[derive(Debug, Clone, Copy)]
    pub struct CpuSpent {
        pub engine_ms: f64,
        pub postgres_ms: f64,
    }

    /// (comm, utime + stime in clock ticks) of one `/proc/<pid>/stat`.
    fn ticks(stat: &str) -> Option<(String, u64)> {
        let (head, tail) = stat.rsplit_once(") ")?;
        let comm = head.split_once(" (")?.1.to_owned();
        let fields: Vec<&str> = tail.split_whitespace().collect();
        let user: u64 = fields.get(11)?.parse().ok()?;
        let system: u64 = fields.get(12)?.parse().ok()?;
        Some((comm, user + system))
    }

    impl CpuMark {
        pub fn now(engine_pid: u32) -> Self {
            let engine = std::fs::read_to_string(format!("/proc/{engine_pid}/stat"))
                .ok()
                .and_then(|s| ticks(&s))
                .map_or(0, |t| t.1);
            let mut postgres = HashMap::new();
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
            Self { engine, postgres }
        }

        /// Time spent since `before` (100 ticks a second, Linux's USER_HZ).
        /// A PostgreSQL backend that started meanwhile counts from zero; one
        /// that ended meanwhile is lost, so the engine's pooled sessions,
        /// which live through the run, are what is counted.
        pub fn since(&self, before: &CpuMark) -> CpuSpent {
            let pg: u64 = self
                .postgres
                .iter()
                .map(|(pid, t)| t.saturating_sub(before.postgres.get(pid).copied().unwrap_or(0)))
                .sum();
            CpuSpent {
                engine_ms: self.engine.saturating_sub(before.engine) as f64 * 10.0,
                postgres_ms: pg as f64 * 10.0,
            }
        }
    }
}
