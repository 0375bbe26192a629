//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): the
//! `whsec_<base64>` secret format and the `webhook-signature` header, a
//! space-separated list of `v1,<base64 HMAC-SHA256>` over
//! `<webhook-id>.<webhook-timestamp>.<body>`.
//!
//! Owns the secret newtype and the header format only; which headers are
//! sent (`signature: standard | both`) is the delivery layer's decision.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{
    SecretFormatError, VerifyError, any_matches, check_freshness, hmac_sha256, parse_unix_seconds,
};

const PREFIX: &str = "whsec_";
/// Base64 length of a 32-byte MAC with padding.
const ENCODED_MAC_LEN: usize = 44;

/// A Standard Webhooks signing key: the bytes decoded from `whsec_<base64>`.
///
/// Only constructible through [`StandardSecret::parse`], so holding one means
/// the secret was well-formed. `Debug` is redacted so it can sit inside
/// config structs that get logged.
#[derive(Clone)]
pub struct StandardSecret {
    key: Vec<u8>,
}

impl StandardSecret {
    /// Parses `whsec_<base64>`. Surrounding whitespace is dropped because
    /// secrets read from files or env often carry a trailing newline, and
    /// whitespace can never be part of valid base64. Padding is required
    /// (standard alphabet), matching the reference libraries receivers use,
    /// so a secret we accept is one they accept too.
    pub fn parse(s: &str) -> Result<Self, SecretFormatError> {
        let encoded = s
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(SecretFormatError::MissingPrefix(PREFIX))?;
        let key = BASE64
            .decode(encoded)
            .map_err(|_| SecretFormatError::InvalidBase64(PREFIX))?;
        if key.is_empty() {
            return Err(SecretFormatError::EmptyKey);
        }
        Ok(Self { key })
    }

    /// The decoded HMAC key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl fmt::Debug for StandardSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StandardSecret(***)")
    }
}

/// Builds the `webhook-signature` value: one `v1,<base64>` per secret, in the
/// order given, separated by single spaces. The `webhook-timestamp` header
/// must carry the same `timestamp` in decimal.
pub fn standard_sign(
    secrets: &[&StandardSecret],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let t = timestamp.to_string();
    let content: [&[u8]; 5] = [msg_id.as_bytes(), b".", t.as_bytes(), b".", body];
    secrets
        .iter()
        .map(|secret| format!("v1,{}", BASE64.encode(hmac_sha256(secret.key(), &content))))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks the three Standard Webhooks headers against `body` and returns the
/// timestamp.
///
/// Same order as the aion scheme: parse, freshness, then constant-time
/// comparison of every `v1` against every secret. Signatures of other
/// versions (the asymmetric `v1a`: [`super::ed25519::v1a_verify`]) are
/// ignored.
pub fn standard_verify(
    msg_id: &str,
    timestamp_header: &str,
    signature_header: &str,
    secrets: &[&StandardSecret],
    body: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<i64, VerifyError> {
    let (raw_timestamp, timestamp) = id_and_timestamp(msg_id, timestamp_header)?;
    let signatures = parse_signatures(signature_header)?;
    check_freshness(timestamp, now, tolerance_secs)?;

    let content: [&[u8]; 5] = [
        msg_id.as_bytes(),
        b".",
        raw_timestamp.as_bytes(),
        b".",
        body,
    ];
    let expected: Vec<[u8; 32]> = secrets
        .iter()
        .map(|secret| hmac_sha256(secret.key(), &content))
        .collect();
    if any_matches(&signatures, &expected) {
        Ok(timestamp)
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Checks the `webhook-id` and `webhook-timestamp` headers (shared by `v1`
/// and `v1a`): the timestamp as the sender wrote it, which the signed
/// content uses, and its value.
pub(super) fn id_and_timestamp<'t>(
    msg_id: &str,
    timestamp_header: &'t str,
) -> Result<(&'t str, i64), VerifyError> {
    if msg_id.is_empty() {
        return Err(VerifyError::Malformed("empty webhook-id"));
    }
    let raw_timestamp = timestamp_header.trim();
    Ok((raw_timestamp, parse_unix_seconds(raw_timestamp)?))
}

fn parse_signatures(header: &str) -> Result<Vec<[u8; 32]>, VerifyError> {
    let signatures = signatures_of(header, "v1")?
        .into_iter()
        .map(decode_base64_mac)
        .collect::<Result<Vec<_>, _>>()?;
    if signatures.is_empty() {
        return Err(VerifyError::Malformed("no `v1` signature"));
    }
    Ok(signatures)
}

/// The values of a `webhook-signature` header's entries of `version`
/// (`v1` HMAC, `v1a` ed25519), in header order. Every entry must have the
/// `<version>,<value>` form; entries of other versions are skipped.
pub(super) fn signatures_of<'h>(
    header: &'h str,
    version: &str,
) -> Result<Vec<&'h str>, VerifyError> {
    if header.trim().is_empty() {
        return Err(VerifyError::Malformed("empty webhook-signature"));
    }
    let mut values = Vec::new();
    // The spec says single spaces; any run of whitespace costs nothing to accept.
    for item in header.split_ascii_whitespace() {
        let (v, value) = item
            .split_once(',')
            .ok_or(VerifyError::Malformed("signature without a version"))?;
        if v == version {
            values.push(value);
        }
    }
    Ok(values)
}

fn decode_base64_mac(value: &str) -> Result<[u8; 32], VerifyError> {
    // Checking the length first bounds the decode work on hostile input.
    if value.len() != ENCODED_MAC_LEN {
        return Err(VerifyError::Malformed("`v1` is not a base64 HMAC-SHA256"));
    }
    let bytes = BASE64
        .decode(value)
        .map_err(|_| VerifyError::Malformed("`v1` is not base64"))?;
    bytes
        .try_into()
        .map_err(|_| VerifyError::Malformed("`v1` is not a base64 HMAC-SHA256"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The published example from the Standard Webhooks spec (and its
    // reference libraries); re-checked independently with Python's `hmac`.
    const SPEC_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const SPEC_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const SPEC_T: i64 = 1_649_367_553;
    const SPEC_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SPEC_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
    // A second key for rotation; expected value computed with Python:
    // base64(hmac(b64decode(key), id.t.body, sha256)).
    const OTHER_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OTHER_SIG: &str = "v1,bmED0YkXIwCHhhZjbHn8qMCbczjpYwHGju/WMUmDqOQ=";
    const TOL: u64 = 300;

    fn secret(s: &str) -> StandardSecret {
        StandardSecret::parse(s).expect("test secret is valid")
    }

    fn verify(
        sig: &str,
        secrets: &[&StandardSecret],
        body: &[u8],
        now: i64,
    ) -> Result<i64, VerifyError> {
        standard_verify(SPEC_ID, &SPEC_T.to_string(), sig, secrets, body, now, TOL)
    }

    #[test]
    fn signs_the_spec_example() {
        assert_eq!(
            standard_sign(&[&secret(SPEC_SECRET)], SPEC_ID, SPEC_T, SPEC_BODY),
            SPEC_SIG
        );
    }

    #[test]
    fn verifies_the_spec_example_and_returns_the_timestamp() {
        assert_eq!(
            verify(SPEC_SIG, &[&secret(SPEC_SECRET)], SPEC_BODY, SPEC_T),
            Ok(SPEC_T)
        );
    }

    #[test]
    fn signs_one_signature_per_secret_space_separated() {
        let (new, old) = (secret(SPEC_SECRET), secret(OTHER_SECRET));
        assert_eq!(
            standard_sign(&[&new, &old], SPEC_ID, SPEC_T, SPEC_BODY),
            format!("{SPEC_SIG} {OTHER_SIG}")
        );
    }

    #[test]
    fn rotation_accepts_either_secret() {
        let (new, old) = (secret(SPEC_SECRET), secret(OTHER_SECRET));
        let both = format!("{SPEC_SIG} {OTHER_SIG}");
        assert_eq!(verify(&both, &[&new], SPEC_BODY, SPEC_T), Ok(SPEC_T));
        assert_eq!(verify(&both, &[&old], SPEC_BODY, SPEC_T), Ok(SPEC_T));
        assert_eq!(
            verify(OTHER_SIG, &[&new, &old], SPEC_BODY, SPEC_T),
            Ok(SPEC_T)
        );
    }

    #[test]
    fn tampered_body_wrong_secret_or_wrong_id_is_a_mismatch() {
        let key = secret(SPEC_SECRET);
        assert_eq!(
            verify(SPEC_SIG, &[&key], b"{}", SPEC_T),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(SPEC_SIG, &[&secret(OTHER_SECRET)], SPEC_BODY, SPEC_T),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            standard_verify(
                "msg_other",
                &SPEC_T.to_string(),
                SPEC_SIG,
                &[&key],
                SPEC_BODY,
                SPEC_T,
                TOL
            ),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn stale_in_the_past_or_future_is_rejected() {
        let key = secret(SPEC_SECRET);
        for now in [SPEC_T + TOL as i64 + 1, SPEC_T - TOL as i64 - 1] {
            assert_eq!(
                verify(SPEC_SIG, &[&key], SPEC_BODY, now),
                Err(VerifyError::Stale {
                    timestamp: SPEC_T,
                    now
                })
            );
        }
    }

    #[test]
    fn malformed_headers_are_rejected_as_malformed() {
        let key = secret(SPEC_SECRET);
        let t = SPEC_T.to_string();
        let huge = "9".repeat(100_000);
        let cases: [(&str, &str, &str); 10] = [
            ("", &t, SPEC_SIG),
            (SPEC_ID, "", SPEC_SIG),
            (SPEC_ID, "abc", SPEC_SIG),
            (SPEC_ID, &huge, SPEC_SIG),
            (SPEC_ID, &t, ""),
            (SPEC_ID, &t, "v1a,c29tZXRoaW5n"),
            (SPEC_ID, &t, "tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="),
            (SPEC_ID, &t, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3"),
            (
                SPEC_ID,
                &t,
                "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kk!=",
            ),
            (SPEC_ID, &t, "v1,"),
        ];
        for (id, ts, sig) in cases {
            let got = standard_verify(id, ts, sig, &[&key], SPEC_BODY, SPEC_T, TOL);
            assert!(
                matches!(got, Err(VerifyError::Malformed(_))),
                "{id:?} {sig:?} gave {got:?}"
            );
        }
    }

    #[test]
    fn other_versions_are_ignored_when_a_v1_is_present() {
        let header = format!("v1a,c29tZXRoaW5n   {SPEC_SIG}\t");
        assert_eq!(
            verify(&header, &[&secret(SPEC_SECRET)], SPEC_BODY, SPEC_T),
            Ok(SPEC_T)
        );
    }

    #[test]
    fn secret_parse_rejects_bad_input() {
        assert_eq!(
            StandardSecret::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap_err(),
            SecretFormatError::MissingPrefix("whsec_")
        );
        assert_eq!(
            StandardSecret::parse("whsec_not base64!").unwrap_err(),
            SecretFormatError::InvalidBase64("whsec_")
        );
        assert_eq!(
            StandardSecret::parse("whsec_").unwrap_err(),
            SecretFormatError::EmptyKey
        );
    }

    #[test]
    fn secret_parse_tolerates_a_trailing_newline() {
        let parsed = StandardSecret::parse(&format!("{SPEC_SECRET}\n")).unwrap();
        assert_eq!(parsed.key(), secret(SPEC_SECRET).key());
        assert_eq!(parsed.key().len(), 24);
    }

    #[test]
    fn secret_debug_does_not_reveal_the_key() {
        let shown = format!("{:?}", secret(SPEC_SECRET));
        assert_eq!(shown, "StandardSecret(***)");
        let err = StandardSecret::parse("whsec_C2FVsBQI!hrsc").unwrap_err();
        assert!(!err.to_string().contains("C2FV"));
    }

    /// A real current time: the reference crate checks freshness against the
    /// system clock, so only these interop tests read it.
    fn wall_clock_now() -> i64 {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock is after 1970");
        i64::try_from(since_epoch.as_secs()).expect("clock fits in i64")
    }

    // `http` is not a direct dependency; axum re-exports the same `http` 1.x
    // crate that `standardwebhooks` uses, so its `HeaderMap` is the one needed.
    fn reference_headers(id: &str, t: i64, sig: &str) -> axum::http::HeaderMap {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("webhook-id", id.parse().unwrap());
        headers.insert("webhook-timestamp", t.to_string().parse().unwrap());
        headers.insert("webhook-signature", sig.parse().unwrap());
        headers
    }

    #[test]
    fn our_signature_verifies_with_the_reference_crate() {
        let now = wall_clock_now();
        let key = secret(OTHER_SECRET);
        let sig = standard_sign(&[&secret(SPEC_SECRET), &key], SPEC_ID, now, SPEC_BODY);
        for reference_secret in [SPEC_SECRET, OTHER_SECRET] {
            let webhook = standardwebhooks::Webhook::new(reference_secret).unwrap();
            webhook
                .verify(SPEC_BODY, &reference_headers(SPEC_ID, now, &sig))
                .expect("reference crate accepts our signature");
        }
    }

    #[test]
    fn reference_crate_signature_verifies_with_ours() {
        let now = wall_clock_now();
        let webhook = standardwebhooks::Webhook::new(SPEC_SECRET).unwrap();
        let sig = webhook.sign(SPEC_ID, now, SPEC_BODY).unwrap();
        let got = standard_verify(
            SPEC_ID,
            &now.to_string(),
            &sig,
            &[&secret(SPEC_SECRET)],
            SPEC_BODY,
            now,
            TOL,
        );
        assert_eq!(got, Ok(now));
    }

    fn arb_secret() -> impl Strategy<Value = StandardSecret> {
        prop::collection::vec(any::<u8>(), 1..64)
            .prop_map(|key| secret(&format!("{PREFIX}{}", BASE64.encode(key))))
    }

    proptest! {
        #[test]
        fn verify_accepts_what_sign_produced(
            secrets in prop::collection::vec(arb_secret(), 1..4),
            msg_id in "[A-Za-z0-9_.-]{1,40}",
            body in prop::collection::vec(any::<u8>(), 0..512),
            timestamp in any::<i64>(),
        ) {
            let refs: Vec<&StandardSecret> = secrets.iter().collect();
            let sig = standard_sign(&refs, &msg_id, timestamp, &body);
            let t = timestamp.to_string();
            prop_assert_eq!(standard_verify(&msg_id, &t, &sig, &refs, &body, timestamp, 0), Ok(timestamp));
            for one in &refs {
                prop_assert_eq!(standard_verify(&msg_id, &t, &sig, &[one], &body, timestamp, 0), Ok(timestamp));
            }
        }

        #[test]
        fn flipping_any_body_byte_is_a_mismatch(
            key in arb_secret(),
            body in prop::collection::vec(any::<u8>(), 1..512),
            timestamp in any::<i64>(),
            index in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let sig = standard_sign(&[&key], SPEC_ID, timestamp, &body);
            let mut tampered = body.clone();
            tampered[index.index(body.len())] ^= flip;
            prop_assert_eq!(
                standard_verify(SPEC_ID, &timestamp.to_string(), &sig, &[&key], &tampered, timestamp, 0),
                Err(VerifyError::Mismatch)
            );
        }
    }
}
