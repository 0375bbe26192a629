//! The delivery worker, as the queue's services (the shape of River's
//! producer, executor, completer and maintenance services), each in its
//! own module with the same start/stop shape:
//! - `claim`: asks the [`Scheduler`] which webhooks may be served, claims
//!   their due deliveries (`FOR UPDATE SKIP LOCKED`, so several engines may
//!   share one database) and starts a send for each;
//! - `dispatch`: ingest's hand-off, a new delivery sent at once by the
//!   engine that accepted it, without a claim;
//! - `attempt`: one HTTP attempt of one delivery, and what it decides
//!   (`outcome::next`), acted on (`control`);
//! - `completer`: records outcomes in batches, on a bounded channel;
//! - `maintenance`: returns expired leases to pending and purges inbound
//!   idempotency records.
//!
//! Whether a delivery may go now is the scheduler's alone; no service reads
//! the clock but through [`Clock`].

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::Utc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Meters;
use super::scheduler::{Limits as SchedulerLimits, Scheduler};
use super::sender::Sender;
use crate::policy::PolicySet;
use crate::store::Store;
use crate::telemetry::Telemetry;

mod attempt;
mod claim;
mod completer;
mod control;
mod dispatch;
mod maintenance;

pub use completer::record_outcomes;
pub use dispatch::{Dispatcher, Reservation};

/// Tuning knobs; the defaults suit one engine on a small machine.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Identifies this engine's leases.
    pub id: String,
    /// Sends in flight at once, all webhooks together.
    pub max_in_flight: u32,
    /// Sends in flight at once to one webhook.
    pub max_in_flight_per_webhook: u32,
    /// Where a webhook's concurrency starts (slow start), unless its policy
    /// says `initial_in_flight` (default 8; `u32::MAX` = at its ceiling, no
    /// slow start).
    pub initial_in_flight: u32,
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
    /// This engine's clock (see [`WorkerConfig::clock_offset`]).
    pub fn clock(&self) -> Clock {
        Clock {
            offset: self.clock_offset,
        }
    }
}

/// The worker's only way to the time: wall time for attempt records and
/// retry decisions, a monotonic instant for the scheduler. Follows tokio's
/// clock, so tests may pause or advance it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    offset: chrono::TimeDelta,
}

impl Clock {
    /// This engine's idea of now (attempt times, retry decisions).
    pub fn now(&self) -> chrono::DateTime<Utc> {
        Utc::now() + self.offset
    }

    /// A monotonic now, for pauses and adaptive limits.
    pub fn instant(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            id: format!("engine-{}", uuid::Uuid::now_v7().simple()),
            max_in_flight: 1024,
            max_in_flight_per_webhook: 256,
            // Slow start; deliveries past the limit are held, not left to
            // the claim (see docs/src/operations/endpoint-state.md).
            initial_in_flight: 8,
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

/// Shared by the worker's services and the [`Dispatcher`].
struct Shared {
    /// OpenTelemetry: one span per attempt (a no-op when tracing is off).
    telemetry: Telemetry,
    store: Store,
    policy: Arc<ArcSwap<PolicySet>>,
    sender: Sender,
    meters: Arc<Meters>,
    cfg: WorkerConfig,
    clock: Clock,
    /// The lease holder name, shared by every delivery leased at ingest.
    holder: Arc<str>,
    scheduler: Scheduler,
    /// Rung whenever a send ends: the claim may have room again.
    slot_freed: Notify,
    completions: completer::Outbox,
    /// Every send task, so shutdown can wait for them.
    sends: TaskTracker,
    /// Cancelled when a send must stop at once (grace period over).
    hard_stop: CancellationToken,
    /// Cancelled once the first claim has run (or failed, or shutdown
    /// came first): see [`Worker::primed`].
    primed: CancellationToken,
}

/// One engine's delivery worker, built before it runs so ingest can hand
/// it deliveries to send at once (see [`Dispatcher`]).
pub struct Worker {
    shared: Arc<Shared>,
    inbox: completer::Inbox,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("holder", &self.shared.holder)
            .finish_non_exhaustive()
    }
}

impl Worker {
    pub fn new(
        store: Store,
        policy: Arc<ArcSwap<PolicySet>>,
        sender: Sender,
        meters: Arc<Meters>,
        cfg: WorkerConfig,
        telemetry: Telemetry,
    ) -> Self {
        let (completions, inbox) = completer::channel();
        let shared = Arc::new(Shared {
            telemetry,
            store,
            policy,
            sender,
            meters,
            scheduler: Scheduler::new(SchedulerLimits {
                max_in_flight: cfg.max_in_flight.max(1),
                max_in_flight_per_webhook: cfg.max_in_flight_per_webhook,
                initial_in_flight: cfg.initial_in_flight,
                claim_batch: cfg.claim_batch,
                lease_margin: cfg.lease_margin,
            }),
            holder: Arc::from(cfg.id.as_str()),
            clock: cfg.clock(),
            cfg,
            slot_freed: Notify::new(),
            completions,
            sends: TaskTracker::new(),
            hard_stop: CancellationToken::new(),
            primed: CancellationToken::new(),
        });
        Self { shared, inbox }
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
        Dispatcher::new(self.shared.clone())
    }

    /// Runs the worker's services until `shutdown` is cancelled, then lets
    /// in-flight sends finish within the grace period. Anything cut off
    /// stays `in_flight` and is rescued when its lease expires — at least
    /// once, never lost.
    pub async fn run(self, shutdown: CancellationToken) {
        let Self { shared, inbox } = self;
        let sends_over = CancellationToken::new();
        let services = TaskTracker::new();
        services.spawn(completer::run(
            shared.store.clone(),
            inbox,
            shared.cfg.completion_gather,
            shared.hard_stop.clone(),
            sends_over.clone(),
        ));
        services.spawn(maintenance::run(
            shared.store.clone(),
            shared.clock,
            shared.cfg.rescue_interval,
            shutdown.clone(),
        ));
        services.close();
        claim::run(&shared, &shutdown).await;
        shared.primed.cancel();
        shared.scheduler.close();
        // Held deliveries go back to the queue, due now, for whichever
        // engine runs next.
        dispatch::hand_back(&shared, shared.scheduler.drain()).await;

        shared.sends.close();
        if tokio::time::timeout(shared.cfg.shutdown_grace, shared.sends.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "shutdown grace elapsed; unfinished sends will be rescued after their lease"
            );
            shared.hard_stop.cancel();
            shared.sends.wait().await;
        }
        // No send is left to report (dispatchers may outlive the worker,
        // so the channel itself does not close).
        sends_over.cancel();
        // The completer drains what was recorded, giving up only on hard stop.
        if tokio::time::timeout(Duration::from_secs(5), services.wait())
            .await
            .is_err()
        {
            shared.hard_stop.cancel();
            services.wait().await;
        }
    }
}

/// Runs a worker that nothing else dispatches to (see [`Worker::run`]).
pub async fn run(
    store: Store,
    policy: Arc<ArcSwap<PolicySet>>,
    sender: Sender,
    meters: Arc<Meters>,
    cfg: WorkerConfig,
    shutdown: CancellationToken,
) {
    Worker::new(store, policy, sender, meters, cfg, Telemetry::off())
        .run(shutdown)
        .await;
}
