//! A webhook's secrets (`secret`, `secrets` or `secret_file`) and its
//! signing keys: its secrets sorted by the scheme each signs
//! with, each checked for that scheme.

use serde_saphyr::{Location, Spanned};

use crate::policy::raw::Str;

use super::Compiler;
use crate::domain::Secret;
use crate::policy::model::SignatureMode;
use crate::signing::ed25519::{PUBLIC_PREFIX, SIGNING_PREFIX};
use crate::signing::{Ed25519Secret, StandardSecret};

impl Compiler<'_> {
    /// Resolves `secret` / `secrets` / `secret_file` (exactly one must be given).
    pub(super) fn secrets(
        &mut self,
        path: &str,
        owner: Location,
        secret: &Option<Str>,
        secrets: &Option<Spanned<Vec<Str>>>,
        secret_file: &Option<Str>,
    ) -> Option<Vec<Secret>> {
        let given = usize::from(secret.is_some())
            + usize::from(secrets.is_some())
            + usize::from(secret_file.is_some());
        if given != 1 {
            let msg = if given == 0 {
                "a secret is required: set `secret`, `secrets` or `secret_file`"
            } else {
                "set only one of `secret`, `secrets` and `secret_file`"
            };
            self.error(path, owner, msg);
            return None;
        }
        let mut out = Vec::new();
        if let Some(s) = secret {
            out.push(self.string(s, &format!("{path}.secret"))?);
        } else if let Some(list) = secrets {
            if list.value.is_empty() {
                self.error(
                    format!("{path}.secrets"),
                    list.referenced,
                    "must list at least one secret",
                );
                return None;
            }
            for (i, s) in list.value.iter().enumerate() {
                // Every entry is checked, so each missing variable is reported.
                if let Some(v) = self.string(s, &format!("{path}.secrets[{i}]")) {
                    out.push(v);
                }
            }
            if out.len() < list.value.len() {
                return None;
            }
        } else if let Some(f) = secret_file {
            out.push(self.read_file(f, &format!("{path}.secret_file"))?);
        }
        if out.iter().any(|s| s.is_empty()) {
            self.error(
                path,
                owner,
                "a secret is empty (is its environment variable set to an empty string?)",
            );
            return None;
        }
        Some(out.into_iter().map(Secret::new).collect())
    }

    /// Sorts a webhook's secrets by scheme: the prefix of each entry selects
    /// it (`whsk_` → ed25519 `v1a`; anything else is an HMAC secret, which
    /// must be `whsec_` when the webhook signs Standard Webhooks `v1`).
    pub(super) fn signing_keys(
        &mut self,
        path: &str,
        loc: Location,
        signature: SignatureMode,
        secrets: &[Secret],
    ) -> SigningKeys {
        let mut keys = SigningKeys::default();
        let field = format!("{path}.secret");
        for (i, s) in secrets.iter().enumerate() {
            let n = i + 1;
            let text = s.expose();
            if text.trim_start().starts_with(PUBLIC_PREFIX) {
                self.error(
                    &field,
                    loc,
                    format!(
                        "secret #{n} is a `{PUBLIC_PREFIX}` public key: the webhook signs with the \
                         `{SIGNING_PREFIX}` signing key, the receiver keeps the public one"
                    ),
                );
            } else if text.trim_start().starts_with(SIGNING_PREFIX) {
                if !signature.signs_standard() {
                    self.error(
                        &field,
                        loc,
                        format!(
                            "secret #{n} is a `{SIGNING_PREFIX}` ed25519 key, which signs only \
                             `webhook-signature` (v1a): set `signature: standard` or `both`"
                        ),
                    );
                    continue;
                }
                match Ed25519Secret::parse(text) {
                    Ok(k) => keys.ed25519.push(k),
                    Err(e) => self.error(&field, loc, format!("secret #{n}: {e}")),
                }
            } else {
                if signature.signs_standard() {
                    match StandardSecret::parse(text) {
                        Ok(k) => keys.standard.push(k),
                        Err(e) => self.error(
                            &field,
                            loc,
                            format!(
                                "secret #{n} cannot be used with signature {}: {e} \
                                 (or `{SIGNING_PREFIX}` for an ed25519 key)",
                                signature.as_str()
                            ),
                        ),
                    }
                }
                keys.hmac.push(s.clone());
            }
        }
        if signature.signs_aion() && keys.hmac.is_empty() && !secrets.is_empty() {
            self.error(
                &field,
                loc,
                format!(
                    "X-Aion-Signature (signature {}) needs an HMAC secret; \
                     `{SIGNING_PREFIX}` keys sign only the Standard Webhooks header",
                    signature.as_str()
                ),
            );
        }
        keys
    }
}

/// A webhook's secrets sorted by the scheme each signs with.
#[derive(Debug, Default)]
pub(super) struct SigningKeys {
    /// HMAC secrets as written: `X-Aion-Signature` keys.
    pub(super) hmac: Vec<Secret>,
    /// The same HMAC secrets decoded from `whsec_`, when the webhook signs `v1`.
    pub(super) standard: Vec<StandardSecret>,
    /// `whsk_` keys: `v1a`.
    pub(super) ed25519: Vec<Ed25519Secret>,
}
