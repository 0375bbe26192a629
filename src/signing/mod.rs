//! Webhook signatures: producing and checking the `X-Aion-Signature` header
//! ([`aion`]) and the Standard Webhooks `webhook-*` headers ([`standard`]).
//!
//! This module owns the byte-exact signature formats of contract §3 and §4 and
//! nothing else. It is pure: no async, no I/O, no clock — `now` is always a
//! parameter — and it never decides *which* secrets are active (the policy
//! does) or which HTTP status a failure maps to (the HTTP layer does).
//!
//! Every comparison of a received signature against an expected one is
//! constant-time, and every received signature is tried against every
//! secret, so a rotation (`secrets: [new, old]`) accepts either key.

pub mod aion;
pub mod ed25519;
pub mod standard;

pub use aion::{aion_sign, aion_verify};
pub use ed25519::{Ed25519Public, Ed25519Secret, v1a_sign, v1a_verify};
pub use standard::{StandardSecret, standard_sign, standard_verify};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
///
/// Taking the message in parts lets callers sign `<t>.<body>` without first
/// copying a possibly large body into a new buffer.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length (long ones are hashed, short ones
    // padded), so this cannot fail; the `Result` is an artefact of the
    // generic `KeyInit` trait.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Why a received signature was not accepted.
///
/// Reasons are static strings on purpose: the error may be shown to an
/// unauthenticated caller, so it never echoes header content back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The header could not be parsed (empty, missing or non-numeric
    /// timestamp, no `v1` signature, bad hex/base64, wrong length…).
    #[error("malformed signature header: {0}")]
    Malformed(&'static str),
    /// The signed timestamp is further than the tolerance from `now`, in the
    /// past (a replay) or in the future (a skewed or forged clock).
    #[error("signature timestamp {timestamp} is outside the tolerance window (now {now})")]
    Stale { timestamp: i64, now: i64 },
    /// Well-formed and fresh, but no signature matched any secret. Also the
    /// answer when no secret is configured: nothing can match then.
    #[error("no signature matched any secret")]
    Mismatch,
}

/// Why a Standard Webhooks key string (`whsec_`, `whsk_`, `whpk_`) was refused.
///
/// Deliberately carries no detail from the input: a base64 error would name
/// the offending byte and its offset, i.e. leak part of the secret into logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretFormatError {
    #[error("a Standard Webhooks key must start with `{0}`")]
    MissingPrefix(&'static str),
    #[error("the part after `{0}` is not valid base64")]
    InvalidBase64(&'static str),
    #[error("the decoded key is empty")]
    EmptyKey,
    #[error("a `{0}` key must decode to 32 bytes (or 64 for a signing key pair)")]
    WrongLength(&'static str),
    #[error("the two halves of the `whsk_` key pair do not belong together")]
    KeyPairMismatch,
    #[error("the `whpk_` key is not a valid ed25519 public key")]
    InvalidPublicKey,
}

/// Why a webhook's outgoing signature headers cannot be produced.
///
/// The signing functions themselves are infallible; this is for callers
/// that turn a webhook's configured secrets into signing input, so that a
/// misconfiguration surfaces as one typed error instead of a header that
/// no receiver could verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// A header without any signature would be rejected by every receiver.
    #[error("no active secret to sign with")]
    NoSecrets,
    /// `signature: standard` or `both` needs `whsec_<base64>` secrets.
    #[error("invalid Standard Webhooks secret")]
    StandardSecret(#[from] SecretFormatError),
}

/// Parses a unix-seconds timestamp as written by the signers here: an
/// optional `-` then ASCII digits. Stricter than `i64::from_str` (no `+`,
/// no whitespace) so a header has exactly one spelling per value.
fn parse_unix_seconds(s: &str) -> Result<i64, VerifyError> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() {
        return Err(VerifyError::Malformed("missing timestamp"));
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::Malformed("timestamp is not a number"));
    }
    // `parse` reports overflow as an error, so absurdly long values are
    // rejected here rather than wrapping or panicking.
    s.parse()
        .map_err(|_| VerifyError::Malformed("timestamp out of range"))
}

/// Rejects `timestamp` if it is more than `tolerance_secs` away from `now`
/// in either direction. Widened to `i128` so extreme values cannot overflow.
fn check_freshness(timestamp: i64, now: i64, tolerance_secs: u64) -> Result<(), VerifyError> {
    let skew = (i128::from(now) - i128::from(timestamp)).unsigned_abs();
    if skew > u128::from(tolerance_secs) {
        return Err(VerifyError::Stale { timestamp, now });
    }
    Ok(())
}

/// True if any candidate equals any expected MAC. Runs in time independent
/// of which (if any) pair matched: no early exit, constant-time equality.
fn any_matches(candidates: &[[u8; 32]], expected: &[[u8; 32]]) -> bool {
    use subtle::{Choice, ConstantTimeEq};
    let mut found = Choice::from(0);
    for candidate in candidates {
        for mac in expected {
            found |= candidate.ct_eq(mac);
        }
    }
    found.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_over_parts_equals_hmac_over_concatenation() {
        let whole = hmac_sha256(b"key", &[b"1700000000.{\"a\":1}"]);
        let parts = hmac_sha256(b"key", &[b"1700000000", b".", b"{\"a\":1}"]);
        assert_eq!(whole, parts);
    }

    #[test]
    fn timestamps_parse_only_plain_integers() {
        assert_eq!(parse_unix_seconds("1700000000"), Ok(1_700_000_000));
        assert_eq!(parse_unix_seconds("-5"), Ok(-5));
        assert_eq!(parse_unix_seconds("9223372036854775807"), Ok(i64::MAX));
        for bad in ["", "-", "+5", " 5", "5 ", "1e9", "abc", "0x10"] {
            assert!(
                matches!(parse_unix_seconds(bad), Err(VerifyError::Malformed(_))),
                "{bad:?} should be malformed"
            );
        }
    }

    #[test]
    fn overflowing_timestamps_are_malformed_not_a_panic() {
        for huge in ["9223372036854775808", &"9".repeat(10_000)] {
            assert_eq!(
                parse_unix_seconds(huge),
                Err(VerifyError::Malformed("timestamp out of range"))
            );
        }
    }

    #[test]
    fn freshness_is_symmetric_and_inclusive_at_the_edge() {
        assert!(check_freshness(100, 400, 300).is_ok());
        assert!(check_freshness(700, 400, 300).is_ok());
        assert!(check_freshness(99, 400, 300).is_err());
        assert!(check_freshness(701, 400, 300).is_err());
    }

    #[test]
    fn freshness_does_not_overflow_at_the_extremes() {
        assert!(check_freshness(i64::MIN, i64::MAX, u64::MAX).is_ok());
        assert_eq!(
            check_freshness(i64::MIN, i64::MAX, 0),
            Err(VerifyError::Stale {
                timestamp: i64::MIN,
                now: i64::MAX
            })
        );
    }
}
