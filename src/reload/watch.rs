//! The reload triggers that are not the API: `SIGHUP`, and a watcher on
//! the policy file and every file the policy reads (secret, header, key,
//! password and credentials files, schemas).
//!
//! Files are watched through their directories, so every way a file is
//! replaced is seen: written in place, renamed over (editors), a symlink
//! re-pointed (`ln -sfn`), and Kubernetes' mounted secrets, where the file
//! is a link through `..data`, a link the kubelet swaps to a new
//! timestamped directory (the events name `..data`, never the file). A
//! link's target directory is watched too. After every reload, whoever
//! triggered it, the set of watched files is taken again from the policy in
//! force (a new secret file, a link now pointing elsewhere).

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Reloader, Trigger};

/// Starts what reloads the policy by itself, on `tasks` until `cancel`:
/// the SIGHUP handler, and with `watch` the file watcher.
pub fn start(reloader: Arc<Reloader>, watch: bool, tasks: &TaskTracker, cancel: CancellationToken) {
    tasks.spawn(reload_on_signal(reloader.clone(), cancel.clone()));
    if watch {
        watch_policy_files(reloader, tasks, cancel);
    }
}

/// Reloads the policy on every SIGHUP until `cancel`.
pub async fn reload_on_signal(reloader: Arc<Reloader>, cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload through the file or the API");
        return;
    };
    loop {
        tokio::select! {
            got = hup.recv() => {
                if got.is_none() {
                    return;
                }
                tracing::info!("SIGHUP: reloading the policy");
                let _ = reloader.reload(Trigger::Signal).await;
            }
            () = cancel.cancelled() => return,
        }
    }
}

/// What the watcher looks for: directories, and the names in them that
/// belong to a watched file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Targets {
    pub dirs: BTreeSet<PathBuf>,
    names: HashSet<(PathBuf, OsString)>,
}

impl Targets {
    /// The directories and names to watch for `files` (made absolute, so
    /// event paths compare): each file's own, and where a file is a symlink,
    /// its final target's.
    pub fn of(files: &[PathBuf]) -> Self {
        let mut t = Self::default();
        for file in files {
            let Ok(file) = std::path::absolute(file) else {
                continue;
            };
            t.add(&file);
            if let Ok(real) = std::fs::canonicalize(&file)
                && real != file
            {
                t.add(&real);
            }
        }
        t
    }

    fn add(&mut self, file: &Path) {
        if let (Some(dir), Some(name)) = (file.parent(), file.file_name()) {
            self.dirs.insert(dir.to_path_buf());
            self.names.insert((dir.to_path_buf(), name.to_os_string()));
        }
    }

    /// Whether a change at `path` may change a watched file: the file
    /// itself, or a `..`-named entry (Kubernetes' `..data` link and its
    /// timestamped directories) beside one.
    pub fn concerns(&self, path: &Path) -> bool {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return false;
        };
        self.names
            .contains(&(dir.to_path_buf(), name.to_os_string()))
            || (name.as_encoded_bytes().starts_with(b"..") && self.dirs.contains(dir))
    }
}

/// Watches the policy and its files, and reloads 200 ms after the last
/// change, until `cancel`.
pub fn watch_policy_files(reloader: Arc<Reloader>, tasks: &TaskTracker, cancel: CancellationToken) {
    use notify::Watcher;
    let targets = Arc::new(Mutex::new(Targets::default()));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
    let seen = targets.clone();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        let t = seen.lock().unwrap_or_else(|e| e.into_inner());
        if event.paths.iter().any(|p| t.concerns(p)) {
            let _ = tx.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the policy file; reload with SIGHUP or the API");
            return;
        }
    };
    let mut watched = BTreeSet::new();
    let policy = reloader.clone();
    let mut resync = move |watcher: &mut notify::RecommendedWatcher| {
        let now = Targets::of(&policy.files());
        for gone in watched.difference(&now.dirs) {
            let _ = watcher.unwatch(gone);
        }
        for dir in now.dirs.difference(&watched) {
            if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot watch a directory the policy reads from; reload with SIGHUP or the API");
            }
        }
        watched = now.dirs.clone();
        *targets.lock().unwrap_or_else(|e| e.into_inner()) = now;
    };
    resync(&mut watcher);
    let mut attempts = reloader.attempts();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                got = rx.recv() => if got.is_none() { return; },
                changed = attempts.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    resync(&mut watcher);
                    continue;
                }
                () = cancel.cancelled() => return,
            }
            // Debounce: an editor's save, a secret swap, is several events.
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(200)) => break,
                    got = rx.recv() => if got.is_none() { return; },
                }
            }
            let _ = reloader.reload(Trigger::File).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubernetes_style_secret_is_watched_through_its_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        let stamp = root.join("..2026_12_06_1");
        std::fs::create_dir(&stamp).expect("mkdir");
        std::fs::write(stamp.join("token"), "s1").expect("write");
        std::os::unix::fs::symlink("..2026_12_06_1", root.join("..data")).expect("link");
        std::os::unix::fs::symlink("..data/token", root.join("token")).expect("link");

        let t = Targets::of(&[root.join("token")]);
        assert!(t.dirs.contains(&root) && t.dirs.contains(&stamp), "{t:?}");
        assert!(t.concerns(&root.join("token")));
        assert!(t.concerns(&root.join("..data")));
        assert!(t.concerns(&root.join("..data_tmp")));
        assert!(t.concerns(&stamp.join("token")));
        assert!(!t.concerns(&root.join("other")));
        assert!(!t.concerns(&root.join("sub").join("..data")));
    }
}
