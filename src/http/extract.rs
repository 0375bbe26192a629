//! Extractors: the authenticated [`Caller`], and a JSON body read under
//! our own size limit so oversized bodies get a JSON 413.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;

use super::{ApiError, AppState, ErrorCode};
use crate::audit::{AuditEntry, Outcome, RequestContext};
use crate::auth::{Principal, authenticate};
use crate::rbac::{self, Action};

/// The query string as `T`; a query that does not fit (a repeated
/// parameter, a wrong type) is a JSON `400 invalid_query` like every other
/// error, not axum's plain-text rejection.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Self(v))
            .map_err(|e| ApiError::BadRequest {
                code: ErrorCode::InvalidQuery,
                message: e.body_text(),
                field: None,
            })
    }
}

/// One path segment, percent-decoded; one that does not decode (invalid
/// UTF-8) names nothing: a JSON `404 not_found`.
#[derive(Debug)]
pub struct ApiPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Self(v))
            .map_err(|_| ApiError::NotFound("no such resource".into()))
    }
}

/// The authenticated caller of an admin or publisher route, with the
/// request's id and peer for the audit records it causes.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub request: RequestContext,
}

impl std::ops::Deref for Caller {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let policy = state.policy.load();
        let principal = authenticate(policy.auth(), header, chrono::Utc::now().timestamp())?;
        let request = parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_default();
        Ok(Self { principal, request })
    }
}

impl Caller {
    /// An audit record of what this caller did, stamped with the request.
    pub fn audit(
        &self,
        at: chrono::DateTime<chrono::Utc>,
        action: &str,
        outcome: Outcome,
        target: Option<String>,
    ) -> AuditEntry {
        AuditEntry {
            at,
            actor_id: self.principal.actor_id.clone(),
            action: action.to_owned(),
            outcome,
            target,
            request_id: self.request.request_id.clone(),
            source_ip: self.request.source_ip.clone(),
        }
    }
}

/// Lets `caller` run `action`, or answers 403 — after writing the
/// denial to the audit log (contract §5: every RBAC denial of an
/// authenticated caller). A denial that cannot be audited (database down)
/// is still a denial: it is logged and answered 403.
pub async fn authorize(state: &AppState, caller: &Caller, action: Action) -> Result<(), ApiError> {
    let reason = match rbac::decide(&caller.principal, action, None) {
        rbac::Decision::Allow => return Ok(()),
        rbac::Decision::Deny { reason } => reason,
    };
    let now = chrono::Utc::now();
    let entry = caller.audit(now, action.as_str(), Outcome::Denied, None);
    let policy = state.policy.load_full();
    if let Err(e) = state
        .store
        .record_audit(&entry.row(), &entry.event(&policy), now)
        .await
    {
        tracing::error!(error = %e.chain(), actor = %caller.actor_id, action = action.as_str(), "could not audit a denial");
    }
    Err(ApiError::Forbidden(reason.to_string()))
}

/// Reads a JSON request body of at most `limit` bytes within `timeout`.
pub async fn json_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    if let Some(ct) = headers.get(CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
        if !ct.starts_with("application/json") && !ct.contains("+json") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type must be application/json, got {ct:?}"
            )));
        }
    }
    read_body(body, limit, timeout).await
}

/// Reads a request body of at most `limit` bytes, whatever its type (the
/// inbound endpoint verifies the raw bytes; their parse decides the rest).
/// The whole body must arrive within `timeout`, so a client trickling bytes
/// cannot hold a connection (and the request's memory) indefinitely.
pub async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if is_too_large(&e) => Err(ApiError::PayloadTooLarge(format!(
            "the request body exceeds {limit} bytes"
        ))),
        // The client reset or closed the connection mid-body: nobody reads
        // the answer, but it must not be a 5xx.
        Ok(Err(_)) => Err(ApiError::BadRequest {
            code: ErrorCode::IncompleteBody,
            message: "the request body ended before its declared length".into(),
            field: None,
        }),
        Err(_) => Err(ApiError::RequestTimeout(format!(
            "the request body did not arrive within {} s",
            timeout.as_secs_f64()
        ))),
    }
}

fn is_too_large(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}
