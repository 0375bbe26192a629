//! The delivery state machine: where a delivery is in its life, as the
//! queue stores it.

/// Where a delivery is in its life. The one state machine of the queue;
/// who moves a row, and when:
///
/// ```text
/// (ingest)  -> pending     one row per matching webhook, in the event's transaction
/// (ingest)  -> waiting     instead, for a keyed event to an `ordering: key`
///                          webhook: the delivery joins its line (`lines`)
/// (ingest)  -> in_flight   instead, sent at once by the accepting engine
///                          (`Recipient::lease`): lease set, attempts = 1, as
///                          if claimed in the same statement; never in a line
/// waiting   -> pending     the line has no head any more (its head finished,
///                          or it was empty): the lowest order_seq is promoted
/// pending   -> in_flight   claim: due by the database clock, lease set, attempts + 1
/// in_flight -> succeeded   the lease holder records a 2xx
/// in_flight -> pending     the lease holder records a failure with budget left
///                          (due after retry_in); or release: nothing was sent,
///                          attempts - 1, no attempt row; or the rescuer, once
///                          the lease expired (attempt row `lease_expired`)
/// in_flight -> dead        the lease holder records the last attempt's failure
/// pending   -> any         a late real outcome of the attempt the rescuer gave
///                          up, if nobody claimed the delivery since
/// dead | succeeded -> pending   manual replay (budget restarts at replay_base);
///                          `waiting` instead for a delivery in a line
/// ```
///
/// In a line only the head is ever `pending` or `in_flight`: a line sends
/// one delivery at a time, in acceptance order, and its head leaving
/// (`succeeded` or `dead`) lets the next one go. Attempts are append-only
/// rows; a row is never rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Waiting,
    Pending,
    InFlight,
    Succeeded,
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Pending => "pending",
            Self::InFlight => "in_flight",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
        }
    }

    /// `succeeded` or `dead`: the delivery has left the queue (and its line).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Dead)
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "waiting" => Some(Self::Waiting),
            "pending" => Some(Self::Pending),
            "in_flight" => Some(Self::InFlight),
            "succeeded" => Some(Self::Succeeded),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}
