//! The token cache on paused time, with a fetch that counts its calls:
//! single flight, the failure hold, a send out of time, a late refusal;
//! and how strictly a token endpoint's answer is read.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

#[test]
fn a_token_is_refreshed_a_tenth_of_its_life_early_at_most_a_minute() {
    let after = refresh_after;
    assert_eq!(after(Duration::from_secs(3600)), Duration::from_secs(3540));
    assert_eq!(after(Duration::from_secs(100)), Duration::from_secs(90));
    assert_eq!(after(Duration::from_millis(500)), Duration::from_secs(1));
}

/// One client's cache and a token endpoint that counts its calls, answers
/// after 20 ms, and issues `tok-1`, `tok-2`, … (by call).
struct Endpoint {
    tokens: Tokens,
    calls: AtomicUsize,
    cfg: OAuth2,
}

impl Endpoint {
    fn new() -> Self {
        Self {
            tokens: Tokens::default(),
            calls: AtomicUsize::new(0),
            cfg: OAuth2 {
                token_url: "https://auth.example.com/token".parse().unwrap(),
                client_id: "aion".into(),
                client_secret: Secret::new("s"),
                scopes: Vec::new(),
                audience: None,
                client_auth: ClientAuth::Basic,
                fingerprint: [7; 32],
            },
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// A token before `deadline`, a fetch answering `answer` if one is
    /// needed: a token of that life, or that error.
    async fn get(
        &self,
        deadline: Instant,
        answer: Result<Duration, &'static str>,
    ) -> Result<Lease, String> {
        let fetch = || {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                answer
                    .map(|life| (Secret::new(format!("tok-{n}")), life))
                    .map_err(str::to_owned)
            }
        };
        self.tokens.get(&self.cfg, deadline, fetch).await
    }

    /// The token text of a get that must succeed.
    async fn token(&self, answer: Result<Duration, &'static str>) -> String {
        self.get(far(), answer)
            .await
            .unwrap()
            .token
            .expose()
            .to_owned()
    }
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

const MINUTE: Result<Duration, &str> = Ok(Duration::from_secs(60));

#[tokio::test(start_paused = true)]
async fn concurrent_sends_share_one_fetch() {
    let e = Endpoint::new();
    let leases = futures::future::join_all((0..50).map(|_| e.token(MINUTE))).await;
    assert!(leases.iter().all(|t| t == "tok-1"));
    assert_eq!(e.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failure_answers_for_its_hold_and_a_valid_token_outlives_it() {
    let e = Endpoint::new();
    let life = Ok(Duration::from_secs(100));
    e.token(life).await;
    // Past the refresh point (90 s), before expiry: the endpoint fails,
    // the old token still serves, and the failure is held.
    tokio::time::advance(Duration::from_secs(91)).await;
    assert_eq!(e.token(Err("down")).await, "tok-1");
    assert_eq!(e.token(Err("down")).await, "tok-1");
    assert_eq!(
        e.calls(),
        2,
        "the second send within the hold did not fetch"
    );
    // Expired, still failing: the error, once per hold.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(e.get(far(), Err("down")).await.unwrap_err(), "down");
    assert_eq!(e.get(far(), Err("down")).await.unwrap_err(), "down");
    assert_eq!(e.calls(), 3);
    tokio::time::advance(FAILURE_HOLD).await;
    assert_eq!(e.token(life).await, "tok-4");
}

#[tokio::test(start_paused = true)]
async fn a_send_out_of_time_does_not_fail_the_next() {
    let e = Endpoint::new();
    let soon = Instant::now() + Duration::from_millis(5);
    let err = e.get(soon, MINUTE).await;
    assert!(err.unwrap_err().contains("did not answer in time"));
    assert_eq!(e.token(MINUTE).await, "tok-2");
}

#[tokio::test(start_paused = true)]
async fn a_refused_token_is_dropped_once() {
    let e = Endpoint::new();
    let first = e.get(far(), MINUTE).await.unwrap();
    e.tokens.refused(&e.cfg, &first, far()).await;
    assert_eq!(e.token(MINUTE).await, "tok-2");
    // A late refusal of the first token keeps the second.
    e.tokens.refused(&e.cfg, &first, far()).await;
    assert_eq!(e.token(MINUTE).await, "tok-2");
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
