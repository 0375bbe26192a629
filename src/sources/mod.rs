//! Event-bus sources (contract §9): Kafka and NATS JetStream consumers that
//! store each message as an event through the same use case as
//! `POST /v1/events` ([`crate::ingest::store_events`]: one transaction, events
//! and deliveries), and only then commit the Kafka offsets or acknowledge the
//! NATS messages. At least once: a crash before the commit redelivers, and
//! the event id derived from the message's position makes the second copy a
//! duplicate. A message that cannot become an event is recorded in
//! `source_rejects` before its position is committed, so the stream moves
//! on and nothing disappears unrecorded.
//!
//! The [`Supervisor`] runs one task per source and follows policy reloads:
//! a source whose entry changed is restarted, the others keep running.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::ingest::{self, EventSource, IngestFailure, Ingestor};
use crate::policy::PolicySet;
use crate::policy::sources::{Source, SourceKind};
use crate::store::{NewReject, Store};

#[cfg(feature = "kafka")]
mod kafka;
pub mod mapping;
mod meters;
mod nats;
mod status;

pub use mapping::Message;
pub use meters::{MessageOutcome, Meters};
pub use status::{Lag, PartitionLag, Registry, Snapshot, Status};

/// What every consumer stores through: the ingest use case, the policy in
/// force, and where rejects go.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub ingestor: Ingestor,
    pub store: Store,
    pub policy: Arc<ArcSwap<PolicySet>>,
    pub meters: Arc<Meters>,
    pub max_event_bytes: usize,
    pub telemetry: crate::telemetry::Telemetry,
}

/// The task stopped while a batch was still unstored: do not commit it.
#[derive(Debug)]
pub struct Cancelled;

/// Between retries of a batch the database refused.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

impl Pipeline {
    /// Stores `msgs` as events (and rejects), retrying while the database is
    /// unreachable, until every message is stored or recorded. Only after
    /// `Ok` may the caller commit or acknowledge them.
    pub async fn store_batch(
        &self,
        source: &Source,
        status: &Status,
        msgs: &[Message],
        cancel: &CancellationToken,
    ) -> Result<(), Cancelled> {
        let now = Utc::now();
        let policy = self.policy.load_full();
        let mut events = Vec::with_capacity(msgs.len());
        let mut owners = Vec::with_capacity(msgs.len());
        let mut rejects = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            match mapping::event_of(source, m, &policy, self.max_event_bytes, now) {
                Ok(e) => {
                    events.push(e);
                    owners.push(i);
                }
                Err(refused) => {
                    if let Some(pattern) = &refused.schema {
                        self.ingestor
                            .meters()
                            .schema_violation(pattern, crate::policy::schemas::SchemaMode::Enforce);
                    }
                    rejects.push(NewReject::new(
                        &source.id,
                        m.position.clone(),
                        refused.reason,
                        &m.value,
                        now,
                    ));
                }
            }
        }
        // A later message with an earlier one's id but another topic or
        // payload conflicts with it (the first one wins, as across batches).
        let mut first_of: std::collections::HashMap<String, usize> = Default::default();
        let mut k = 0;
        while k < events.len() {
            match first_of.get(&events[k].id) {
                Some(&j) if !same_event(&events[j], &events[k]) => {
                    let m = &msgs[owners[k]];
                    rejects.push(conflict(source, m, &events[k].id, now));
                    events.remove(k);
                    owners.remove(k);
                }
                Some(_) => k += 1,
                None => {
                    first_of.insert(events[k].id.clone(), k);
                    k += 1;
                }
            }
        }
        // Bus messages carry no traceparent header here: each event's own
        // `trace_id` parents its ingest span.
        let spans = ingest::trace_events(
            ingest::Trace {
                telemetry: &self.telemetry,
                traceparent: None,
            },
            &mut events,
        );
        let mut delay = RETRY_FIRST;
        let answers = loop {
            if events.is_empty() {
                break Vec::new();
            }
            match ingest::store_events(&self.ingestor, events.clone(), now, EventSource::Bus).await
            {
                Ok(answers) => break answers,
                // Its id was stored before with another topic or payload: that
                // message is a reject; the rest go in again.
                Err(IngestFailure::Conflict { id }) => {
                    let mut k = 0;
                    while k < events.len() {
                        if events[k].id == id {
                            rejects.push(conflict(source, &msgs[owners[k]], &id, now));
                            events.remove(k);
                            owners.remove(k);
                        } else {
                            k += 1;
                        }
                    }
                }
                Err(e) => {
                    self.pause(status, &e.to_string(), &mut delay, cancel)
                        .await?;
                }
            }
        };
        ingest::end_spans(spans, None);
        let mut delay = RETRY_FIRST;
        while let Err(e) = self.store.record_rejects(&rejects).await {
            self.pause(status, &e.to_string(), &mut delay, cancel)
                .await?;
        }
        if status.paused.swap(false, Ordering::Relaxed) {
            tracing::info!(source = %source.id, "source resumed: the database answers again");
        }
        let duplicates = answers.iter().filter(|a| a.duplicate).count() as u64;
        let created = answers.len() as u64 - duplicates;
        status.created.fetch_add(created, Ordering::Relaxed);
        status.duplicates.fetch_add(duplicates, Ordering::Relaxed);
        status
            .rejects
            .fetch_add(rejects.len() as u64, Ordering::Relaxed);
        // Counted once stored, and last: whoever sees `consumed` cover a
        // message sees its outcome counted too.
        status
            .consumed
            .fetch_add(msgs.len() as u64, Ordering::Relaxed);
        self.meters
            .source_messages(&source.id, MessageOutcome::Created, created);
        self.meters
            .source_messages(&source.id, MessageOutcome::Duplicate, duplicates);
        if !rejects.is_empty() {
            self.meters
                .source_messages(&source.id, MessageOutcome::Rejected, rejects.len() as u64);
            log_rejects(status, &rejects);
        }
        Ok(())
    }

    async fn pause(
        &self,
        status: &Status,
        error: &str,
        delay: &mut Duration,
        cancel: &CancellationToken,
    ) -> Result<(), Cancelled> {
        if !status.paused.swap(true, Ordering::Relaxed) {
            tracing::warn!(source = %status.id, error, "cannot store a batch: consumption paused until the database answers");
        }
        status.error(format!("storing a batch failed: {error}"));
        tokio::select! {
            () = tokio::time::sleep(*delay) => {}
            () = cancel.cancelled() => return Err(Cancelled),
        }
        *delay = (*delay * 2).min(RETRY_MAX);
        Ok(())
    }
}

/// Same topic and payload (as JSON values at any depth, like the API's duplicate check).
fn same_event(a: &crate::store::NewEvent, b: &crate::store::NewEvent) -> bool {
    a.topic == b.topic && crate::domain::payload::same_value(&a.payload, &b.payload)
}

fn conflict(source: &Source, m: &Message, id: &str, now: DateTime<Utc>) -> NewReject {
    NewReject::new(
        &source.id,
        m.position.clone(),
        format!("event {id:?} already exists with a different topic or payload"),
        &m.value,
        now,
    )
}

/// One warning per source every 10 s at most, with how many it covers.
fn log_rejects(status: &Status, rejects: &[NewReject]) {
    static LAST: Mutex<BTreeMap<String, (std::time::Instant, u64)>> = Mutex::new(BTreeMap::new());
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    let entry = last
        .entry(status.id.clone())
        .or_insert((std::time::Instant::now() - Duration::from_secs(60), 0));
    entry.1 += rejects.len() as u64;
    if entry.0.elapsed() >= Duration::from_secs(10) {
        let first = &rejects[0];
        tracing::warn!(
            source = %status.id,
            rejected = entry.1,
            position = %first.position,
            reason = %first.reason,
            "messages rejected (recorded in GET /v1/sources/{}/rejects)",
            status.id
        );
        *entry = (std::time::Instant::now(), 0);
    }
}

/// A source's task: runs its consumer, and after any failure (broker down,
/// stream missing) retries with backoff until cancelled.
async fn run_source(
    source: Source,
    status: Arc<Status>,
    pipeline: Pipeline,
    cancel: CancellationToken,
) {
    if !source.enabled {
        return;
    }
    let mut delay = Duration::from_millis(500);
    loop {
        let started = std::time::Instant::now();
        let outcome = match &source.kind {
            #[cfg(feature = "kafka")]
            SourceKind::Kafka(k) => kafka::run(&source, k, &status, &pipeline, &cancel).await,
            #[cfg(not(feature = "kafka"))]
            SourceKind::Kafka(_) => Err(
                "this build has no Kafka support: build with the `kafka` feature (on by default)"
                    .to_owned(),
            ),
            SourceKind::Nats(n) => nats::run(&source, n, &status, &pipeline, &cancel).await,
        };
        status.set_connected(false);
        if cancel.is_cancelled() {
            return;
        }
        if let Err(e) = outcome {
            status.error(e);
        }
        if started.elapsed() > Duration::from_secs(30) {
            delay = Duration::from_millis(500);
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cancel.cancelled() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// Starts, stops and restarts the source tasks as the policy changes.
#[derive(Debug)]
pub struct Supervisor {
    pipeline: Pipeline,
    registry: Registry,
    running: BTreeMap<String, Running>,
}

#[derive(Debug)]
struct Running {
    source: Source,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Supervisor {
    pub fn new(pipeline: Pipeline, registry: Registry) -> Self {
        Self {
            pipeline,
            registry,
            running: BTreeMap::new(),
        }
    }

    /// Follows the policy (checked every 250 ms; a reload swaps the
    /// snapshot) until `cancel`, then stops every source: batches being
    /// stored finish or are left uncommitted.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut seen: Option<Arc<PolicySet>> = None;
        loop {
            let now = self.pipeline.policy.load_full();
            if seen.as_ref().is_none_or(|s| !Arc::ptr_eq(s, &now)) {
                self.reconcile(now.sources(), &cancel).await;
                seen = Some(now);
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
                () = cancel.cancelled() => break,
            }
        }
        for (_, r) in std::mem::take(&mut self.running) {
            r.cancel.cancel();
            let _ = r.task.await;
        }
    }

    async fn reconcile(&mut self, sources: &[Source], parent: &CancellationToken) {
        let wanted: BTreeMap<&str, &Source> = sources.iter().map(|s| (s.id.as_str(), s)).collect();
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(id, r)| wanted.get(id.as_str()) != Some(&&r.source))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(r) = self.running.remove(&id) {
                tracing::info!(source = %id, "stopping source (its policy entry changed or was removed)");
                r.cancel.cancel();
                let _ = r.task.await;
                self.registry.remove(&id);
                self.pipeline.meters.forget_source(&id);
            }
        }
        for source in sources {
            if self.running.contains_key(&source.id) {
                continue;
            }
            let status = Arc::new(Status::new(source, self.pipeline.meters.clone()));
            self.pipeline.meters.source_connected(&source.id, false);
            self.registry.put(status.clone());
            let cancel = parent.child_token();
            tracing::info!(source = %source.id, kind = source.kind.as_str(), enabled = source.enabled, "starting source");
            let task = tokio::spawn(run_source(
                source.clone(),
                status,
                self.pipeline.clone(),
                cancel.clone(),
            ));
            self.running.insert(
                source.id.clone(),
                Running {
                    source: source.clone(),
                    cancel,
                    task,
                },
            );
        }
    }
}
