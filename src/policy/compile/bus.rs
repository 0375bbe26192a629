//! A webhook's destination: an HTTP(S) receiver, or a `kafka://` or
//! `nats://` one (contract §10), and the settings only HTTP takes.

use std::sync::Arc;

use serde_saphyr::Location;
use url::Url;

use super::Compiler;
use crate::policy::bus::Bus;
use crate::policy::raw::{RawWebhook, Str};
use crate::policy::reach::{EgressProxy, OAuth2, Route};

impl Compiler<'_> {
    /// The webhook's `url` and, for a Kafka or NATS destination, the
    /// destination itself.
    pub(super) fn destination(&mut self, s: &Str, path: &str) -> Option<(Url, Option<Arc<Bus>>)> {
        let text = self.string(s, path)?;
        match Bus::parse(&text) {
            Ok(None) => self.url(&text, s, path).map(|u| (u, None)),
            Ok(Some(bus)) if bus.kind() == "kafka" && !cfg!(feature = "kafka") => {
                self.error(
                    path,
                    s.referenced,
                    "this build has no Kafka support (built without the `kafka` feature)",
                );
                None
            }
            Ok(Some(bus)) => Some((bus.url(), Some(Arc::new(bus)))),
            Err(e) => {
                let scheme = text.split_once("://").map_or("", |(s, _)| s);
                self.error(
                    path,
                    s.referenced,
                    format!("not a valid {scheme}:// destination: {e}"),
                );
                None
            }
        }
    }

    /// How the webhook is reached: for HTTP its `tls:`, proxy and
    /// `oauth2:`; for a bus destination none of them.
    pub(super) fn route(
        &mut self,
        w: &RawWebhook,
        path: &str,
        loc: Location,
        bus: Option<&Bus>,
        network_proxy: Option<&Arc<EgressProxy>>,
    ) -> (Route, Option<Arc<OAuth2>>) {
        match bus {
            Some(bus) => {
                self.http_only(w, path, bus);
                (Route::default(), None)
            }
            None => self.reach(w, path, loc, network_proxy),
        }
    }

    /// Refuses what only an HTTP receiver takes on a Kafka or NATS
    /// destination: `tls`, `oauth2`, `proxy` and `proxy_password_file` (the
    /// engine reaches brokers directly, and `network.proxy` does not apply
    /// to them).
    fn http_only(&mut self, w: &RawWebhook, path: &str, bus: &Bus) {
        let set = [
            ("tls", w.tls.as_ref().map(|t| t.referenced)),
            ("oauth2", w.oauth2.as_ref().map(|o| o.referenced)),
            ("proxy", w.proxy.as_ref().map(|p| p.referenced)),
            (
                "proxy_password_file",
                w.proxy_password_file.as_ref().map(|p| p.referenced),
            ),
        ];
        for (name, at) in set {
            if let Some(at) = at {
                self.error(
                    format!("{path}.{name}"),
                    at,
                    format!(
                        "`{name}` applies to HTTP receivers only; a {}:// destination cannot take it",
                        bus.kind()
                    ),
                );
            }
        }
    }

    /// `text` (the interpolated `s`) as an http or https URL with a host
    /// and no credentials.
    fn url(&mut self, text: &str, s: &Str, path: &str) -> Option<url::Url> {
        match url::Url::parse(text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if !u.username().is_empty() || u.password().is_some() {
                    self.error(
                        path,
                        s.referenced,
                        "credentials in the URL are not allowed; use `headers` instead",
                    );
                    return None;
                }
                Some(u)
            }
            Ok(u) => {
                self.error(
                    path,
                    s.referenced,
                    format!(
                        "scheme {:?} is not allowed; expected an http or https URL with a host, or a kafka:// or nats:// destination",
                        u.scheme()
                    ),
                );
                None
            }
            Err(e) => {
                self.error(path, s.referenced, format!("not a valid URL: {e}"));
                None
            }
        }
    }
}
