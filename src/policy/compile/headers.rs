//! A webhook's static `headers:` and `header_files:`: valid names, none the
//! engine sets itself or that belong to one connection, each name once, no
//! CR, LF or NUL in a value. Values may be secrets (`${ENV}`, or a file's
//! text), so they are kept as [`Secret`]s and no error here echoes one.

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
    /// `headers` (values in the policy) then `header_files` (values read
    /// from files, watched and reloaded like secret files), under `path`.
    pub(super) fn headers(
        &mut self,
        inline: &BTreeMap<String, Str>,
        files: &BTreeMap<String, Str>,
        path: &str,
        owner: Location,
    ) -> Vec<(String, Secret)> {
        let mut out = Vec::new();
        for (name, value) in inline {
            let p = format!("{path}.headers.{name}");
            if self.header_name(name, &p, owner, value)
                && let Some(v) = self.string(value, &p)
            {
                self.header_value(name, v, &p, value, &mut out);
            }
        }
        for (name, file) in files {
            let p = format!("{path}.header_files.{name}");
            if inline.keys().any(|n| n.eq_ignore_ascii_case(name)) {
                self.error(
                    &p,
                    file.referenced,
                    format!("header {name:?} is in both `headers` and `header_files`; keep one"),
                );
            } else if self.header_name(name, &p, owner, file)
                && let Some(v) = self.read_file(file, &p)
            {
                self.header_value(name, v, &p, file, &mut out);
            }
        }
        out
    }

    /// Whether `name` may be a static header; an error at `p` if not.
    fn header_name(&mut self, name: &str, p: &str, owner: Location, value: &Str) -> bool {
        let lower = name.to_ascii_lowercase();
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            self.error(
                p,
                owner,
                format!("{name:?} is not a valid HTTP header name"),
            );
            false
        } else if RESERVED_HEADERS.contains(&lower.as_str())
            || lower.starts_with("x-aion-")
            || lower.starts_with("webhook-")
        {
            self.error(
                p,
                value.referenced,
                format!("header {name:?} is set by the engine and cannot be overridden"),
            );
            false
        } else {
            true
        }
    }

    fn header_value(
        &mut self,
        name: &str,
        v: String,
        p: &str,
        at: &Str,
        out: &mut Vec<(String, Secret)>,
    ) {
        if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            self.error(
                p,
                at.referenced,
                "header value must not contain CR, LF or NUL",
            );
        } else {
            out.push((name.to_owned(), Secret::new(v)));
        }
    }
}
