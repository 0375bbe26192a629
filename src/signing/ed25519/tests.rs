use super::*;
use proptest::prelude::*;

// RFC 8032 §7.1 test 1's secret key as the seed; the public key is the
// RFC's, and the expected `v1a` was computed with Python's `cryptography`
// (OpenSSL's ed25519) over the Standard Webhooks spec example's content.
const SEED_KEY: &str = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
const PAIR_KEY: &str =
    "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2DXWpgBgrEKt9VL/tPJZAc6DuFy89qmIyWvAhpo9wdRGg==";
const PUBLIC: &str = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
const T: i64 = 1_649_367_553;
const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
const V1A: &str =
    "v1a,jfp5j4J3Buv9EPOcc9Bqo8rJqAO1H6lrRl0WZQdzVZI6IttNPT8HSLyPvUvY54dJJt2BQGA01di1ePvigCwlCw==";

fn key(s: &str) -> Ed25519Secret {
    Ed25519Secret::parse(s).expect("test key is valid")
}

fn public() -> Ed25519Public {
    Ed25519Public::parse(PUBLIC).expect("test public key is valid")
}

fn verify(header: &str, body: &[u8], now: i64) -> Result<i64, VerifyError> {
    v1a_verify(ID, &T.to_string(), header, &[&public()], body, now, 300)
}

#[test]
fn signs_the_known_answer_and_derives_the_rfc_public_key() {
    assert_eq!(v1a_sign(&[&key(SEED_KEY)], ID, T, BODY), V1A);
    assert_eq!(key(SEED_KEY).public().to_string(), PUBLIC);
    assert_eq!(key(SEED_KEY).expose(), SEED_KEY);
}

#[test]
fn the_64_byte_key_pair_form_is_the_same_key() {
    assert_eq!(v1a_sign(&[&key(PAIR_KEY)], ID, T, BODY), V1A);
}

#[test]
fn verifies_the_known_answer_and_refuses_a_changed_body_id_or_time() {
    assert_eq!(verify(V1A, BODY, T), Ok(T));
    assert_eq!(verify(V1A, b"{}", T), Err(VerifyError::Mismatch));
    assert_eq!(
        v1a_verify("msg_other", &T.to_string(), V1A, &[&public()], BODY, T, 300),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        v1a_verify(ID, &(T + 1).to_string(), V1A, &[&public()], BODY, T, 300),
        Err(VerifyError::Mismatch)
    );
    assert!(matches!(
        verify(V1A, BODY, T + 301),
        Err(VerifyError::Stale { .. })
    ));
}

#[test]
fn another_public_key_does_not_verify_and_rotation_accepts_either() {
    let other = Ed25519Secret::from_seed([7; 32]);
    let header = v1a_sign(&[&other], ID, T, BODY);
    assert_eq!(verify(&header, BODY, T), Err(VerifyError::Mismatch));
    let both = v1a_sign(&[&key(SEED_KEY), &other], ID, T, BODY);
    assert_eq!(both.matches("v1a,").count(), 2);
    assert_eq!(verify(&both, BODY, T), Ok(T));
    assert_eq!(
        v1a_verify(ID, &T.to_string(), &both, &[&other.public()], BODY, T, 300),
        Ok(T)
    );
}

#[test]
fn v1_entries_are_skipped_and_a_header_without_v1a_is_malformed() {
    let mixed = format!("v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw= {V1A}");
    assert_eq!(verify(&mixed, BODY, T), Ok(T));
    for bad in [
        "",
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        "v1a,c29tZXRoaW5n",
        "v1a,",
        &format!("{}!", &V1A[..V1A.len() - 1]),
        "no-version",
    ] {
        assert!(
            matches!(verify(bad, BODY, T), Err(VerifyError::Malformed(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn key_parsing_refuses_bad_input_without_echoing_it() {
    let cases = [
        (
            "whsec_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=",
            SecretFormatError::MissingPrefix("whsk_"),
        ),
        (
            "whsk_not base64!",
            SecretFormatError::InvalidBase64("whsk_"),
        ),
        ("whsk_", SecretFormatError::WrongLength("whsk_")),
        ("whsk_AAAA", SecretFormatError::WrongLength("whsk_")),
    ];
    for (input, want) in cases {
        let err = Ed25519Secret::parse(input).unwrap_err();
        assert_eq!(err, want, "{input:?}");
        assert!(!err.to_string().contains("nWGx"));
    }
    // Seed of one key, public half of another.
    let mismatched = format!("{}{}", &PAIR_KEY[..PAIR_KEY.len() - 4], "AAA=");
    assert!(Ed25519Secret::parse(&mismatched).is_err());
    assert_eq!(
        Ed25519Public::parse(SEED_KEY).unwrap_err(),
        SecretFormatError::MissingPrefix("whpk_")
    );
    assert_eq!(
        Ed25519Public::parse("whpk_AAAA").unwrap_err(),
        SecretFormatError::WrongLength("whpk_")
    );
    assert!(format!("{:?}", key(SEED_KEY)).contains("***"));
    assert!(!format!("{:?}", key(SEED_KEY)).contains("nWGx"));
}

/// An independent implementation (ring's ed25519, not dalek) checks our
/// signature over exactly `id.timestamp.body`.
#[test]
fn ring_verifies_our_signature_over_id_timestamp_body() {
    use ring::signature::{ED25519, UnparsedPublicKey};
    let header = v1a_sign(&[&key(SEED_KEY)], ID, T, BODY);
    let signature = BASE64.decode(header.strip_prefix("v1a,").unwrap()).unwrap();
    let public = UnparsedPublicKey::new(&ED25519, public().to_bytes());
    let mut message = format!("{ID}.{T}.").into_bytes();
    message.extend_from_slice(BODY);
    assert!(public.verify(&message, &signature).is_ok());
    message.push(b' ');
    assert!(public.verify(&message, &signature).is_err());
}

/// And the other way round: ring signs, we verify.
#[test]
fn we_verify_a_signature_made_by_ring() {
    use ring::signature::{Ed25519KeyPair, KeyPair as _};
    let seed = [42u8; 32];
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    let public = Ed25519Public::parse(&format!(
        "whpk_{}",
        BASE64.encode(pair.public_key().as_ref())
    ))
    .unwrap();
    let mut message = format!("{ID}.{T}.").into_bytes();
    message.extend_from_slice(BODY);
    let header = format!("v1a,{}", BASE64.encode(pair.sign(&message).as_ref()));
    assert_eq!(
        v1a_verify(ID, &T.to_string(), &header, &[&public], BODY, T, 0),
        Ok(T)
    );
    assert_eq!(Ed25519Secret::from_seed(seed).public(), public);
}

proptest! {
    #[test]
    fn what_we_sign_verifies_and_a_flipped_byte_does_not(
        seed in any::<[u8; 32]>(),
        body in proptest::collection::vec(any::<u8>(), 0..256),
        flip in any::<usize>(),
    ) {
        let k = Ed25519Secret::from_seed(seed);
        let header = v1a_sign(&[&k], ID, T, &body);
        prop_assert_eq!(v1a_verify(ID, &T.to_string(), &header, &[&k.public()], &body, T, 0), Ok(T));
        if !body.is_empty() {
            let mut tampered = body.clone();
            tampered[flip % body.len()] ^= 1;
            prop_assert_eq!(
                v1a_verify(ID, &T.to_string(), &header, &[&k.public()], &tampered, T, 0),
                Err(VerifyError::Mismatch)
            );
        }
    }
}
