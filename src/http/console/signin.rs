//! Signing in and out of the console. An admin API key or JWT is exchanged
//! for a session cookie; a credential without role `admin` (a publisher
//! key) is refused, and that refusal is audited like any RBAC denial.

use std::time::Instant;

use askama::Template;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::operator::{Operator, form, form_bytes, parse};
use super::session::cookie;
use super::view::local_path;
use super::{ConsoleError, SecureCookie};
use crate::audit::{Outcome, RequestContext};
use crate::auth::authenticate;
use crate::http::AppState;
use crate::http::extract::{ApiQuery, Caller};
use crate::rbac::{self, Action};

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage<'a> {
    next: &'a str,
    message: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

fn login_page(status: StatusCode, next: &str, message: Option<&str>) -> Response {
    let page = LoginPage {
        next: local_path(next),
        message,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => ConsoleError::Render(e).into_response(),
    }
}

/// `GET /console/login`.
pub async fn page(ApiQuery(q): ApiQuery<NextQuery>) -> Response {
    login_page(
        StatusCode::OK,
        q.next.as_deref().unwrap_or("/console"),
        None,
    )
}

#[derive(Debug, Deserialize)]
struct SignIn {
    #[serde(default)]
    credential: String,
    #[serde(default)]
    next: String,
}

/// Whether the cookie gets `Secure`.
fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    match state.console.secure_cookie {
        SecureCookie::Always => true,
        SecureCookie::Never => false,
        SecureCookie::Auto => {
            let forwarded_proto = headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
            let forwarded = headers
                .get(header::FORWARDED)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().contains("proto=https"));
            forwarded_proto || forwarded
        }
    }
}

async fn audit(state: &AppState, caller: &Caller, action: &str, outcome: Outcome) {
    let now = chrono::Utc::now();
    let entry = caller.audit(now, action, outcome, None);
    let policy = state.policy.load_full();
    if let Err(e) = state
        .store
        .record_audit(&entry.row(), &entry.event(&policy), now)
        .await
    {
        tracing::error!(error = %e.chain(), actor = %caller.actor_id, action, "could not audit a console sign-in");
    }
}

/// `POST /console/login`.
pub async fn sign_in(
    State(state): State<AppState>,
    request: Option<axum::Extension<RequestContext>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ConsoleError> {
    let bytes = form_bytes(&state, &headers, body).await?;
    let f: SignIn = parse(&bytes)?;
    let credential = f.credential.trim();
    let policy = state.policy.load_full();
    let bearer = format!("Bearer {credential}");
    let now = chrono::Utc::now();
    let Ok(principal) = authenticate(policy.auth(), Some(&bearer), now.timestamp()) else {
        tracing::info!("console sign-in refused: not a valid API key or token");
        return Ok(login_page(
            StatusCode::UNAUTHORIZED,
            &f.next,
            Some("That is not a valid API key or token."),
        ));
    };
    let caller = Caller {
        principal,
        request: request.map(|r| r.0).unwrap_or_default(),
    };
    if let rbac::Decision::Deny { .. } =
        rbac::decide(&caller.principal, Action::ConsoleSignIn, None)
    {
        audit(
            &state,
            &caller,
            Action::ConsoleSignIn.as_str(),
            Outcome::Denied,
        )
        .await;
        let message = format!(
            "{} cannot sign in: the console needs role admin.",
            caller.actor_id
        );
        return Ok(login_page(StatusCode::FORBIDDEN, &f.next, Some(&message)));
    }
    // A session this browser already had ends: one browser, one session.
    if let Some(old) = super::session::token_from(&headers) {
        state.console.sessions.close(&old);
    }
    let token = state.console.sessions.open(credential, Instant::now());
    audit(
        &state,
        &caller,
        Action::ConsoleSignIn.as_str(),
        Outcome::Applied,
    )
    .await;
    tracing::info!(actor = %caller.actor_id, "console sign-in");
    let max_age = state.console.sessions.limits().max_age;
    let mut response = Redirect::to(local_path(&f.next)).into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = cookie(&token, secure(&state, &headers), max_age).parse() {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct Nothing {}

/// `POST /console/logout`.
pub async fn sign_out(
    State(state): State<AppState>,
    operator: Operator,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ConsoleError> {
    let _: Nothing = form(&state, &operator, &headers, body).await?;
    state.console.sessions.close(&operator.token);
    audit(
        &state,
        &operator.caller,
        "console_sign_out",
        Outcome::Applied,
    )
    .await;
    let mut response = Redirect::to("/console/login").into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    let cleared = cookie("", secure(&state, &headers), std::time::Duration::ZERO);
    if let Ok(v) = cleared.parse() {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}
