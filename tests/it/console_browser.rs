//! The console in a real browser (issue 28, item 4), on both stores:
//! `tests/console/e2e.py` drives Debian's Chromium with Playwright (PyPI;
//! `scripts/test` installs both) through sign-in, a dead delivery and its
//! attempts, replay, bulk replay, disable/enable, a reload error, a
//! `<script>` payload, a publisher key, a cross-site form and sign-out.
//! Screenshots of every page land in `target/tmp/console-screenshots/`.

use std::process::Command;

use serde_json::{Value, json};

use crate::support::*;

/// Where Chromium is: `AION_CHROMIUM`, else Debian's.
fn chromium() -> String {
    std::env::var("AION_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn playwright_ready() {
    let found = Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "Playwright for Python is needed: pip install playwright (scripts/test installs it)"
    );
    assert!(
        std::path::Path::new(&chromium()).exists(),
        "Chromium is needed at {}: apt-get install chromium (scripts/test installs it)",
        chromium()
    );
}

both! {
    async fn an_operator_works_through_the_console_in_a_real_browser(db) {
        playwright_ready();
        let store = if matches!(db, TestDb::Postgres(_)) { "postgres" } else { "sqlite" };
        let rx = Receiver::start().await;
        let other = Receiver::start().await;
        // The first three attempts fail: three dead deliveries to replay.
        rx.script((0..3).map(|_| Reply::status(500)));
        let once = "retry: { initial_interval: 10ms, max_interval: 10ms, max_attempts: 1 }";
        let yaml = policy_yaml(&format!(
            "{}{}",
            hook("h", &rx.url, "[orders.*]", once),
            hook("other", &other.url, "[other.*]", "")
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("webhooks.yaml");
        std::fs::write(&file, &yaml).expect("write policy");
        let mut config = test_config();
        config.policy_path = file.clone();
        let app = TestApp::spawn_with(db, &yaml, config).await;
        let batch = json!([
            {"topic": "orders.created", "id": "evt-1", "payload": {"n": 1}},
            {"topic": "orders.created", "id": "evt-2", "payload": {"n": 2}},
            {"topic": "orders.created", "id": "evt-script",
             "payload": {"note": "<script>window.__pwned=1</script>"}},
        ]);
        assert_eq!(app.post_events(&batch).await.0, axum::http::StatusCode::ACCEPTED);
        rx.wait_for_count(3).await;
        app.drain().await;
        assert_eq!(app.count("SELECT count(*) FROM deliveries WHERE state = 'dead'").await, 3);

        let shots = format!("{}/console-screenshots/{store}", env!("CARGO_TARGET_TMPDIR"));
        let mut cmd = Command::new("python3");
        cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console/e2e.py"))
            .args(["--base", &app.base, "--admin-key", API_KEY])
            .args(["--publisher-key", PUBLISHER_KEY, "--shots", &shots])
            .args(["--chromium", &chromium()])
            .arg("--policy-file")
            .arg(&file);
        let (passed, said) = run_tool(cmd).await;
        assert!(passed, "the browser test failed:\n{said}");
        assert!(said.contains("all console steps passed"), "{said}");

        // What the browser did reached the receiver and the audit log.
        let received = rx.wait_for_count(6).await;
        assert_eq!(received.len(), 6, "3 failed + 1 replayed + 2 bulk-replayed");
        assert!(other.received().is_empty(), "the cross-site post disabled nothing, sent nothing");
        let (_, hooks) = app.get("/v1/webhooks").await;
        let states: Vec<&Value> = hooks["data"].as_array().expect("list").iter().map(|w| &w["state"]).collect();
        assert_eq!(states, [&json!("active"), &json!("active")]);
        for action in ["console_sign_in", "replay_delivery", "bulk_replay", "disable_webhook", "enable_webhook", "console_sign_out"] {
            let n = app.count(&format!(
                "SELECT count(*) FROM audit_log WHERE actor_id = 'tester' AND action = '{action}' AND outcome = 'applied'"
            )).await;
            assert_eq!(n, 1, "{action} audited once, by the signed-in actor");
        }
        assert_eq!(app.count(
            "SELECT count(*) FROM audit_log WHERE actor_id = 'producer' AND action = 'console_sign_in' AND outcome = 'denied'"
        ).await, 1);
        for page in ["login", "overview", "dead-letters", "delivery-dead", "delivery-succeeded", "deliveries",
                     "webhooks", "event", "policy", "policy-reload-error", "sources", "audit", "cross-site-refused"] {
            assert!(std::path::Path::new(&format!("{shots}/{page}.png")).exists(), "screenshot {page}");
        }
        app.stop().await;
    }
}
