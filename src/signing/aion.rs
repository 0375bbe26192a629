//! The `X-Aion-Signature` header: `t=<unix>,v1=<hex>[,v1=<hex>...]`, where
//! each hex is the lowercase HMAC-SHA256 of `<t>.<body>` under one secret's
//! UTF-8 bytes (contract §3 outbound, §4 inbound).
//!
//! Owns formatting and parsing of that header only; it does not read the
//! clock, pick secrets, or know about HTTP.

use super::{VerifyError, any_matches, check_freshness, hmac_sha256, parse_unix_seconds};

/// Builds the header value: `t=<timestamp>` then one `,v1=` per secret, in
/// the order given, so a receiver holding either the new or the old secret
/// during a rotation finds a match.
///
/// With no secrets the result is just `t=<timestamp>`, which every verifier
/// rejects; callers guard against that with [`super::SignError::NoSecrets`].
pub fn aion_sign(secrets: &[&[u8]], timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    let mut header = String::with_capacity(2 + t.len() + secrets.len() * 68);
    header.push_str("t=");
    header.push_str(&t);
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&hex::encode(hmac_sha256(
            secret,
            &[t.as_bytes(), b".", body],
        )));
    }
    header
}

/// Checks an `X-Aion-Signature` value against `body` and returns its `t`.
///
/// Order of checks: the header must parse, then `t` must be within
/// `tolerance_secs` of `now` (either direction), then at least one `v1`
/// must equal the MAC under at least one secret. Freshness goes first
/// because it is cheap and a replayed request should not cost HMAC work.
/// Schemes other than `v1` (e.g. a legacy `v0=`) are ignored.
pub fn aion_verify(
    header: &str,
    secrets: &[&[u8]],
    body: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<i64, VerifyError> {
    let parsed = parse_header(header)?;
    check_freshness(parsed.timestamp, now, tolerance_secs)?;
    // The MAC covers `t` as the sender spelled it (e.g. with leading zeros),
    // not as we would re-format the parsed number.
    let expected: Vec<[u8; 32]> = secrets
        .iter()
        .map(|secret| hmac_sha256(secret, &[parsed.raw_timestamp.as_bytes(), b".", body]))
        .collect();
    if any_matches(&parsed.signatures, &expected) {
        Ok(parsed.timestamp)
    } else {
        Err(VerifyError::Mismatch)
    }
}

struct ParsedHeader<'a> {
    raw_timestamp: &'a str,
    timestamp: i64,
    signatures: Vec<[u8; 32]>,
}

fn parse_header(header: &str) -> Result<ParsedHeader<'_>, VerifyError> {
    if header.trim().is_empty() {
        return Err(VerifyError::Malformed("empty header"));
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',').map(str::trim) {
        // Tolerate a stray trailing or doubled comma from hand-rolled senders.
        if item.is_empty() {
            continue;
        }
        let (scheme, value) = item
            .split_once('=')
            .ok_or(VerifyError::Malformed("item without `=`"))?;
        let value = value.trim();
        match scheme.trim() {
            "t" => {
                if timestamp.is_some() {
                    return Err(VerifyError::Malformed("more than one `t`"));
                }
                timestamp = Some((value, parse_unix_seconds(value)?));
            }
            "v1" => signatures.push(decode_hex_mac(value)?),
            // Other schemes are other algorithms or versions we do not speak;
            // ignoring them lets senders add one without breaking us.
            _ => {}
        }
    }
    let (raw_timestamp, timestamp) = timestamp.ok_or(VerifyError::Malformed("missing `t`"))?;
    if signatures.is_empty() {
        return Err(VerifyError::Malformed("no `v1` signature"));
    }
    Ok(ParsedHeader {
        raw_timestamp,
        timestamp,
        signatures,
    })
}

fn decode_hex_mac(value: &str) -> Result<[u8; 32], VerifyError> {
    if value.len() != 64 {
        return Err(VerifyError::Malformed("`v1` is not 64 hex digits"));
    }
    let mut mac = [0u8; 32];
    hex::decode_to_slice(value, &mut mac).map_err(|_| VerifyError::Malformed("`v1` is not hex"))?;
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BODY: &[u8] = br#"{"a":1}"#;
    const T: i64 = 1_700_000_000;
    const TOL: u64 = 300;
    // Expected values computed independently with Python's `hmac` module:
    // hmac.new(b"s3cr3t", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    const S3CR3T_HEX: &str = "8dbbbbf4523b10bbb793e74d854144c45acccc2d233667b1c06b805b6ded8a84";
    // hmac.new(b"0ld-s3cr3t", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    const OLD_HEX: &str = "a8e47eaee7dccd487ee9ef063b96d662cf55d3583795f75e1125ee023b19030e";

    fn header_with(sigs: &[&str]) -> String {
        let mut h = format!("t={T}");
        for s in sigs {
            h.push_str(",v1=");
            h.push_str(s);
        }
        h
    }

    #[test]
    fn signs_the_known_answer_vector() {
        assert_eq!(
            aion_sign(&[b"s3cr3t"], T, BODY),
            "t=1700000000,v1=8dbbbbf4523b10bbb793e74d854144c45acccc2d233667b1c06b805b6ded8a84"
        );
    }

    #[test]
    fn signs_one_v1_per_secret_in_order() {
        assert_eq!(
            aion_sign(&[b"s3cr3t", b"0ld-s3cr3t"], T, BODY),
            "t=1700000000\
             ,v1=8dbbbbf4523b10bbb793e74d854144c45acccc2d233667b1c06b805b6ded8a84\
             ,v1=a8e47eaee7dccd487ee9ef063b96d662cf55d3583795f75e1125ee023b19030e"
        );
    }

    #[test]
    fn verifies_the_known_answer_vector_and_returns_t() {
        let header = header_with(&[S3CR3T_HEX]);
        assert_eq!(aion_verify(&header, &[b"s3cr3t"], BODY, T, TOL), Ok(T));
    }

    #[test]
    fn rotation_accepts_either_secret() {
        let both = header_with(&[S3CR3T_HEX, OLD_HEX]);
        assert_eq!(aion_verify(&both, &[b"s3cr3t"], BODY, T, TOL), Ok(T));
        assert_eq!(aion_verify(&both, &[b"0ld-s3cr3t"], BODY, T, TOL), Ok(T));
        // A receiver that has moved to [new, old] accepts a sender still on old.
        let old_only = header_with(&[OLD_HEX]);
        assert_eq!(
            aion_verify(&old_only, &[b"s3cr3t", b"0ld-s3cr3t"], BODY, T, TOL),
            Ok(T)
        );
    }

    #[test]
    fn tampered_body_is_a_mismatch() {
        let header = header_with(&[S3CR3T_HEX]);
        assert_eq!(
            aion_verify(&header, &[b"s3cr3t"], br#"{"a":2}"#, T, TOL),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn wrong_secret_is_a_mismatch() {
        let header = header_with(&[S3CR3T_HEX]);
        assert_eq!(
            aion_verify(&header, &[b"other"], BODY, T, TOL),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            aion_verify(&header, &[], BODY, T, TOL),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn stale_in_the_past_or_future_is_rejected() {
        let header = header_with(&[S3CR3T_HEX]);
        let past = T + TOL as i64 + 1;
        let future = T - TOL as i64 - 1;
        assert_eq!(
            aion_verify(&header, &[b"s3cr3t"], BODY, past, TOL),
            Err(VerifyError::Stale {
                timestamp: T,
                now: past
            })
        );
        assert_eq!(
            aion_verify(&header, &[b"s3cr3t"], BODY, future, TOL),
            Err(VerifyError::Stale {
                timestamp: T,
                now: future
            })
        );
        assert_eq!(
            aion_verify(&header, &[b"s3cr3t"], BODY, T + TOL as i64, TOL),
            Ok(T)
        );
    }

    #[test]
    fn malformed_headers_are_rejected_as_malformed() {
        let good = S3CR3T_HEX;
        let cases = [
            String::new(),
            "   ".to_owned(),
            format!("v1={good}"),
            format!("t=abc,v1={good}"),
            format!("t=,v1={good}"),
            format!("t=+1700000000,v1={good}"),
            format!("t=99999999999999999999999999,v1={good}"),
            format!("t={},v1={good}", "9".repeat(100_000)),
            "t=1700000000".to_owned(),
            "t=1700000000,v0=abcd".to_owned(),
            format!("t=1700000000,v1={}", "zz".repeat(32)),
            format!("t=1700000000,v1={}", &good[..62]),
            "t=1700000000,v1=".to_owned(),
            format!("t=1700000000,t=1700000000,v1={good}"),
            format!("t=1700000000,garbage,v1={good}"),
        ];
        for header in &cases {
            let got = aion_verify(header, &[b"s3cr3t"], BODY, T, TOL);
            assert!(
                matches!(got, Err(VerifyError::Malformed(_))),
                "{:?} gave {got:?}",
                header.chars().take(80).collect::<String>()
            );
        }
    }

    #[test]
    fn unknown_schemes_are_ignored_when_a_v1_is_present() {
        let header = format!("t={T},v0=deadbeef,v1={S3CR3T_HEX},v2=whatever");
        assert_eq!(aion_verify(&header, &[b"s3cr3t"], BODY, T, TOL), Ok(T));
    }

    #[test]
    fn whitespace_around_items_and_stray_commas_are_tolerated() {
        let header = format!(" t = {T} ,  v1 = {S3CR3T_HEX} ,");
        assert_eq!(aion_verify(&header, &[b"s3cr3t"], BODY, T, TOL), Ok(T));
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let header = header_with(&[&S3CR3T_HEX.to_uppercase()]);
        assert_eq!(aion_verify(&header, &[b"s3cr3t"], BODY, T, TOL), Ok(T));
    }

    #[test]
    fn a_bad_signature_next_to_a_good_one_still_verifies() {
        let header = header_with(&[&"0".repeat(64), S3CR3T_HEX]);
        assert_eq!(aion_verify(&header, &[b"s3cr3t"], BODY, T, TOL), Ok(T));
    }

    #[test]
    fn the_mac_covers_t_as_written() {
        // Same instant, different spelling: the sender's MAC is over its text.
        let mac = hex::encode(hmac_sha256(b"s3cr3t", &[b"01700000000.", BODY]));
        let header = format!("t=01700000000,v1={mac}");
        assert_eq!(aion_verify(&header, &[b"s3cr3t"], BODY, T, TOL), Ok(T));
        let respelled = format!("t={T},v1={mac}");
        assert_eq!(
            aion_verify(&respelled, &[b"s3cr3t"], BODY, T, TOL),
            Err(VerifyError::Mismatch)
        );
    }

    proptest! {
        #[test]
        fn verify_accepts_what_sign_produced(
            secrets in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..4),
            body in prop::collection::vec(any::<u8>(), 0..512),
            timestamp in any::<i64>(),
        ) {
            let keys: Vec<&[u8]> = secrets.iter().map(Vec::as_slice).collect();
            let header = aion_sign(&keys, timestamp, &body);
            prop_assert_eq!(aion_verify(&header, &keys, &body, timestamp, 0), Ok(timestamp));
            // Each secret alone suffices: that is what makes rotation work.
            for key in &keys {
                prop_assert_eq!(aion_verify(&header, &[key], &body, timestamp, 0), Ok(timestamp));
            }
        }

        #[test]
        fn flipping_any_body_byte_is_a_mismatch(
            secret in prop::collection::vec(any::<u8>(), 0..64),
            body in prop::collection::vec(any::<u8>(), 1..512),
            timestamp in any::<i64>(),
            index in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let header = aion_sign(&[&secret], timestamp, &body);
            let mut tampered = body.clone();
            tampered[index.index(body.len())] ^= flip;
            prop_assert_eq!(
                aion_verify(&header, &[&secret], &tampered, timestamp, 0),
                Err(VerifyError::Mismatch)
            );
        }
    }
}
