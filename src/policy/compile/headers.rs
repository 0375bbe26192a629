//! A webhook's static `headers:` and `header_files:`: valid names, none the
//! engine sets itself or that belong to one connection, each name once, no
//! CR, LF or NUL in a value. Values may be secrets (`${ENV}`, or a file's
//! text), so they are kept as [`Secret`]s and no error here echoes one.

use std::collections::{BTreeMap, HashSet};

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
    /// from files, watched and reloaded like secret files), under `path`:
    /// alphabetical by name within each map, each name once across both
    /// (names are case-insensitive, and a repeated one would be sent twice).
    pub(super) fn headers(
        &mut self,
        inline: &BTreeMap<String, Str>,
        files: &BTreeMap<String, Str>,
        path: &str,
        oauth2: bool,
    ) -> Vec<(String, Secret)> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let entries = inline
            .iter()
            .map(|(name, value)| (name, value, false))
            .chain(files.iter().map(|(name, file)| (name, file, true)));
        for (name, value, from_file) in entries {
            let map = if from_file { "header_files" } else { "headers" };
            let p = format!("{path}.{map}.{name}");
            if !self.header_name(name, &p, value) {
                continue;
            }
            if oauth2 && name.eq_ignore_ascii_case("authorization") {
                self.error(
                    &p,
                    value.referenced,
                    "Authorization is set by oauth2 on this webhook and cannot be a static header",
                );
                continue;
            }
            if !seen.insert(name.to_ascii_lowercase()) {
                self.error(
                    &p,
                    value.referenced,
                    format!(
                        "header {name:?} is given twice (names are case-insensitive, across `headers` and `header_files`); keep one"
                    ),
                );
                continue;
            }
            let text = if from_file {
                self.read_file(value, &p)
            } else {
                self.string(value, &p)
            };
            if let Some(text) = text {
                self.header_value(name, text, &p, value, &mut out);
            }
        }
        out
    }

    /// Whether `name` may be a static header; an error at `p` if not.
    fn header_name(&mut self, name: &str, p: &str, value: &Str) -> bool {
        let lower = name.to_ascii_lowercase();
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            self.error(
                p,
                value.referenced,
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

    /// Keeps `v` as `name`'s value, or an error at `p`: an empty value (an
    /// unset secret, a file caught mid-rotation) or one the HTTP client
    /// would refuse on every attempt (control characters; tab is allowed).
    fn header_value(
        &mut self,
        name: &str,
        v: String,
        p: &str,
        at: &Str,
        out: &mut Vec<(String, Secret)>,
    ) {
        if v.is_empty() {
            self.error(p, at.referenced, "header value is empty");
        } else if v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            self.error(
                p,
                at.referenced,
                "header value must not contain control characters (CR, LF, NUL, DEL, …)",
            );
        } else {
            out.push((name.to_owned(), Secret::new(v)));
        }
    }
}
