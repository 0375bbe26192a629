//! The maintenance service: returns the deliveries of expired leases
//! (engines that died, sends cut off) to pending, by the database's clock,
//! and now and then purges inbound idempotency records past their window.
//! Retention (deleting finished work) runs beside it, in `retention`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Clock;
use crate::store::Store;

/// Expired leases back to pending (by the database's clock), and now and
/// then the inbound replay records past their window.
pub(super) async fn run(store: Store, clock: Clock, every: Duration, shutdown: CancellationToken) {
    const PURGE_EVERY: Duration = Duration::from_secs(60);
    let mut last_purge: Option<tokio::time::Instant> = None;
    loop {
        match store.rescue_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                rescued = n,
                "returned deliveries with expired leases to pending"
            ),
            Err(e) => tracing::debug!(error = %e.chain(), "rescue pass failed"),
        }
        if last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
            last_purge = Some(tokio::time::Instant::now());
            if let Err(e) = store.purge_idempotency_keys(clock.now()).await {
                tracing::debug!(error = %e.chain(), "purging expired idempotency records failed");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
