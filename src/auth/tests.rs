//! Tests for `auth`.

use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::domain::Secret;
use crate::policy::ApiKey;

const NOW: i64 = 1_700_000_000;
const ISSUER: &str = "https://id.example.com";
const AUDIENCE: &str = "aion-webhooks";
const HS_SECRET: &str = "test-only-hs256-secret-0123456789abcdef";

// Test-only keys, generated once with `openssl genpkey` for these tests
// and used nowhere else. Never configure them anywhere.
const TEST_ONLY_RSA_PRIVATE_PEM: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDRnVxaVTPbIyVH\n\
mAyNLOhZ067mtmdkVs5Dea4F4j8nTI9xvZpwAR28R/T8yyUxAO+9aXwn1hLN2pt6\n\
AZGCpxJAamkcu0oHda3yh0sPl8WY7DgP+Hok9AQW+Nk16dRqR2ZjsRR7nog6Ilym\n\
pT54yz1imHUn4e3CjdxsU8AuwSlzrDsdA0rR6pfvjfsPpFvuXOLCMV82ubue0lXD\n\
QXn8xhHPDb+dlHi/r8tLkSI74X2nDAGEBy/ZmZHZ5eS0pvTGshPzOJUa2VOiu7s9\n\
o8Cj+pVpKuIyUqrxQeoYdysweNe+KzaipgTi62danD5GME0xRr71lf1g5g5RtOr6\n\
PfyyRHbnAgMBAAECggEAHcepqsBxxRTZrjG5EBziB9JYsLjCY1F9LWiYo4ewqZB+\n\
zU3UJqHUoSlnR2ZEauazU2mB9OuSMVfOVfI/bjH2mFs7LWn4YFXvjXDQ5lli09E0\n\
586elShrz6hcElpITi8a/1fVoqMeadqe53gQ3OV3Bk5wT+cRDzPLWJfkyl+xWBhN\n\
Wg7yAIrh9UICAie/HhhqKvduQvA9TOKbyx4Rg6xcM2E60aWESGed8CJDX1mcSQfg\n\
pjcwbqXy2XKwc6kWK1mCRCfgeUfCiOUNNKWg6TpqTw4MqO3wSgW70rI43qu+z2GL\n\
yYAF26Gp2K21Jmntz+XK3YIuMDvN7HpLSotpBTBNFQKBgQDsPhYyesonVn0FlvLc\n\
duEpYSrHI19PPUlwrQbcasW9AuAEkBb4n5543yRoFK48/gC+DuXPPl/emxrLGZPX\n\
8paQ2TmdwMjPOGETl+YZEGXGgRbxgKLmS+7mb0vkZUql4NPPRco5Z0XBmmdu3/+m\n\
fnMa7Tm14wfWZP7eMPzng5pXfQKBgQDjJS0vFWA921yivn7rECJDLDgcT6UTEdfq\n\
LSP7zo69Xh5fuQfTD6IRgFR9gpbHvRjWIFOys4ePo0EALoYfqYpgmaMK84n4wEca\n\
cAQQD5VQ3J76+SEXYirfGWNXYEJLRopqdGK5pM07Q1PoLrU08X+U7gFhZOl92Z1T\n\
Hiqi0JF9MwKBgAzhMaqc4SqV34kPerwkSxBLeN6Ughy61acr98TKmW89meMFzArQ\n\
AP7MA5sdDYbLvlSeUU8kMmvbfvF1uoa6dhT9ktOT8B7EDx7XWDcjmrjgztRp0/fE\n\
SgkMJlIUZ6Z1hHa3clgA1l/AwETeN3znRfVA27Wb5BB/Pxn0B8XDegWtAoGALB76\n\
idzDFwDXG52ZFZvKq/WY6Jbn365lnE0sYisbOtlfWQSd6nds6a1dvAtzslSe0Gjz\n\
GREaUeJKK/jdgKT0BhORwfzQXgsrRI1hnKUKQey4zNM7hElDPpa13zEJb4nCNS9q\n\
RdknLE3FrKH1/NS0DX+1sO9jE1kD4DNJ4NpWiFUCgYEAsW3oBNf1r9VfiJRlUvNd\n\
CWoSZ6koGsMhk56Eq219l+drgdiyaY03XgjlwyfnU1RvYtKq4uTZyvYgvBn9wYcP\n\
YFAcu0l4DdnM68PHyP9O6WAtKN1fF3tFHMSdAjuq69fm7x4r9cwYv0Eyn9cVhbdh\n\
auPDBSr/7L53PgyzYMoQUm4=\n\
-----END PRIVATE KEY-----\n\
";
const TEST_ONLY_RSA_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA0Z1cWlUz2yMlR5gMjSzo\n\
WdOu5rZnZFbOQ3muBeI/J0yPcb2acAEdvEf0/MslMQDvvWl8J9YSzdqbegGRgqcS\n\
QGppHLtKB3Wt8odLD5fFmOw4D/h6JPQEFvjZNenUakdmY7EUe56IOiJcpqU+eMs9\n\
Yph1J+Htwo3cbFPALsEpc6w7HQNK0eqX7437D6Rb7lziwjFfNrm7ntJVw0F5/MYR\n\
zw2/nZR4v6/LS5EiO+F9pwwBhAcv2ZmR2eXktKb0xrIT8ziVGtlToru7PaPAo/qV\n\
aSriMlKq8UHqGHcrMHjXvis2oqYE4utnWpw+RjBNMUa+9ZX9YOYOUbTq+j38skR2\n\
5wIDAQAB\n\
-----END PUBLIC KEY-----\n\
";
/// The same RSA public key in PKCS#1 form (`BEGIN RSA PUBLIC KEY`).
const TEST_ONLY_RSA_PUBLIC_PKCS1_PEM: &str = "\
-----BEGIN RSA PUBLIC KEY-----\n\
MIIBCgKCAQEA0Z1cWlUz2yMlR5gMjSzoWdOu5rZnZFbOQ3muBeI/J0yPcb2acAEd\n\
vEf0/MslMQDvvWl8J9YSzdqbegGRgqcSQGppHLtKB3Wt8odLD5fFmOw4D/h6JPQE\n\
FvjZNenUakdmY7EUe56IOiJcpqU+eMs9Yph1J+Htwo3cbFPALsEpc6w7HQNK0eqX\n\
7437D6Rb7lziwjFfNrm7ntJVw0F5/MYRzw2/nZR4v6/LS5EiO+F9pwwBhAcv2ZmR\n\
2eXktKb0xrIT8ziVGtlToru7PaPAo/qVaSriMlKq8UHqGHcrMHjXvis2oqYE4utn\n\
Wpw+RjBNMUa+9ZX9YOYOUbTq+j38skR25wIDAQAB\n\
-----END RSA PUBLIC KEY-----\n\
";
const TEST_ONLY_P256_PRIVATE_PEM: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgNpfSW8RXRLTqZ3BS\n\
EE+ooeH6Bv9wKcHvnibS8oFRliahRANCAARl3ZjpCFBFI/Ogr3/LXc5eVuKqsTfi\n\
CfoSjne5yb+LHCbD9w0onwjqGARDOeR7rDI4I7+txCKeCDcScXhOMYom\n\
-----END PRIVATE KEY-----\n\
";
const TEST_ONLY_P256_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZd2Y6QhQRSPzoK9/y13OXlbiqrE3\n\
4gn6Eo53ucm/ixwmw/cNKJ8I6hgEQznke6wyOCO/rcQingg3EnF4TjGKJg==\n\
-----END PUBLIC KEY-----\n\
";
/// An EC key on P-384: not usable for ES256.
const TEST_ONLY_P384_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEOrrTJ6WgkBZp0qJMvl08I/hBCoqWDEd0\n\
SeOQdLwpIJ3bqQhoOK74heBDhhq4BimfJnzhJvZVh7nVu1DJvkj8FrMutKbm1A8M\n\
TdgOsQV1+nWZAGsdDa95qcePJaKtIUz6\n\
-----END PUBLIC KEY-----\n\
";

fn api_key_policy() -> AuthPolicy {
    AuthPolicy {
        api_keys: vec![ApiKey {
            id: "control-plane".into(),
            sha256: Sha256::digest(b"k-123").into(),
            roles: vec!["publisher".into()],
        }],
        jwt: None,
    }
}

fn jwt_policy(key: JwtKey) -> AuthPolicy {
    AuthPolicy {
        jwt: Some(JwtConfig {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            key,
            roles_claim: "roles".into(),
        }),
        ..api_key_policy()
    }
}

fn hs_policy() -> AuthPolicy {
    jwt_policy(JwtKey::Hs256(Secret::new(HS_SECRET)))
}

fn pem_policy(pem: &str) -> AuthPolicy {
    jwt_policy(JwtKey::PublicKeyPem(pem.into()))
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice@example.com",
        "exp": NOW + 300,
        "iat": NOW,
        "roles": ["publisher", "kernel-approver"],
    })
}

/// `claims()` with `changes` merged in; a `null` value removes the claim.
fn claims_with(changes: Value) -> Value {
    let mut c = claims();
    for (k, v) in changes.as_object().expect("object") {
        if v.is_null() {
            c.as_object_mut().expect("object").remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("sign")
}

fn hs(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
        claims,
    )
}

fn auth(policy: &AuthPolicy, token: &str) -> Result<Principal, AuthError> {
    authenticate(policy, Some(&format!("Bearer {token}")), NOW)
}

fn refused(reason: InvalidReason) -> Result<Principal, AuthError> {
    Err(AuthError::Invalid(reason))
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[test]
fn a_known_key_authenticates_as_its_id_with_its_roles() {
    let p = authenticate(&api_key_policy(), Some("Bearer k-123"), NOW).expect("valid");
    assert_eq!(p.actor_id, "control-plane");
    assert!(p.has_role("publisher"));
    assert!(!p.has_role("admin"));
    assert_eq!(p.kind, PrincipalKind::ApiKey);
}

#[test]
fn missing_malformed_and_unknown_credentials_are_refused() {
    let p = api_key_policy();
    assert_eq!(authenticate(&p, None, NOW), Err(AuthError::Missing));
    assert_eq!(
        authenticate(&p, Some("Basic abc"), NOW),
        Err(AuthError::Missing)
    );
    assert_eq!(
        authenticate(&p, Some("Bearer "), NOW),
        Err(AuthError::Missing)
    );
    assert_eq!(auth(&p, "k-124"), refused(InvalidReason::UnknownKey));
    assert_eq!(auth(&p, "K-123"), refused(InvalidReason::UnknownKey));
}

#[test]
fn api_keys_still_work_when_jwt_is_configured() {
    let p = auth(&hs_policy(), "k-123").expect("valid");
    assert_eq!(p.actor_id, "control-plane");
    assert_eq!(p.kind, PrincipalKind::ApiKey);
}

#[test]
fn hs256_token_authenticates_as_its_subject_with_its_roles() {
    let p = auth(&hs_policy(), &hs(&claims())).expect("valid");
    assert_eq!(
        p,
        Principal {
            actor_id: "alice@example.com".into(),
            roles: vec!["publisher".into(), "kernel-approver".into()],
            kind: PrincipalKind::Jwt,
        }
    );
    // Lower-case scheme, as for API keys.
    let lower = authenticate(
        &hs_policy(),
        Some(&format!("bearer {}", hs(&claims()))),
        NOW,
    );
    assert!(lower.is_ok());
}

#[test]
fn a_jwt_is_refused_when_jwt_is_not_configured() {
    assert_eq!(
        auth(&api_key_policy(), &hs(&claims())),
        refused(InvalidReason::JwtNotConfigured)
    );
}

#[test]
fn expired_token_is_refused_after_the_leeway() {
    let p = hs_policy();
    let at = |exp: i64| auth(&p, &hs(&claims_with(json!({ "exp": exp }))));
    assert_eq!(at(NOW - 3600), refused(InvalidReason::Expired));
    assert_eq!(at(NOW - JWT_LEEWAY_SECS), refused(InvalidReason::Expired));
    assert!(at(NOW - JWT_LEEWAY_SECS + 1).is_ok(), "within the leeway");
    assert!(at(NOW).is_ok(), "within the leeway");
}

#[test]
fn token_not_yet_valid_is_refused_beyond_the_leeway() {
    let p = hs_policy();
    let at = |nbf: i64| auth(&p, &hs(&claims_with(json!({ "nbf": nbf }))));
    assert_eq!(at(NOW + 3600), refused(InvalidReason::NotYetValid));
    assert_eq!(
        at(NOW + JWT_LEEWAY_SECS + 1),
        refused(InvalidReason::NotYetValid)
    );
    assert!(at(NOW + JWT_LEEWAY_SECS).is_ok(), "within the leeway");
    assert!(at(NOW - 10).is_ok());
}

#[test]
fn time_is_the_parameter_not_the_clock() {
    let token = hs(&claims());
    let header = format!("Bearer {token}");
    assert!(authenticate(&hs_policy(), Some(&header), NOW).is_ok());
    assert_eq!(
        authenticate(&hs_policy(), Some(&header), NOW + 10_000),
        refused(InvalidReason::Expired)
    );
}

#[test]
fn wrong_audience_is_refused() {
    let p = hs_policy();
    let with = |aud: Value| auth(&p, &hs(&claims_with(json!({ "aud": aud }))));
    assert_eq!(
        with(json!("someone-else")),
        refused(InvalidReason::WrongAudience)
    );
    assert_eq!(
        with(json!(["a", "b"])),
        refused(InvalidReason::WrongAudience)
    );
    assert_eq!(with(json!(42)), refused(InvalidReason::InvalidClaim));
    assert!(
        with(json!(["other", AUDIENCE])).is_ok(),
        "aud array containing ours"
    );
    let no_aud = hs(&claims_with(json!({ "aud": null })));
    assert_eq!(auth(&p, &no_aud), refused(InvalidReason::MissingClaim));
}

#[test]
fn wrong_issuer_is_refused() {
    let p = hs_policy();
    let with = |iss: Value| auth(&p, &hs(&claims_with(json!({ "iss": iss }))));
    assert_eq!(
        with(json!("https://evil.example.com")),
        refused(InvalidReason::WrongIssuer)
    );
    assert_eq!(
        with(json!(format!("{ISSUER}/"))),
        refused(InvalidReason::WrongIssuer)
    );
    assert_eq!(with(json!([ISSUER])), refused(InvalidReason::InvalidClaim));
    let no_iss = hs(&claims_with(json!({ "iss": null })));
    assert_eq!(auth(&p, &no_iss), refused(InvalidReason::MissingClaim));
}

#[test]
fn token_signed_with_another_key_is_refused() {
    let other = EncodingKey::from_secret(b"another-secret-that-is-32-bytes-long!!");
    let token = sign(Algorithm::HS256, &other, &claims());
    assert_eq!(
        auth(&hs_policy(), &token),
        refused(InvalidReason::BadSignature)
    );
}

#[test]
fn tampered_payload_is_refused() {
    let token = hs(&claims());
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = b64(&claims_with(json!({ "roles": ["admin"] })));
    parts[1] = &forged;
    assert_eq!(
        auth(&hs_policy(), &parts.join(".")),
        refused(InvalidReason::BadSignature)
    );
}

#[test]
fn unsigned_alg_none_token_is_refused() {
    for alg in ["none", "None", "NONE"] {
        let token = format!(
            "{}.{}.",
            b64(&json!({ "alg": alg, "typ": "JWT" })),
            b64(&claims())
        );
        assert_eq!(
            auth(&hs_policy(), &token),
            refused(InvalidReason::AlgNotAllowed)
        );
        let rs = pem_policy(TEST_ONLY_RSA_PUBLIC_PEM);
        assert_eq!(auth(&rs, &token), refused(InvalidReason::AlgNotAllowed));
    }
}

#[test]
fn hs256_token_signed_with_the_rsa_public_key_is_refused() {
    // Algorithm confusion: the public key bytes used as an HMAC secret.
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(TEST_ONLY_RSA_PUBLIC_PEM.as_bytes()),
        &claims(),
    );
    for pem in [TEST_ONLY_RSA_PUBLIC_PEM, TEST_ONLY_RSA_PUBLIC_PKCS1_PEM] {
        assert_eq!(
            auth(&pem_policy(pem), &token),
            refused(InvalidReason::AlgNotAllowed)
        );
    }
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(TEST_ONLY_P256_PUBLIC_PEM.as_bytes()),
        &claims(),
    );
    assert_eq!(
        auth(&pem_policy(TEST_ONLY_P256_PUBLIC_PEM), &token),
        refused(InvalidReason::AlgNotAllowed)
    );
}

#[test]
fn only_the_configured_algorithm_is_accepted() {
    let hs512 = sign(
        Algorithm::HS512,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
        &claims(),
    );
    assert_eq!(
        auth(&hs_policy(), &hs512),
        refused(InvalidReason::AlgNotAllowed)
    );
    let rsa = EncodingKey::from_rsa_pem(TEST_ONLY_RSA_PRIVATE_PEM.as_bytes()).expect("key");
    let ec = EncodingKey::from_ec_pem(TEST_ONLY_P256_PRIVATE_PEM.as_bytes()).expect("key");
    let rs256 = sign(Algorithm::RS256, &rsa, &claims());
    let ps256 = sign(Algorithm::PS256, &rsa, &claims());
    let es256 = sign(Algorithm::ES256, &ec, &claims());
    assert_eq!(
        auth(&hs_policy(), &rs256),
        refused(InvalidReason::AlgNotAllowed)
    );
    let rs = pem_policy(TEST_ONLY_RSA_PUBLIC_PEM);
    assert_eq!(auth(&rs, &ps256), refused(InvalidReason::AlgNotAllowed));
    assert_eq!(auth(&rs, &es256), refused(InvalidReason::AlgNotAllowed));
    let es = pem_policy(TEST_ONLY_P256_PUBLIC_PEM);
    assert_eq!(auth(&es, &rs256), refused(InvalidReason::AlgNotAllowed));
}

#[test]
fn rs256_token_verifies_with_the_rsa_public_key() {
    let key = EncodingKey::from_rsa_pem(TEST_ONLY_RSA_PRIVATE_PEM.as_bytes()).expect("key");
    let token = sign(Algorithm::RS256, &key, &claims());
    for pem in [TEST_ONLY_RSA_PUBLIC_PEM, TEST_ONLY_RSA_PUBLIC_PKCS1_PEM] {
        let p = auth(&pem_policy(pem), &token).expect("valid");
        assert_eq!(p.actor_id, "alice@example.com");
        assert_eq!(p.kind, PrincipalKind::Jwt);
    }
    let expired = sign(
        Algorithm::RS256,
        &key,
        &claims_with(json!({ "exp": NOW - 60 })),
    );
    assert_eq!(
        auth(&pem_policy(TEST_ONLY_RSA_PUBLIC_PEM), &expired),
        refused(InvalidReason::Expired)
    );
}

#[test]
fn es256_token_verifies_with_the_p256_public_key() {
    let key = EncodingKey::from_ec_pem(TEST_ONLY_P256_PRIVATE_PEM.as_bytes()).expect("key");
    let token = sign(Algorithm::ES256, &key, &claims());
    let p = auth(&pem_policy(TEST_ONLY_P256_PUBLIC_PEM), &token).expect("valid");
    assert_eq!(p.actor_id, "alice@example.com");
    assert!(p.has_role("kernel-approver"));
    // The RSA public key cannot verify it, whatever the header says.
    let mut parts: Vec<&str> = token.split('.').collect();
    let rs_header = b64(&json!({ "alg": "RS256", "typ": "JWT" }));
    parts[0] = &rs_header;
    assert_eq!(
        auth(&pem_policy(TEST_ONLY_RSA_PUBLIC_PEM), &parts.join(".")),
        refused(InvalidReason::BadSignature)
    );
}

#[test]
fn keys_that_fix_no_supported_algorithm_are_unusable() {
    let key = EncodingKey::from_ec_pem(TEST_ONLY_P256_PRIVATE_PEM.as_bytes()).expect("key");
    let token = sign(Algorithm::ES256, &key, &claims());
    for pem in [
        TEST_ONLY_P384_PUBLIC_PEM,
        TEST_ONLY_P256_PRIVATE_PEM,
        TEST_ONLY_RSA_PRIVATE_PEM,
        "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
        "not a pem",
    ] {
        assert_eq!(
            auth(&pem_policy(pem), &token),
            refused(InvalidReason::KeyUnusable),
            "{pem}"
        );
    }
}

#[test]
fn subject_is_required() {
    let p = hs_policy();
    let no_sub = hs(&claims_with(json!({ "sub": null })));
    assert_eq!(auth(&p, &no_sub), refused(InvalidReason::MissingClaim));
    for sub in [json!(""), json!(7), json!(["alice"])] {
        let token = hs(&claims_with(json!({ "sub": sub })));
        assert_eq!(auth(&p, &token), refused(InvalidReason::InvalidClaim));
    }
}

#[test]
fn expiry_is_required_and_numeric() {
    let p = hs_policy();
    let no_exp = hs(&claims_with(json!({ "exp": null })));
    assert_eq!(auth(&p, &no_exp), refused(InvalidReason::MissingClaim));
    let text = hs(&claims_with(json!({ "exp": "tomorrow" })));
    assert_eq!(auth(&p, &text), refused(InvalidReason::InvalidClaim));
    let bad_nbf = hs(&claims_with(json!({ "nbf": "now" })));
    assert_eq!(auth(&p, &bad_nbf), refused(InvalidReason::InvalidClaim));
    let fractional = hs(&claims_with(json!({ "exp": (NOW + 60) as f64 + 0.5 })));
    assert!(auth(&p, &fractional).is_ok());
}

#[test]
fn roles_claim_must_be_an_array_of_strings() {
    let p = hs_policy();
    for roles in [
        json!("publisher"),
        json!({ "publisher": true }),
        json!(["ok", 1]),
    ] {
        let token = hs(&claims_with(json!({ "roles": roles })));
        assert_eq!(auth(&p, &token), refused(InvalidReason::InvalidClaim));
    }
    let none = hs(&claims_with(json!({ "roles": null })));
    assert_eq!(auth(&p, &none).expect("valid").roles, Vec::<String>::new());
}

#[test]
fn roles_come_from_the_configured_claim() {
    let mut p = hs_policy();
    if let Some(j) = p.jwt.as_mut() {
        j.roles_claim = "groups".into();
    }
    let token = hs(&claims_with(json!({ "groups": ["admin"] })));
    assert_eq!(auth(&p, &token).expect("valid").roles, ["admin"]);
}

#[test]
fn undecodable_tokens_are_malformed() {
    let p = hs_policy();
    let good = hs(&claims());
    let (_, rest) = good.split_once('.').expect("jwt");
    for token in [
        format!("e30.{rest}"),         // header `{}`: no alg
        format!("bm90LWpzb24.{rest}"), // header not JSON
    ] {
        assert_eq!(
            auth(&p, &token),
            refused(InvalidReason::Malformed),
            "{token}"
        );
    }
    // Correctly signed, but with a critical extension we do not know.
    let mut header = Header::new(Algorithm::HS256);
    header.extras.insert("crit".into(), "b64".into());
    let crit = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .expect("sign");
    assert_eq!(auth(&p, &crit), refused(InvalidReason::Malformed));
    // Correctly signed, but the claims are not an object.
    let not_object = hs(&json!("just a string"));
    assert_eq!(auth(&p, &not_object), refused(InvalidReason::Malformed));
    // Not JWT-shaped: treated as an API key.
    assert_eq!(auth(&p, "a.b.c.d"), refused(InvalidReason::UnknownKey));
    assert_eq!(auth(&p, "a..c"), refused(InvalidReason::UnknownKey));
}

#[test]
fn refusals_never_show_the_token_or_the_secret() {
    let token = hs(&claims_with(json!({ "exp": NOW - 3600 })));
    let err = auth(&hs_policy(), &token).expect_err("expired");
    assert_eq!(err.reason(), "expired");
    assert_eq!(err.to_string(), "invalid credentials");
    let debug = format!("{err:?} {:?}", hs_policy());
    assert!(
        !debug.contains(&token) && !debug.contains(HS_SECRET),
        "{debug}"
    );
    assert_eq!(AuthError::Missing.reason(), "missing");
}
