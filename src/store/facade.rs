//! The facade's capability methods: each picks the backend and calls its
//! implementation of the trait in `contract`, around what is common to both:
//! guards on empty input, and this process's wake-ups (a write that made a
//! delivery due wakes the local claim at once; the count of endpoint-state
//! changes is bumped here). Waking other engines (PostgreSQL's `NOTIFY`)
//! belongs to the write's transaction and stays in the backend.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::contract::{
    Audit, Endpoints, Events, Lifecycle, Overview, Queries, Queue, RateLimits, Rejects, Replay,
};
use super::*;

/// Calls the same method on whichever backend runs.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* $(,)? )) => {
        match &$self.backend {
            Backend::Postgres(db) => db.$method($($arg),*).await,
            Backend::Sqlite(db) => db.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Wakes this process's claim when `due`: the write made a delivery
    /// due (stored due and not leased, promoted, rescued, replayed).
    fn woken(&self, due: bool) {
        if due {
            self.local.wake.notify_one();
        }
    }

    // Each method below is documented on its capability trait in
    // `contract`, which both backends implement.

    pub async fn migrate(&self) -> Result<(), StoreError> {
        dispatch!(self.migrate())
    }

    pub async fn ping(&self, within: Duration) -> Result<(), StoreError> {
        dispatch!(self.ping(within))
    }

    /// A wake-up source for workers: other engines' writes (PostgreSQL's
    /// NOTIFY). Interest is registered before the caller's first claim, so a
    /// notify between claim and wait is not lost. With SQLite there is no
    /// other engine, and it never fires ([`Store::local_wakeups`] covers
    /// this process).
    pub async fn wakeups(&self) -> Result<Wakeups, StoreError> {
        match &self.backend {
            Backend::Postgres(db) => Ok(Wakeups {
                listener: Some(db.listen().await?),
            }),
            Backend::Sqlite(_) => Ok(Wakeups { listener: None }),
        }
    }

    pub async fn close(&self) {
        dispatch!(self.close())
    }

    // Ingest (`contract::Events`).

    pub async fn insert_events(
        &self,
        events: &[NewEvent],
        now: DateTime<Utc>,
    ) -> Result<Stored<Vec<InsertOutcome>>, IngestError> {
        let stored = dispatch!(self.insert_events(events, now))?;
        self.woken(stored.queued);
        Ok(stored)
    }

    pub async fn insert_independent(
        &self,
        events: &[NewEvent],
        now: DateTime<Utc>,
    ) -> Result<Stored<Vec<Option<InsertOutcome>>>, StoreError> {
        let stored = dispatch!(self.insert_independent(events, now))?;
        self.woken(stored.queued);
        Ok(stored)
    }

    pub async fn get_event(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        dispatch!(self.get_event(id))
    }

    // The queue's transitions (`contract::Queue`).

    pub async fn claim(
        &self,
        slots: &[WebhookSlot],
        limit: u32,
        worker: &str,
    ) -> Result<Vec<Claimed>, StoreError> {
        if slots.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        dispatch!(self.claim(slots, limit, worker))
    }

    pub async fn complete(
        &self,
        done: &[Completion],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        let promoted = dispatch!(self.complete(done, now))?;
        self.woken(promoted > 0);
        Ok(())
    }

    pub async fn release(
        &self,
        id: Uuid,
        attempt: i32,
        retry_in: Duration,
    ) -> Result<(), StoreError> {
        dispatch!(self.release(id, attempt, retry_in))?;
        self.woken(retry_in.is_zero());
        Ok(())
    }

    pub async fn rescue_expired(&self) -> Result<u64, StoreError> {
        let rescued = dispatch!(self.rescue_expired())?;
        self.woken(rescued > 0);
        Ok(rescued)
    }

    pub async fn replay(
        &self,
        id: Uuid,
        audit: Option<(&AuditRow, &NewEvent)>,
        now: DateTime<Utc>,
    ) -> Result<Option<ReplayResult>, StoreError> {
        let replayed = dispatch!(self.replay(id, audit, now))?;
        self.woken(matches!(replayed, Some(ReplayResult::Replayed(_))));
        Ok(replayed)
    }

    pub async fn replay_matching(
        &self,
        filter: &ReplayFilter,
        audit: impl FnOnce(u64) -> (AuditRow, NewEvent),
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let count = dispatch!(self.replay_matching(filter, audit, now))?;
        self.woken(count > 0);
        Ok(count)
    }

    pub async fn next_due(&self, webhook_ids: &[&str]) -> Result<Option<Duration>, StoreError> {
        dispatch!(self.next_due(webhook_ids))
    }

    // Admin queries and retention (`contract::Queries`, `contract::Overview`).

    pub async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        dispatch!(self.list_deliveries(filter))
    }

    pub async fn get_delivery(
        &self,
        id: Uuid,
    ) -> Result<Option<(DeliveryRow, Vec<AttemptRow>)>, StoreError> {
        dispatch!(self.get_delivery(id))
    }

    pub async fn purge_finished(
        &self,
        succeeded_before: DateTime<Utc>,
        dead_before: DateTime<Utc>,
        batch: u32,
    ) -> Result<Purged, StoreError> {
        dispatch!(self.purge_finished(succeeded_before, dead_before, batch))
    }

    pub async fn queue_depth(&self) -> Result<QueueDepth, StoreError> {
        dispatch!(self.queue_depth())
    }

    pub async fn recent_outcomes(&self, window: Duration) -> Result<(i64, i64), StoreError> {
        dispatch!(self.recent_outcomes(window))
    }

    pub async fn webhook_stats(
        &self,
        webhook_ids: &[&str],
    ) -> Result<Vec<WebhookStats>, StoreError> {
        dispatch!(self.webhook_stats(webhook_ids))
    }

    // Runtime endpoint state and rate limits (`contract::Endpoints`,
    // `contract::RateLimits`).

    pub async fn endpoint_states(
        &self,
    ) -> Result<std::collections::HashMap<String, EndpointState>, StoreError> {
        dispatch!(self.endpoint_states())
    }

    pub async fn throttle(&self, webhook: &str, pause: Duration) -> Result<(), StoreError> {
        dispatch!(self.throttle(webhook, pause))
    }

    pub async fn set_endpoint_state(
        &self,
        webhook: &str,
        state: &EndpointState,
        audit: (&AuditRow, &NewEvent),
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<(EndpointState, bool), StoreError> {
        let (state, changed) =
            dispatch!(self.set_endpoint_state(webhook, state, audit, event, now))?;
        if changed {
            // Enabling makes the webhook's pending deliveries claimable.
            self.local.endpoint_version.fetch_add(1, Ordering::Relaxed);
            self.woken(true);
        }
        Ok((state, changed))
    }

    pub async fn failing_for(
        &self,
        webhook: &str,
        after: Duration,
        min_failures: i32,
    ) -> Result<Option<Option<String>>, StoreError> {
        dispatch!(self.failing_for(webhook, after, min_failures))
    }

    pub async fn take_tokens(
        &self,
        webhook: &str,
        rate: f64,
        burst: f64,
        want: u32,
    ) -> Result<Grant, StoreError> {
        dispatch!(self.take_tokens(webhook, rate, burst, want))
    }

    pub async fn give_back_tokens(
        &self,
        webhook: &str,
        n: u32,
        burst: f64,
    ) -> Result<(), StoreError> {
        dispatch!(self.give_back_tokens(webhook, n, burst))
    }

    // Inbound commands and audit (`contract::Audit`), source rejects
    // (`contract::Rejects`).

    pub async fn accept_command(
        &self,
        cmd: &NewCommand,
        audit: &AuditRow,
        audit_event: &NewEvent,
        signature: &SignatureRecord,
        idempotency: Option<&IdempotencyRecord>,
        now: DateTime<Utc>,
    ) -> Result<CommandStored, StoreError> {
        let stored =
            dispatch!(self.accept_command(cmd, audit, audit_event, signature, idempotency, now))?;
        self.woken(matches!(stored, CommandStored::Accepted));
        Ok(stored)
    }

    pub async fn record_audit(
        &self,
        audit: &AuditRow,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        dispatch!(self.record_audit(audit, event, now))?;
        // Its event may have deliveries.
        self.woken(true);
        Ok(())
    }

    pub async fn purge_idempotency_keys(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        dispatch!(self.purge_idempotency_keys(now))
    }

    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditListRow>, StoreError> {
        dispatch!(self.list_audit(filter))
    }

    pub async fn record_rejects(&self, rejects: &[NewReject]) -> Result<(), StoreError> {
        dispatch!(self.record_rejects(rejects))
    }

    pub async fn purge_rejects(
        &self,
        before: DateTime<Utc>,
        batch: u32,
    ) -> Result<u64, StoreError> {
        dispatch!(self.purge_rejects(before, batch))
    }

    pub async fn list_rejects(
        &self,
        source_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RejectRow>, StoreError> {
        dispatch!(self.list_rejects(source_id, before, limit))
    }
}
