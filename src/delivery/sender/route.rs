//! One HTTP client per route (contract §10): the engine's plain client for
//! webhooks without `tls:` or a proxy, and one more per distinct client
//! certificate, private CA and proxy, each with its own connection pool.
//!
//! Where the SSRF guard checks what:
//! - direct: inside the client's DNS step ([`GuardedResolver`]), so the
//!   client connects only to addresses the guard passed;
//! - through a proxy: the proxy resolves and connects, so before any byte
//!   goes to the proxy the target's name is resolved here and refused if
//!   any address is forbidden ([`Routes::check_target`]); the client's own
//!   resolver answers for the proxy's host and nothing else.
//!
//! IP literals never reach a resolver and are checked in both cases.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use super::{ErrorKind, USER_AGENT};
use crate::delivery::ssrf::{BlockedDestination, GuardedResolver, SsrfGuard};
use crate::domain::redact::url_origin;
use crate::policy::reach::{Route, RouteKey};

/// The clients, by route. A route is named by the digests of its files, so
/// a reload that keeps them keeps the pool, and one that changes them
/// builds a new client; a client unused for [`KEEP_UNUSED`] (a rotated
/// certificate's, a removed webhook's) is dropped when a new one is built.
#[derive(Default)]
pub(super) struct Routes {
    clients: Mutex<HashMap<RouteKey, Entry>>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A client's `Debug` would print its proxy.
        let n = self.clients.lock().map_or(0, |c| c.len());
        write!(f, "Routes({n} clients)")
    }
}

struct Entry {
    client: reqwest::Client,
    used: std::time::Instant,
}

/// How long an unused client is kept: far past the pool's own idle
/// timeout, so only the client itself goes.
const KEEP_UNUSED: std::time::Duration = std::time::Duration::from_secs(600);

/// The settings every delivery client shares.
pub(super) fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A proxy from the environment would do its own DNS and connect
        // wherever it likes, bypassing the guard; `network.proxy` is the
        // way to name one.
        .no_proxy()
        .user_agent(USER_AGENT)
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
}

impl Routes {
    /// The client for `route` (not the direct one), built on first use.
    pub(super) fn client(
        &self,
        route: &Route,
        guard: &Arc<SsrfGuard>,
    ) -> Result<reqwest::Client, String> {
        let key = route.key();
        let now = std::time::Instant::now();
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = clients.get_mut(&key) {
            entry.used = now;
            return Ok(entry.client.clone());
        }
        let client = build(route, guard)?;
        clients.retain(|_, e| now.duration_since(e.used) < KEEP_UNUSED);
        clients.insert(
            key,
            Entry {
                client: client.clone(),
                used: now,
            },
        );
        Ok(client)
    }

    /// Refuses a target the SSRF guard forbids before any I/O towards it:
    /// an IP literal always, and through a proxy every address the name
    /// resolves to here (one forbidden address refuses the name: the proxy
    /// may pick it).
    pub(super) async fn check_target(
        guard: &SsrfGuard,
        url: &Url,
        proxied: bool,
    ) -> Result<(), (ErrorKind, String)> {
        let blocked = |ip: IpAddr| {
            (
                ErrorKind::BlockedDestination,
                format!(
                    "{ip} is a forbidden destination (allow it with network.allow_private_targets)"
                ),
            )
        };
        let host = match url.host() {
            Some(Host::Ipv4(v4)) => return check_ip(guard, v4.into()).map_err(blocked),
            Some(Host::Ipv6(v6)) => return check_ip(guard, v6.into()).map_err(blocked),
            Some(Host::Domain(name)) => name,
            None => return Err((ErrorKind::Other, format!("{} has no host", url_origin(url)))),
        };
        if !proxied {
            return Ok(());
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| {
                (
                    ErrorKind::Connect,
                    format!(
                        "cannot resolve {host} to check it against the SSRF guard before using the proxy: {e}"
                    ),
                )
            })?
            .collect();
        match addrs.iter().find(|a| !guard.permits(a.ip())) {
            Some(_) => Err((
                ErrorKind::BlockedDestination,
                BlockedDestination {
                    host: host.to_owned(),
                }
                .to_string(),
            )),
            None => Ok(()),
        }
    }
}

fn check_ip(guard: &SsrfGuard, ip: IpAddr) -> Result<(), IpAddr> {
    if guard.permits(ip) { Ok(()) } else { Err(ip) }
}

/// A client for `route`: its proxy (credentials as a header) and resolver,
/// its client certificate and its roots.
fn build(route: &Route, guard: &Arc<SsrfGuard>) -> Result<reqwest::Client, String> {
    let mut b = builder();
    match &route.proxy {
        None => {
            b = b.dns_resolver(Arc::new(GuardedResolver {
                guard: Arc::clone(guard),
            }));
        }
        Some(p) => {
            let mut proxy = reqwest::Proxy::all(p.url.clone())
                .map_err(|_| format!("proxy {} cannot be used", url_origin(&p.url)))?;
            if let Some(user) = &p.username {
                // reqwest puts these into the proxy URL's userinfo unescaped
                // and decodes them again when it sends: escaped here, so a
                // `%` in a password stays a `%`.
                let escape = |s: &str| {
                    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                        .to_string()
                };
                let password = p.password.as_ref().map_or("", |s| s.expose());
                proxy = proxy.basic_auth(&escape(user), &escape(password));
            }
            b = b.proxy(proxy).dns_resolver(Arc::new(ProxyOnly {
                host: p.url.host_str().unwrap_or_default().to_owned(),
            }));
        }
    }
    if let Some(tls) = &route.tls {
        if let Some(id) = &tls.identity {
            let pem = format!("{}\n{}", id.cert_pem, id.key_pem.expose());
            let identity = reqwest::Identity::from_pem(pem.as_bytes())
                .map_err(|_| "the client certificate or key cannot be used".to_owned())?;
            b = b.identity(identity);
        }
        if let Some(ca) = &tls.ca_pem {
            let roots = reqwest::Certificate::from_pem_bundle(ca.as_bytes())
                .map_err(|_| "the ca_file cannot be used".to_owned())?;
            b = b.tls_built_in_root_certs(false);
            for root in roots {
                b = b.add_root_certificate(root);
            }
        }
    }
    // Without the cause: it may quote the files.
    b.build()
        .map_err(|_| "cannot build the HTTP client for this webhook's tls or proxy".to_owned())
}

/// DNS for a proxied client: the proxy's host only. The client connects
/// only to the proxy, so any other name is a bug, refused.
#[derive(Debug)]
struct ProxyOnly {
    host: String,
}

impl Resolve for ProxyOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let ours = host.eq_ignore_ascii_case(&self.host);
        Box::pin(async move {
            if !ours {
                return Err(
                    Box::new(BlockedDestination { host }) as Box<dyn StdError + Send + Sync>
                );
            }
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}
