//! What one batch of attempts says about each webhook's health, worked out
//! once here for both stores: they write these tallies as values (the
//! `webhook_health` row and the minute's counts), each with one upsert.
//!
//! The rule: a webhook with a success in the batch is healthy again (its
//! failure streak ends, and a webhook that just answered 2xx is never
//! disabled for failing); otherwise its failures add to the streak, which
//! started at its first failure. The error kind kept is the batch's
//! greatest by name, so the same batch always keeps the same one.

use std::collections::BTreeMap;

use super::Completion;

/// One webhook's attempts in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub webhook_id: String,
    pub succeeded: i64,
    pub failed: i64,
    /// The kind kept as the webhook's last error (`None` if nothing failed).
    pub error_kind: Option<&'static str>,
}

impl Tally {
    /// A success in the batch ends the webhook's failure streak.
    pub fn recovered(&self) -> bool {
        self.succeeded > 0
    }
}

/// Every webhook of `done`, in order of id (the order rows are locked in,
/// so two batches never wait on each other in a cycle).
pub fn tally(done: &[Completion]) -> Vec<Tally> {
    let mut by: BTreeMap<&str, Tally> = BTreeMap::new();
    for c in done {
        let t = by.entry(c.webhook_id.as_str()).or_insert_with(|| Tally {
            webhook_id: c.webhook_id.clone(),
            succeeded: 0,
            failed: 0,
            error_kind: None,
        });
        match c.record.error_kind {
            None => t.succeeded += 1,
            Some(kind) => {
                t.failed += 1;
                t.error_kind = t.error_kind.max(Some(kind));
            }
        }
    }
    by.into_values().collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::{AttemptRecord, DeliveryState};

    fn attempt(webhook: &str, kind: Option<&'static str>) -> Completion {
        Completion {
            id: uuid::Uuid::now_v7(),
            webhook_id: webhook.into(),
            attempt: 1,
            state: if kind.is_none() {
                DeliveryState::Succeeded
            } else {
                DeliveryState::Pending
            },
            retry_in: kind.map(|_| Duration::from_secs(1)),
            record: AttemptRecord {
                started_at: chrono::Utc::now(),
                duration: Duration::from_millis(1),
                status: Some(if kind.is_none() { 200 } else { 500 }),
                error_kind: kind,
                error: None,
                response_body: None,
            },
            in_line: false,
        }
    }

    #[test]
    fn each_webhook_once_in_id_order_with_its_counts_and_greatest_kind() {
        let done = [
            attempt("b", Some("timeout")),
            attempt("a", None),
            attempt("b", Some("http_status")),
            attempt("a", Some("connect")),
            attempt("c", None),
        ];
        let t = tally(&done);
        let ids: Vec<&str> = t.iter().map(|t| t.webhook_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(
            (t[0].succeeded, t[0].failed, t[0].error_kind),
            (1, 1, Some("connect"))
        );
        assert!(t[0].recovered(), "a success in the batch wins");
        assert_eq!(
            (t[1].succeeded, t[1].failed, t[1].error_kind),
            (0, 2, Some("timeout"))
        );
        assert!(!t[1].recovered());
        assert_eq!((t[2].succeeded, t[2].failed, t[2].error_kind), (1, 0, None));
        assert!(tally(&[]).is_empty());
    }
}
