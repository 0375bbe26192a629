//! The web console over HTTP (issue 28, item 3; contract §11), on both
//! stores: sign-in and its cookie, a publisher refused, forms that need the
//! session's token and this origin, escaping of outside text, sessions that
//! end (in `console_sessions.rs`), keyset pages, audits naming the
//! signed-in actor. The same flows in a real browser are in
//! `console_browser.rs`.

use std::time::Duration;

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::support::*;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

async fn answer(r: reqwest::Response) -> Answer {
    Answer {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap_or_default(),
    }
}

/// Signs in with `key` (extra headers given); the answer and the cookie.
pub(crate) async fn sign_in_with(
    base: &str,
    key: &str,
    extra: &[(&str, &str)],
) -> (Answer, Option<String>) {
    let mut req = client()
        .post(format!("{base}/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "same-origin");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let body = serde_urlencoded::to_string([("credential", key), ("next", "/console/dead")])
        .expect("form");
    let a = answer(req.body(body).send().await.expect("sign in")).await;
    let cookie = a
        .headers
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    (a, cookie)
}

pub(crate) async fn sign_in(base: &str, key: &str) -> String {
    let (a, cookie) = sign_in_with(base, key, &[]).await;
    assert_eq!(a.status, 303, "signed in: {}", a.body);
    cookie.expect("a session cookie")
}

pub(crate) async fn get(base: &str, cookie: &str, path: &str) -> Answer {
    answer(
        client()
            .get(format!("{base}{path}"))
            .header("cookie", cookie)
            .send()
            .await
            .expect("get"),
    )
    .await
}

/// Posts a form with the session's cookie and the given headers.
pub(crate) async fn post(
    base: &str,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = client()
        .post(format!("{base}{path}"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = serde_urlencoded::to_string(form).expect("form");
    answer(req.body(body).send().await.expect("post")).await
}

/// The CSRF token in a page's forms.
fn csrf(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a token")
        + 19;
    html[at..].split('"').next().expect("token").to_owned()
}

/// `text` as the templates escape it.
fn html(text: &str) -> String {
    text.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

pub(crate) fn location(a: &Answer) -> &str {
    a.headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

pub(crate) async fn audit_count(app: &TestApp, actor: &str, action: &str, outcome: &str) -> i64 {
    app.count(&format!(
        "SELECT count(*) FROM audit_log WHERE actor_id = '{actor}' AND action = '{action}' AND outcome = '{outcome}'"
    ))
    .await
}

both! {
    async fn an_admin_signs_in_and_every_page_renders_under_a_strict_policy(db) {
        let rx = Receiver::start().await;
        let app = TestApp::spawn(db, &policy_yaml(&hook("h", &rx.url, "[\"**\"]", ""))).await;
        app.post_events(&json!({"topic": "a.b", "id": "evt-1", "payload": {"n": 1}})).await;
        rx.wait_for_count(1).await;
        app.drain().await;

        // Not signed in: to the sign-in page, and back afterwards.
        let a = get(&app.base, "", "/console/dead?webhook=h").await;
        assert_eq!(a.status, 303);
        assert_eq!(location(&a), "/console/login?next=%2Fconsole%2Fdead%3Fwebhook%3Dh");
        let login = get(&app.base, "", "/console/login?next=https://evil.example/").await;
        assert_eq!(login.status, 200);
        assert!(login.body.contains("name=\"next\" value=\"/console\""), "no open redirect");

        let (a, cookie) = sign_in_with(&app.base, API_KEY, &[]).await;
        assert_eq!((a.status, location(&a)), (303, "/console/dead"));
        let set = a.headers.get(SET_COOKIE).and_then(|v| v.to_str().ok()).expect("cookie");
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/console"), "{set}");
        assert!(!set.contains("Secure"), "plain HTTP: {set}");
        assert!(!set.contains(API_KEY), "the key is not the cookie");
        let (tls, _) = sign_in_with(&app.base, API_KEY, &[("x-forwarded-proto", "https")]).await;
        let set = tls.headers.get(SET_COOKIE).and_then(|v| v.to_str().ok()).expect("cookie");
        assert!(set.ends_with("; Secure"), "behind TLS: {set}");
        assert_eq!(audit_count(&app, "tester", "console_sign_in", "applied").await, 2);

        let cookie = cookie.expect("cookie");
        let (_, page) = app.get("/v1/deliveries").await;
        let delivery = page["data"][0]["id"].as_str().expect("a delivery").to_owned();
        for path in [
            "/console", "/console/webhooks", "/console/deliveries", "/console/dead",
            "/console/sources", "/console/policy", "/console/audit",
            &format!("/console/deliveries/{delivery}"), "/console/events/evt-1",
        ] {
            let a = get(&app.base, &cookie, path).await;
            assert_eq!(a.status, 200, "{path}: {}", a.body);
            assert_eq!(a.headers.get("content-security-policy").and_then(|v| v.to_str().ok()), Some(CSP), "{path}");
            assert_eq!(a.headers.get("x-frame-options").and_then(|v| v.to_str().ok()), Some("DENY"));
            assert_eq!(a.headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
            assert!(a.body.contains("data-testid=\"actor\">tester<"), "{path} names the actor");
            assert!(!a.body.contains("<script>") && !a.body.contains(" onclick="), "{path}: no inline script");
        }
        let unknown = get(&app.base, &cookie, "/console/deliveries/dlv_00000000000000000000000000000000").await;
        assert_eq!(unknown.status, 404);
        assert!(unknown.body.contains("no delivery"), "{}", unknown.body);
        let css = get(&app.base, "", "/console/static/console.css").await;
        assert_eq!(css.status, 200);
        assert!(css.headers.get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"text/css")));
        app.stop().await;
    }
}

both! {
    async fn a_publisher_key_cannot_sign_in_and_the_refusal_is_audited(db) {
        let app = TestApp::spawn(db, &policy_yaml("  []")).await;
        let (a, cookie) = sign_in_with(&app.base, PUBLISHER_KEY, &[]).await;
        assert_eq!(a.status, 403);
        assert!(cookie.is_none(), "no session");
        assert!(a.body.contains("producer cannot sign in: the console needs role admin"), "{}", a.body);
        assert_eq!(audit_count(&app, "producer", "console_sign_in", "denied").await, 1);
        let (bad, cookie) = sign_in_with(&app.base, "no-such-key", &[]).await;
        assert_eq!(bad.status, 401);
        assert!(cookie.is_none());
        assert!(!bad.body.contains("no-such-key"), "the credential is not echoed");
        // A made-up cookie opens nothing.
        let a = get(&app.base, "aion_console=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "/console").await;
        assert_eq!(a.status, 303);
        app.stop().await;
    }
}

both! {
    async fn forms_need_this_sessions_token_and_this_origin_and_are_audited(db) {
        let rx = Receiver::start().await;
        let app = TestApp::spawn(db, &policy_yaml(&hook("h", &rx.url, "[\"**\"]", ""))).await;
        let cookie = sign_in(&app.base, API_KEY).await;
        let page = get(&app.base, &cookie, "/console/webhooks").await;
        let token = csrf(&page.body);
        let same = [("sec-fetch-site", "same-origin")];
        let path = "/console/webhooks/h/disable";
        let state = || async { app.get("/v1/webhooks").await.1["data"][0]["state"].as_str().map(str::to_owned) };

        // Refused: no token, a wrong token, another site, another origin.
        for (form, headers) in [
            (vec![("note", "x")], same.to_vec()),
            (vec![("note", "x"), ("csrf", "wrong")], same.to_vec()),
            (vec![("note", "x"), ("csrf", token.as_str())], vec![("sec-fetch-site", "cross-site")]),
            (vec![("note", "x"), ("csrf", token.as_str())], vec![("sec-fetch-site", "same-site")]),
            (vec![("note", "x"), ("csrf", token.as_str())], vec![("origin", "http://evil.example")]),
        ] {
            let a = post(&app.base, &cookie, path, &form, &headers).await;
            assert_eq!(a.status, 403, "{form:?} {headers:?}");
            assert_eq!(state().await.as_deref(), Some("active"), "nothing changed");
        }
        // A note is required; then the change is made, audited and shown.
        let a = post(&app.base, &cookie, path, &[("note", " "), ("csrf", &token)], &same).await;
        assert_eq!(a.status, 303);
        assert_eq!(state().await.as_deref(), Some("active"));
        let a = post(&app.base, &cookie, path, &[("note", "receiver migrating <b>"), ("csrf", &token)], &same).await;
        assert_eq!((a.status, location(&a)), (303, "/console/webhooks"));
        let (_, list) = app.get("/v1/webhooks").await;
        assert_eq!(list["data"][0]["state"], "disabled");
        assert_eq!(list["data"][0]["state_note"], "receiver migrating <b>");
        let page = get(&app.base, &cookie, "/console/webhooks").await;
        assert!(page.body.contains("Webhook h disabled."), "flash shown");
        assert!(page.body.contains(&html("receiver migrating <b>")), "note escaped");
        let again = get(&app.base, &cookie, "/console/webhooks").await;
        assert!(!again.body.contains("Webhook h disabled."), "a flash is shown once");
        assert_eq!(audit_count(&app, "tester", "disable_webhook", "applied").await, 1);
        let request_ids = app.count("SELECT count(*) FROM audit_log WHERE action = 'disable_webhook' AND request_id IS NOT NULL").await;
        assert_eq!(request_ids, 1, "the audit names the request");
        let a = post(&app.base, &cookie, "/console/webhooks/h/enable", &[("csrf", &token)], &[("origin", &app.base), ("host", app.base.trim_start_matches("http://"))]).await;
        assert_eq!(a.status, 303);
        assert_eq!(state().await.as_deref(), Some("active"));
        assert_eq!(audit_count(&app, "tester", "enable_webhook", "applied").await, 1);

        // Reload: audited by the policy's own record; sign-out ends the session.
        let a = post(&app.base, &cookie, "/console/policy/reload", &[("csrf", &token)], &same).await;
        assert_eq!((a.status, location(&a)), (303, "/console/policy"));
        let a = post(&app.base, &cookie, "/console/logout", &[("csrf", &token)], &same).await;
        assert_eq!((a.status, location(&a)), (303, "/console/login"));
        assert!(a.headers.get(SET_COOKIE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("Max-Age=0")));
        assert_eq!(get(&app.base, &cookie, "/console").await.status, 303, "signed out");
        assert_eq!(audit_count(&app, "tester", "console_sign_out", "applied").await, 1);
        app.stop().await;
    }
}

both! {
    async fn outside_text_is_shown_as_text(db) {
        let url = fixed_receiver(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            b"<img src=x onerror=alert(1)><script>alert(2)</script>",
            Duration::ZERO,
        )
        .await;
        let once = "retry: { initial_interval: 10ms, max_interval: 10ms, max_attempts: 1 }";
        let app = TestApp::spawn(db, &policy_yaml(&hook("h", &url, "[a.b]", once))).await;
        let hostile = "<script>alert(3)</script>";
        let (status, said) = app.post_events(&json!({
            "topic": "a.b", "id": "evt-x1", "payload": {"note": hostile}, "key": "\"><svg onload=alert(4)><i>"
        })).await;
        // A payload is shown as the producer wrote it: key order, a number
        // beyond 64 bits, `1.10`.
        let exact = br#"{"topic": "a.b", "id": "evt-x2", "payload": {"z": 1.10, "a": 18446744073709551617, "b": "again"}}"#;
        assert_eq!(app.post_raw("/v1/events", API_KEY, exact.to_vec()).await.0, axum::http::StatusCode::ACCEPTED);
        assert_eq!(status, axum::http::StatusCode::ACCEPTED, "{said}");
        app.drain().await;
        let cookie = sign_in(&app.base, API_KEY).await;
        let (_, page) = app.get("/v1/deliveries").await;
        let delivery = page["data"][0]["id"].as_str().expect("a delivery").to_owned();
        for path in [
            format!("/console/deliveries/{delivery}"),
            "/console/events/evt-x1".to_owned(),
            "/console/dead".to_owned(),
            "/console/deliveries?event_id=evt-x1".to_owned(),
        ] {
            let a = get(&app.base, &cookie, &path).await;
            assert_eq!(a.status, 200, "{path}");
            for raw in ["<script>alert", "<img src=x", "<svg", "<i>"] {
                assert!(!a.body.contains(raw), "{path} holds {raw:?} unescaped");
            }
        }
        let detail = get(&app.base, &cookie, &format!("/console/deliveries/{delivery}")).await;
        assert!(detail.body.contains(&html("<img src=x onerror=alert(1)>")), "the response excerpt, escaped: {}", detail.body);
        let exact = get(&app.base, &cookie, "/console/events/evt-x2").await;
        let shown = html("{\n  \"z\": 1.10,\n  \"a\": 18446744073709551617,\n  \"b\": \"again\"\n}");
        assert!(exact.body.contains(&shown), "{}", exact.body);
        let event = get(&app.base, &cookie, "/console/events/evt-x1").await;
        assert!(event.body.contains(&html("<script>alert(3)</script>")), "the payload, escaped");
        app.stop().await;
    }
}

both! {
    async fn pages_are_keyset_pages_and_filters_narrow_them(db) {
        let rx = Receiver::start().await;
        let app = TestApp::spawn(db, &policy_yaml(&hook("h", &rx.url, "[a.b]", ""))).await;
        let batch: Vec<_> = (0..120).map(|i| json!({"topic": "a.b", "payload": i})).collect();
        app.post_events(&serde_json::Value::Array(batch)).await;
        app.drain().await;
        let cookie = sign_in(&app.base, API_KEY).await;
        let mut seen = std::collections::HashSet::new();
        let mut path = "/console/deliveries?webhook=h".to_owned();
        let mut pages = 0;
        loop {
            let a = get(&app.base, &cookie, &path).await;
            assert_eq!(a.status, 200, "{path}: {}", a.body);
            pages += 1;
            for row in a.body.split("data-delivery=\"").skip(1) {
                assert!(seen.insert(row.split('"').next().expect("id").to_owned()), "each row once");
            }
            match a.body.split("rel=\"next\" data-testid=\"next\" href=\"").nth(1) {
                Some(rest) => path = rest.split('"').next().expect("href").replace("&#38;", "&").replace("&amp;", "&"),
                None => break,
            }
        }
        assert_eq!((seen.len(), pages), (120, 3));
        // A time range in the future, or a state nothing is in: empty.
        let future = get(&app.base, &cookie, "/console/deliveries?since=2999-01-01T00%3A00").await;
        assert!(future.body.contains("Nothing matches."), "{}", future.body);
        let bad = get(&app.base, &cookie, "/console/deliveries?since=yesterday").await;
        assert_eq!(bad.status, 400);
        assert!(bad.body.contains("since"), "names the field");
        let audit = get(&app.base, &cookie, "/console/audit?action=console_sign_in").await;
        assert!(audit.body.contains("console_sign_in"));
        let none = get(&app.base, &cookie, "/console/audit?actor=nobody").await;
        assert!(none.body.contains("No records match."));
        // U+0000 in a filter matches nothing, and is no 5xx (PostgreSQL text
        // cannot hold it; found by Schemathesis on GET /v1/audit).
        for path in ["/v1/audit?action=%00", "/v1/audit?actor=a%00b", "/v1/deliveries?webhook=%00&topic=%00&event_id=%00"] {
            let (status, body) = app.get(path).await;
            assert_eq!(status, axum::http::StatusCode::OK, "{path}: {body}");
            assert_eq!(body["data"], json!([]), "{path}");
        }
        app.stop().await;
    }
}
