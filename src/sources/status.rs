//! What each source has done, for `GET /v1/sources`, `/readyz` and the
//! metrics: its counters, connection, lag and last error, and the registry
//! the API reads them from.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::Meters;
use crate::policy::sources::Source;

/// How far behind a source is.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Lag {
    /// Not measured yet.
    #[default]
    Unknown,
    /// Per partition: the high watermark minus the committed position.
    Kafka { partitions: Vec<PartitionLag> },
    /// Messages not yet delivered to the consumer, and delivered but not acknowledged.
    Nats { pending: u64, ack_pending: u64 },
}

impl Lag {
    /// Messages behind, in all.
    pub fn total(&self) -> u64 {
        match self {
            Self::Unknown => 0,
            Self::Kafka { partitions } => partitions.iter().map(|p| p.lag).sum(),
            Self::Nats {
                pending,
                ack_pending,
            } => pending + ack_pending,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub lag: u64,
}

/// One source's figures at a moment, for the API.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub id: String,
    pub kind: &'static str,
    pub enabled: bool,
    pub state: &'static str,
    pub connected: bool,
    pub paused: bool,
    pub lag_total: u64,
    pub lag: Lag,
    pub consumed: u64,
    pub events_created: u64,
    pub duplicates: u64,
    pub rejects: u64,
    pub last_error: Option<(DateTime<Utc>, String)>,
}

/// What one source has done since the engine (or its entry) started.
#[derive(Debug)]
pub struct Status {
    pub(super) id: String,
    pub(super) kind: &'static str,
    pub(super) enabled: bool,
    pub(super) connected: AtomicBool,
    /// Storing failed (database unreachable): nothing is consumed or committed.
    pub(super) paused: AtomicBool,
    pub(super) consumed: AtomicU64,
    pub(super) created: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) rejects: AtomicU64,
    pub(super) last_error: Mutex<Option<(DateTime<Utc>, String)>>,
    pub(super) lag: Mutex<Lag>,
    pub(super) meters: Arc<Meters>,
}

impl Status {
    pub(super) fn new(source: &Source, meters: Arc<Meters>) -> Self {
        Self {
            id: source.id.clone(),
            kind: source.kind.as_str(),
            enabled: source.enabled,
            connected: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            consumed: AtomicU64::new(0),
            created: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            rejects: AtomicU64::new(0),
            last_error: Mutex::new(None),
            lag: Mutex::new(Lag::Unknown),
            meters,
        }
    }

    pub fn set_connected(&self, connected: bool) {
        if self.connected.swap(connected, Ordering::Relaxed) != connected {
            self.meters.source_connected(&self.id, connected);
            if connected {
                tracing::info!(source = %self.id, "source connected");
            }
        }
    }

    /// Records a problem for `/v1/sources` and logs it (once per distinct message).
    pub fn error(&self, message: impl Into<String>) {
        // Client libraries repeat the address they were given; a credential
        // in it must reach neither `/v1/sources` nor the log.
        let message: String = message.into();
        let message = crate::domain::redact::strip_userinfo_in(&message).into_owned();
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref().is_none_or(|(_, m)| *m != message) {
            tracing::warn!(source = %self.id, error = %message, "source error");
        }
        *last = Some((Utc::now(), message));
    }

    pub fn set_lag(&self, lag: Lag) {
        self.meters.source_lag(&self.id, lag.total());
        *self.lag.lock().unwrap_or_else(|e| e.into_inner()) = lag;
    }

    /// What `GET /v1/sources` shows of it.
    pub fn snapshot(&self) -> Snapshot {
        let last_error = self
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let lag = self.lag.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Snapshot {
            id: self.id.clone(),
            kind: self.kind,
            enabled: self.enabled,
            state: self.state(),
            connected: self.connected.load(Ordering::Relaxed),
            paused: self.paused.load(Ordering::Relaxed),
            lag_total: lag.total(),
            lag,
            consumed: self.consumed.load(Ordering::Relaxed),
            events_created: self.created.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            rejects: self.rejects.load(Ordering::Relaxed),
            last_error,
        }
    }

    /// One word for `/readyz`.
    pub fn state(&self) -> &'static str {
        if !self.enabled {
            "disabled"
        } else if self.paused.load(Ordering::Relaxed) {
            "paused"
        } else if self.connected.load(Ordering::Relaxed) {
            "consuming"
        } else {
            "disconnected"
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn consumed(&self) -> u64 {
        self.consumed.load(Ordering::Relaxed)
    }
}

/// Every configured source's status, by id (shared with the API).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    map: Arc<Mutex<BTreeMap<String, Arc<Status>>>>,
}

impl Registry {
    pub fn all(&self) -> Vec<Arc<Status>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Status>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    pub(super) fn put(&self, status: Arc<Status>) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(status.id.clone(), status);
    }

    pub(super) fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}
