//! The fair-share rule, as a pure function: given each sendable webhook's
//! sends in flight and its limit now, how much room each gets.
//!
//! Every webhook may grow to its equal share (`max_in_flight / sendable
//! webhooks`); beyond it, webhooks take only what exceeds a reserve of a
//! quarter of the engine's slots, split between them. However many webhooks
//! hang or fail, the others always find free slots.

/// One sendable webhook, as the rule sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Candidate {
    /// Sends in flight now.
    pub used: u32,
    /// Its limit now (adaptive, under its ceiling).
    pub limit: u32,
}

/// Each webhook's equal share of `max_in_flight` among `sendable` webhooks.
pub(super) fn share(max_in_flight: u32, sendable: usize) -> u32 {
    (max_in_flight / u32::try_from(sendable.max(1)).unwrap_or(u32::MAX)).max(1)
}

/// The room of each candidate (same order), given `free` engine slots and
/// `sendable` webhooks (sendable and not paused) sharing the engine.
pub(super) fn rooms(
    max_in_flight: u32,
    free: u32,
    sendable: usize,
    candidates: &[Candidate],
) -> Vec<u32> {
    let share = share(max_in_flight, sendable);
    let over_share = candidates.iter().filter(|c| c.used >= share).count();
    // What the webhooks past their share may take between them, this claim.
    let excess = free.saturating_sub(max_in_flight / 4)
        / u32::try_from(over_share.max(1)).unwrap_or(u32::MAX);
    candidates
        .iter()
        .map(|c| {
            let cap = c.limit.saturating_sub(c.used);
            if c.used < share {
                cap.min(share - c.used)
            } else {
                cap.min(excess)
            }
        })
        .collect()
}

/// Whether a webhook with `used` sends in flight may start one more outside
/// a claim (the ingest path): under its limit and its share.
pub(super) fn may_start(used: u32, limit: u32, share: u32) -> bool {
    used < limit.min(share)
}
