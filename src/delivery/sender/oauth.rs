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
use std::future::Future;
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
    token: Option<Token>,
    generation: u64,
    /// Until when a failed fetch answers instead of a new one, and why.
    failure: Option<(Instant, String)>,
}

#[derive(Debug)]
struct Token {
    value: Secret,
    /// When a fetch for a fresh one starts.
    refresh_at: Instant,
    /// When it stops being usable at all.
    expires_at: Instant,
}

impl Tokens {
    /// A token for `cfg` valid now: the cached one, or one from `fetch`
    /// (run only when a token is needed) before `deadline`. The error is
    /// the attempt's `auth` text.
    pub(super) async fn get<F, Fut>(
        &self,
        cfg: &OAuth2,
        deadline: Instant,
        fetch: F,
    ) -> Result<Lease, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Secret, Duration), String>>,
    {
        let slot = self.slot(cfg);
        let origin = url_origin(&cfg.token_url);
        let mut slot = tokio::time::timeout_at(deadline, slot.lock())
            .await
            .map_err(|_| format!("no token from {origin} in time: another send is fetching one"))?;
        let now = Instant::now();
        let usable = |slot: &Slot, now: Instant| {
            slot.token
                .as_ref()
                .filter(|t| now < t.expires_at)
                .map(|t| Lease {
                    token: t.value.clone(),
                    generation: slot.generation,
                })
        };
        if slot.token.as_ref().is_some_and(|t| now < t.refresh_at) {
            return Ok(usable(&slot, now).expect("fresh"));
        }
        if let Some((until, error)) = &slot.failure
            && now < *until
        {
            // While the endpoint fails, a token that has not expired yet
            // still serves.
            return usable(&slot, now).ok_or_else(|| error.clone());
        }
        match tokio::time::timeout_at(deadline, fetch()).await {
            Ok(Ok((value, lifetime))) => {
                slot.generation += 1;
                slot.token = Some(Token {
                    value,
                    refresh_at: now + refresh_after(lifetime),
                    expires_at: now + lifetime,
                });
                slot.failure = None;
                Ok(usable(&slot, now).expect("fresh"))
            }
            Ok(Err(error)) => {
                slot.failure = Some((Instant::now() + FAILURE_HOLD, error.clone()));
                usable(&slot, Instant::now()).ok_or(error)
            }
            // This send ran out of time, which says nothing about the
            // endpoint: nothing is remembered, the next send tries again.
            Err(_) => usable(&slot, Instant::now())
                .ok_or_else(|| format!("the token endpoint {origin} did not answer in time")),
        }
    }

    /// The slot of `cfg`'s client, made on first use.
    fn slot(&self, cfg: &OAuth2) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if !slots.contains_key(&cfg.fingerprint) {
            // Clients gone from the policy (a rotated secret) leave slots
            // whose tokens expire: drop those nobody waits on.
            let now = Instant::now();
            slots.retain(|_, s| {
                Arc::strong_count(s) > 1
                    || s.try_lock()
                        .is_ok_and(|s| s.token.as_ref().is_some_and(|t| t.expires_at > now))
            });
        }
        Arc::clone(slots.entry(cfg.fingerprint).or_default())
    }

    /// Drops the token of `lease` (a receiver refused it); a newer one is
    /// kept. Waits for the slot no longer than `deadline`.
    pub(super) async fn refused(&self, cfg: &OAuth2, lease: &Lease, deadline: Instant) {
        let slot = {
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.get(&cfg.fingerprint).cloned()
        };
        if let Some(slot) = slot
            && let Ok(mut slot) = tokio::time::timeout_at(deadline, slot.lock()).await
            && slot.generation == lease.generation
        {
            slot.token = None;
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
pub(super) async fn fetch(
    cfg: &OAuth2,
    client: &reqwest::Client,
) -> Result<(Secret, Duration), String> {
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
mod tests;
