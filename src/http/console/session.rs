//! Console sessions: a random token in an `HttpOnly`, `SameSite=Strict`
//! cookie, kept in this engine's memory with the credential it was opened
//! with. Each request authenticates that credential again against the
//! policy in force, so a key removed from the policy, an expired JWT or a
//! lost `admin` role ends the session at once. Sessions end after
//! `idle` without a request, after `max_age` in all, and on sign-out; a
//! restart ends them all.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "aion_console";

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, however busy.
    pub max_age: Duration,
    /// At most this many sessions at once; signing in beyond ends the
    /// least recently used.
    pub max_sessions: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30 * 60),
            max_age: Duration::from_secs(12 * 3600),
            max_sessions: 1000,
        }
    }
}

/// One signed-in operator.
struct Session {
    /// The API key or JWT given at sign-in, authenticated again on every
    /// request. Never logged, never sent back.
    credential: String,
    /// The token every form of this session carries.
    csrf: String,
    /// A message for the next page (after a form's redirect).
    flash: Option<Flash>,
    opened: Instant,
    seen: Instant,
}

/// A message shown once, on the page a form redirects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

/// What a request's cookie opens.
#[derive(Clone)]
pub struct Opened {
    pub credential: String,
    pub csrf: String,
    pub flash: Option<Flash>,
}

/// Never shows the credential or the CSRF token.
impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").finish_non_exhaustive()
    }
}

/// The sessions of this engine.
pub struct Sessions {
    limits: SessionLimits,
    /// Keyed by the SHA-256 of the token: the map never holds a token, and
    /// a lookup's timing says nothing about one.
    map: Mutex<HashMap<[u8; 32], Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn random_token() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            limits,
            map: Mutex::default(),
        }
    }

    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a session for `credential`; returns its token (the cookie's
    /// value).
    pub fn open(&self, credential: &str, now: Instant) -> String {
        let token = random_token();
        let mut map = self.lock();
        map.retain(|_, s| self.live(s, now));
        while map.len() >= self.limits.max_sessions.max(1) {
            let Some(oldest) = map.iter().min_by_key(|(_, s)| s.seen).map(|(k, _)| *k) else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(
            key(&token),
            Session {
                credential: credential.to_owned(),
                csrf: random_token(),
                flash: None,
                opened: now,
                seen: now,
            },
        );
        token
    }

    fn live(&self, s: &Session, now: Instant) -> bool {
        now.saturating_duration_since(s.seen) < self.limits.idle
            && now.saturating_duration_since(s.opened) < self.limits.max_age
    }

    /// The live session of `token`, marked as used now; its flash message
    /// is taken. An expired session is removed.
    pub fn touch(&self, token: &str, now: Instant) -> Option<Opened> {
        let k = key(token);
        let mut map = self.lock();
        let live = self.live(map.get(&k)?, now);
        if !live {
            map.remove(&k);
            return None;
        }
        let s = map.get_mut(&k)?;
        s.seen = now;
        Some(Opened {
            credential: s.credential.clone(),
            csrf: s.csrf.clone(),
            flash: s.flash.take(),
        })
    }

    /// Leaves `flash` for the session's next page.
    pub fn set_flash(&self, token: &str, flash: Flash) {
        if let Some(s) = self.lock().get_mut(&key(token)) {
            s.flash = Some(flash);
        }
    }

    /// Ends the session of `token` (sign-out, or credentials no longer
    /// valid).
    pub fn close(&self, token: &str) {
        self.lock().remove(&key(token));
    }

    /// How many sessions are open.
    pub fn count(&self) -> usize {
        self.lock().len()
    }
}

/// Whether a form's token is the session's, compared in constant time.
pub fn csrf_matches(expected: &str, given: Option<&str>) -> bool {
    given.is_some_and(|g| {
        g.len() == expected.len() && bool::from(g.as_bytes().ct_eq(expected.as_bytes()))
    })
}

/// The session token from a `Cookie` header.
pub fn token_from(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 64)
}

/// The `Set-Cookie` value for `token` (empty to clear it).
pub fn cookie(token: &str, secure: bool, max_age: Duration) -> String {
    let age = if token.is_empty() {
        0
    } else {
        max_age.as_secs()
    };
    format!(
        "{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={age}{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(idle: u64, max_age: u64, max: usize) -> Sessions {
        Sessions::new(SessionLimits {
            idle: Duration::from_secs(idle),
            max_age: Duration::from_secs(max_age),
            max_sessions: max,
        })
    }

    #[test]
    fn a_session_ends_when_idle_and_at_its_maximum_age() {
        let s = sessions(10, 25, 10);
        let t0 = Instant::now();
        let token = s.open("key", t0);
        assert!(s.touch(&token, t0 + Duration::from_secs(9)).is_some());
        assert!(s.touch(&token, t0 + Duration::from_secs(18)).is_some());
        // Busy, but past its maximum age.
        assert!(s.touch(&token, t0 + Duration::from_secs(26)).is_none());
        let idle = s.open("key", t0);
        assert!(s.touch(&idle, t0 + Duration::from_secs(10)).is_none());
        assert_eq!(s.count(), 0, "expired sessions are removed");
    }

    #[test]
    fn tokens_are_random_and_the_map_holds_none() {
        let s = sessions(10, 10, 10);
        let now = Instant::now();
        let a = s.open("k", now);
        let b = s.open("k", now);
        assert_ne!(a, b);
        assert_eq!(a.len(), 43, "32 random bytes");
        assert!(s.touch("not-a-token", now).is_none());
        let opened = s.touch(&a, now).expect("open");
        assert_ne!(opened.csrf, s.touch(&b, now).expect("open").csrf);
        s.close(&a);
        assert!(s.touch(&a, now).is_none(), "closed");
        assert!(s.touch(&b, now).is_some(), "the other stays");
    }

    #[test]
    fn the_least_recently_used_session_makes_room() {
        let s = sessions(100, 100, 2);
        let t0 = Instant::now();
        let a = s.open("a", t0);
        let b = s.open("b", t0 + Duration::from_secs(1));
        s.touch(&a, t0 + Duration::from_secs(2));
        let c = s.open("c", t0 + Duration::from_secs(3));
        assert!(s.touch(&b, t0 + Duration::from_secs(3)).is_none());
        assert!(s.touch(&a, t0 + Duration::from_secs(3)).is_some());
        assert!(s.touch(&c, t0 + Duration::from_secs(3)).is_some());
    }

    #[test]
    fn a_flash_is_shown_once() {
        let s = sessions(100, 100, 2);
        let now = Instant::now();
        let t = s.open("a", now);
        s.set_flash(
            &t,
            Flash {
                ok: true,
                text: "done".into(),
            },
        );
        assert_eq!(
            s.touch(&t, now).and_then(|o| o.flash).map(|f| f.text),
            Some("done".into())
        );
        assert!(s.touch(&t, now).and_then(|o| o.flash).is_none());
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        assert!(csrf_matches("abc", Some("abc")));
        assert!(!csrf_matches("abc", Some("abd")));
        assert!(!csrf_matches("abc", Some("ab")));
        assert!(!csrf_matches("abc", None));
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_tls() {
        let c = cookie("tok", false, Duration::from_secs(60));
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"));
        assert!(!c.contains("Secure"));
        assert!(cookie("tok", true, Duration::from_secs(60)).ends_with("; Secure"));
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            "cookie",
            "a=b; aion_console=tok; c=d".parse().expect("valid"),
        );
        assert_eq!(token_from(&h).as_deref(), Some("tok"));
    }
}
