//! How the engine reaches one receiver beyond its URL (contract §10): mutual
//! TLS, OAuth2 client credentials and an egress proxy. Built by `compile`;
//! the sender builds one HTTP client per distinct [`Route`] and the token
//! cache keys tokens by [`OAuth2::fingerprint`].
//!
//! Each type holds its secrets as [`Secret`]s and prints none of them.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use url::Url;

use crate::domain::Secret;

/// `tls:` — the client certificate presented to one receiver, and the CA
/// trusted for it instead of the public roots.
#[derive(Clone)]
pub struct ClientTls {
    /// The client certificate chain as PEM, leaf first; `None` with only
    /// `ca_file`.
    pub identity: Option<Identity>,
    /// `ca_file`: the only roots this webhook's receiver is verified
    /// against; `None` = the public roots.
    pub ca_pem: Option<String>,
    /// Digest of every file above: one HTTP client per distinct value.
    pub fingerprint: [u8; 32],
}

/// A client certificate and its key.
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: Secret,
    /// The leaf certificate's `notAfter`.
    pub not_after: DateTime<Utc>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("client_cert", &self.identity.is_some())
            .field("not_after", &self.identity.as_ref().map(|i| i.not_after))
            .field("private_ca", &self.ca_pem.is_some())
            .finish()
    }
}

/// How the client authenticates itself at the token endpoint (RFC 6749
/// §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `Authorization: Basic` (the default; every server must take it).
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// `oauth2:` — the client-credentials grant whose token goes out as
/// `Authorization: Bearer`.
#[derive(Clone)]
pub struct OAuth2 {
    /// Never with credentials in it; `policy check` refuses those.
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: Secret,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    pub client_auth: ClientAuth,
    /// Digest of all of the above: tokens are cached under it, so a
    /// rotated secret fetches a fresh token and an unchanged reload keeps it.
    pub fingerprint: [u8; 32],
}

impl fmt::Debug for OAuth2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2")
            .field(
                "token_url",
                &crate::domain::redact::url_origin(&self.token_url),
            )
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

/// `network.proxy` or a webhook's `proxy:` — a forward proxy every attempt
/// goes through (`CONNECT` for https).
#[derive(Clone)]
pub struct EgressProxy {
    /// `http://host:port` or `https://…`, credentials taken out.
    pub url: Url,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub fingerprint: [u8; 32],
}

impl fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressProxy")
            .field("url", &crate::domain::redact::url_origin(&self.url))
            .field("credentials", &self.username.is_some())
            .finish()
    }
}

/// The digests of a route's `tls:` and proxy (zeros for none).
pub type RouteKey = ([u8; 32], [u8; 32]);

/// What one webhook's connections need beyond the URL: the sender keeps
/// one HTTP client (one connection pool) per distinct route.
#[derive(Debug, Clone, Default)]
pub struct Route {
    pub tls: Option<Arc<ClientTls>>,
    /// The proxy in force for this webhook (its own `proxy:`, or
    /// `network.proxy`); `None` = direct.
    pub proxy: Option<Arc<EgressProxy>>,
}

impl Route {
    /// Whether this is the plain route: the engine's shared client.
    pub fn is_direct(&self) -> bool {
        self.tls.is_none() && self.proxy.is_none()
    }

    /// A key naming this route's client: equal routes share one pool.
    pub fn key(&self) -> RouteKey {
        let none = [0; 32];
        (
            self.tls.as_ref().map_or(none, |t| t.fingerprint),
            self.proxy.as_ref().map_or(none, |p| p.fingerprint),
        )
    }
}
