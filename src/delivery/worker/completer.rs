//! The completer service: records attempts' outcomes in batches, one
//! statement (and one commit) for whatever has queued up. The channel is
//! bounded: when the database falls behind, sends wait to hand over their
//! outcome (holding their slots, so the claim slows down) instead of
//! piling outcomes up in memory.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::store::{Completion, Store};

/// Outcomes waiting for the completer, at most. Generous on purpose: a
/// send waiting here holds its slot, so a small bound turns a burst the
/// database is briefly behind on into refused sends at once and a
/// claim-driven engine (measured: at 4,096 the load tool's fan-out scenario
/// fell to 0.38x of the previous main; at 64,000 it is 1.19x).
const CAPACITY: usize = 64 * MAX_OUTCOMES_PER_STATEMENT;

/// Where sends hand over their outcomes.
#[derive(Debug)]
pub(super) struct Outbox {
    tx: mpsc::Sender<Completion>,
    /// Rung after an outcome the completer must write at once.
    flush_now: Arc<Notify>,
}

/// The completer's end of the channel.
#[derive(Debug)]
pub(super) struct Inbox {
    rx: mpsc::Receiver<Completion>,
    flush_now: Arc<Notify>,
}

pub(super) fn channel() -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::channel(CAPACITY);
    let flush_now = Arc::new(Notify::new());
    (
        Outbox {
            tx,
            flush_now: flush_now.clone(),
        },
        Inbox { rx, flush_now },
    )
}

impl Outbox {
    /// Hands `c` over, waiting while the completer is
    /// [`CAPACITY`] outcomes behind. An outcome in a key's line is written
    /// at once: the line's next delivery waits for it.
    pub(super) async fn send(&self, c: Completion) {
        let in_line = c.in_line;
        // Fails only once the completer is gone (after the worker stopped):
        // the delivery stays in flight and is rescued.
        let _ = self.tx.send(c).await;
        if in_line {
            self.flush_now.notify_one();
        }
    }
}

/// Most outcomes one statement records.
const MAX_OUTCOMES_PER_STATEMENT: usize = 1000;

/// Writes completions in batches: one statement for whatever has queued up.
pub(super) async fn run(
    store: Store,
    inbox: Inbox,
    gather: Duration,
    hard_stop: CancellationToken,
    sends_over: CancellationToken,
) {
    let Inbox { mut rx, flush_now } = inbox;
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
            tracing::warn!(error = %e.chain(), rows = batch.len(), "recording outcomes failed; writing them one by one");
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
                delivery = %c.id, attempt = c.attempt, error = %e.chain(),
                "an outcome's details could not be stored; recorded without them"
            ),
            Written::Stopped => return false,
            Written::Refused(e) => tracing::error!(
                delivery = %c.id, attempt = c.attempt, error = %e.chain(),
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
                tracing::warn!(error = %e.chain(), pending = batch.len(), "recording outcomes failed; retrying");
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
