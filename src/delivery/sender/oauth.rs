//! OAuth2 client-credentials tokens for `oauth2:` webhooks (contract §10,
//! RFC 6749 §4.4): fetched once per client, shared by every send of every
//! webhook with the same settings, kept until shortly before they expire.
//!
//! One fetch at a time per client: concurrent sends wait for the fetch in
//! flight instead of starting their own. A failed fetch is remembered for
//! [`FAILURE_HOLD`], so a failing token endpoint gets one request per hold,
//! not one per send. A receiver's `401` drops the token it was sent with
//! (once: a newer token already fetched is kept).
//!
//! Tokens and secrets never appear in errors or logs; an error names the
//! endpoint's origin, its status and its RFC 6749 `error` code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::Secret;
use crate::domain::redact::url_origin;
use crate::policy::reach::{ClientAuth, OAuth2};

/// How long a failed fetch answers for the client before the next try.
const FAILURE_HOLD: Duration = Duration::from_secs(2);
/// Lifetime assumed when the endpoint gives no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// A token and the fetch it came from.
#[derive(Debug, Clone)]
pub(super) struct Lease {
    pub token: Secret,
    generation: u64,
}

/// The tokens, by [`OAuth2::fingerprint`].
#[derive(Debug, Default)]
pub(super) struct Tokens {
    slots: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<Slot>>>>,
}

#[derive(Debug, Default)]
struct Slot {
    token: Option<(Secret, Instant)>,
    generation: u64,
    failure: Option<(Instant, String)>,
}

impl Tokens {
    /// A token for `cfg` valid now: the cached one, or one fetched with
    /// `client` before `deadline`. The error is the attempt's `auth` text.
    pub(super) async fn get(
        &self,
        cfg: &OAuth2,
        client: &reqwest::Client,
        deadline: Instant,
    ) -> Result<Lease, String> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            if !slots.contains_key(&cfg.fingerprint) {
                // Clients gone from the policy (a rotated secret) leave
                // slots whose tokens expire: drop those nobody waits on.
                let now = Instant::now();
                slots.retain(|_, s| {
                    Arc::strong_count(s) > 1
                        || s.try_lock()
                            .is_ok_and(|s| s.token.as_ref().is_some_and(|t| t.1 > now))
                });
            }
            Arc::clone(slots.entry(cfg.fingerprint).or_default())
        };
        let origin = url_origin(&cfg.token_url);
        let mut slot = tokio::time::timeout_at(deadline, slot.lock())
            .await
            .map_err(|_| format!("no token from {origin} in time: another send is fetching one"))?;
        let now = Instant::now();
        if let Some((token, refresh_at)) = &slot.token
            && now < *refresh_at
        {
            return Ok(Lease {
                token: token.clone(),
                generation: slot.generation,
            });
        }
        if let Some((until, error)) = &slot.failure
            && now < *until
        {
            return Err(error.clone());
        }
        let fetched = match tokio::time::timeout_at(deadline, fetch(cfg, client)).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "the token endpoint {origin} did not answer in time"
            )),
        };
        match fetched {
            Ok((token, lifetime)) => {
                slot.generation += 1;
                slot.token = Some((token.clone(), now + refresh_after(lifetime)));
                slot.failure = None;
                Ok(Lease {
                    token,
                    generation: slot.generation,
                })
            }
            Err(error) => {
                slot.token = None;
                slot.failure = Some((Instant::now() + FAILURE_HOLD, error.clone()));
                Err(error)
            }
        }
    }

    /// Drops the token of `lease` (a receiver refused it); a newer one is
    /// kept.
    pub(super) async fn refused(&self, cfg: &OAuth2, lease: &Lease) {
        let slot = {
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.get(&cfg.fingerprint).cloned()
        };
        if let Some(slot) = slot {
            let mut slot = slot.lock().await;
            if slot.generation == lease.generation {
                slot.token = None;
            }
        }
    }
}

/// How long a token of `lifetime` is used: until a tenth of its life, at
/// most a minute, is left; at least a second.
fn refresh_after(lifetime: Duration) -> Duration {
    let margin = (lifetime / 10).min(Duration::from_secs(60));
    lifetime.saturating_sub(margin).max(Duration::from_secs(1))
}

/// One token request; the token and its lifetime.
async fn fetch(cfg: &OAuth2, client: &reqwest::Client) -> Result<(Secret, Duration), String> {
    let origin = url_origin(&cfg.token_url);
    let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
    let scope = cfg.scopes.join(" ");
    if !scope.is_empty() {
        form.push(("scope", &scope));
    }
    if let Some(audience) = &cfg.audience {
        form.push(("audience", audience));
    }
    let mut request = client
        .post(cfg.token_url.clone())
        .header(reqwest::header::ACCEPT, "application/json");
    match cfg.client_auth {
        ClientAuth::Basic => {
            // RFC 6749 §2.3.1: each part form-encoded, then Basic.
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let user = enc(&cfg.client_id);
            let pass = enc(cfg.client_secret.expose());
            request = request.basic_auth(user, Some(pass));
        }
        ClientAuth::Post => {
            form.push(("client_id", &cfg.client_id));
            form.push(("client_secret", cfg.client_secret.expose()));
        }
    }
    let mut response = request.form(&form).send().await.map_err(|e| {
        format!(
            "cannot reach the token endpoint {origin}: {}",
            e.without_url()
        )
    })?;
    let status = response.status();
    let mut body = Vec::new();
    while body.len() <= MAX_TOKEN_RESPONSE {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                return Err(format!(
                    "the token endpoint {origin} broke off its answer: {}",
                    e.without_url()
                ));
            }
        }
    }
    if body.len() > MAX_TOKEN_RESPONSE {
        return Err(format!(
            "the token endpoint {origin} answered more than {MAX_TOKEN_RESPONSE} bytes"
        ));
    }
    read_token(status.as_u16(), &body).map_err(|e| format!("the token endpoint {origin} {e}"))
}

/// The token and lifetime of a token endpoint's answer, or what is wrong
/// with it (completing "the token endpoint X …").
fn read_token(status: u16, body: &[u8]) -> Result<(Secret, Duration), String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        access_token: Option<String>,
        token_type: Option<String>,
        expires_in: Option<serde_json::Value>,
        error: Option<String>,
    }
    let answer: Option<Answer> = serde_json::from_slice(body).ok();
    if !(200..300).contains(&status) {
        // Only the RFC 6749 §5.2 code: a description may quote the request.
        let code = answer
            .and_then(|a| a.error)
            .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_graphic()))
            .map_or_else(String::new, |c| format!(" ({c})"));
        return Err(format!("answered HTTP {status}{code}"));
    }
    let answer = answer.ok_or("answered 2xx without a JSON token response")?;
    let token = answer
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or("answered without an access_token")?;
    if token.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return Err("answered an access_token that cannot go into a header".into());
    }
    if let Some(kind) = answer.token_type
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(format!(
            "answered token_type {kind:?}; only bearer tokens are supported"
        ));
    }
    // Some servers send the number as a string.
    let seconds = match answer.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let lifetime = seconds
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(DEFAULT_LIFETIME, |s| {
            Duration::from_secs_f64(s.min(86_400.0 * 365.0))
        });
    Ok((Secret::new(token), lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_refreshed_a_tenth_of_its_life_early_at_most_a_minute() {
        assert_eq!(
            refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(3540)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(100)),
            Duration::from_secs(90)
        );
        assert_eq!(
            refresh_after(Duration::from_millis(500)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn token_answers_are_read_strictly() {
        let ok = br#"{"access_token":"abc","token_type":"Bearer","expires_in":"120"}"#;
        let (token, life) = read_token(200, ok).unwrap();
        assert_eq!((token.expose(), life), ("abc", Duration::from_secs(120)));
        let no_expiry = br#"{"access_token":"abc"}"#;
        assert_eq!(read_token(200, no_expiry).unwrap().1, DEFAULT_LIFETIME);
        let cases: [(u16, &[u8], &str); 6] = [
            (
                400,
                br#"{"error":"invalid_client","error_description":"secret s3cr3t"}"#,
                "answered HTTP 400 (invalid_client)",
            ),
            (500, b"<html>oops</html>", "answered HTTP 500"),
            (
                200,
                b"not json",
                "answered 2xx without a JSON token response",
            ),
            (
                200,
                br#"{"token_type":"bearer"}"#,
                "answered without an access_token",
            ),
            (
                200,
                br#"{"access_token":"a b"}"#,
                "answered an access_token that cannot go into a header",
            ),
            (
                200,
                br#"{"access_token":"a","token_type":"mac"}"#,
                "answered token_type \"mac\"; only bearer tokens are supported",
            ),
        ];
        for (status, body, want) in cases {
            assert_eq!(read_token(status, body).unwrap_err(), want);
        }
    }
}
