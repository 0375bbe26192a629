//! The web console at `/console` (contract §11): server-rendered pages over
//! the same use cases as the JSON API, for a signed-in admin. Templates
//! (`templates/console/`) and static files are compiled into the binary;
//! nothing is fetched from elsewhere.
//!
//! Every page is answered with a strict `Content-Security-Policy` (scripts,
//! styles and forms from this origin only, no inline code, no framing).
//! Every state-changing form carries the session's CSRF token and must come
//! from this origin (`Sec-Fetch-Site`, else `Origin`); the cookie is
//! `HttpOnly` and `SameSite=Strict`. Outside text (payloads, response
//! bodies, errors) is HTML-escaped by the templates.

mod deliveries;
mod operator;
mod pages;
pub mod session;
mod signin;
mod view;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub use operator::Operator;
pub use session::{SessionLimits, Sessions};

use super::{ApiError, AppState};

/// Whether the session cookie is marked `Secure`
/// (`AION_WEBHOOKS_CONSOLE_SECURE_COOKIE`: `auto`, `always` or `never`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecureCookie {
    /// When the request came over TLS as a proxy in front says
    /// (`X-Forwarded-Proto: https`, `Forwarded: proto=https`).
    #[default]
    Auto,
    Always,
    Never,
}

/// The console's settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsoleConfig {
    pub sessions: SessionLimits,
    pub secure_cookie: SecureCookie,
}

/// The console's state, shared by its handlers.
#[derive(Debug)]
pub struct Console {
    pub sessions: Sessions,
    pub secure_cookie: SecureCookie,
}

impl Console {
    pub fn new(config: ConsoleConfig) -> Arc<Self> {
        Arc::new(Self {
            sessions: Sessions::new(config.sessions),
            secure_cookie: config.secure_cookie,
        })
    }
}

/// The policy every console page is served with.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("static/console.css");
const JS: &str = include_str!("static/console.js");
const ICON: &str = include_str!("static/favicon.svg");

/// The console's routes, under `/console`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(pages::overview))
        .route("/console/", get(pages::overview))
        .route("/console/login", get(signin::page).post(signin::sign_in))
        .route("/console/logout", post(signin::sign_out))
        .route("/console/webhooks", get(pages::webhooks))
        .route("/console/webhooks/{id}/disable", post(pages::disable))
        .route("/console/webhooks/{id}/enable", post(pages::enable))
        .route("/console/deliveries", get(deliveries::list))
        .route("/console/deliveries/{id}", get(deliveries::show))
        .route("/console/deliveries/{id}/replay", post(deliveries::replay))
        .route("/console/dead", get(deliveries::dead))
        .route("/console/dead/replay", post(deliveries::bulk_replay))
        .route("/console/events/{id}", get(deliveries::event))
        .route("/console/sources", get(pages::sources))
        .route("/console/policy", get(pages::policy))
        .route("/console/policy/reload", post(pages::reload))
        .route("/console/audit", get(pages::audit))
        .route("/console/static/console.css", get(css))
        .route("/console/static/console.js", get(js))
        .route("/console/static/favicon.svg", get(icon))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(middleware::from_fn(protect))
}

/// Security headers on every console answer.
async fn protect(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

async fn js() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}

async fn icon() -> Response {
    asset(ICON, "image/svg+xml")
}

/// Why a console request was not answered with its page.
#[derive(Debug)]
pub enum ConsoleError {
    /// No live session: to the sign-in page, then back to `next`.
    SignIn { next: String },
    /// A form without this session's token, or from another site.
    CrossSite,
    /// What the use case refused, shown on an error page.
    Api(ApiError),
    /// The template did not render (a bug).
    Render(askama::Error),
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<askama::Error> for ConsoleError {
    fn from(e: askama::Error) -> Self {
        Self::Render(e)
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn { next } => {
                let next = view::local_path(&next);
                let to = format!("/console/login?next={}", view::query_escape(next));
                Redirect::to(&to).into_response()
            }
            Self::CrossSite => view::error_page(
                StatusCode::FORBIDDEN,
                "Refused: this form did not come from this console (cross-site request or \
                 expired form). Reload the page and try again.",
                &[],
            ),
            Self::Api(e) => {
                let errors = match &e {
                    ApiError::PolicyInvalid { errors, .. } => errors.clone(),
                    _ => Vec::new(),
                };
                let message = e.to_string();
                // The JSON answer carries the status and, for a 5xx, the
                // cause for the request log; the page keeps both.
                let mut json = e.into_response();
                let status = json.status();
                let mut page = view::error_page(status, &message, &errors);
                if let Some(chain) = json.extensions_mut().remove::<super::error::ErrorChain>() {
                    page.extensions_mut().insert(chain);
                }
                page
            }
            Self::Render(e) => {
                tracing::error!(error = %e, "console template failed");
                view::error_page(StatusCode::INTERNAL_SERVER_ERROR, "internal error", &[])
            }
        }
    }
}
