//! A private, throwaway PostgreSQL server for tests that stop and start the
//! database. It never touches the shared server the other tests use: its own
//! data directory, port and socket directory, all under a temp dir. Dropping
//! it stops the server (`-m immediate`), so a failed test leaves nothing
//! running.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A PostgreSQL server of our own, on a free loopback port, trust auth.
#[derive(Debug)]
pub struct PrivatePg {
    bindir: PathBuf,
    /// Holds the data directory, the socket and the log; removed on drop.
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

impl PrivatePg {
    /// Runs `initdb` in a fresh temp dir and starts the server.
    pub fn start_new() -> Self {
        let bindir = bindir();
        let dir = tempfile::tempdir().expect("tempdir for PostgreSQL");
        // PostgreSQL refuses to run as root, so as root we hand the directory
        // to the `postgres` user and run its tools as that user.
        let as_postgres = running_as_root();
        if as_postgres {
            check(
                Command::new("chown")
                    .args(["-R", "postgres"])
                    .arg(dir.path())
                    .output(),
                "chown the PostgreSQL temp dir",
            );
        }
        let pg = Self {
            bindir,
            dir,
            port: free_port(),
            as_postgres,
        };
        let data = pg.data_dir();
        check(
            pg.tool("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-A", "trust", "-U", "postgres", "--no-sync"])
                .output(),
            "initdb",
        );
        pg.start();
        pg
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server and waits until it accepts connections. `fsync=off`
    /// is safe here: a stop, even an immediate one (a crash of PostgreSQL,
    /// replayed from the WAL at the next start), leaves the written pages in
    /// the OS page cache; only a crash of the machine would lose them.
    pub fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-o", &opts, "-l"])
            .arg(self.log_path())
            .args(["-w", "start"])
            .output();
        if !matches!(&out, Ok(o) if o.status.success()) {
            panic!("pg_ctl start failed: {out:?}\nserver log:\n{}", self.log());
        }
    }

    /// Fast shutdown (clients are disconnected), waiting until it is down.
    pub fn stop(&self) {
        check(self.pg_ctl_stop("fast"), "pg_ctl stop -m fast");
    }

    /// Stops the server as a crash would: no checkpoint, clients cut off;
    /// the next start replays the WAL.
    #[allow(dead_code)] // Used by the crash soak (examples/soak), not by every test.
    pub fn stop_immediate(&self) {
        check(self.pg_ctl_stop("immediate"), "pg_ctl stop -m immediate");
    }

    /// The server log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn pg_ctl_stop(&self, mode: &str) -> std::io::Result<Output> {
        self.tool("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", mode, "-w", "stop"])
            .output()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    fn tool(&self, name: &str) -> Command {
        let exe = self.bindir.join(name);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        // Already stopped is fine; anything else is worth a line in the output.
        if let Ok(out) = self.pg_ctl_stop("immediate")
            && !out.status.success()
            && self.data_dir().join("postmaster.pid").exists()
        {
            eprintln!(
                "PrivatePg: stopping the server failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn bindir() -> PathBuf {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("pg_config --bindir (is PostgreSQL installed?)");
    assert!(out.status.success(), "pg_config --bindir failed");
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        Path::new(&dir).join("initdb").exists(),
        "no initdb in {}",
        dir.display()
    );
    dir
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A port that was free a moment ago (bind port 0, read it, let it go).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

fn check(out: std::io::Result<Output>, what: &str) {
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "{what} failed ({}):\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("{what}: {e}"),
    }
}
