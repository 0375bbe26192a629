//! Inbound commands (contract §4): verify the signature over the raw bytes,
//! authenticate, check the allow-list and roles, validate the body, then
//! store the command with its dispatch event (`command.<action>`), its audit
//! record and its idempotency answer in one transaction.
//!
//! The checks run in the contract's order and each refusal has no side
//! effect, except that an authenticated caller denied by RBAC is audited.
//! An accepted signature is remembered for the tolerance window: the same
//! signed request sent again gets the first answer and dispatches nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::audit::{AuditEntry, Outcome};
use crate::auth::{AuthError, Principal, authenticate};
use crate::domain::Topic;
use crate::ingest::internal_event;
use crate::policy::PolicySet;
use crate::rbac::{self, Action, InboundAction};
use crate::signing::{VerifyError, aion_verify};
use crate::store::{
    CommandStored, IdempotencyRecord, NewCommand, SignatureRecord, Store, StoreError,
};

mod meters;

pub use meters::{InboundOutcome, Meters};

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// What the HTTP layer hands over: raw bytes and the relevant headers.
#[derive(Debug, Clone)]
pub struct InboundRequest<'a> {
    pub body: &'a [u8],
    pub signature: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
}

/// The answer to send: status and JSON body (a replay sends the stored one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundAnswer {
    pub status: u16,
    pub body: String,
    pub outcome: InboundOutcome,
}

#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error("inbound commands are not configured on this engine")]
    NotConfigured,
    #[error("missing X-Aion-Signature header")]
    SignatureMissing,
    #[error("malformed X-Aion-Signature header: {0}")]
    SignatureMalformed(&'static str),
    #[error("the signature timestamp is outside the allowed tolerance")]
    SignatureStale,
    #[error("the signature does not match")]
    SignatureInvalid,
    #[error(transparent)]
    Unauthenticated(AuthError),
    #[error("action {0:?} is not allowed")]
    NotAllowed(String),
    #[error("action {action:?} needs one of the roles {needed:?}")]
    MissingRole { action: String, needed: Vec<String> },
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("{message}")]
    InvalidBody {
        field: &'static str,
        message: String,
    },
    #[error("the Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters")]
    InvalidIdempotencyKey,
    #[error("this Idempotency-Key was already used with a different body")]
    KeyReused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl InboundError {
    pub fn outcome(&self) -> Option<InboundOutcome> {
        Some(match self {
            Self::NotConfigured => InboundOutcome::NotConfigured,
            Self::SignatureMissing => InboundOutcome::SignatureMissing,
            Self::SignatureMalformed(_) => InboundOutcome::SignatureMalformed,
            Self::SignatureStale => InboundOutcome::SignatureStale,
            Self::SignatureInvalid => InboundOutcome::SignatureInvalid,
            Self::Unauthenticated(_) => InboundOutcome::Unauthenticated,
            Self::NotAllowed(_) => InboundOutcome::NotAllowed,
            Self::MissingRole { .. } => InboundOutcome::MissingRole,
            Self::MalformedJson(_) | Self::InvalidBody { .. } | Self::InvalidIdempotencyKey => {
                InboundOutcome::BadBody
            }
            Self::KeyReused => InboundOutcome::KeyReused,
            Self::Store(_) => return None,
        })
    }
}

/// A request that passed every check, ready to store.
#[derive(Debug)]
pub struct Checked<'a> {
    pub principal: Principal,
    pub action: String,
    pub params: Value,
    pub idempotency_key: Option<&'a str>,
    /// The signature's `t`.
    pub signed_at: i64,
}

/// What the checks decided.
#[derive(Debug)]
pub enum Verdict<'a> {
    Accept(Checked<'a>),
    /// An authenticated caller refused by RBAC: audited, then answered.
    Deny {
        principal: Principal,
        action: String,
        error: InboundError,
    },
}

/// Every check of contract §4, in its order, with no I/O: signature,
/// credentials, allow-list and roles, body shape, `Idempotency-Key`.
/// Refusals before authentication are plain errors; an RBAC denial is a
/// [`Verdict::Deny`] so the caller can audit it.
pub fn check<'a>(
    policy: &PolicySet,
    req: &InboundRequest<'a>,
    now: DateTime<Utc>,
) -> Result<Verdict<'a>, InboundError> {
    let inbound = policy.inbound().ok_or(InboundError::NotConfigured)?;

    // 1. Signature, over the raw bytes received.
    let header = req.signature.ok_or(InboundError::SignatureMissing)?;
    let secrets: Vec<&[u8]> = inbound
        .secrets
        .iter()
        .map(|s| s.expose().as_bytes())
        .collect();
    let signed_at = aion_verify(
        header,
        &secrets,
        req.body,
        now.timestamp(),
        inbound.tolerance.as_secs(),
    )
    .map_err(|e| match e {
        VerifyError::Malformed(why) => InboundError::SignatureMalformed(why),
        VerifyError::Stale { .. } => InboundError::SignatureStale,
        VerifyError::Mismatch => InboundError::SignatureInvalid,
    })?;

    // 2. Credentials.
    let principal = authenticate(policy.auth(), req.authorization, now.timestamp())
        .map_err(InboundError::Unauthenticated)?;

    // 3. The action: allow-listed, and the caller holds a role it needs.
    let mut body: Value =
        serde_json::from_slice(req.body).map_err(|e| InboundError::MalformedJson(e.to_string()))?;
    let action_name = body
        .get("action")
        .and_then(Value::as_str)
        .ok_or_else(|| InboundError::InvalidBody {
            field: "action",
            message: "`action` is required and must be a string".into(),
        })?
        .to_owned();
    let denied = match InboundAction::parse(&action_name) {
        None => Some(InboundError::NotAllowed(action_name.clone())),
        Some(action) => match rbac::decide(&principal, Action::Inbound(action), Some(inbound)) {
            rbac::Decision::Allow => None,
            rbac::Decision::Deny {
                reason: rbac::DenyReason::NotAllowListed,
            } => Some(InboundError::NotAllowed(action_name.clone())),
            rbac::Decision::Deny {
                reason: rbac::DenyReason::MissingRole { needed },
            } => Some(InboundError::MissingRole {
                action: action_name.clone(),
                needed,
            }),
        },
    };
    if let Some(error) = denied {
        return Ok(Verdict::Deny {
            principal,
            action: action_name,
            error,
        });
    }

    // 4. Body shape and the Idempotency-Key.
    let params = match body.get_mut("params") {
        Some(p @ Value::Object(_)) => p.take(),
        Some(_) => {
            return Err(InboundError::InvalidBody {
                field: "params",
                message: "`params` must be a JSON object".into(),
            });
        }
        None => {
            return Err(InboundError::InvalidBody {
                field: "params",
                message: "`params` is required (a JSON object)".into(),
            });
        }
    };
    let idempotency_key = match req.idempotency_key {
        None => None,
        Some(k)
            if !k.is_empty()
                && k.len() <= MAX_IDEMPOTENCY_KEY
                && k.bytes().all(|b| b.is_ascii_graphic() || b == b' ') =>
        {
            Some(k)
        }
        Some(_) => return Err(InboundError::InvalidIdempotencyKey),
    };
    Ok(Verdict::Accept(Checked {
        principal,
        action: action_name,
        params,
        idempotency_key,
        signed_at,
    }))
}

/// Runs one inbound request through every check and, if it passes, stores it.
pub async fn handle(
    store: &Store,
    policy: &PolicySet,
    req: &InboundRequest<'_>,
    now: DateTime<Utc>,
) -> Result<InboundAnswer, InboundError> {
    let Checked {
        principal,
        action,
        params,
        idempotency_key: key,
        signed_at,
    } = match check(policy, req, now)? {
        Verdict::Accept(checked) => checked,
        Verdict::Deny {
            principal,
            action,
            error,
        } => {
            audit_denial(store, policy, &principal, &action, req, now).await?;
            return Err(error);
        }
    };
    let inbound = policy.inbound().ok_or(InboundError::NotConfigured)?;
    let action_name = action.as_str();

    // 5. Store and dispatch.
    let command_id = uuid::Uuid::now_v7();
    let command_ref = format!("cmd_{}", command_id.simple());
    let topic =
        Topic::parse(&format!("command.{action_name}")).expect("action names are topic segments");
    let payload = json!({ "command_id": command_ref, "action": action_name, "params": params, "actor_id": principal.actor_id });
    let event = internal_event(
        policy,
        &topic,
        Some(principal.actor_id.clone()),
        &payload,
        now,
    );
    let answer = json!({ "command_id": command_ref, "action": action_name, "status": "accepted" })
        .to_string();
    let audit = AuditEntry {
        at: now,
        actor_id: principal.actor_id.clone(),
        action: action_name.to_owned(),
        outcome: Outcome::Accepted,
        target: Some(command_ref.clone()),
        request_id: req.request_id.clone(),
        source_ip: req.source_ip.clone(),
    };
    let command = NewCommand {
        id: command_id,
        action: action_name.to_owned(),
        params: params.to_string(),
        actor_id: principal.actor_id.clone(),
        idempotency_key: key.map(str::to_owned),
        event,
    };
    // Remembered until `t + tolerance` (plus a second of slack), when no
    // engine would accept it any more.
    let signature = SignatureRecord {
        actor_id: principal.actor_id.clone(),
        digest: Sha256::new()
            .chain_update(format!("{signed_at}."))
            .chain_update(req.body)
            .finalize()
            .into(),
        status: 202,
        response: answer.clone(),
        signed_at,
        ttl: inbound.tolerance + Duration::from_secs(1),
    };
    let idempotency = key.map(|k| IdempotencyRecord {
        actor_id: principal.actor_id.clone(),
        key: k.to_owned(),
        body_sha256: Sha256::digest(req.body).into(),
        status: 202,
        response: answer.clone(),
        ttl: IDEMPOTENCY_TTL,
    });
    match store
        .accept_command(
            &command,
            &audit.row(),
            &audit.event(policy),
            &signature,
            idempotency.as_ref(),
            now,
        )
        .await?
    {
        CommandStored::Accepted => Ok(InboundAnswer {
            status: 202,
            body: answer,
            outcome: InboundOutcome::Accepted,
        }),
        CommandStored::Replayed { status, response } => Ok(InboundAnswer {
            status,
            body: response,
            outcome: InboundOutcome::Replayed,
        }),
        CommandStored::KeyReused => Err(InboundError::KeyReused),
    }
}

async fn audit_denial(
    store: &Store,
    policy: &PolicySet,
    principal: &Principal,
    action: &str,
    req: &InboundRequest<'_>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let entry = AuditEntry {
        at: now,
        actor_id: principal.actor_id.clone(),
        // Bounded: the action string is the caller's and may be anything.
        action: action.chars().take(64).collect(),
        outcome: Outcome::Denied,
        target: None,
        request_id: req.request_id.clone(),
        source_ip: req.source_ip.clone(),
    };
    store
        .record_audit(&entry.row(), &entry.event(policy), now)
        .await
}
