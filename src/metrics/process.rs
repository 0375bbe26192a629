//! The process's own figures, read from `/proc/self` when `/metrics` is
//! rendered (Linux; left at their last value elsewhere).

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::gauge::Gauge;

use super::Registry;

#[derive(Debug, Default)]
pub(super) struct Figures {
    rss: Gauge,
    open_fds: Gauge,
    cpu_seconds: Gauge<f64, AtomicU64>,
}

impl Figures {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let f = Self::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory",
            f.rss.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors",
            f.open_fds.clone(),
        );
        registry.register(
            "process_cpu_seconds",
            "CPU time used (user + system)",
            f.cpu_seconds.clone(),
        );
        f
    }

    /// RSS, open descriptors and CPU time, now.
    pub(super) fn read(&self) {
        if let Ok(status) = std::fs::read_to_string("/proc/self/status")
            && let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        {
            self.rss.set(kb * 1024);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds
                .set(i64::try_from(dir.count()).unwrap_or(i64::MAX));
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest)
        {
            // Fields after the command: state is the 1st, utime the 12th, stime the 13th.
            let fields: Vec<&str> = after.split_whitespace().collect();
            let ticks = |i: usize| {
                fields
                    .get(i)
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            // USER_HZ is 100 on every Linux this runs on.
            self.cpu_seconds.set((ticks(11) + ticks(12)) / 100.0);
        }
    }
}
