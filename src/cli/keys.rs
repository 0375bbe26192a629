//! Keys for the offline commands: `keygen` (a shared secret, or an Ed25519
//! pair) and the keys `verify` checks a signature with.

use std::io::Write;

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::signing::{
    Ed25519Public, Ed25519Secret, StandardSecret, VerifyError, ed25519, standard_verify, v1a_verify,
};

/// Writes a fresh key (32 random bytes, 256 bits) and the policy line for it.
pub fn keygen(out: &mut dyn Write) -> anyhow::Result<()> {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let key = format!("aionk_{}", hex::encode(raw));
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    writeln!(out, "key: {key}")?;
    writeln!(
        out,
        "# paste into auth.api_keys in the policy; the key itself is never stored:"
    )?;
    writeln!(out, "sha256: \"{digest}\"")?;
    Ok(())
}

/// Writes a fresh ed25519 signing key and its public key.
pub fn keygen_ed25519(out: &mut dyn Write) -> anyhow::Result<()> {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = Ed25519Secret::from_seed(seed);
    writeln!(out, "signing key: {}", key.expose())?;
    writeln!(
        out,
        "# the webhook's `secret` (or an entry of `secrets`) in the policy, with \
         `signature: standard` or `both`; keep it secret"
    )?;
    writeln!(out, "public key: {}", key.public())?;
    writeln!(
        out,
        "# give this to the receiver: it verifies the `v1a` signatures and cannot forge them"
    )?;
    Ok(())
}

/// The keys `verify --id` accepts: `whsec_` secrets check `v1` entries,
/// `whpk_` public keys (or a `whsk_` signing key, by its public half) `v1a`.
pub(super) struct VerifyKeys {
    hmac: Vec<StandardSecret>,
    ed25519: Vec<Ed25519Public>,
}

impl VerifyKeys {
    pub(super) fn parse(texts: &[String]) -> anyhow::Result<Self> {
        let mut keys = Self {
            hmac: Vec::new(),
            ed25519: Vec::new(),
        };
        for (i, text) in texts.iter().enumerate() {
            let n = i + 1;
            let t = text.trim_start();
            if t.starts_with(ed25519::PUBLIC_PREFIX) {
                keys.ed25519.push(
                    Ed25519Public::parse(t).map_err(|e| anyhow::anyhow!("--secret #{n}: {e}"))?,
                );
            } else if t.starts_with(ed25519::SIGNING_PREFIX) {
                let key =
                    Ed25519Secret::parse(t).map_err(|e| anyhow::anyhow!("--secret #{n}: {e}"))?;
                keys.ed25519.push(key.public());
            } else {
                keys.hmac.push(StandardSecret::parse(t).map_err(|e| {
                    anyhow::anyhow!("--secret #{n}: {e} (or `whpk_` for an ed25519 public key)")
                })?);
            }
        }
        Ok(keys)
    }

    /// Valid when the `v1` entries verify under the HMAC secrets or the
    /// `v1a` entries under the public keys; a tampered body fails both.
    pub(super) fn verify(
        &self,
        id: &str,
        timestamp: &str,
        signature: &str,
        body: &[u8],
        tolerance: u64,
    ) -> Result<i64, VerifyError> {
        let now = super::unix_now();
        let hmac: Vec<_> = self.hmac.iter().collect();
        let public: Vec<_> = self.ed25519.iter().collect();
        let by_hmac = (!hmac.is_empty())
            .then(|| standard_verify(id, timestamp, signature, &hmac, body, now, tolerance));
        let by_ed25519 = (!public.is_empty())
            .then(|| v1a_verify(id, timestamp, signature, &public, body, now, tolerance));
        match (by_hmac, by_ed25519) {
            (Some(Ok(t)), _) | (_, Some(Ok(t))) => Ok(t),
            // Both failed: the HMAC reason unless only public keys were given.
            (Some(Err(e)), _) | (None, Some(Err(e))) => Err(e),
            (None, None) => Err(VerifyError::Mismatch),
        }
    }
}
