//! Audit records (contract §5): who did what, with which outcome, to what.
//! Each is written to the append-only `audit_log` and emitted as an event on
//! `aion.audit.activity` (key = actor id) in the same transaction as the
//! change it records. Pure: building entries and their events, no I/O.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use crate::domain::Topic;
use crate::ingest::internal_event;
use crate::policy::PolicySet;
use crate::store::{AuditRow, NewEvent};

pub const AUDIT_TOPIC: &str = "aion.audit.activity";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Denied,
    Applied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Denied => "denied",
            Self::Applied => "applied",
        }
    }
}

/// Which request caused an audited action: its id (the caller's
/// `X-Request-Id`, else one the engine made and answered with) and the
/// peer's address. Empty for actions no request caused (a file change,
/// SIGHUP, the engine's own decisions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
}

/// One audit record.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor_id: String,
    /// What was attempted: an inbound action name, `replay_delivery`, `reload_policy`…
    pub action: String,
    pub outcome: Outcome,
    /// Command id, delivery id, policy hash…
    pub target: Option<String>,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
}

impl AuditEntry {
    /// The row for `audit_log`.
    pub fn row(&self) -> AuditRow {
        AuditRow {
            at: self.at,
            actor_id: self.actor_id.clone(),
            action: self.action.clone(),
            outcome: self.outcome.as_str(),
            target: self.target.clone(),
            request_id: self.request_id.clone(),
            source_ip: self.source_ip.clone(),
        }
    }

    /// The `aion.audit.activity` event for this record.
    pub fn event(&self, policy: &PolicySet) -> NewEvent {
        self.event_with(policy, serde_json::Map::new())
    }

    /// The event, with `extra` fields added to its payload (e.g. a policy
    /// reload's old hash and diff).
    pub fn event_with(
        &self,
        policy: &PolicySet,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> NewEvent {
        let topic = Topic::parse(AUDIT_TOPIC).expect("the audit topic is a valid topic");
        let mut payload = json!({
            "actor_id": self.actor_id,
            "action": self.action,
            "outcome": self.outcome.as_str(),
            "target": self.target,
            "at": self.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "request_id": self.request_id,
            "source_ip": self.source_ip,
        });
        if let Some(fields) = payload.as_object_mut() {
            fields.extend(extra);
        }
        internal_event(
            policy,
            &topic,
            Some(self.actor_id.clone()),
            &payload,
            self.at,
        )
    }
}
