//! The signed-in operator of a console request, and the checks every
//! state-changing form passes: this origin, this session's CSRF token.

use std::time::Instant;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ConsoleError;
use super::session::{self, Flash};
use crate::audit::RequestContext;
use crate::auth::authenticate;
use crate::http::AppState;
use crate::http::extract::{Caller, read_body};
use crate::rbac::{self, Action};

/// A request of a live session whose credential is still valid and still
/// carries role `admin`.
#[derive(Clone)]
pub struct Operator {
    /// The principal, as the JSON API's use cases take it (audits name it).
    pub caller: Caller,
    /// The session token (to leave a flash message, or to sign out).
    pub token: String,
    /// The token this session's forms carry.
    pub csrf: String,
    /// A message left by the previous form.
    pub flash: Option<Flash>,
}

/// Never shows the session token or the CSRF token.
impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("actor", &self.caller.actor_id)
            .finish_non_exhaustive()
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ConsoleError> {
        // After signing in, back to the page; a form's target cannot be
        // opened with a GET, so a form sends the operator to the overview.
        let next = if parts.method == axum::http::Method::GET {
            parts
                .uri
                .path_and_query()
                .map_or("/console", |p| p.as_str())
                .to_owned()
        } else {
            "/console".to_owned()
        };
        let sign_in = || ConsoleError::SignIn { next: next.clone() };
        let token = session::token_from(&parts.headers).ok_or_else(sign_in)?;
        let sessions = &state.console.sessions;
        let opened = sessions.touch(&token, Instant::now()).ok_or_else(sign_in)?;
        let policy = state.policy.load();
        let bearer = format!("Bearer {}", opened.credential);
        let still_admin =
            authenticate(policy.auth(), Some(&bearer), chrono::Utc::now().timestamp())
                .ok()
                .filter(|p| rbac::decide(p, Action::ConsoleSignIn, None) == rbac::Decision::Allow);
        let Some(principal) = still_admin else {
            // Key removed, token expired, role taken away: the session ends.
            sessions.close(&token);
            return Err(sign_in());
        };
        let request = parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_default();
        Ok(Self {
            caller: Caller { principal, request },
            token,
            csrf: opened.csrf,
            flash: opened.flash,
        })
    }
}

impl Operator {
    /// Leaves a message for the page the form redirects to.
    pub fn flash(&self, state: &AppState, ok: bool, text: impl Into<String>) {
        state.console.sessions.set_flash(
            &self.token,
            Flash {
                ok,
                text: text.into(),
            },
        );
    }
}

/// Whether a state-changing request comes from this origin: the browser's
/// `Sec-Fetch-Site` when sent, else `Origin` against `Host`. A client that
/// sends neither is not a browser, so no other site can have made it send
/// the session's cookie.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() == b"same-origin";
    }
    let Some(origin) = headers.get(axum::http::header::ORIGIN) else {
        return true;
    };
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// Reads a form body (at most 64 KiB) as `T`, after checking that it comes
/// from this origin and carries the session's token in `csrf`.
pub async fn form<T: DeserializeOwned>(
    state: &AppState,
    operator: &Operator,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ConsoleError> {
    let bytes = form_bytes(state, headers, body).await?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    let given = fields
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str());
    if !session::csrf_matches(&operator.csrf, given) {
        tracing::warn!(actor = %operator.caller.actor_id, "console form refused: missing or wrong CSRF token");
        return Err(ConsoleError::CrossSite);
    }
    parse(&bytes)
}

/// A form's fields as `T`; one that does not fit is a 400 naming why.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConsoleError> {
    serde_urlencoded::from_bytes(bytes).map_err(|e| {
        ConsoleError::Api(crate::http::ApiError::BadRequest {
            code: crate::http::ErrorCode::InvalidQuery,
            message: format!("invalid form: {e}"),
            field: None,
        })
    })
}

/// A form's body, from this origin only.
pub async fn form_bytes(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<axum::body::Bytes, ConsoleError> {
    if !same_origin(headers) {
        tracing::warn!("console form refused: cross-site request");
        return Err(ConsoleError::CrossSite);
    }
    Ok(read_body(body, 64 * 1024, state.limits.body_timeout).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("valid"));
        }
        h
    }

    #[test]
    fn only_this_origin_may_post() {
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(same_origin(&headers(&[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "http://127.0.0.1:9999"),
            ("host", "127.0.0.1:8080"),
        ])));
        assert!(!same_origin(&headers(&[("origin", "null"), ("host", "a")])));
        assert!(same_origin(&headers(&[])), "not a browser");
    }
}
