//! Who is calling: bearer credentials → [`Principal`]. Pure (no HTTP types,
//! no I/O, `now` passed in), so every rule is unit-tested.
//!
//! A bearer token shaped like a JWT (three base64url segments joined by `.`)
//! is verified against `auth.jwt`; anything else is an API key, looked up by
//! its SHA-256 and compared in constant time against every configured key.
//! Refusals stay coarse to the client ([`AuthError`]'s `Display`), while
//! [`AuthError::reason`] names the cause for logs and metrics. Neither ever
//! contains the token or a key.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::policy::{AuthPolicy, JwtConfig, JwtKey};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const JWT_LEEWAY_SECS: i64 = 30;

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    ApiKey,
    Jwt,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Recorded as the actor in audit events (API key id, or the JWT `sub`).
    pub actor_id: String,
    pub roles: Vec<String>,
    pub kind: PrincipalKind,
}

impl Principal {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Why credentials were refused. `Display` is deliberately coarse: the
/// client learns only that it is not authenticated, never which part was
/// wrong; [`AuthError::reason`] is for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials: send `Authorization: Bearer <api key or JWT>`")]
    Missing,
    #[error("invalid credentials")]
    Invalid(InvalidReason),
}

impl AuthError {
    /// A stable snake_case label for metrics and logs (`missing`, `expired`, …).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid(r) => r.as_str(),
        }
    }
}

/// Why presented credentials were not accepted. Internal detail: never sent
/// to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    /// An API key that matches no configured key.
    UnknownKey,
    /// A JWT, but the policy has no `auth.jwt` section.
    JwtNotConfigured,
    /// Not decodable: bad base64, bad JSON, claims not an object, no `alg`.
    Malformed,
    /// The header's `alg` is not the one the configured key fixes (`none` included).
    AlgNotAllowed,
    /// The signature does not verify with the configured key.
    BadSignature,
    /// The configured key cannot verify anything (e.g. a PEM that is neither
    /// an RSA nor a P-256 public key). A server-side problem, counted apart.
    KeyUnusable,
    WrongIssuer,
    WrongAudience,
    Expired,
    NotYetValid,
    /// `iss`, `aud`, `exp` or `sub` is absent.
    MissingClaim,
    /// A claim has the wrong type (e.g. the roles claim is not an array of
    /// strings) or `sub` holds control characters.
    InvalidClaim,
    /// The token's `sub` is the id of a configured API key: accepting it
    /// would let the token act as that key in audit records and share its
    /// idempotency keys.
    SubjectIsApiKey,
}

impl InvalidReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownKey => "unknown_key",
            Self::JwtNotConfigured => "jwt_not_configured",
            Self::Malformed => "malformed",
            Self::AlgNotAllowed => "alg_not_allowed",
            Self::BadSignature => "bad_signature",
            Self::KeyUnusable => "key_unusable",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::MissingClaim => "missing_claim",
            Self::InvalidClaim => "invalid_claim",
            Self::SubjectIsApiKey => "subject_is_api_key",
        }
    }
}

impl From<InvalidReason> for AuthError {
    fn from(reason: InvalidReason) -> Self {
        Self::Invalid(reason)
    }
}

/// Authenticates the value of an `Authorization` header at `now` (unix seconds).
pub fn authenticate(
    policy: &AuthPolicy,
    header: Option<&str>,
    now: i64,
) -> Result<Principal, AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::Missing)?;
    if looks_like_jwt(token) {
        let config = policy.jwt.as_ref().ok_or(InvalidReason::JwtNotConfigured)?;
        let principal = verify_jwt(config, token, now)?;
        // One identity space: a token may not speak as an API key.
        if policy.api_keys.iter().any(|k| k.id == principal.actor_id) {
            return Err(InvalidReason::SubjectIsApiKey.into());
        }
        Ok(principal)
    } else {
        api_key(policy, token)
    }
}

fn api_key(policy: &AuthPolicy, token: &str) -> Result<Principal, AuthError> {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    // Every key is compared, whichever matches, so timing says nothing
    // about which (or whether any) key is close.
    let mut found = None;
    for key in &policy.api_keys {
        if bool::from(key.sha256.ct_eq(&digest)) {
            found = Some(key);
        }
    }
    found
        .map(|key| Principal {
            actor_id: key.id.clone(),
            roles: key.roles.clone(),
            kind: PrincipalKind::ApiKey,
        })
        .ok_or(AuthError::Invalid(InvalidReason::UnknownKey))
}

/// Three base64url segments; the last may be empty so that an unsigned
/// (`alg: none`) token is refused as a JWT, not looked up as an API key.
/// API keys (`aionk_<hex>`) never contain a `.`.
fn looks_like_jwt(token: &str) -> bool {
    let b64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => {
            !h.is_empty() && !p.is_empty() && b64url(h) && b64url(p) && b64url(s)
        }
        _ => false,
    }
}

/// The verification key and the single algorithm it allows. The
/// configuration decides; the token's header never does.
fn verifier(key: &JwtKey) -> Result<(DecodingKey, Algorithm), InvalidReason> {
    match key {
        JwtKey::Hs256(secret) => Ok((
            DecodingKey::from_secret(secret.expose().as_bytes()),
            Algorithm::HS256,
        )),
        JwtKey::PublicKeyPem(pem) => public_key(pem).ok_or(InvalidReason::KeyUnusable),
    }
}

/// `AlgorithmIdentifier` of an EC public key on P-256 (id-ecPublicKey,
/// prime256v1), as it appears in a SubjectPublicKeyInfo.
const P256_ALGORITHM_ID: [u8; 21] = [
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07,
];

/// RS256 for an RSA public key, ES256 for an EC P-256 public key (checked
/// by curve: jsonwebtoken accepts any EC curve here), `None` otherwise —
/// private keys and certificates included.
fn public_key(pem: &str) -> Option<(DecodingKey, Algorithm)> {
    let (label, der) = pem_der(pem)?;
    match label {
        "RSA PUBLIC KEY" => {}
        "PUBLIC KEY" => {
            if let Some(point) = p256_point(&der) {
                return Some((DecodingKey::from_ec_der(point), Algorithm::ES256));
            }
        }
        _ => return None,
    }
    // jsonwebtoken checks the rsaEncryption OID and refuses other key types.
    DecodingKey::from_rsa_pem(pem.as_bytes())
        .ok()
        .map(|k| (k, Algorithm::RS256))
}

/// The label and DER bytes of the first PEM block.
fn pem_der(pem: &str) -> Option<(&str, Vec<u8>)> {
    let start = pem.find("-----BEGIN ")?;
    let (label, rest) = pem[start + "-----BEGIN ".len()..].split_once("-----")?;
    let (body, _) = rest.split_once(&format!("-----END {label}-----"))?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    Some((label, STANDARD.decode(b64).ok()?))
}

/// The SEC1 point of a P-256 SubjectPublicKeyInfo (uncompressed or
/// compressed), or `None` for any other key.
fn p256_point(spki: &[u8]) -> Option<&[u8]> {
    let [0x30, len, rest @ ..] = spki else {
        return None;
    };
    if usize::from(*len) != rest.len() {
        return None;
    }
    let [0x03, len, 0x00, point @ ..] = rest.strip_prefix(&P256_ALGORITHM_ID[..])? else {
        return None;
    };
    (usize::from(*len) == point.len() + 1 && matches!(point.len(), 33 | 65)).then_some(point)
}

/// Verifies a JWT: algorithm fixed by the key, signature, then claims at
/// `now`. jsonwebtoken does the cryptography only; the header, the claims
/// and the clock are ours, so every refusal has a precise reason and `now`
/// stays a parameter (its `decode` reads the system clock).
fn verify_jwt(config: &JwtConfig, token: &str, now: i64) -> Result<Principal, InvalidReason> {
    let (key, alg) = verifier(&config.key)?;
    let (message, signature) = token.rsplit_once('.').ok_or(InvalidReason::Malformed)?;
    let (header, payload) = message.split_once('.').ok_or(InvalidReason::Malformed)?;
    let header = json_object(header)?;
    // RFC 7515 §4.1.11: extensions listed in `crit` must be understood; we
    // understand none.
    if header.contains_key("crit") {
        return Err(InvalidReason::Malformed);
    }
    match header.get("alg").and_then(Value::as_str) {
        None => return Err(InvalidReason::Malformed),
        // Exact, case-sensitive names; `none` and every other algorithm are refused.
        Some(name) if name.parse::<Algorithm>().ok() != Some(alg) => {
            return Err(InvalidReason::AlgNotAllowed);
        }
        Some(_) => {}
    }
    match jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, alg) {
        Ok(true) => {}
        Ok(false) => return Err(InvalidReason::BadSignature),
        Err(e) if matches!(e.kind(), ErrorKind::Base64(_)) => {
            return Err(InvalidReason::Malformed);
        }
        // The key did not load as a verifier for `alg`.
        Err(_) => return Err(InvalidReason::KeyUnusable),
    }
    // Claims are read only once the signature holds.
    check_claims(config, &json_object(payload)?, now)
}

/// A base64url segment holding a JSON object.
fn json_object(segment: &str) -> Result<Map<String, Value>, InvalidReason> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(InvalidReason::Malformed)
}

/// `iss`, `aud`, `exp` (required), `nbf` (if present), `sub`, roles.
/// Accepted while `now < exp + leeway` and `nbf <= now + leeway`.
fn check_claims(
    config: &JwtConfig,
    claims: &Map<String, Value>,
    now: i64,
) -> Result<Principal, InvalidReason> {
    use InvalidReason as R;
    match claims.get("iss") {
        None => return Err(R::MissingClaim),
        Some(Value::String(iss)) if *iss == config.issuer => {}
        Some(Value::String(_)) => return Err(R::WrongIssuer),
        Some(_) => return Err(R::InvalidClaim),
    }
    let audience_ok = match claims.get("aud") {
        None => return Err(R::MissingClaim),
        Some(Value::String(aud)) => *aud == config.audience,
        Some(Value::Array(list)) => list
            .iter()
            .any(|a| a.as_str() == Some(config.audience.as_str())),
        Some(_) => return Err(R::InvalidClaim),
    };
    if !audience_ok {
        return Err(R::WrongAudience);
    }
    // Fractional dates round towards refusal.
    let exp = numeric_date(claims.get("exp"), f64::floor)?.ok_or(R::MissingClaim)?;
    if now >= exp.saturating_add(JWT_LEEWAY_SECS) {
        return Err(R::Expired);
    }
    if let Some(nbf) = numeric_date(claims.get("nbf"), f64::ceil)?
        && nbf > now.saturating_add(JWT_LEEWAY_SECS)
    {
        return Err(R::NotYetValid);
    }
    let actor_id = match claims.get("sub") {
        None => return Err(R::MissingClaim),
        Some(Value::String(sub))
            if !sub.is_empty() && sub.len() <= 255 && !sub.chars().any(char::is_control) =>
        {
            sub.clone()
        }
        Some(_) => return Err(R::InvalidClaim),
    };
    let roles = match claims.get(&config.roles_claim) {
        None => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|r| r.as_str().map(str::to_owned).ok_or(R::InvalidClaim))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(R::InvalidClaim),
    };
    Ok(Principal {
        actor_id,
        roles,
        kind: PrincipalKind::Jwt,
    })
}

/// A NumericDate claim: `None` if absent, an error if not a number.
fn numeric_date(
    value: Option<&Value>,
    round: fn(f64) -> f64,
) -> Result<Option<i64>, InvalidReason> {
    let Some(value) = value else { return Ok(None) };
    let n = value.as_number().ok_or(InvalidReason::InvalidClaim)?;
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    match n.as_f64() {
        // `as` saturates, so huge dates stay huge.
        Some(f) if f.is_finite() => Ok(Some(round(f) as i64)),
        _ => Err(InvalidReason::InvalidClaim),
    }
}

#[cfg(test)]
mod tests;
