//! Policy hot reload (issue 9, item 1): by file edit (in place and by
//! rename), by SIGHUP to the real binary, and by the API; invalid files keep
//! the policy in force; every applied reload is audited once.

use std::path::Path;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::crash::Engine;
use crate::support::*;

pub(crate) async fn spawn_watching(db: TestDb, file: &Path, yaml: &str, watch: bool) -> TestApp {
    std::fs::write(file, yaml).expect("write policy");
    let mut config = test_config();
    config.policy_path = file.to_path_buf();
    config.watch_policy = watch;
    TestApp::spawn_with(db, yaml, config).await
}

/// Writes `yaml` to a temporary file beside `file`, then renames it over
/// `file`, as editors do.
fn write_by_rename(file: &Path, yaml: &str) {
    let tmp = file.with_extension("yaml.tmp");
    std::fs::write(&tmp, yaml).expect("write temp");
    std::fs::rename(&tmp, file).expect("rename");
}

async fn policy_status(app: &TestApp) -> Value {
    let (status, body) = app.get("/v1/policy").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn wait_for_outcome(app: &TestApp, outcome: &str, sha_not: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = policy_status(app).await;
        if s["last_reload"]["outcome"] == outcome
            && (outcome == "invalid" || s["sha256"] != sha_not)
        {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload with outcome {outcome}; last status {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

both! {
    async fn edits_to_the_policy_file_are_reloaded_and_bad_ones_refused(db) {
        let (a, b) = (Receiver::start().await, Receiver::start().await);
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("webhooks.yaml");
        let first = policy_yaml(&hook("a", &a.url, "[t.x]", ""));
        let app = spawn_watching(db, &file, &first, true).await;
        let sha0 = policy_status(&app).await["sha256"]
            .as_str()
            .unwrap_or("")
            .to_owned();

        // Write-then-rename: b replaces a.
        write_by_rename(&file, &policy_yaml(&hook("b", &b.url, "[t.x]", "")));
        let s = wait_for_outcome(&app, "applied", &sha0).await;
        let sha1 = s["sha256"].as_str().unwrap_or("").to_owned();
        assert_eq!(s["webhooks"], 1);
        app.post_events(&json!({"id": "after-rename", "topic": "t.x", "payload": 1}))
            .await;
        assert_eq!(
            b.wait_for_count(1).await[0].header("x-aion-event-id"),
            "after-rename"
        );

        // In place, broken: refused, b keeps receiving, the error has its line.
        std::fs::write(&file, "version: 1\nwebhooks:\n  - id: b\n    ulr: x\n").expect("write");
        let s = wait_for_outcome(&app, "invalid", "").await;
        assert_eq!(
            s["sha256"],
            sha1.as_str(),
            "the policy in force is unchanged"
        );
        let errors = s["last_reload"]["errors"].to_string();
        assert!(
            errors.contains(":4:5: webhooks[0].ulr: unknown field"),
            "{errors}"
        );
        let metrics = app
            .http
            .get(format!("{}/metrics", app.base))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text");
        assert!(
            metrics.contains("aion_webhooks_policy_last_reload_successful 0"),
            "{metrics}"
        );
        app.post_events(&json!({"id": "while-broken", "topic": "t.x", "payload": 2}))
            .await;
        b.wait_for_count(2).await;

        // In place, fixed: both webhooks now.
        let both = policy_yaml(&format!(
            "{}{}",
            hook("a", &a.url, "[t.x]", ""),
            hook("b", &b.url, "[t.x]", "")
        ));
        std::fs::write(&file, &both).expect("write");
        let s = wait_for_outcome(&app, "applied", &sha1).await;
        assert_eq!(s["webhooks"], 2);
        app.post_events(&json!({"id": "fixed", "topic": "t.x", "payload": 3}))
            .await;
        b.wait_for_count(3).await;
        assert_eq!(
            a.wait_for_count(1).await[0].header("x-aion-event-id"),
            "fixed"
        );

        let reloads: Vec<(String, String)> = app
            .db
            .all("SELECT actor_id, outcome FROM audit_log WHERE action = 'policy.reload' ORDER BY id")
            .await;
        assert_eq!(
            reloads,
            [
                ("file".to_owned(), "applied".to_owned()),
                ("file".to_owned(), "applied".to_owned())
            ],
            "one audit record per applied reload, none for the refused one"
        );
    }
}

both! {
    async fn the_api_reloads_refuses_with_every_error_and_revokes_keys(db) {
        let rx = Receiver::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("webhooks.yaml");
        let yaml = policy_yaml(&hook("h", &rx.url, "[t.x]", ""));
        let app = spawn_watching(db, &file, &yaml, false).await;
        let reload = |key: &'static str| {
            let app = &app;
            async move { app.post_raw("/v1/policy/reload", key, Vec::new()).await }
        };

        let (status, body) = reload(API_KEY).await;
        assert_eq!(
            (status, &body["outcome"]),
            (StatusCode::OK, &json!("unchanged"))
        );
        let (status, _) = reload(PUBLISHER_KEY).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        std::fs::write(
            &file,
            "version: 1\nwebhooks:\n  - id: Bad!\n    url: nope\n    secret: s\n    topics: [x]\n",
        )
        .expect("write");
        let (status, body) = reload(API_KEY).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "policy_invalid");
        let errors = body["error"]["errors"].as_array().expect("errors").len();
        assert!(errors >= 2, "every problem is listed: {body}");
        assert_eq!(
            app.post_events(&json!({"topic": "t.x", "payload": 1}))
                .await
                .0,
            StatusCode::ACCEPTED,
            "the old policy is still in force"
        );

        // Revoke the publisher-only key and remove the webhook.
        let without_producer = yaml
            .replace("[t.x]", "[other.topic]")
            .split("    - id: producer")
            .next()
            .expect("head")
            .to_owned()
            + "network:\n  allow_private_targets: [127.0.0.0/8]\n";
        std::fs::write(&file, &without_producer).expect("write");
        let (status, body) = reload(API_KEY).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["outcome"], "applied");
        assert_eq!(body["diff"]["changed"], json!(["h"]));
        let (status, _) = app
            .post_raw(
                "/v1/events",
                PUBLISHER_KEY,
                json!({"topic": "t.x", "payload": 2})
                    .to_string()
                    .into_bytes(),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a revoked key is refused at once"
        );
        let audited = app
            .count(
                "SELECT count(*) FROM audit_log WHERE action = 'policy.reload' AND actor_id = 'tester'",
            )
            .await;
        assert_eq!(audited, 1);
    }
}

both_binary! {
    async fn sighup_reloads_the_running_binary(db) {
        let (a, b) = (Receiver::start().await, Receiver::start().await);
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("webhooks.yaml");
        std::fs::write(&file, policy_yaml(&hook("a", &a.url, "[t.x]", ""))).expect("write");
        let mut engine = Engine::spawn(&db.url(), &file, dir.path().join("engine.log"));
        let http = reqwest::Client::new();
        engine.wait_ready(&http).await;
        // The test engines run without the file watcher: only the signal reloads.
        std::fs::write(&file, policy_yaml(&hook("b", &b.url, "[t.x]", ""))).expect("write");
        engine.signal("HUP");
        let post = || async {
            http.post(format!("{}/v1/events", engine.base))
                .bearer_auth(API_KEY)
                .json(&json!({"topic": "t.x", "payload": 1}))
                .send()
                .await
                .expect("post")
                .status()
        };
        wait_for("the reloaded policy to route to b", || async {
            post().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            !b.received().is_empty()
        })
        .await;
        let actors: Vec<(String,)> = db
            .all("SELECT actor_id FROM audit_log WHERE action = 'policy.reload'")
            .await;
        assert_eq!(actors, [("signal".to_owned(),)]);
        engine.kill();
        db.engine_sessions_gone().await;
    }
}

both! {
    async fn reloading_under_load_loses_and_duplicates_nothing(db) {
        let rx = Receiver::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("webhooks.yaml");
        let version = |n: u32| {
            policy_yaml(&hook(
                "h",
                &rx.url,
                "[t.x]",
                &format!("headers: {{ X-Version: v{n} }}"),
            ))
        };
        let app = spawn_watching(db, &file, &version(0), false).await;
        let app = &app;
        let producer = async {
            for i in 0..400 {
                let (status, body) = app
                    .post_events(&json!({"id": format!("e{i}"), "topic": "t.x", "payload": i}))
                    .await;
                assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            }
        };
        let reloader = async {
            for n in 1..=20 {
                std::fs::write(&file, version(n)).expect("write");
                let (status, body) = app.post_raw("/v1/policy/reload", API_KEY, Vec::new()).await;
                assert_eq!(
                    (status, &body["outcome"]),
                    (StatusCode::OK, &json!("applied")),
                    "{body}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        futures::future::join(producer, reloader).await;
        app.drain().await;
        let got = rx.received();
        let mut ids: Vec<&str> = got.iter().map(|r| r.header("x-aion-event-id")).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 400, "every event arrived");
        assert_eq!(got.len(), 400, "none twice");
        app.post_events(&json!({"id": "last", "topic": "t.x", "payload": 0}))
            .await;
        let last = rx.wait_for_count(401).await;
        assert_eq!(
            last[400].header("x-version"),
            "v20",
            "the last policy is in force"
        );
        assert_eq!(
            app.count("SELECT count(*) FROM audit_log WHERE action = 'policy.reload'")
                .await,
            20
        );
    }
}

both! {
    async fn a_webhook_removed_by_reload_keeps_its_deliveries_until_it_returns(db) {
        let rx = Receiver::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("webhooks.yaml");
        let paused = policy_yaml(&hook("h", &rx.url, "[t.x]", "enabled: false"));
        let app = spawn_watching(db, &file, &paused, false).await;
        for i in 0..3 {
            app.post_events(&json!({"topic": "t.x", "payload": i}))
                .await;
        }
        let reload_to = |yaml: String| {
            let (app, file) = (&app, &file);
            async move {
                std::fs::write(file, yaml).expect("write");
                let (status, body) = app.post_raw("/v1/policy/reload", API_KEY, Vec::new()).await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
        };
        reload_to(policy_yaml(&hook("other", &rx.url, "[o.x]", ""))).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            app.count("SELECT count(*) FROM deliveries WHERE webhook_id = 'h' AND state = 'pending'")
                .await,
            3,
            "kept, not sent, not lost"
        );
        assert!(rx.received().is_empty());
        reload_to(policy_yaml(&hook("h", &rx.url, "[t.x]", ""))).await;
        rx.wait_for_count(3).await;
        app.drain().await;
    }
}
