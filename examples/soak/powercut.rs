//! Power cuts on the embedded SQLite store, modelled honestly.
//!
//! A SIGKILL followed by a copy of the files models a process crash, not a
//! power cut: whatever the engine wrote sits in the page cache and the copy
//! sees it, synced or not. So the engine runs with `powercut.so`
//! (`powercut.c`, built here with `cc`) preloaded, which appends to a log
//! exactly the writes an `fsync`/`fdatasync` of their file made durable.
//! A cut is then: SIGKILL the engine, rebuild each database file as it was
//! at the incarnation's start plus the logged (synced) writes, in order,
//! drop the WAL index (`-shm`), and start the engine on that. Anything the
//! engine wrote but had not synced is gone, as after a power cut that
//! reached no cache; a storage that keeps some unsynced writes, or tears
//! one, is not modelled (SQLite's WAL checksums are meant for those).
//!
//! Before every start the soak fsyncs the files itself and takes them as
//! the incarnation's baseline: what a plain SIGKILL left in the page cache
//! is made durable for real, so the model and the machine agree.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};

const SHIM_SOURCE: &str = include_str!("powercut.c");

#[derive(Debug)]
pub struct PowerCut {
    /// The directory holding the database, its WAL and lock.
    db_dir: PathBuf,
    /// Copies of the files at the incarnation's start.
    base_dir: PathBuf,
    log: PathBuf,
    shim: PathBuf,
    sync_delay_ms: u64,
}

/// What one cut threw away (compared with what the page cache held).
#[derive(Debug, Default, Clone)]
pub struct CutReport {
    /// Syncs logged since the incarnation started.
    pub syncs: usize,
    /// 4 KiB pages that differ, and bytes of length, per file.
    pub dropped: Vec<(String, usize, i64)>,
}

impl CutReport {
    pub fn pages(&self) -> usize {
        self.dropped.iter().map(|d| d.1).sum()
    }
}

impl PowerCut {
    /// Builds the shim into `run_dir/power/`; the database lives in
    /// `db_dir`. Each sync takes `sync_delay_ms` longer (a slow disk).
    pub fn build(run_dir: &Path, db_dir: &Path, sync_delay_ms: u64) -> anyhow::Result<Self> {
        let base_dir = run_dir.join("power");
        std::fs::create_dir_all(&base_dir)?;
        let source = base_dir.join("powercut.c");
        std::fs::write(&source, SHIM_SOURCE)?;
        let shim = base_dir.join("powercut.so");
        let out = Command::new(std::env::var_os("CC").unwrap_or_else(|| "cc".into()))
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
            .arg(&shim)
            .arg(&source)
            .arg("-ldl")
            .output()
            .context("running cc to build powercut.so (--power-cuts 0 to do without)")?;
        ensure!(
            out.status.success(),
            "building powercut.so failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Self {
            db_dir: db_dir.to_owned(),
            log: base_dir.join("durable.log"),
            base_dir,
            shim,
            sync_delay_ms,
        })
    }

    /// The engine's environment for the shim.
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        let mut dir = self.db_dir.clone().into_os_string();
        dir.push("/");
        vec![
            ("LD_PRELOAD", self.shim.clone().into_os_string()),
            ("AION_SOAK_PC_DIR", dir),
            ("AION_SOAK_PC_LOG", self.log.clone().into_os_string()),
            (
                "AION_SOAK_PC_SYNC_DELAY_US",
                (self.sync_delay_ms * 1000).to_string().into(),
            ),
        ]
    }

    /// Before a start (the engine is not running): syncs the database files
    /// for real, copies them as the baseline and empties the log.
    pub fn baseline(&self) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(&self.base_dir)? {
            let path = entry?.path();
            if path
                .file_name()
                .is_some_and(|n| n != "powercut.c" && n != "powercut.so")
            {
                std::fs::remove_file(&path)?;
            }
        }
        for name in self.db_files()? {
            let from = self.db_dir.join(&name);
            std::fs::File::open(&from)?.sync_all()?;
            std::fs::copy(&from, self.base_dir.join(format!("base.{name}")))?;
        }
        std::fs::File::open(&self.db_dir)?.sync_all()?;
        std::fs::File::create(&self.log)?;
        Ok(())
    }

    /// After the engine was SIGKILLed: replaces the database files with what
    /// was durable and removes the WAL index.
    pub fn cut(&self) -> anyhow::Result<CutReport> {
        let mut images: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
        for name in self.db_files()? {
            let base = std::fs::read(self.base_dir.join(format!("base.{name}"))).ok();
            images.insert(name, base);
        }
        let log = std::fs::read(&self.log).context("reading the power-cut log")?;
        let syncs = replay(&log, &mut images, |name| {
            std::fs::read(self.base_dir.join(format!("base.{name}"))).ok()
        })?;
        if syncs == 0 {
            bail!(
                "the power-cut log is empty: powercut.so saw no fsync (was it preloaded? {})",
                self.log.display()
            );
        }
        let mut report = CutReport {
            syncs,
            ..CutReport::default()
        };
        for (name, image) in &images {
            let path = self.db_dir.join(name);
            let now = std::fs::read(&path).unwrap_or_default();
            let image = image.as_deref();
            let kept = image.unwrap_or_default();
            let pages = now
                .chunks(4096)
                .zip(kept.chunks(4096))
                .filter(|(a, b)| a != b)
                .count()
                + now.len().abs_diff(kept.len()).div_ceil(4096);
            let len = kept.len() as i64 - now.len() as i64;
            report.dropped.push((name.clone(), pages, len));
            match image {
                Some(bytes) => {
                    let tmp = self.db_dir.join(format!("{name}.cut"));
                    std::fs::write(&tmp, bytes)?;
                    std::fs::rename(&tmp, &path)?;
                }
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        for name in self.shm_files()? {
            std::fs::remove_file(self.db_dir.join(name))?;
        }
        Ok(report)
    }

    /// Database files the shim tracks (not `-shm`, not `.lock`).
    fn db_files(&self) -> anyhow::Result<BTreeSet<String>> {
        Ok(self
            .names()?
            .into_iter()
            .filter(|n| !n.ends_with("-shm") && !n.ends_with(".lock"))
            .collect())
    }

    fn shm_files(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .names()?
            .into_iter()
            .filter(|n| n.ends_with("-shm"))
            .collect())
    }

    fn names(&self) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.db_dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }
}

/// Applies the log's complete records to `images` (`None`: no such file);
/// a file first seen in the log starts from `base(name)`. Returns how many
/// records (syncs) there were. A record cut short at the end belongs to a
/// sync that never returned and is ignored.
fn replay(
    log: &[u8],
    images: &mut BTreeMap<String, Option<Vec<u8>>>,
    base: impl Fn(&str) -> Option<Vec<u8>>,
) -> anyhow::Result<usize> {
    let mut at = 0;
    let mut records = 0;
    let u32_at = |i: usize| u32::from_le_bytes(log[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |b: &[u8], i: usize| {
        usize::try_from(u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes")))
            .expect("fits usize")
    };
    while at + 8 <= log.len() {
        ensure!(&log[at..at + 4] == b"PCR1", "power-cut log damaged at {at}");
        let name_len = u32_at(at + 4) as usize;
        let mut i = at + 8;
        if i + name_len + 8 > log.len() {
            break;
        }
        let name = String::from_utf8_lossy(&log[i..i + name_len]).into_owned();
        i += name_len;
        let ops_len = u64_at(log, i);
        i += 8;
        if i + ops_len + 4 > log.len() || &log[i + ops_len..i + ops_len + 4] != b"PCEN" {
            break;
        }
        let ops = &log[i..i + ops_len];
        at = i + ops_len + 4;
        records += 1;
        let image = images.entry(name.clone()).or_insert_with(|| base(&name));
        let mut k = 0;
        while k < ops.len() {
            match ops[k] {
                b'W' => {
                    let off = u64_at(ops, k + 1);
                    let len = u64_at(ops, k + 9);
                    let data = &ops[k + 17..k + 17 + len];
                    let file = image.get_or_insert_with(Vec::new);
                    if file.len() < off + len {
                        file.resize(off + len, 0);
                    }
                    file[off..off + len].copy_from_slice(data);
                    k += 17 + len;
                }
                b'T' => {
                    image
                        .get_or_insert_with(Vec::new)
                        .resize(u64_at(ops, k + 1), 0);
                    k += 9;
                }
                b'D' => {
                    *image = None;
                    k += 1;
                }
                other => bail!("power-cut log: unknown operation {other} in a record of {name}"),
            }
        }
    }
    Ok(records)
}
