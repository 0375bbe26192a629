//! The delivery worker: claim due deliveries, commit, send outside any
//! transaction, record outcomes in batches; plus the rescuer for leases of
//! engines that died. Several engines may run it on one database: the claim
//! (`FOR UPDATE SKIP LOCKED`) gives each delivery to one of them.
//!
//! What may be sent is decided by the [`Scheduler`] (per-webhook rooms, a
//! fair share of the engine's slots); the claim shares each batch across
//! those webhooks round-robin, so one failing, slow or hanging receiver
//! cannot delay another webhook's due deliveries.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use chrono::Utc;
use rand::Rng;
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::retry::{self, Decision};
use super::scheduler::{Limits as SchedulerLimits, Scheduler};
use super::sender::{AttemptReport, ErrorKind, Outbound, Sender};
use crate::metrics::{AttemptOutcome, Metrics, SendPath};
use crate::policy::{PayloadFormat, PolicySet};
use crate::store::{
    AttemptRecord, Claimed, Completion, DeliveryState, Lease, Store, Wakeups, WebhookSlot,
};
use crate::telemetry::Telemetry;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;

mod control;

/// Tuning knobs; the defaults suit one engine on a small machine.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Identifies this engine's leases.
    pub id: String,
    /// Sends in flight at once, all webhooks together.
    pub max_in_flight: u32,
    /// Sends in flight at once to one webhook.
    pub max_in_flight_per_webhook: u32,
    /// Most deliveries taken by one claim.
    pub claim_batch: u32,
    /// Longest sleep between claims when nothing wakes the worker.
    pub poll_interval: Duration,
    /// After a wake-up, how long to let more work gather before claiming:
    /// one claim of twenty rows costs the database about what one of one
    /// row does, so a small wait buys throughput for little latency.
    pub claim_debounce: Duration,
    /// Added to a webhook's timeout to make the lease.
    pub lease_margin: Duration,
    /// How long the first outcome of a batch waits for others to share its
    /// statement. Only the recording waits, never a send.
    pub completion_gather: Duration,
    /// How often expired leases are looked for.
    pub rescue_interval: Duration,
    /// How long in-flight sends may finish after shutdown starts.
    pub shutdown_grace: Duration,
    /// Added to this engine's clock. Zero in production; tests set it to
    /// show that leases and due times follow the database's clock, so an
    /// engine whose clock is off cannot take another engine's work.
    pub clock_offset: chrono::TimeDelta,
}

impl WorkerConfig {
    /// This engine's idea of now (attempt times, retry decisions).
    pub fn now(&self) -> chrono::DateTime<Utc> {
        Utc::now() + self.clock_offset
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            id: format!("engine-{}", uuid::Uuid::now_v7().simple()),
            max_in_flight: 1024,
            max_in_flight_per_webhook: 256,
            claim_batch: 256,
            poll_interval: Duration::from_secs(1),
            claim_debounce: Duration::from_millis(2),
            lease_margin: Duration::from_secs(30),
            completion_gather: Duration::from_millis(10),
            rescue_interval: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            clock_offset: chrono::TimeDelta::zero(),
        }
    }
}

/// Shared between the claim loop, the send tasks and the [`Dispatcher`].
struct Shared {
    /// OpenTelemetry: one span per attempt (a no-op when tracing is off).
    telemetry: Telemetry,
    store: Store,
    policy: Arc<ArcSwap<PolicySet>>,
    sender: Sender,
    metrics: Arc<Metrics>,
    cfg: WorkerConfig,
    /// The lease holder name, shared by every delivery leased at ingest.
    holder: Arc<str>,
    global: Arc<Semaphore>,
    scheduler: Scheduler,
    slot_freed: Notify,
    done: mpsc::UnboundedSender<Completion>,
    /// Rung after sending an outcome the completer must write at once.
    flush_now: Arc<Notify>,
    /// Every send task, so shutdown can wait for them.
    tracker: TaskTracker,
    /// Cancelled when a send must stop at once (grace period over).
    hard_stop: CancellationToken,
    /// Cancelled once the first claim has run (or failed, or shutdown
    /// came first): see [`Worker::primed`].
    primed: CancellationToken,
    /// Whether deliveries may still be handed over at ingest (not once
    /// shutdown has begun).
    accepting: AtomicBool,
    /// Webhooks with nothing due on this engine, as the last claim found:
    /// only their new deliveries are sent at once, so a backlog is served
    /// before the events that arrive behind it.
    caught_up: Mutex<HashSet<String>>,
    /// The store's endpoint-state version the scheduler last applied
    /// (`u64::MAX`: none yet). While a change made through this process is
    /// not applied, nothing is sent at once: the claim loop refreshes first.
    applied_states: AtomicU64,
}

/// One engine's delivery worker, built before it runs so ingest can hand
/// it deliveries to send at once (see [`Dispatcher`]).
pub struct Worker {
    shared: Arc<Shared>,
    done_rx: mpsc::UnboundedReceiver<Completion>,
}

impl Worker {
    pub fn new(
        store: Store,
        policy: Arc<ArcSwap<PolicySet>>,
        sender: Sender,
        metrics: Arc<Metrics>,
        cfg: WorkerConfig,
        telemetry: Telemetry,
    ) -> Self {
        let (done, done_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            telemetry,
            global: Arc::new(Semaphore::new(cfg.max_in_flight as usize)),
            store,
            policy,
            sender,
            metrics,
            scheduler: Scheduler::new(SchedulerLimits {
                max_in_flight: cfg.max_in_flight,
                max_in_flight_per_webhook: cfg.max_in_flight_per_webhook,
                lease_margin: cfg.lease_margin,
            }),
            holder: Arc::from(cfg.id.as_str()),
            cfg,
            slot_freed: Notify::new(),
            done,
            flush_now: Arc::new(Notify::new()),
            tracker: TaskTracker::new(),
            hard_stop: CancellationToken::new(),
            primed: CancellationToken::new(),
            accepting: AtomicBool::new(true),
            caught_up: Mutex::new(HashSet::new()),
            applied_states: AtomicU64::new(u64::MAX),
        });
        Self { shared, done_rx }
    }

    /// Cancelled once the worker's first claim has run (or failed). Until
    /// then no webhook is known to have nothing due, so every new delivery
    /// is left to the claim; an engine that accepts events before that
    /// (the moment it starts, under load) can stay claim-driven for as long
    /// as producers outpace the claims, at twice the database's work per
    /// delivery. So the API and the sources wait for it (see `App::run`).
    pub fn primed(&self) -> CancellationToken {
        self.shared.primed.clone()
    }

    /// The handle ingest uses to send new deliveries at once.
    pub fn dispatcher(&self) -> Dispatcher {
        Dispatcher {
            shared: self.shared.clone(),
        }
    }

    /// Runs the worker until `shutdown` is cancelled, then lets in-flight
    /// sends finish within the grace period. Anything cut off stays
    /// `in_flight` and is rescued when its lease expires — at least once,
    /// never lost.
    pub async fn run(self, shutdown: CancellationToken) {
        let Self { shared, done_rx } = self;
        let hard_stop = shared.hard_stop.clone();
        let sends_over = CancellationToken::new();
        let completer = tokio::spawn(complete_loop(
            shared.store.clone(),
            done_rx,
            shared.flush_now.clone(),
            shared.cfg.completion_gather,
            hard_stop.clone(),
            sends_over.clone(),
        ));
        let rescuer = tokio::spawn(rescue_loop(
            shared.store.clone(),
            shared.cfg.rescue_interval,
            shutdown.clone(),
        ));
        claim_loop(&shared, &shutdown).await;
        shared.primed.cancel();
        shared.accepting.store(false, Ordering::SeqCst);

        shared.tracker.close();
        if tokio::time::timeout(shared.cfg.shutdown_grace, shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "shutdown grace elapsed; unfinished sends will be rescued after their lease"
            );
            hard_stop.cancel();
            shared.tracker.wait().await;
        }
        // No send is left to report (dispatchers may outlive the worker,
        // so the channel itself does not close).
        sends_over.cancel();
        // The completer drains what was recorded, giving up only on hard stop.
        let flush = tokio::time::timeout(Duration::from_secs(5), completer).await;
        if flush.is_err() {
            hard_stop.cancel();
        }
        let _ = rescuer.await;
    }
}

/// Runs a worker that nothing else dispatches to (see [`Worker::run`]).
pub async fn run(
    store: Store,
    policy: Arc<ArcSwap<PolicySet>>,
    sender: Sender,
    metrics: Arc<Metrics>,
    cfg: WorkerConfig,
    shutdown: CancellationToken,
) {
    Worker::new(store, policy, sender, metrics, cfg, Telemetry::off())
        .run(shutdown)
        .await;
}

/// Ingest's way to the worker: a delivery that may be sent now is leased
/// to this engine in the transaction that stores it and sent as soon as
/// that commits — no wake-up, no claim, no second round trip. Which
/// deliveries qualify is decided by [`Dispatcher::reserve`].
#[derive(Clone)]
pub struct Dispatcher {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("holder", &self.shared.holder)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("webhook_id", &self.webhook_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("holder", &self.shared.holder)
            .finish_non_exhaustive()
    }
}

/// A send slot held for one new delivery until it is stored: sent with
/// [`Reservation::send`], or given back when dropped.
pub struct Reservation {
    shared: Arc<Shared>,
    webhook_id: String,
    permit: Option<OwnedSemaphorePermit>,
}

impl Dispatcher {
    /// A send slot for a new delivery to `webhook_id`, and the lease to
    /// store it under; `None` leaves the delivery to the claim. Only when
    /// the webhook can take it at once under every limit the claim obeys
    /// (enabled, not paused, room under its adaptive and fair-share limits,
    /// a free engine slot), has no rate limit (its tokens are the claim's),
    /// and had nothing due at the last claim — a new event never overtakes
    /// a backlog. The caller leaves deliveries that join a line alone.
    pub fn reserve(&self, webhook_id: &str) -> Option<(Reservation, Lease)> {
        let shared = &self.shared;
        let policy = shared.policy.load();
        if !shared.accepting.load(Ordering::SeqCst)
            || shared.applied_states.load(Ordering::SeqCst) != shared.store.endpoint_version()
            || policy.webhook(webhook_id)?.rate_limit.is_some()
            || !shared.caught_up.lock().expect("lock").contains(webhook_id)
        {
            return None;
        }
        let permit = shared.global.clone().try_acquire_owned().ok()?;
        let length = shared.scheduler.try_start(&policy, webhook_id)?;
        let reservation = Reservation {
            shared: shared.clone(),
            webhook_id: webhook_id.to_owned(),
            permit: Some(permit),
        };
        let lease = Lease {
            holder: shared.holder.clone(),
            length,
        };
        Some((reservation, lease))
    }

    /// New deliveries to `webhook_id` were left to the claim: until a
    /// claim has caught up with them, later ones are too.
    pub fn queued(&self, webhook_id: &str) {
        self.shared
            .caught_up
            .lock()
            .expect("lock")
            .remove(webhook_id);
    }
}

impl Reservation {
    /// Sends `c`, the delivery stored under this reservation's lease.
    pub fn send(mut self, c: Claimed) {
        let permit = self.permit.take().expect("a reservation sends once");
        spawn_send(&self.shared, permit, c, SendPath::Ingest);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.shared.scheduler.finished(&self.webhook_id);
            drop(permit);
            self.shared.slot_freed.notify_one();
        }
    }
}

/// Sends `c` on a task of its own; the scheduler already counts it.
fn spawn_send(shared: &Arc<Shared>, permit: OwnedSemaphorePermit, c: Claimed, path: SendPath) {
    shared.metrics.send_started(path);
    let shared = shared.clone();
    shared.tracker.clone().spawn(async move {
        let webhook_id = c.webhook_id.clone();
        tokio::select! {
            () = deliver(&shared, c) => {}
            () = shared.hard_stop.cancelled() => {}
        }
        shared.scheduler.finished(&webhook_id);
        drop(permit);
        shared.slot_freed.notify_one();
    });
}

async fn claim_loop(shared: &Arc<Shared>, shutdown: &CancellationToken) {
    let mut wakeups: Option<Wakeups> = None;
    let local = shared.store.local_wakeups();
    let mut backoff = Duration::from_millis(100);
    let mut states = control::StateRefresh::default();
    while !shutdown.is_cancelled() {
        states.refresh(shared).await;
        if wakeups.is_none() {
            // Interest is registered before the claim, so no notify is missed.
            wakeups = shared.store.wakeups().await.ok();
        }
        let free = u32::try_from(shared.global.available_permits()).unwrap_or(u32::MAX);
        if free == 0 {
            tokio::select! {
                () = shared.slot_freed.notified() => {}
                () = shutdown.cancelled() => break,
            }
            tokio::time::sleep(shared.cfg.claim_debounce).await;
            continue;
        }
        // The send slots are taken before the claim, so every claimed
        // delivery has one: were they taken after, the ingest path could
        // fill them meanwhile and a claimed delivery would wait out its
        // lease (tens of seconds) for the rescue.
        let limit = free.min(shared.cfg.claim_batch);
        let Ok(mut held) = shared.global.clone().try_acquire_many_owned(limit) else {
            // Ingest took some of them since `free` was read: count again.
            tokio::task::yield_now().await;
            continue;
        };
        let policy = shared.policy.load_full();
        let slots = shared.scheduler.slots(&policy, free);
        let (slots, grants) = control::take_rate_tokens(shared, &policy, slots).await;
        let claimed = shared.store.claim(&slots, limit, &shared.cfg.id).await;
        shared.primed.cancel();
        let claimed = match claimed {
            Ok(c) => {
                backoff = Duration::from_millis(100);
                control::give_back_rate_tokens(shared, &grants, &c).await;
                c
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "claim failed");
                drop(held);
                wakeups = None;
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let full_batch = claimed.len() as u32 == limit;
        note_caught_up(shared, &slots, &claimed, full_batch);
        for c in claimed {
            let Some(permit) = held.split(1) else {
                // Not expected: a claim returns at most `limit` rows.
                tracing::warn!(delivery = %c.id, "the claim returned more rows than its limit; this one is rescued when its lease expires");
                continue;
            };
            shared.scheduler.started(&c.webhook_id);
            spawn_send(shared, permit, c, SendPath::Claim);
        }
        drop(held); // the slots nothing was claimed for, back to ingest
        if full_batch {
            continue;
        }
        let mut wait = next_wait(shared, &slots).await;
        // A pause (rate limit, Retry-After) ending sooner wakes the loop.
        if let Some(unpause) = shared.scheduler.next_unpause() {
            wait = wait.min(unpause.max(Duration::from_millis(1)));
        }
        tokio::select! {
            r = recv(&mut wakeups) => if r.is_err() { wakeups = None; },
            () = local.notified() => {}
            () = tokio::time::sleep(wait) => {}
            () = shared.slot_freed.notified(), if slots.len() < shared.scheduler.sendable_count(&policy) => {}
            () = shutdown.cancelled() => break,
        }
        tokio::time::sleep(shared.cfg.claim_debounce).await;
    }
}

/// Which claimed webhooks have nothing more due: fewer rows than their
/// room came back (and the batch was not cut short by `limit`).
fn note_caught_up(shared: &Shared, slots: &[WebhookSlot], claimed: &[Claimed], full_batch: bool) {
    let mut caught_up = shared.caught_up.lock().expect("lock");
    for slot in slots {
        let got = claimed
            .iter()
            .filter(|c| c.webhook_id == slot.webhook_id)
            .count();
        if !full_batch && (got as u64) < u64::from(slot.room) {
            caught_up.insert(slot.webhook_id.clone());
        } else {
            caught_up.remove(&slot.webhook_id);
        }
    }
}

async fn recv(wakeups: &mut Option<Wakeups>) -> Result<(), ()> {
    match wakeups {
        Some(w) => w.recv().await.map_err(|_| ()),
        None => std::future::pending().await,
    }
}

/// Sleep until the next scheduled retry, but no longer than the poll interval.
async fn next_wait(shared: &Shared, slots: &[WebhookSlot]) -> Duration {
    let poll = shared.cfg.poll_interval;
    let ids: Vec<&str> = slots.iter().map(|s| s.webhook_id.as_str()).collect();
    match shared.store.next_due(&ids).await {
        Ok(Some(wait)) => wait.clamp(Duration::from_millis(5), poll),
        _ => poll,
    }
}

/// One attempt of one claimed delivery, start to recorded outcome, in a
/// span naming the delivery, event, webhook and attempt.
async fn deliver(shared: &Shared, c: Claimed) {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "attempt",
        delivery = %crate::domain::DeliveryId::from_uuid(c.id),
        event = %c.event_id,
        webhook = %c.webhook_id,
        attempt = c.attempt,
    );
    attempt(shared, c).instrument(span).await;
}

async fn attempt(shared: &Shared, c: Claimed) {
    let policy = shared.policy.load_full();
    let now = shared.cfg.now();
    let sendable = shared.scheduler.is_sendable(&policy, &c.webhook_id);
    let Some(webhook) = policy.webhook(&c.webhook_id).filter(|_| sendable) else {
        // Removed or disabled between claim and send: nothing was sent, so
        // the delivery goes back untouched, its budget intact. If this
        // fails, the lease expires and the rescuer returns it.
        if let Err(e) = shared
            .store
            .release(c.id, c.attempt, shared.cfg.poll_interval)
            .await
        {
            tracing::debug!(delivery = %c.id, error = %e, "release failed; the lease will expire");
        }
        return;
    };
    let delivery_id = crate::domain::DeliveryId::from_uuid(c.id).to_string();
    let body = match webhook.payload_format {
        PayloadFormat::Aion => c.body,
        // Stored bodies are the engine's own rendering, so this cannot fail;
        // if it ever did, the receiver still gets the event, in §3's shape.
        PayloadFormat::Standard => crate::ingest::standard_body(&c.body).unwrap_or_else(|e| {
            tracing::warn!(delivery = %delivery_id, error = %e, "cannot reshape the body for payload_format: standard");
            c.body
        }),
    };
    // The attempt's span is a child of the event's ingest span (stored with
    // the event), and its id goes out in `traceparent`.
    let mut span = shared.telemetry.span(
        "delivery attempt",
        SpanKind::Client,
        c.traceparent.as_deref().or(c.trace_id.as_deref()),
        || {
            vec![
                KeyValue::new("aion.webhook", c.webhook_id.clone()),
                KeyValue::new("aion.delivery", delivery_id.clone()),
                KeyValue::new("aion.event.id", c.event_id.clone()),
                KeyValue::new("aion.attempt", i64::from(c.attempt)),
            ]
        },
    );
    let traceparent = span.traceparent();
    let report: AttemptReport = shared
        .sender
        .send(&Outbound {
            webhook,
            delivery_id: &delivery_id,
            attempt: u32::try_from(c.attempt).unwrap_or(1),
            event_id: &c.event_id,
            topic: &c.topic,
            // Tracing off: the first of the event's trace ids that is one.
            trace_id: traceparent.as_deref().or_else(|| {
                [c.trace_id.as_deref(), c.traceparent.as_deref()]
                    .into_iter()
                    .flatten()
                    .find(|t| crate::telemetry::parse_parent(t).is_some())
            }),
            body: Bytes::from(body),
            timestamp: now.timestamp(),
        })
        .await;
    if let Some(status) = report.status {
        span.set(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    span.set(KeyValue::new(
        "aion.duration_ms",
        i64::try_from(report.duration.as_millis()).unwrap_or(i64::MAX),
    ));
    if let Some(kind) = report.error_kind {
        span.set(KeyValue::new("error.type", kind.as_str()));
        span.fail(
            report
                .error
                .clone()
                .unwrap_or_else(|| kind.as_str().to_owned()),
        );
    }
    span.end();
    let budget_used = u32::try_from(c.attempt - c.replay_base).unwrap_or(1).max(1);
    let jitter = rand::rng().random_range(-1.0..=1.0);
    let decided_at = shared.cfg.now();
    let decision = retry::decide(
        &webhook.retry,
        budget_used,
        report.result(),
        report.retry_after,
        decided_at,
        jitter,
    );
    // The store anchors the delay to the database's clock.
    let outcome = match decision {
        Decision::Succeeded => AttemptOutcome::Succeeded,
        Decision::Retry { .. } if report.error_kind == Some(ErrorKind::BlockedDestination) => {
            AttemptOutcome::Blocked
        }
        Decision::Retry { .. } | Decision::Gone => AttemptOutcome::Retry,
        Decision::Dead => AttemptOutcome::Dead,
    };
    control::after_attempt(shared, &policy, webhook, &report, decision).await;
    shared
        .metrics
        .attempt(&c.webhook_id, outcome, report.duration);
    tracing::debug!(
        status = report.status,
        duration_ms = u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
        error_kind = report.error_kind.map(|k| k.as_str()),
        outcome = ?outcome,
        "attempt finished"
    );
    let (state, retry_in) = match decision {
        Decision::Succeeded => (DeliveryState::Succeeded, None),
        Decision::Retry { at } => (
            DeliveryState::Pending,
            Some((at - decided_at).to_std().unwrap_or(Duration::ZERO)),
        ),
        Decision::Dead => (DeliveryState::Dead, None),
        // Kept pending for when the webhook is enabled again; the delay only
        // matters if disabling failed, so a `410` is not hammered.
        Decision::Gone => (DeliveryState::Pending, Some(webhook.retry.initial_interval)),
    };
    let in_line = c.in_line;
    let _ = shared.done.send(Completion {
        id: c.id,
        attempt: c.attempt,
        state,
        retry_in,
        record: AttemptRecord {
            started_at: report.started_at,
            duration: report.duration,
            status: report.status,
            error_kind: report.error_kind.map(|k| k.as_str()),
            error: report.error,
            response_body: report.response_body,
        },
        in_line,
    });
    if in_line {
        shared.flush_now.notify_one();
    }
}

/// Most outcomes one statement records.
const MAX_OUTCOMES_PER_STATEMENT: usize = 1000;

/// Writes completions in batches: one statement for whatever has queued up.
async fn complete_loop(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<Completion>,
    flush_now: Arc<Notify>,
    gather: Duration,
    hard_stop: CancellationToken,
    sends_over: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            biased;
            c = rx.recv() => c,
            () = sends_over.cancelled() => rx.try_recv().ok(),
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        // Outcomes that arrive within `gather` share the statement: at light
        // load one statement (and one commit) records several sends, while
        // the sends themselves never wait for it. Meanwhile this task does
        // not listen to the channel, so an outcome costs no wake-up of its
        // own (each woke the task, and often the other runtime thread). A
        // line's next delivery waits for its head's outcome, so a send in a
        // line rings `flush_now` and its outcome is written at once.
        let until = tokio::time::Instant::now() + gather;
        let mut due = false;
        loop {
            while batch.len() < MAX_OUTCOMES_PER_STATEMENT {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            if due
                || batch.len() >= MAX_OUTCOMES_PER_STATEMENT
                || batch.iter().any(|c| c.in_line)
                || sends_over.is_cancelled()
            {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until) => due = true,
                () = flush_now.notified() => {}
                () = sends_over.cancelled() => {}
            }
        }
        if !record_outcomes(&store, &batch, &hard_stop).await {
            return;
        }
    }
}

/// Records a batch of outcomes. A transient failure (database unreachable,
/// deadlock) is retried with backoff; any other failure is a property of
/// some row, so the batch is split and written row by row, and a row that
/// still fails is written with its details replaced by the error — one
/// outcome's bad data never holds up the others, and nothing is retried
/// forever. Returns false only when `hard_stop` cut it short (unrecorded
/// attempts stay `in_flight` and are rescued: sent again, not lost).
pub async fn record_outcomes(
    store: &Store,
    batch: &[Completion],
    hard_stop: &CancellationToken,
) -> bool {
    match write_retrying(store, batch, hard_stop).await {
        Written::Yes => return true,
        Written::Stopped => return false,
        Written::Refused(e) if batch.len() > 1 => {
            tracing::warn!(error = %e, rows = batch.len(), "recording outcomes failed; writing them one by one");
        }
        Written::Refused(_) => {}
    }
    for c in batch {
        let e = match write_retrying(store, std::slice::from_ref(c), hard_stop).await {
            Written::Yes => continue,
            Written::Stopped => return false,
            Written::Refused(e) => e,
        };
        let placeholder = c.without_details(&e);
        match write_retrying(store, std::slice::from_ref(&placeholder), hard_stop).await {
            Written::Yes => tracing::warn!(
                delivery = %c.id, attempt = c.attempt, error = %e,
                "an outcome's details could not be stored; recorded without them"
            ),
            Written::Stopped => return false,
            Written::Refused(e) => tracing::error!(
                delivery = %c.id, attempt = c.attempt, error = %e,
                "an outcome could not be recorded; the delivery is rescued when its lease expires"
            ),
        }
    }
    true
}

enum Written {
    Yes,
    Refused(crate::store::StoreError),
    Stopped,
}

async fn write_retrying(
    store: &Store,
    batch: &[Completion],
    hard_stop: &CancellationToken,
) -> Written {
    let mut backoff = Duration::from_millis(50);
    loop {
        match store.complete(batch, Utc::now()).await {
            Ok(()) => return Written::Yes,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, pending = batch.len(), "recording outcomes failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = hard_stop.cancelled() => return Written::Stopped,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Written::Refused(e),
        }
    }
}

/// Expired leases back to pending (by the database's clock), and now and
/// then the inbound replay records past their window.
async fn rescue_loop(store: Store, every: Duration, shutdown: CancellationToken) {
    const PURGE_EVERY: Duration = Duration::from_secs(60);
    let mut last_purge: Option<tokio::time::Instant> = None;
    loop {
        match store.rescue_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                rescued = n,
                "returned deliveries with expired leases to pending"
            ),
            Err(e) => tracing::debug!(error = %e, "rescue pass failed"),
        }
        if last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
            last_purge = Some(tokio::time::Instant::now());
            if let Err(e) = store.purge_idempotency_keys(Utc::now()).await {
                tracing::debug!(error = %e, "purging expired idempotency records failed");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
