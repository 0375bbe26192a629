//! Compiling the access sections: `inbound` (secret, tolerance, the action
//! allow-list), `auth` (API keys, JWT) and `network` (SSRF exceptions).

use std::collections::{BTreeMap, HashSet};

use serde_saphyr::Spanned;

use super::super::model::{ApiKey, AuthPolicy, InboundPolicy, JwtConfig, JwtKey, NetworkPolicy};
use super::super::raw::{RawAuth, RawInbound, RawNetwork, Str};
use super::{Compiler, DEFAULT_TOLERANCE};
use crate::domain::{InboundAction, Secret};

impl Compiler<'_> {
    pub fn inbound(&mut self, raw: &Option<Spanned<RawInbound>>) -> Option<InboundPolicy> {
        let raw = raw.as_ref()?;
        let loc = raw.referenced;
        let r = &raw.value;
        let secrets = self.secrets("inbound", loc, &r.secret, &r.secrets, &r.secret_file);
        let tolerance = match &r.tolerance {
            Some(s) => self
                .duration(s, "inbound.tolerance", false)
                .unwrap_or(DEFAULT_TOLERANCE),
            None => DEFAULT_TOLERANCE,
        };
        let mut actions = BTreeMap::new();
        for (name, action) in &r.actions {
            let p = format!("inbound.actions.{name}");
            // Only actions the engine knows can be allow-listed; the roles
            // of an unknown one are still checked so one pass lists all errors.
            let known = InboundAction::parse(name).is_some();
            if !known {
                let names: Vec<&str> = InboundAction::ALL.iter().map(|a| a.as_str()).collect();
                self.error(
                    &p,
                    action.referenced,
                    format!(
                        "unknown action {name:?}; known actions: {}",
                        names.join(", ")
                    ),
                );
            }
            let roles = self.roles(&action.value.roles, &format!("{p}.roles"));
            if known {
                actions.insert(name.clone(), roles);
            }
        }
        Some(InboundPolicy {
            secrets: secrets?,
            tolerance,
            actions,
        })
    }

    fn roles(&mut self, list: &Spanned<Vec<Str>>, path: &str) -> Vec<String> {
        if list.value.is_empty() {
            self.error(path, list.referenced, "must list at least one role");
        }
        list.value
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let p = format!("{path}[{i}]");
                let v = self.string(s, &p)?;
                let valid = !v.is_empty()
                    && v.len() <= 64
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !valid {
                    self.error(
                        p,
                        s.referenced,
                        format!("role {v:?} is invalid; expected 1-64 characters of [A-Za-z0-9_-]"),
                    );
                    return None;
                }
                Some(v)
            })
            .collect()
    }

    pub fn auth(&mut self, raw: &Option<RawAuth>) -> AuthPolicy {
        let Some(raw) = raw else {
            return AuthPolicy::default();
        };
        let mut ids = HashSet::new();
        let mut hashes = HashSet::new();
        let mut api_keys = Vec::new();
        for (i, k) in raw.api_keys.iter().enumerate() {
            let p = format!("auth.api_keys[{i}]");
            let id = self.string(&k.value.id, &format!("{p}.id"));
            let roles = self.roles(&k.value.roles, &format!("{p}.roles"));
            let hash = self.string(&k.value.sha256, &format!("{p}.sha256")).and_then(|h| {
                let h = h.strip_prefix("sha256:").unwrap_or(&h).to_ascii_lowercase();
                let bytes = (h.len() == 64).then(|| hex::decode(&h).ok()).flatten();
                match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                    Some(b) => Some(b),
                    None => {
                        self.error(format!("{p}.sha256"), k.value.sha256.referenced, "expected 64 hexadecimal characters (the SHA-256 of the key; `aion-webhooks keygen` prints one)");
                        None
                    }
                }
            });
            let Some(id) = id else { continue };
            if id.is_empty() || id.len() > 64 {
                self.error(
                    format!("{p}.id"),
                    k.value.id.referenced,
                    "api key id must be 1-64 characters",
                );
                continue;
            }
            if !ids.insert(id.clone()) {
                self.error(
                    format!("{p}.id"),
                    k.value.id.referenced,
                    format!("duplicate api key id {id:?}"),
                );
                continue;
            }
            let Some(sha256) = hash else { continue };
            if !hashes.insert(sha256) {
                self.error(
                    format!("{p}.sha256"),
                    k.value.sha256.referenced,
                    "the same key hash is listed twice",
                );
                continue;
            }
            api_keys.push(ApiKey { id, sha256, roles });
        }
        let jwt = raw.jwt.as_ref().and_then(|j| self.jwt(j));
        AuthPolicy { api_keys, jwt }
    }

    fn jwt(&mut self, raw: &Spanned<super::super::raw::RawJwt>) -> Option<JwtConfig> {
        let j = &raw.value;
        let issuer = self.string(&j.issuer, "auth.jwt.issuer");
        let audience = self.string(&j.audience, "auth.jwt.audience");
        let roles_claim = match &j.roles_claim {
            Some(s) => self.string(s, "auth.jwt.roles_claim"),
            None => Some("roles".to_owned()),
        };
        let key = match (&j.hs256_secret, &j.public_key_file) {
            (Some(s), None) => {
                let v = self.string(s, "auth.jwt.hs256_secret")?;
                if v.len() < 32 {
                    self.error(
                        "auth.jwt.hs256_secret",
                        s.referenced,
                        "must be at least 32 bytes long",
                    );
                    return None;
                }
                JwtKey::Hs256(Secret::new(v))
            }
            (None, Some(f)) => {
                let pem = self.read_file(f, "auth.jwt.public_key_file")?;
                let usable = jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()).is_ok()
                    || jsonwebtoken::DecodingKey::from_ec_pem(pem.as_bytes()).is_ok();
                if !usable {
                    self.error(
                        "auth.jwt.public_key_file",
                        f.referenced,
                        "expected a PEM public key: RSA (RS256) or EC P-256 (ES256)",
                    );
                    return None;
                }
                JwtKey::PublicKeyPem(pem)
            }
            _ => {
                self.error(
                    "auth.jwt",
                    raw.referenced,
                    "set exactly one of `hs256_secret` and `public_key_file`",
                );
                return None;
            }
        };
        Some(JwtConfig {
            issuer: issuer?,
            audience: audience?,
            key,
            roles_claim: roles_claim?,
        })
    }

    pub fn network(&mut self, raw: &Option<RawNetwork>) -> NetworkPolicy {
        let Some(raw) = raw else {
            return NetworkPolicy::default();
        };
        let mut allow = Vec::new();
        for (i, s) in raw.allow_private_targets.iter().enumerate() {
            let p = format!("network.allow_private_targets[{i}]");
            let Some(text) = self.string(s, &p) else {
                continue;
            };
            let parsed = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(net) => allow.push(net.trunc()),
                Err(_) => self.error(
                    p,
                    s.referenced,
                    format!("{text:?} is not a CIDR (e.g. 127.0.0.0/8, 10.1.2.3/32, ::1/128)"),
                ),
            }
        }
        let proxy = match &raw.proxy {
            Some(p) => match self.proxy(p, &raw.proxy_password_file, "network.proxy") {
                Some(super::reach::ProxySetting::Via(proxy)) => Some(proxy),
                _ => None,
            },
            None => {
                if let Some(f) = &raw.proxy_password_file {
                    self.error(
                        "network.proxy_password_file",
                        f.referenced,
                        "proxy_password_file is given without a proxy",
                    );
                }
                None
            }
        };
        NetworkPolicy {
            allow_private_targets: allow,
            proxy,
        }
    }
}
