//! A webhook's `oauth2:` and `proxy:`, and `network.proxy` (contract §10).
//! Secrets (the client secret, a proxy's password) come from `${ENV}` or a
//! file and are kept as [`Secret`]s; no error here echoes one.

use std::sync::Arc;

use serde_saphyr::{Location, Spanned};

use super::Compiler;
use super::files::digest;
use crate::domain::Secret;
use crate::policy::raw::{RawOAuth2, RawWebhook, Str};
use crate::policy::reach::{ClientAuth, EgressProxy, OAuth2, Route};

/// A webhook's `proxy:` as written: its own proxy, or `none`.
#[derive(Debug, Clone)]
pub(crate) enum ProxySetting {
    Direct,
    Via(Arc<EgressProxy>),
}

impl Compiler<'_> {
    /// A webhook's `tls:`, proxy in force (its `proxy:`, else
    /// `network_proxy`) and `oauth2:`.
    pub(super) fn reach(
        &mut self,
        w: &RawWebhook,
        path: &str,
        loc: Location,
        network_proxy: Option<&Arc<EgressProxy>>,
    ) -> (Route, Option<Arc<OAuth2>>) {
        let oauth2 = w
            .oauth2
            .as_ref()
            .and_then(|o| self.oauth2(o, &format!("{path}.oauth2")));
        let tls = w
            .tls
            .as_ref()
            .and_then(|t| self.client_tls(t, &format!("{path}.tls")));
        let proxy = match &w.proxy {
            None => {
                if let Some(f) = &w.proxy_password_file {
                    self.error(
                        format!("{path}.proxy_password_file"),
                        f.referenced,
                        "proxy_password_file is given without a proxy",
                    );
                }
                network_proxy.cloned()
            }
            Some(p) => match self.proxy(p, &w.proxy_password_file, &format!("{path}.proxy")) {
                Some(ProxySetting::Via(proxy)) => Some(proxy),
                Some(ProxySetting::Direct) | None => None,
            },
        };
        if let (Some(t), Some(p)) = (&tls, &proxy)
            && t.ca_pem.is_some()
            && p.url.scheme() == "https"
        {
            // The HTTP client verifies an https proxy with the webhook's
            // roots, which `ca_file` replaces.
            let at = w.tls.as_ref().map_or(loc, |t| t.referenced);
            self.error(
                format!("{path}.tls.ca_file"),
                at,
                "tls.ca_file cannot be combined with an https:// proxy (the proxy would be verified against this CA); use an http:// proxy, whose CONNECT tunnel carries the TLS to the receiver",
            );
        }
        (Route { tls, proxy }, oauth2)
    }

    /// `oauth2:` under `path`, or `None` after recording what is wrong.
    pub(super) fn oauth2(&mut self, raw: &Spanned<RawOAuth2>, path: &str) -> Option<Arc<OAuth2>> {
        let o = &raw.value;
        let before = self.errors.len();
        let token_url = self.token_url(&o.token_url, &format!("{path}.token_url"));
        let client_id = self.nonempty(&o.client_id, &format!("{path}.client_id"));
        let client_secret = match (&o.client_secret, &o.client_secret_file) {
            (Some(s), None) => self.string(s, &format!("{path}.client_secret")),
            (None, Some(f)) => self.read_file(f, &format!("{path}.client_secret_file")),
            _ => {
                self.error(
                    path,
                    raw.referenced,
                    "give exactly one of client_secret and client_secret_file",
                );
                None
            }
        };
        if client_secret.as_deref() == Some("") {
            self.error(path, raw.referenced, "the client secret is empty");
        }
        let scopes = o.scopes.as_ref().map_or_else(Vec::new, |list| {
            let mut out = Vec::new();
            for (i, s) in list.value.iter().enumerate() {
                let p = format!("{path}.scopes[{i}]");
                let Some(scope) = self.string(s, &p) else {
                    continue;
                };
                // RFC 6749 §3.3: scope tokens are printable ASCII without
                // space, `"` or `\`.
                let token = !scope.is_empty()
                    && scope
                        .bytes()
                        .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
                if token {
                    out.push(scope);
                } else {
                    self.error(
                        p,
                        s.referenced,
                        "a scope is printable ASCII without spaces, quotes or backslashes",
                    );
                }
            }
            out
        });
        let audience = o
            .audience
            .as_ref()
            .and_then(|a| self.nonempty(a, &format!("{path}.audience")));
        let client_auth = self.one_of(
            &o.client_auth,
            &format!("{path}.client_auth"),
            "client_auth",
            &[("basic", ClientAuth::Basic), ("post", ClientAuth::Post)],
            ClientAuth::Basic,
        );
        if self.errors.len() > before {
            return None;
        }
        let (token_url, client_id, client_secret) = (token_url?, client_id?, client_secret?);
        let fingerprint = digest(&[
            token_url.as_str().as_bytes(),
            client_id.as_bytes(),
            client_secret.as_bytes(),
            scopes.join(" ").as_bytes(),
            audience.as_deref().unwrap_or("").as_bytes(),
            &[u8::from(client_auth == ClientAuth::Post)],
        ]);
        Some(Arc::new(OAuth2 {
            token_url,
            client_id,
            client_secret: Secret::new(client_secret),
            scopes,
            audience,
            client_auth,
            fingerprint,
        }))
    }

    fn nonempty(&mut self, s: &Str, path: &str) -> Option<String> {
        let v = self.string(s, path)?;
        if v.is_empty() {
            self.error(path, s.referenced, "must not be empty");
            return None;
        }
        Some(v)
    }

    /// An http(s) token endpoint without credentials or a fragment.
    fn token_url(&mut self, s: &Str, path: &str) -> Option<url::Url> {
        let text = self.string(s, path)?;
        let problem = match url::Url::parse(&text) {
            Err(e) => format!("not a valid URL: {e}"),
            Ok(u) if !matches!(u.scheme(), "http" | "https") || u.host().is_none() => {
                "expected an http or https URL with a host".into()
            }
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                "credentials in the URL are not allowed; use client_id and client_secret".into()
            }
            Ok(u) if u.fragment().is_some() => "a token URL has no #fragment".into(),
            Ok(u) => return Some(u),
        };
        self.error(path, s.referenced, problem);
        None
    }

    /// A `proxy:` value at `path`: `none`, or a proxy URL whose password
    /// may instead come from `password_file`.
    pub(super) fn proxy(
        &mut self,
        s: &Str,
        password_file: &Option<Str>,
        path: &str,
    ) -> Option<ProxySetting> {
        let text = self.string(s, path)?;
        if text.trim() == "none" {
            if let Some(f) = password_file {
                self.error(
                    path,
                    f.referenced,
                    "proxy_password_file is given, but the proxy is `none`",
                );
            }
            return Some(ProxySetting::Direct);
        }
        let mut url = match url::Url::parse(text.trim()) {
            Ok(u) => u,
            Err(e) => {
                // Not echoed: the text may hold the proxy's password.
                self.error(path, s.referenced, format!("not a valid proxy URL: {e}"));
                return None;
            }
        };
        let problem = if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            Some("expected http://host:port, https://host:port or none")
        } else if !matches!(url.path(), "" | "/") || url.query().is_some() {
            Some("a proxy URL has no path or query")
        } else if url.fragment().is_some() {
            Some("a proxy URL has no #fragment")
        } else {
            None
        };
        if let Some(problem) = problem {
            self.error(path, s.referenced, problem);
            return None;
        }
        let decode = |part: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8_lossy()
                .into_owned()
        };
        let username = Some(decode(url.username())).filter(|u| !u.is_empty());
        let mut password = url.password().map(decode);
        if username.is_none() && password.is_some() {
            self.error(
                path,
                s.referenced,
                "the proxy URL has a password but no user name",
            );
            return None;
        }
        if let Some(f) = password_file {
            let p = format!("{path}_password_file");
            if username.is_none() || password.is_some() {
                self.error(
                    p,
                    f.referenced,
                    "proxy_password_file needs a proxy URL with a user name and no password (http://user@host:port)",
                );
                return None;
            }
            password = Some(self.read_file(f, &p)?);
        }
        // Credentials go to the proxy as a header, never inside the URL a
        // client or an error could print.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let fingerprint = digest(&[
            url.as_str().as_bytes(),
            username.as_deref().unwrap_or("").as_bytes(),
            password.as_deref().unwrap_or("").as_bytes(),
        ]);
        Some(ProxySetting::Via(Arc::new(EgressProxy {
            url,
            username,
            password: password.map(Secret::new),
            fingerprint,
        })))
    }
}
