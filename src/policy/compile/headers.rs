//! A webhook's static `headers:`: valid names, none the engine sets
//! itself or that belong to one connection, no CR, LF or NUL in a value.
//! Values may be secrets (`${ENV}`), so they are kept as [`Secret`]s and no
//! error here echoes one.

use std::collections::BTreeMap;

use serde_saphyr::Location;

use super::Compiler;
use crate::domain::Secret;
use crate::policy::raw::Str;

/// Headers the engine sets itself, and the hop-by-hop headers (RFC 9110
/// §7.6.1: they describe one connection, which the engine's HTTP client
/// owns, and a proxy would act on them); a static header must not set them.
/// `X-Aion-*` and `webhook-*` are refused by prefix.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "idempotency-key",
    "traceparent",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

impl Compiler<'_> {
    pub(super) fn headers(
        &mut self,
        raw: &BTreeMap<String, Str>,
        path: &str,
        owner: Location,
    ) -> Vec<(String, Secret)> {
        let mut out = Vec::new();
        for (name, value) in raw {
            let p = format!("{path}.{name}");
            let lower = name.to_ascii_lowercase();
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                self.error(
                    &p,
                    owner,
                    format!("{name:?} is not a valid HTTP header name"),
                );
            } else if RESERVED_HEADERS.contains(&lower.as_str())
                || lower.starts_with("x-aion-")
                || lower.starts_with("webhook-")
            {
                self.error(
                    &p,
                    value.referenced,
                    format!("header {name:?} is set by the engine and cannot be overridden"),
                );
            } else if let Some(v) = self.string(value, &p) {
                if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                    self.error(
                        &p,
                        value.referenced,
                        "header value must not contain CR, LF or NUL",
                    );
                } else {
                    out.push((name.clone(), Secret::new(v)));
                }
            }
        }
        out
    }
}
