//! The signature header parsers: `X-Aion-Signature` and the Standard
//! Webhooks headers. Any header is a verdict, never a panic; what we sign
//! always verifies; a changed body never does.
#![no_main]

use aion_webhooks::signing::{
    Ed25519Secret, StandardSecret, aion_sign, aion_verify, standard_sign, standard_verify,
    v1a_sign, v1a_verify,
};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0xff);
    let header = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let secret = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();

    let _ = aion_verify(&header, &[secret, b"other"], body, NOW, 300);
    let signed = aion_sign(&[secret], NOW, body);
    assert_eq!(aion_verify(&signed, &[secret], body, NOW, 300), Ok(NOW));
    let mut tampered = body.to_vec();
    tampered.push(b'x');
    assert!(aion_verify(&signed, &[secret], &tampered, NOW, 300).is_err());

    let std_secret = StandardSecret::parse(&String::from_utf8_lossy(secret)).ok();
    let fallback = StandardSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
    let key = std_secret.as_ref().unwrap_or(&fallback);
    let (id, rest) = header.split_once(' ').unwrap_or((&header, ""));
    let (timestamp, signature) = rest.split_once(' ').unwrap_or((rest, ""));
    let _ = standard_verify(id, timestamp, signature, &[key], body, NOW, 300);
    let ed = Ed25519Secret::from_seed(seed_of(secret));
    let _ = v1a_verify(id, timestamp, signature, &[&ed.public()], body, NOW, 300);
    if !id.is_empty() {
        let sig = standard_sign(&[key], id, NOW, body);
        assert_eq!(
            standard_verify(id, &NOW.to_string(), &sig, &[key], body, NOW, 300),
            Ok(NOW)
        );
        let sig = v1a_sign(&[&ed], id, NOW, body);
        let public = ed.public();
        assert_eq!(v1a_verify(id, &NOW.to_string(), &sig, &[&public], body, NOW, 300), Ok(NOW));
        let mut tampered = body.to_vec();
        tampered.push(b'x');
        assert!(v1a_verify(id, &NOW.to_string(), &sig, &[&public], &tampered, NOW, 300).is_err());
    }
});

/// The first 32 bytes of the fuzzer's secret (zero-padded) as an ed25519 seed.
fn seed_of(secret: &[u8]) -> [u8; 32] {
    let mut seed = [0u8; 32];
    let n = secret.len().min(32);
    seed[..n].copy_from_slice(&secret[..n]);
    seed
}
