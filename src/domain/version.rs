//! An event's version (issue 16): the envelope's `event_version`, an
//! integer (`3`) or a semantic version string (`"1.2.0"`). Adding fields
//! bumps it; consumers accept any version at or above their minimum.
//!
//! Versions compare by their numeric `major.minor.patch` (missing parts are
//! 0, so `2` = `"2.0"` = `"2.0.0"`); a pre-release or build suffix is kept
//! in the text but does not change the order. The text is kept as the
//! producer wrote it, in JSON form, so the delivery body carries the same
//! `3` or `"1.2.0"`.

use std::cmp::Ordering;
use std::fmt;

/// At most this many bytes of version text.
const MAX_LEN: usize = 64;

#[derive(Debug, Clone)]
pub struct EventVersion {
    /// The JSON form: `3` or `"1.2.0"`.
    json: String,
    parts: [u64; 3],
}

impl EventVersion {
    /// From the envelope's JSON value (integer or string).
    pub fn from_json(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.len() > MAX_LEN + 2 {
            return Err(format!("`event_version` is at most {MAX_LEN} bytes"));
        }
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Number(n)) => match n.as_u64() {
                Some(major) => Ok(Self {
                    json: major.to_string(),
                    parts: [major, 0, 0],
                }),
                None => Err(format!(
                    "`event_version` {n} is not a non-negative integer or a version string like \"1.2.0\""
                )),
            },
            Ok(serde_json::Value::String(s)) => Self::parse(&s).map(|v| Self {
                json: serde_json::Value::from(s).to_string(),
                ..v
            }),
            _ => {
                Err("`event_version` must be an integer or a version string like \"1.2.0\"".into())
            }
        }
    }

    /// From plain text (`3`, `1.2`, `1.2.0-rc.1`), as the policy writes
    /// `min_version:` and `versions:` keys.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{text:?} is not a version: expected MAJOR[.MINOR[.PATCH]] with an optional -pre or +build suffix"
            )
        };
        if text.is_empty() || text.len() > MAX_LEN {
            return Err(bad());
        }
        let core_end = text.find(['-', '+']).unwrap_or(text.len());
        let (core, suffix) = text.split_at(core_end);
        if suffix.len() == 1
            || !suffix
                .bytes()
                .skip(1)
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
        {
            return Err(bad());
        }
        let mut parts = [0u64; 3];
        let mut count = 0;
        for piece in core.split('.') {
            if count == 3 || piece.is_empty() || !piece.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            parts[count] = piece.parse().map_err(|_| bad())?;
            count += 1;
        }
        let json = if suffix.is_empty() && count == 1 && !text.starts_with('0') || text == "0" {
            text.to_owned()
        } else {
            serde_json::Value::from(text).to_string()
        };
        Ok(Self { json, parts })
    }

    /// The version as stored and sent: JSON text.
    pub fn json(&self) -> &str {
        &self.json
    }

    pub fn major(&self) -> u64 {
        self.parts[0]
    }
}

impl PartialEq for EventVersion {
    fn eq(&self, other: &Self) -> bool {
        self.parts == other.parts
    }
}

impl Eq for EventVersion {}

impl PartialOrd for EventVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EventVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts.cmp(&other.parts)
    }
}

impl fmt::Display for EventVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.json.trim_matches('"'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> EventVersion {
        EventVersion::parse(s).expect(s)
    }

    #[test]
    fn integers_and_version_strings_keep_their_json_form() {
        assert_eq!(EventVersion::from_json("3").unwrap().json(), "3");
        assert_eq!(
            EventVersion::from_json("\"1.2.0\"").unwrap().json(),
            "\"1.2.0\""
        );
        assert_eq!(EventVersion::from_json("\"2\"").unwrap().json(), "\"2\"");
        assert_eq!(v("2").json(), "2");
        assert_eq!(v("1.2").json(), "\"1.2\"");
        assert_eq!(v("1.2.0-rc.1").to_string(), "1.2.0-rc.1");
    }

    #[test]
    fn versions_order_numerically_with_missing_parts_zero() {
        assert!(v("2") > v("1.9.9"));
        assert!(v("1.10") > v("1.9"));
        assert_eq!(v("2"), v("2.0.0"));
        assert_eq!(v("2.0.0-rc.1"), v("2"));
        assert_eq!(v("10.4.1").major(), 10);
    }

    #[test]
    fn bad_versions_are_refused_with_the_reason() {
        for bad in [
            "-1",
            "1.5",
            "true",
            "null",
            "[1]",
            "\"\"",
            "\"v2\"",
            "\"1..2\"",
            "\"1.2.3.4\"",
            "\"1.2-\"",
        ] {
            assert!(EventVersion::from_json(bad).is_err(), "{bad}");
        }
        let long = format!("\"{}\"", "1".repeat(100));
        assert!(
            EventVersion::from_json(&long)
                .unwrap_err()
                .contains("64 bytes")
        );
        assert!(EventVersion::from_json("99999999999999999999999").is_err());
    }
}
