//! Policy hot reload (contract §6): the file is read and fully validated
//! first; an invalid file leaves the policy in force untouched and is kept
//! for `GET /v1/policy`; a valid one is swapped in whole (one `ArcSwap`
//! store: no request or claim sees half of each) and audited. The same
//! content again is a no-op. Triggers — a file change, `SIGHUP`, the API —
//! all come through [`Reloader::reload`], one at a time.
//!
//! No HTTP types here. The file watcher and `SIGHUP` are in [`watch`].

mod diff;
mod meters;
pub mod watch;

pub use diff::diff;
pub use meters::Meters;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::audit::{AuditEntry, Outcome, RequestContext};
use crate::policy::{PolicyErrors, PolicySet};
use crate::store::Store;

/// What asked for the reload; recorded as the audit actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    File,
    Signal,
    /// An admin through the API: the caller's actor id, and the request's
    /// id and peer for the audit record.
    Api(String, RequestContext),
}

impl Trigger {
    pub fn actor(&self) -> &str {
        match self {
            Self::File => "file",
            Self::Signal => "signal",
            Self::Api(actor, _) => actor,
        }
    }

    fn request(&self) -> RequestContext {
        match self {
            Self::Api(_, request) => request.clone(),
            Self::File | Self::Signal => RequestContext::default(),
        }
    }
}

/// Which webhooks a reload added, removed or changed (by id).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Diff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

/// How a reload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The new policy is in force.
    Applied {
        old_sha256: String,
        sha256: String,
        diff: Diff,
    },
    /// The file holds the policy already in force: nothing done.
    Unchanged { sha256: String },
}

/// The last reload attempt, for `GET /v1/policy`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastReload {
    pub at: DateTime<Utc>,
    /// `applied`, `unchanged` or `invalid`.
    pub outcome: &'static str,
    /// Every problem of an invalid file, `file:line:column: path: message`.
    pub errors: Vec<String>,
}

/// What `GET /v1/policy` shows. Never a secret.
#[derive(Debug, Clone)]
pub struct PolicyStatus {
    pub sha256: String,
    pub loaded_at: DateTime<Utc>,
    pub source: PathBuf,
    pub webhooks: usize,
    pub last_reload: Option<LastReload>,
}

#[derive(Debug)]
struct State {
    loaded_at: DateTime<Utc>,
    last: Option<LastReload>,
}

/// Reloads one policy file into the live handle.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    live: Arc<ArcSwap<PolicySet>>,
    store: Store,
    meters: Arc<Meters>,
    state: Mutex<State>,
    /// One reload at a time: two triggers must not interleave read and swap.
    serial: tokio::sync::Mutex<()>,
    /// Counts finished reload attempts, for [`Reloader::attempts`].
    attempts: tokio::sync::watch::Sender<u64>,
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        live: Arc<ArcSwap<PolicySet>>,
        store: Store,
        meters: Arc<Meters>,
    ) -> Self {
        meters.policy_in_force(&live.load());
        Self {
            path,
            live,
            store,
            meters,
            state: Mutex::new(State {
                loaded_at: Utc::now(),
                last: None,
            }),
            serial: tokio::sync::Mutex::new(()),
            attempts: tokio::sync::watch::Sender::new(0),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The policy file and every file the policy in force read.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.path.clone()];
        files.extend(self.live.load().files().iter().cloned());
        files
    }

    /// Reads, validates and (if valid and new) swaps in the policy file.
    /// Once started, a reload finishes — swap and audit record together —
    /// whatever becomes of the caller: it runs on a task of its own, so an
    /// API client that hangs up (dropping its handler) cannot leave a change
    /// in force with no audit record.
    pub async fn reload(self: &Arc<Self>, trigger: Trigger) -> Result<Reloaded, PolicyErrors> {
        let this = self.clone();
        tokio::spawn(async move { this.reload_to_the_end(trigger).await })
            .await
            .unwrap_or_else(|e| Err(self.failed(format!("the reload failed: {e}"))))
    }

    /// A reload that ended before validation could say anything (a task
    /// that panicked), as one error without a position.
    fn failed(&self, message: String) -> PolicyErrors {
        PolicyErrors {
            source_name: self.path.display().to_string(),
            errors: vec![crate::policy::PolicyError {
                path: String::new(),
                line: 0,
                column: 0,
                message,
            }],
        }
    }

    /// Subscribes to reloads: the value changes after each attempt that
    /// read the files (the file watcher then looks at the files again).
    pub fn attempts(&self) -> tokio::sync::watch::Receiver<u64> {
        self.attempts.subscribe()
    }

    async fn reload_to_the_end(&self, trigger: Trigger) -> Result<Reloaded, PolicyErrors> {
        let _one = self.serial.lock().await;
        let result = self.reload_serial(trigger).await;
        self.attempts.send_modify(|n| *n += 1);
        result
    }

    async fn reload_serial(&self, trigger: Trigger) -> Result<Reloaded, PolicyErrors> {
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || PolicySet::load_file(&path))
            .await
            .unwrap_or_else(|e| Err(self.failed(format!("reading the policy failed: {e}"))));
        let now = Utc::now();
        let new = match loaded {
            Ok(p) => p,
            Err(errors) => {
                tracing::error!(
                    trigger = trigger.actor(),
                    "policy reload refused; the policy in force stays:\n{errors}"
                );
                self.remember(now, "invalid", error_lines(&errors));
                self.meters.reload("invalid");
                return Err(errors);
            }
        };
        let old = self.live.load_full();
        if old.fingerprint() == new.fingerprint() {
            self.remember(now, "unchanged", Vec::new());
            self.meters.reload("unchanged");
            return Ok(Reloaded::Unchanged {
                sha256: new.sha256().to_owned(),
            });
        }
        let diff = diff(&old, &new);
        let new = Arc::new(new);
        self.live.store(new.clone());
        self.meters.reload("applied");
        self.meters.policy_in_force(&new);
        {
            let mut s = self.state.lock().expect("lock");
            s.loaded_at = now;
            s.last = Some(LastReload {
                at: now,
                outcome: "applied",
                errors: Vec::new(),
            });
        }
        let request = trigger.request();
        let entry = AuditEntry {
            at: now,
            actor_id: trigger.actor().to_owned(),
            action: "policy.reload".into(),
            outcome: Outcome::Applied,
            target: Some(new.sha256().to_owned()),
            request_id: request.request_id,
            source_ip: request.source_ip,
        };
        let mut extra = serde_json::Map::new();
        extra.insert("old_sha256".into(), json!(old.sha256()));
        extra.insert("diff".into(), json!(diff));
        // A reload that changed only schema files keeps the file's sha256:
        // the fingerprints (policy text and schema files) tell it apart.
        extra.insert("old_fingerprint".into(), json!(old.fingerprint()));
        extra.insert("fingerprint".into(), json!(new.fingerprint()));
        let event = entry.event_with(&new, extra);
        if let Err(e) = self.store.record_audit(&entry.row(), &event, now).await {
            tracing::error!(error = %e.chain(), "the policy was reloaded but its audit record could not be written");
        }
        tracing::info!(
            trigger = trigger.actor(),
            sha256 = new.sha256(),
            old_sha256 = old.sha256(),
            added = diff.added.len(),
            removed = diff.removed.len(),
            changed = diff.changed.len(),
            "policy reloaded"
        );
        Ok(Reloaded::Applied {
            old_sha256: old.sha256().to_owned(),
            sha256: new.sha256().to_owned(),
            diff,
        })
    }

    pub fn status(&self) -> PolicyStatus {
        let policy = self.live.load();
        let s = self.state.lock().expect("lock");
        PolicyStatus {
            sha256: policy.sha256().to_owned(),
            loaded_at: s.loaded_at,
            source: self.path.clone(),
            webhooks: policy.webhooks().len(),
            last_reload: s.last.clone(),
        }
    }

    fn remember(&self, at: DateTime<Utc>, outcome: &'static str, errors: Vec<String>) {
        self.state.lock().expect("lock").last = Some(LastReload {
            at,
            outcome,
            errors,
        });
    }
}

/// Each problem as `file:line:column: path: message`.
pub fn error_lines(errors: &PolicyErrors) -> Vec<String> {
    errors
        .errors
        .iter()
        .map(|e| format!("{}:{e}", errors.source_name))
        .collect()
}
