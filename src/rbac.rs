//! Who may do what: one pure decision per [`Action`], for an authenticated
//! [`Principal`] and the inbound allow-list of the policy in force. No I/O,
//! no HTTP types; callers map a [`Decision::Deny`] to 403 and audit it.
//!
//! [`decide`] is one exhaustive `match` over [`Action`] with no `_` arm, so a
//! new action — an admin route or an [`InboundAction`] — does not compile
//! until someone writes down who may run it.

use std::fmt;

use crate::auth::Principal;
pub use crate::domain::InboundAction;
use crate::policy::InboundPolicy;

/// The role that may ingest events (contract §1).
pub const PUBLISHER: &str = "publisher";
/// The role that may use the admin API (contract §1).
pub const ADMIN: &str = "admin";

/// Everything an authenticated caller can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `POST /v1/events`.
    PublishEvents,
    /// `GET /v1/webhooks`.
    ListWebhooks,
    /// `GET /v1/deliveries`.
    ListDeliveries,
    /// `GET /v1/deliveries/{id}`.
    GetDelivery,
    /// `POST /v1/deliveries/{id}/replay`.
    ReplayDelivery,
    /// `POST /v1/deliveries/replay`.
    BulkReplay,
    /// `GET /v1/events/{id}`.
    GetEvent,
    /// `GET /v1/audit`.
    ListAudit,
    /// `GET /v1/policy`.
    GetPolicy,
    /// `POST /v1/policy/reload`.
    ReloadPolicy,
    /// `POST /v1/webhooks/{id}/disable`.
    DisableWebhook,
    /// `POST /v1/webhooks/{id}/enable`.
    EnableWebhook,
    /// `POST /v1/webhooks/{id}/test`.
    TestWebhook,
    /// `GET /v1/sources`, `GET /v1/sources/{id}/rejects`.
    ListSources,
    /// `POST /console/login`: a session of the web console.
    ConsoleSignIn,
    /// `POST /webhooks/inbound` with this action.
    Inbound(InboundAction),
}

impl Action {
    /// Every action, in declaration order (each inbound action once).
    pub fn all() -> impl Iterator<Item = Self> {
        [
            Self::PublishEvents,
            Self::ListWebhooks,
            Self::ListDeliveries,
            Self::GetDelivery,
            Self::ReplayDelivery,
            Self::BulkReplay,
            Self::GetEvent,
            Self::ListAudit,
            Self::GetPolicy,
            Self::ReloadPolicy,
            Self::DisableWebhook,
            Self::EnableWebhook,
            Self::TestWebhook,
            Self::ListSources,
            Self::ConsoleSignIn,
        ]
        .into_iter()
        .chain(InboundAction::ALL.into_iter().map(Self::Inbound))
    }

    /// A stable snake_case name, e.g. for the `action` of an audit record;
    /// an inbound action is named as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PublishEvents => "publish_events",
            Self::ListWebhooks => "list_webhooks",
            Self::ListDeliveries => "list_deliveries",
            Self::GetDelivery => "get_delivery",
            Self::ReplayDelivery => "replay_delivery",
            Self::BulkReplay => "bulk_replay",
            Self::GetEvent => "get_event",
            Self::ListAudit => "list_audit",
            Self::GetPolicy => "get_policy",
            Self::ReloadPolicy => "reload_policy",
            Self::DisableWebhook => "disable_webhook",
            Self::EnableWebhook => "enable_webhook",
            Self::TestWebhook => "test_webhook",
            Self::ListSources => "list_sources",
            Self::ConsoleSignIn => "console_sign_in",
            Self::Inbound(a) => a.as_str(),
        }
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny { reason: DenyReason },
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Self::Allow)
    }
}

/// Why an authenticated caller was refused (both are 403, in the order of
/// contract §4: allow-list first, then roles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// An inbound action the policy does not allow-list (or no `inbound:`
    /// section at all): nobody may run it.
    NotAllowListed,
    /// The caller has none of these roles; any one would do.
    MissingRole { needed: Vec<String> },
}

impl fmt::Display for DenyReason {
    /// Safe to show the caller: it names roles, never who holds them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAllowListed => f.write_str("this action is not in the inbound allow-list"),
            Self::MissingRole { needed } => match needed.as_slice() {
                [one] => write!(f, "this operation needs the `{one}` role"),
                many => write!(
                    f,
                    "this operation needs one of the roles {}",
                    many.iter()
                        .map(|r| format!("`{r}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        }
    }
}

/// May `principal` run `action` under the inbound allow-list `inbound`?
///
/// `publisher` and `admin` have fixed meanings and imply nothing else: an
/// admin cannot publish unless it also holds `publisher`. Inbound actions
/// are governed only by the policy's allow-list.
pub fn decide(principal: &Principal, action: Action, inbound: Option<&InboundPolicy>) -> Decision {
    // No `_` arm, on purpose: see the module doc.
    match action {
        Action::PublishEvents => require_role(principal, PUBLISHER),
        Action::ListWebhooks
        | Action::ListDeliveries
        | Action::GetDelivery
        | Action::ReplayDelivery
        | Action::BulkReplay
        | Action::GetEvent
        | Action::ListAudit
        | Action::GetPolicy
        | Action::ReloadPolicy
        | Action::DisableWebhook
        | Action::EnableWebhook
        | Action::TestWebhook
        | Action::ListSources
        | Action::ConsoleSignIn => require_role(principal, ADMIN),
        Action::Inbound(a) => match inbound.and_then(|p| p.actions.get(a.as_str())) {
            None => Decision::Deny {
                reason: DenyReason::NotAllowListed,
            },
            Some(roles) if roles.iter().any(|r| principal.has_role(r)) => Decision::Allow,
            Some(roles) => Decision::Deny {
                reason: DenyReason::MissingRole {
                    needed: roles.clone(),
                },
            },
        },
    }
}

fn require_role(principal: &Principal, role: &str) -> Decision {
    if principal.has_role(role) {
        Decision::Allow
    } else {
        Decision::Deny {
            reason: DenyReason::MissingRole {
                needed: vec![role.to_owned()],
            },
        }
    }
}

#[cfg(test)]
mod tests;
