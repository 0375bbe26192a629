//! `ApiError`: every failure an endpoint can answer, mapped once to a status
//! and a stable snake_case code (contract §7). `IntoResponse` has no side
//! effects; the detail of a 5xx goes to the log, never to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::code::ErrorCode;
use super::views::{ErrorBody, ErrorDetail, ViolationView};
use crate::auth::AuthError;
use crate::policy::schemas::Violation;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest {
        code: ErrorCode,
        message: String,
        field: Option<String>,
    },
    #[error("{message}")]
    Unprocessable {
        code: ErrorCode,
        message: String,
        field: Option<String>,
    },
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    /// 401 with a code of its own (signature problems).
    #[error("{message}")]
    UnauthorizedCode { code: ErrorCode, message: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    ForbiddenCode {
        code: ErrorCode,
        message: String,
        field: Option<String>,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String },
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body did not arrive in time.
    #[error("{0}")]
    RequestTimeout(String),
    /// A policy reload refused; `errors` lists every problem.
    #[error("{message}")]
    PolicyInvalid {
        message: String,
        errors: Vec<String>,
    },
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// `422 schema_violation`: `violations` lists each JSON pointer and keyword.
    #[error("{message}")]
    SchemaViolation {
        message: String,
        field: String,
        violations: Vec<Violation>,
    },
    #[error("the database is unavailable; retry later")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] StoreError),
}

impl From<StoreError> for ApiError {
    /// Unreachable, or a lost deadlock or serialization race: the same
    /// request may succeed later, so 503 rather than 500.
    fn from(e: StoreError) -> Self {
        if e.is_transient() {
            Self::Unavailable(e)
        } else {
            Self::Internal(e)
        }
    }
}

impl ApiError {
    pub fn invalid(code: ErrorCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Unprocessable {
            code,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn unauthorized(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::UnauthorizedCode {
            code,
            message: message.into(),
        }
    }

    pub fn forbidden(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::ForbiddenCode {
            code,
            message: message.into(),
            field: None,
        }
    }

    fn parts(&self) -> (StatusCode, ErrorCode, Option<&str>) {
        match self {
            Self::BadRequest { code, field, .. } => {
                (StatusCode::BAD_REQUEST, *code, field.as_deref())
            }
            Self::Unprocessable { code, field, .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, *code, field.as_deref())
            }
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, None),
            Self::UnauthorizedCode { code, .. } => (StatusCode::UNAUTHORIZED, *code, None),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden, None),
            Self::ForbiddenCode { code, field, .. } => {
                (StatusCode::FORBIDDEN, *code, field.as_deref())
            }
            Self::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound, None),
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, *code, None),
            Self::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                None,
            ),
            Self::RequestTimeout(_) => {
                (StatusCode::REQUEST_TIMEOUT, ErrorCode::RequestTimeout, None)
            }
            Self::PolicyInvalid { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::PolicyInvalid,
                None,
            ),
            Self::SchemaViolation { field, .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::SchemaViolation,
                Some(field.as_str()),
            ),
            Self::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                None,
            ),
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                None,
            ),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, None),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = self.parts();
        let detail = ErrorDetail {
            code,
            message: self.to_string(),
            field: field.map(str::to_owned),
            errors: match &self {
                Self::PolicyInvalid { errors, .. } => Some(errors.clone()),
                _ => None,
            },
            violations: match &self {
                Self::SchemaViolation { violations, .. } => Some(
                    violations
                        .iter()
                        .map(|v| ViolationView {
                            pointer: v.pointer.clone(),
                            keyword: v.keyword.clone(),
                            message: v.message.clone(),
                        })
                        .collect(),
                ),
                _ => None,
            },
        };
        let mut response = (status, Json(ErrorBody { error: detail })).into_response();
        if status.is_server_error() {
            // The middleware logs the cause chain once; the client saw only the generic text.
            response
                .extensions_mut()
                .insert(ErrorChain(crate::domain::Causes(&self).to_string()));
        }
        response
    }
}

/// The full cause chain of a 5xx, for the request log.
#[derive(Debug, Clone)]
pub struct ErrorChain(pub String);
