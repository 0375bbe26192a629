//! Standard Webhooks asymmetric signatures (`v1a`): ed25519 over
//! `<webhook-id>.<webhook-timestamp>.<body>`, carried in the same
//! `webhook-signature` header as the HMAC `v1` entries.
//!
//! The sender holds a signing key, `whsk_<base64>`; the receiver holds only
//! the public key, `whpk_<base64>`, so a leaked receiver configuration cannot
//! forge deliveries. A signing key is the 32-byte ed25519 seed; the 64-byte
//! form (seed then public key, as libsodium and Svix export it) is accepted
//! too, and refused if its two halves do not belong together.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};

use super::standard::{id_and_timestamp, signatures_of};
use super::{SecretFormatError, VerifyError, check_freshness};

/// The prefix of an ed25519 signing key.
pub const SIGNING_PREFIX: &str = "whsk_";
/// The prefix of an ed25519 public key.
pub const PUBLIC_PREFIX: &str = "whpk_";
/// Base64 length of a 64-byte signature with padding.
const ENCODED_SIGNATURE_LEN: usize = 88;

/// An ed25519 signing key parsed from `whsk_<base64>`. `Debug` is redacted.
#[derive(Clone)]
pub struct Ed25519Secret {
    key: SigningKey,
}

impl Ed25519Secret {
    /// Parses `whsk_<base64 of the 32-byte seed>` (or of seed ‖ public key).
    /// Surrounding whitespace is dropped, as for `whsec_` secrets.
    pub fn parse(s: &str) -> Result<Self, SecretFormatError> {
        let bytes = decode(s, SIGNING_PREFIX)?;
        let seed: [u8; 32] = bytes
            .get(..32)
            .and_then(|seed| seed.try_into().ok())
            .ok_or(SecretFormatError::WrongLength(SIGNING_PREFIX))?;
        let key = SigningKey::from_bytes(&seed);
        match bytes.len() {
            32 => {}
            64 if bytes[32..] == key.verifying_key().to_bytes() => {}
            64 => return Err(SecretFormatError::KeyPairMismatch),
            _ => return Err(SecretFormatError::WrongLength(SIGNING_PREFIX)),
        }
        Ok(Self { key })
    }

    /// A signing key from 32 bytes of randomness (the caller supplies them:
    /// key generation stays deterministic under test).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The `whsk_…` text of this key (its 32-byte seed).
    pub fn expose(&self) -> String {
        format!("{SIGNING_PREFIX}{}", BASE64.encode(self.key.to_bytes()))
    }

    /// The public key that verifies this key's signatures.
    pub fn public(&self) -> Ed25519Public {
        Ed25519Public {
            key: self.key.verifying_key(),
        }
    }
}

impl fmt::Debug for Ed25519Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ed25519Secret(***)")
    }
}

/// An ed25519 public key parsed from `whpk_<base64>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Ed25519Public {
    key: VerifyingKey,
}

impl Ed25519Public {
    /// Parses `whpk_<base64 of the 32-byte public key>`; a point that is not
    /// a valid public key is refused.
    pub fn parse(s: &str) -> Result<Self, SecretFormatError> {
        let bytes: [u8; 32] = decode(s, PUBLIC_PREFIX)?
            .try_into()
            .map_err(|_| SecretFormatError::WrongLength(PUBLIC_PREFIX))?;
        let key =
            VerifyingKey::from_bytes(&bytes).map_err(|_| SecretFormatError::InvalidPublicKey)?;
        Ok(Self { key })
    }

    /// The raw 32 bytes, for other ed25519 implementations.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }
}

impl fmt::Display for Ed25519Public {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", BASE64.encode(self.key.to_bytes()))
    }
}

impl fmt::Debug for Ed25519Public {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519Public({self})")
    }
}

fn decode(s: &str, prefix: &'static str) -> Result<Vec<u8>, SecretFormatError> {
    let encoded = s
        .trim()
        .strip_prefix(prefix)
        .ok_or(SecretFormatError::MissingPrefix(prefix))?;
    BASE64
        .decode(encoded)
        .map_err(|_| SecretFormatError::InvalidBase64(prefix))
}

/// The `v1a,<base64>` entries for `keys`, space-separated, in the order
/// given: one ed25519 signature of `<msg_id>.<timestamp>.<body>` per key.
pub fn v1a_sign(keys: &[&Ed25519Secret], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let message = signed_content(msg_id, &timestamp.to_string(), body);
    keys.iter()
        .map(|k| format!("v1a,{}", BASE64.encode(k.key.sign(&message).to_bytes())))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks a `webhook-signature` header's `v1a` entries against `body` and
/// the receiver's public keys; returns the timestamp. `v1` (HMAC) entries
/// are ignored here: [`super::standard_verify`] checks those.
pub fn v1a_verify(
    msg_id: &str,
    timestamp_header: &str,
    signature_header: &str,
    public_keys: &[&Ed25519Public],
    body: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<i64, VerifyError> {
    let (raw_timestamp, timestamp) = id_and_timestamp(msg_id, timestamp_header)?;
    let signatures = signatures_of(signature_header, "v1a")?
        .into_iter()
        .map(decode_signature)
        .collect::<Result<Vec<_>, _>>()?;
    if signatures.is_empty() {
        return Err(VerifyError::Malformed("no `v1a` signature"));
    }
    check_freshness(timestamp, now, tolerance_secs)?;
    let message = signed_content(msg_id, raw_timestamp, body);
    // Public keys and signatures are not secret: no constant-time need here.
    // `verify` (not `verify_strict`) is what the spec's other libraries do;
    // dalek's `verify` already refuses non-canonical `s` values.
    let valid = signatures.iter().any(|signature| {
        public_keys
            .iter()
            .any(|k| k.key.verify(&message, signature).is_ok())
    });
    if valid {
        Ok(timestamp)
    } else {
        Err(VerifyError::Mismatch)
    }
}

fn signed_content(msg_id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(msg_id.len() + timestamp.len() + body.len() + 2);
    message.extend_from_slice(msg_id.as_bytes());
    message.push(b'.');
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    message
}

fn decode_signature(value: &str) -> Result<Signature, VerifyError> {
    // Checking the length first bounds the decode work on hostile input.
    if value.len() != ENCODED_SIGNATURE_LEN {
        return Err(VerifyError::Malformed(
            "`v1a` is not a base64 ed25519 signature",
        ));
    }
    let bytes: [u8; 64] = BASE64
        .decode(value)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(VerifyError::Malformed(
            "`v1a` is not a base64 ed25519 signature",
        ))?;
    Ok(Signature::from_bytes(&bytes))
}

#[cfg(test)]
mod tests;
