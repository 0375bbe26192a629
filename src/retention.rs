//! Retention (contract §1 `retention:`): a background task that deletes
//! finished deliveries past their age, with their attempts and the events
//! they leave behind (and, after `succeeded`, events that matched no
//! webhook), in small batches with a pause between them so the
//! queue is never held up. Rejected bus messages (`source_rejects`) are
//! kept as long as dead deliveries. Audit records are never deleted. Settings come
//! from the policy in force, so a reload changes them.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::Registry;
use crate::policy::PolicySet;
use crate::store::{Purged, Store, StoreError};

/// Rows per transaction.
pub const BATCH: u32 = 1000;
/// Pause between two batches of one pass.
const PAUSE: Duration = Duration::from_millis(100);
/// Time between passes.
const EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// What retention counts: rows deleted, by kind.
#[derive(Debug, Default)]
pub struct Meters {
    deleted: Family<KindLabel, Counter>,
}

impl Meters {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "retention_deleted",
            "Rows the retention task deleted (deliveries, attempts, events)",
            m.deleted.clone(),
        );
        m
    }

    /// Rows deleted, by kind (`deliveries`, `attempts`, `events`,
    /// `source_rejects`).
    pub fn deleted(&self, by_kind: &[(&'static str, u64)]) {
        for &(kind, n) in by_kind {
            self.deleted.get_or_create(&KindLabel { kind }).inc_by(n);
        }
    }
}

/// One pass: batches until one comes back short. Returns what it deleted.
pub async fn run_once(
    store: &Store,
    policy: &PolicySet,
    meters: &Meters,
    shutdown: &CancellationToken,
) -> Result<Purged, StoreError> {
    let r = policy.retention();
    let now = Utc::now();
    let cut = |d: Duration| now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    let mut total = Purged::default();
    loop {
        let p = store
            .purge_finished(cut(r.succeeded), cut(r.dead), BATCH)
            .await?;
        meters.deleted(&p.by_kind());
        total.deliveries += p.deliveries;
        total.attempts += p.attempts;
        total.events += p.events;
        let rejects = store.purge_rejects(cut(r.dead), BATCH).await?;
        meters.deleted(&[("source_rejects", rejects)]);
        total.rejects += rejects;
        let more = p.deliveries >= u64::from(BATCH)
            || p.events >= u64::from(BATCH)
            || rejects >= u64::from(BATCH);
        if !more || shutdown.is_cancelled() {
            return Ok(total);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Runs a pass every minute until `shutdown`.
pub async fn run(
    store: Store,
    policy: Arc<ArcSwap<PolicySet>>,
    meters: Arc<Meters>,
    shutdown: CancellationToken,
) {
    loop {
        let current = policy.load_full();
        match run_once(&store, &current, &meters, &shutdown).await {
            Ok(p) if p.deliveries > 0 => tracing::info!(
                deliveries = p.deliveries,
                attempts = p.attempts,
                events = p.events,
                "retention deleted finished deliveries"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e.chain(), "retention pass failed; next pass in a minute")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
