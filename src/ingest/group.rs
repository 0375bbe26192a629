//! Group commit for single-event ingest (see [`Ingestor`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::Meters;
use crate::store::{Claimed, IngestError, InsertOutcome, Lease, NewEvent, Store, StoreError};

/// The delivery worker, as ingest sees it: a slot to send a new delivery at
/// once, or word that it was left to the claim. Implemented by
/// `delivery::worker::Dispatcher`; a trait so that ingest does not depend
/// on delivery (which depends on ingest's event rendering).
pub trait Handoff: Send + Sync + std::fmt::Debug {
    /// A send slot for a new delivery to `webhook_id` and the lease to
    /// store it under; `None` leaves it to the claim.
    fn reserve(&self, webhook_id: &str) -> Option<(Box<dyn Reserved>, Lease)>;
    /// A new delivery to `webhook_id` was left to the claim.
    fn queued(&self, webhook_id: &str);
}

/// A send slot held for one new delivery until it is stored: sent with
/// [`Reserved::send`], or given back when dropped.
pub trait Reserved: Send {
    /// Sends `c`, the delivery stored under this slot's lease.
    fn send(self: Box<Self>, c: Claimed);
}

/// Group commit for single-event requests: requests that arrive while a
/// write is under way share the next statement and its one commit, so the
/// database does one round trip and one WAL flush for many producers. Each
/// event still succeeds, duplicates or conflicts on its own.
///
/// A request that finds its shard idle writes its event itself, on its own
/// task: at light load an event costs no hand-over to another task and
/// back (two wake-ups, often of the other runtime thread). Requests that
/// arrive while a write is under way queue; when it ends, one writer task
/// is started for the queue and keeps writing groups until it is empty, so
/// the request that wrote alone is answered without waiting for them.
///
/// Events are sharded over the writers by id, so two writers never hold the
/// same new id at once (their statements would wait on each other).
///
/// With a [`Handoff`] (an engine that also delivers), each new delivery
/// the worker can take at once is stored leased to it and sent as soon as
/// its statement commits.
#[derive(Debug, Clone)]
pub struct Ingestor {
    store: Store,
    dispatcher: Option<Arc<dyn Handoff>>,
    shards: Arc<[Arc<Shard>]>,
    /// Where stored events are counted, once, however they came.
    pub(super) meters: Arc<Meters>,
}

#[derive(Debug)]
struct Job {
    event: NewEvent,
    now: DateTime<Utc>,
    reply: oneshot::Sender<Result<Option<InsertOutcome>, StoreError>>,
}

/// One shard's writer state. Invariant: `queue` is empty while `writing`
/// is false (whoever ends a write hands a non-empty queue to a writer task
/// under the same lock).
#[derive(Debug, Default)]
struct Shard {
    state: Mutex<ShardState>,
}

#[derive(Debug, Default)]
struct ShardState {
    writing: bool,
    queue: VecDeque<Job>,
}

/// Most events one group statement carries.
const GROUP_MAX: usize = 256;

impl Ingestor {
    /// `writers` shards, each writing one statement at a time (more than
    /// one keeps the database busy while a statement is in flight).
    pub fn start(
        store: Store,
        writers: usize,
        dispatcher: Option<Arc<dyn Handoff>>,
        meters: Arc<Meters>,
    ) -> Self {
        let shards: Vec<Arc<Shard>> = (0..writers.max(1)).map(|_| Arc::default()).collect();
        Self {
            store,
            dispatcher,
            shards: shards.into(),
            meters,
        }
    }

    /// What ingest counts (also for refusals made before it, e.g. a bus
    /// message whose payload fails an `enforce` schema).
    pub fn meters(&self) -> &Meters {
        &self.meters
    }

    /// Stores a batch of events (all or none; see `Store::insert_events`)
    /// and sends the deliveries leased to this engine.
    pub async fn insert_batch(
        &self,
        mut events: Vec<NewEvent>,
        now: DateTime<Utc>,
    ) -> Result<Vec<InsertOutcome>, IngestError> {
        let reservations = Reservations::take(self.dispatcher.as_ref(), &mut events);
        let stored = self.store.insert_events(&events, now).await?;
        reservations.send(stored.leased);
        Ok(stored.outcomes)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stores one event: `None` means a stored event has this id with other content.
    pub async fn insert_one(
        &self,
        event: NewEvent,
        now: DateTime<Utc>,
    ) -> Result<Option<InsertOutcome>, StoreError> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(&event.id);
        let shard = &self.shards[(hash % self.shards.len() as u64) as usize];
        let (reply, answer) = oneshot::channel();
        let job = Job { event, now, reply };
        let lead = {
            let mut state = shard.state.lock().expect("lock");
            if state.writing {
                state.queue.push_back(job);
                None
            } else {
                state.writing = true;
                Some(job)
            }
        };
        if let Some(job) = lead {
            // Should this request be dropped mid-write, the guard still
            // hands the queue on.
            let writer = Writer {
                shard: shard.clone(),
                store: self.store.clone(),
                dispatcher: self.dispatcher.clone(),
            };
            write_group(&writer.store, writer.dispatcher.as_ref(), vec![job]).await;
            drop(writer);
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Group {
                unavailable: true,
                transient: true,
                message: "the ingest writer stopped mid-write".into(),
            })
        })
    }
}

/// Holds a shard's `writing` flag; dropped, it clears the flag or, when
/// requests queued meanwhile, hands them to a writer task.
struct Writer {
    shard: Arc<Shard>,
    store: Store,
    dispatcher: Option<Arc<dyn Handoff>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        let mut state = self.shard.state.lock().expect("lock");
        if state.queue.is_empty() {
            state.writing = false;
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                drop(state);
                runtime.spawn(drain(Writer {
                    shard: self.shard.clone(),
                    store: self.store.clone(),
                    dispatcher: self.dispatcher.clone(),
                }));
            }
            // Only when the runtime is gone: nothing is left to write with.
            Err(_) => {
                state.writing = false;
                state.queue.clear(); // their requests get "stopped mid-write"
            }
        }
    }
}

/// Writes the shard's queue group by group until it is empty.
async fn drain(writer: Writer) {
    // Jobs whose id is already in the group wait for the next one: one
    // statement must not insert the same id twice.
    loop {
        let group = {
            let mut state = writer.shard.state.lock().expect("lock");
            let mut group = Vec::new();
            let mut ids = HashSet::new();
            let mut later = VecDeque::new();
            while let Some(job) = state.queue.pop_front() {
                if group.len() < GROUP_MAX && ids.insert(job.event.id.clone()) {
                    group.push(job);
                } else {
                    later.push_back(job);
                }
            }
            state.queue = later;
            group
        };
        if group.is_empty() {
            return; // `writer` drops: the flag clears, or new jobs go on
        }
        write_group(&writer.store, writer.dispatcher.as_ref(), group).await;
    }
}

/// Send slots held for the deliveries of events about to be stored, by
/// event and webhook.
#[derive(Default)]
struct Reservations(HashMap<(String, String), Box<dyn Reserved>>);

impl Reservations {
    /// Leases every delivery of `events` the dispatcher can send at once;
    /// the others are left to the claim.
    fn take(dispatcher: Option<&Arc<dyn Handoff>>, events: &mut [NewEvent]) -> Self {
        let mut held = HashMap::new();
        let Some(dispatcher) = dispatcher else {
            return Self(held);
        };
        for e in events {
            let keyed = e.key.is_some();
            for to in &mut e.webhooks {
                if to.ordered && keyed {
                    continue; // joins its line; the line decides when it goes
                }
                match dispatcher.reserve(&to.webhook_id) {
                    Some((reservation, lease)) => {
                        to.lease = Some(lease);
                        held.insert((e.id.clone(), to.webhook_id.clone()), reservation);
                    }
                    None => dispatcher.queued(&to.webhook_id),
                }
            }
        }
        Self(held)
    }

    /// Sends what was stored leased; the slots of the rest (duplicates,
    /// failed writes) are given back when `self` drops.
    fn send(mut self, leased: Vec<Claimed>) {
        for c in leased {
            match self.0.remove(&(c.event_id.clone(), c.webhook_id.clone())) {
                Some(r) => r.send(c),
                None => {
                    tracing::warn!(delivery = %c.id, "a leased delivery has no send slot; it will be rescued")
                }
            }
        }
    }

    /// The slots of `event`'s deliveries, taken out.
    fn of(&mut self, event: &NewEvent) -> Self {
        Self(
            event
                .webhooks
                .iter()
                .filter_map(|to| {
                    let key = (event.id.clone(), to.webhook_id.clone());
                    self.0.remove_entry(&key)
                })
                .collect(),
        )
    }
}

/// Writes one group in one statement and answers each of its requests.
async fn write_group(store: &Store, dispatcher: Option<&Arc<dyn Handoff>>, group: Vec<Job>) {
    let now = group.iter().map(|j| j.now).max().unwrap_or_else(Utc::now);
    let (mut events, replies): (Vec<NewEvent>, Vec<_>) =
        group.into_iter().map(|j| (j.event, j.reply)).unzip();
    let mut reservations = Reservations::take(dispatcher, &mut events);
    match store.insert_independent(&events, now).await {
        Ok(stored) => {
            // Sent before answering: the send starts as early as it can.
            reservations.send(stored.leased);
            for (reply, outcome) in replies.into_iter().zip(stored.outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        // Not the database but some row: each event is written on its
        // own, so one request's data can only fail that request.
        Err(e) if !e.is_transient() && events.len() > 1 => {
            tracing::warn!(error = %e.chain(), events = events.len(), "group insert refused; writing its events one by one");
            for (event, reply) in events.into_iter().zip(replies) {
                let mine = reservations.of(&event);
                let one = store
                    .insert_independent(std::slice::from_ref(&event), now)
                    .await
                    .map(|stored| {
                        mine.send(stored.leased);
                        stored.outcomes.into_iter().next().flatten()
                    });
                let _ = reply.send(one.map_err(|e| StoreError::Group {
                    unavailable: e.is_unavailable(),
                    transient: e.is_transient(),
                    message: e.to_string(),
                }));
            }
        }
        Err(e) => {
            let unavailable = e.is_unavailable();
            let transient = e.is_transient();
            let message = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(StoreError::Group {
                    unavailable,
                    transient,
                    message: message.clone(),
                }));
            }
        }
    }
}
