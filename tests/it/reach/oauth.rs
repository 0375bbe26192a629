//! OAuth2 client credentials (issue 30, item 3), against a token endpoint
//! written for the test: one fetch serves 200 concurrent deliveries, a
//! token is fetched again only when it nears expiry or a receiver answers
//! `401` (once), and a failing endpoint is the attempt's error kind `auth`.

use std::sync::Arc;
use std::time::Duration;

use super::peers::{Server, TokenEndpoint, TokenMode};
use super::{error_kinds, post, wait_state};
use crate::support::*;

/// `oauth2:` for the test endpoint, client `aion` with secret `s3cret-value`.
fn oauth_yaml(endpoint: &TokenEndpoint, extra: &str) -> String {
    format!(
        "oauth2: {{ token_url: \"{}\", client_id: aion, client_secret: s3cret-value, scopes: [hooks.write, read], audience: partner{extra} }}",
        endpoint.url
    )
}

/// A receiver that takes only `Bearer <one of tokens>`.
async fn taking(tokens: &'static [&'static str]) -> Server {
    Server::http(Arc::new(move |auth| {
        let ok = auth.is_some_and(|a| tokens.iter().any(|t| a == format!("Bearer {t}")));
        if ok { 200 } else { 401 }
    }))
    .await
}

both! {
    async fn one_token_fetch_serves_200_concurrent_deliveries(db) {
        let endpoint = TokenEndpoint::start("aion", "s3cret-value").await;
        let rx = taking(&["tok-1"]).await;
        let hooks = hook(
            "h",
            &rx.url,
            "[t.x]",
            &format!("{}\ninitial_in_flight: 200\nmax_in_flight: 200", oauth_yaml(&endpoint, "")),
        );
        let app = TestApp::spawn(db, &policy_yaml(&hooks)).await;
        post(&app, "c", 200).await;
        wait_state(&app, "h", "succeeded", 200).await;
        assert_eq!(endpoint.fetches(), 1, "one token for every send");
        let form = endpoint.forms.lock().unwrap()[0].clone();
        for part in ["grant_type=client_credentials", "scope=hooks.write+read", "audience=partner"] {
            assert!(form.contains(part), "{form}");
        }
        assert!(!form.contains("s3cret"), "the secret goes in Basic, not the form: {form}");
        assert_eq!(app.count("SELECT count(*) FROM delivery_attempts").await, 200);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_token_is_fetched_again_only_as_it_nears_expiry() {
    let endpoint = TokenEndpoint::start("aion", "s3cret-value").await;
    *endpoint.mode.lock().unwrap() = TokenMode::Issue(Duration::from_millis(1500));
    let rx = taking(&["tok-1", "tok-2", "tok-3"]).await;
    let hooks = hook(
        "h",
        &rx.url,
        "[t.x]",
        &oauth_yaml(&endpoint, ", client_auth: basic"),
    );
    let app = TestApp::spawn(TestDb::sqlite().await, &policy_yaml(&hooks)).await;
    post(&app, "a", 5).await;
    wait_state(&app, "h", "succeeded", 5).await;
    assert_eq!(endpoint.fetches(), 1);
    // Past the refresh point (a tenth of the life before expiry).
    tokio::time::sleep(Duration::from_millis(1600)).await;
    post(&app, "b", 5).await;
    wait_state(&app, "h", "succeeded", 10).await;
    assert_eq!(endpoint.fetches(), 2, "one fetch per expiry");
    app.stop().await;
}

both! {
    async fn a_401_refreshes_the_token_once_then_counts_as_the_answer(db) {
        let endpoint = TokenEndpoint::start("aion", "s3cret-value").await;
        // Takes the second token only: the first send gets 401, the engine
        // fetches tok-2 and sends again within the same attempt.
        let rx = taking(&["tok-2"]).await;
        let never = taking(&[]).await;
        let hooks = [
            hook("h", &rx.url, "[t.x]", &oauth_yaml(&endpoint, "")),
            hook("never", &never.url, "[t.y]", &format!("{}\nretry: {{ max_attempts: 1 }}", oauth_yaml(&endpoint, ""))),
        ]
        .concat();
        let app = TestApp::spawn(db, &policy_yaml(&hooks)).await;
        post(&app, "r", 1).await;
        wait_state(&app, "h", "succeeded", 1).await;
        assert_eq!(error_kinds(&app, "h").await, [None], "one attempt, succeeded");
        assert_eq!(endpoint.fetches(), 2);
        let seen: Vec<_> = rx.seen().into_iter().map(|s| s.authorization.unwrap()).collect();
        assert_eq!(seen, ["Bearer tok-1", "Bearer tok-2"]);

        // A receiver refusing every token: one refresh, then the 401 is the
        // attempt's answer — no loop.
        let (status, body) = app.post_events(&serde_json::json!({"id": "n", "topic": "t.y", "payload": 1})).await;
        assert_eq!(status, 202, "{body}");
        wait_state(&app, "never", "dead", 1).await;
        assert_eq!(never.seen().len(), 2);
        assert_eq!(error_kinds(&app, "never").await, [Some("http_status".to_owned())]);
        assert_eq!(endpoint.fetches(), 3);
        app.stop().await;
    }
}

both! {
    async fn a_failing_token_endpoint_is_the_auth_error_kind(db) {
        let endpoint = TokenEndpoint::start("aion", "s3cret-value").await;
        *endpoint.mode.lock().unwrap() = TokenMode::Fail(503);
        let wrong_secret = TokenEndpoint::start("aion", "another-secret").await;
        let rx = taking(&["tok-1"]).await;
        let hooks = [
            hook("down", &rx.url, "[t.x]", &format!("{}\nretry: {{ max_attempts: 1 }}", oauth_yaml(&endpoint, ""))),
            hook("refused", &rx.url, "[t.x]", &format!("{}\nretry: {{ max_attempts: 1 }}", oauth_yaml(&wrong_secret, ""))),
        ]
        .concat();
        let app = TestApp::spawn(db, &policy_yaml(&hooks)).await;
        post(&app, "f", 20).await;
        wait_state(&app, "down", "dead", 20).await;
        wait_state(&app, "refused", "dead", 20).await;
        assert!(rx.seen().is_empty(), "nothing is sent without a token");
        for hook in ["down", "refused"] {
            let kinds = error_kinds(&app, hook).await;
            assert!(kinds.iter().all(|k| k.as_deref() == Some("auth")), "{hook}: {kinds:?}");
        }
        // A failed fetch answers for the whole batch, not one fetch per send.
        assert!(endpoint.fetches() < 5, "{} fetches", endpoint.fetches());
        let error: (Option<String>,) = app
            .db
            .one("SELECT a.error FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = 'refused' LIMIT 1")
            .await;
        let error = error.0.unwrap();
        assert!(error.contains("HTTP 401 (invalid_client)"), "{error}");
        assert!(!error.contains("s3cret") && !error.contains("another-secret"), "{error}");
        let (_, list) = app.get("/v1/webhooks").await;
        let down = list["data"].as_array().unwrap().iter().find(|w| w["id"] == "down").unwrap().clone();
        assert_eq!(down["last_error_kind"], "auth");
        let metrics = app.meters.engine.render();
        let line = metrics
            .lines()
            .find(|l| l.starts_with("aion_webhooks_attempt_errors_total{") && l.contains("webhook=\"down\"") && l.contains("kind=\"auth\""))
            .unwrap_or_else(|| panic!("{metrics}"));
        assert!(line.ends_with(" 20"), "{line}");
        app.stop().await;
    }
}
