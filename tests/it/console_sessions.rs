//! Console sessions end (issue 28, item 3; contract §11), on both stores:
//! when idle, when their key leaves the policy, when their JWT expires, on
//! a new sign-in from the same browser, and on sign-out (in `console.rs`).

use std::time::Duration;

use serde_json::json;

use crate::console::{audit_count, get, location, post, sign_in, sign_in_with};
use crate::support::*;

both! {
    async fn sessions_end_when_idle_when_the_key_goes_and_on_sign_out(db) {
        let mut config = test_config();
        config.console.sessions.idle = Duration::from_millis(800);
        let yaml = policy_yaml("  []");
        let app = TestApp::spawn_with(db, &yaml, config).await;
        let cookie = sign_in(&app.base, API_KEY).await;
        assert_eq!(get(&app.base, &cookie, "/console").await.status, 200);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        // A form of an ended session: sign in again, then to the overview
        // (a form's target cannot be opened with a GET).
        let form = post(&app.base, &cookie, "/console/policy/reload", &[("csrf", "x")], &[("sec-fetch-site", "same-origin")]).await;
        assert_eq!((form.status, location(&form)), (303, "/console/login?next=%2Fconsole"));
        assert_eq!(get(&app.base, &cookie, "/console").await.status, 303, "idle too long");

        // Signing in again from a browser with a session ends that session.
        let first = sign_in(&app.base, API_KEY).await;
        let (again, second) = sign_in_with(&app.base, API_KEY, &[("cookie", &first)]).await;
        assert_eq!(again.status, 303);
        assert_eq!(get(&app.base, &first, "/console").await.status, 303, "the old session ended");
        assert_eq!(get(&app.base, &second.expect("cookie"), "/console").await.status, 200);

        // The key leaves the policy (a reload): its session ends at once.
        let cookie = sign_in(&app.base, API_KEY).await;
        assert_eq!(get(&app.base, &cookie, "/console").await.status, 200);
        app.set_policy(&yaml.replace(&sha256_hex(API_KEY), &sha256_hex("another-key")));
        assert_eq!(get(&app.base, &cookie, "/console").await.status, 303, "key removed");
        app.set_policy(&yaml);
        assert_eq!(get(&app.base, &cookie, "/console").await.status, 303, "and stays ended");
        app.stop().await;
    }
}

both! {
    async fn a_jwt_signs_in_as_its_subject_and_its_expiry_ends_the_session(db) {
        use crate::inbound::{JWT_SECRET, jwt};
        let jwt_auth = format!(
            "  jwt:\n    issuer: https://id.example.com\n    audience: aion-webhooks\n    hs256_secret: {JWT_SECRET}\nnetwork:\n"
        );
        let app = TestApp::spawn(db, &policy_yaml("  []").replace("network:\n", &jwt_auth)).await;
        let now = chrono::Utc::now().timestamp();
        let claims = |roles: &[&str], exp: i64| json!({
            "iss": "https://id.example.com", "aud": "aion-webhooks", "sub": "alice",
            "exp": exp, "roles": roles,
        });
        let (a, cookie) = sign_in_with(&app.base, &jwt(claims(&["publisher"], now + 300), JWT_SECRET), &[]).await;
        assert_eq!(a.status, 403);
        assert!(cookie.is_none());
        // Valid for about 2 s more (the engine allows 30 s of clock skew).
        let token = jwt(claims(&["admin"], now - 28), JWT_SECRET);
        let cookie = sign_in(&app.base, &token).await;
        let page = get(&app.base, &cookie, "/console").await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("data-testid=\"actor\">alice<"));
        assert_eq!(audit_count(&app, "alice", "console_sign_in", "applied").await, 1);
        assert_eq!(audit_count(&app, "alice", "console_sign_in", "denied").await, 1);
        tokio::time::sleep(Duration::from_millis(3200)).await;
        assert_eq!(get(&app.base, &cookie, "/console").await.status, 303, "the JWT expired");
        app.stop().await;
    }
}
