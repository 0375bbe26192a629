//! Who is calling: bearer credentials → [`Principal`]. Pure (no HTTP types,
//! no I/O), so every rule is unit-tested. API keys are looked up by their
//! SHA-256, compared in constant time against every configured key.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::policy::AuthPolicy;

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    ApiKey,
    Jwt,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Recorded as the actor in audit events.
    pub actor_id: String,
    pub roles: Vec<String>,
    pub kind: PrincipalKind,
}

impl Principal {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Why credentials were refused. Deliberately coarse: the client learns
/// only that it is not authenticated, never which part was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials: send `Authorization: Bearer <api key>`")]
    Missing,
    #[error("invalid credentials")]
    Invalid,
}

/// Authenticates the value of an `Authorization` header.
pub fn authenticate(policy: &AuthPolicy, header: Option<&str>) -> Result<Principal, AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::Missing)?;
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
        .ok_or(AuthError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ApiKey;

    fn policy() -> AuthPolicy {
        AuthPolicy {
            api_keys: vec![ApiKey {
                id: "control-plane".into(),
                sha256: Sha256::digest(b"k-123").into(),
                roles: vec!["publisher".into()],
            }],
            jwt: None,
        }
    }

    #[test]
    fn a_known_key_authenticates_as_its_id_with_its_roles() {
        let p = authenticate(&policy(), Some("Bearer k-123")).expect("valid");
        assert_eq!(p.actor_id, "control-plane");
        assert!(p.has_role("publisher"));
        assert!(!p.has_role("admin"));
        assert_eq!(p.kind, PrincipalKind::ApiKey);
    }

    #[test]
    fn missing_malformed_and_unknown_credentials_are_refused() {
        assert_eq!(authenticate(&policy(), None), Err(AuthError::Missing));
        assert_eq!(
            authenticate(&policy(), Some("Basic abc")),
            Err(AuthError::Missing)
        );
        assert_eq!(
            authenticate(&policy(), Some("Bearer ")),
            Err(AuthError::Missing)
        );
        assert_eq!(
            authenticate(&policy(), Some("Bearer k-124")),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            authenticate(&policy(), Some("Bearer K-123")),
            Err(AuthError::Invalid)
        );
    }
}
