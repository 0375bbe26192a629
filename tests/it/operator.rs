//! The operator commands against a running engine (issue 9, item 7): tables
//! by default, JSON with --json, the API's error and exit 1 on failure.

use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::support::*;

pub(crate) async fn cli(base: &str, key: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aion-webhooks"));
    cmd.args(args)
        .args(["--url", base])
        .env("AION_WEBHOOKS_API_KEY", key)
        .env_remove("AION_WEBHOOKS_URL");
    tokio::task::spawn_blocking(move || cmd.output().expect("run the cli"))
        .await
        .expect("join")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

both! {
    async fn operator_commands_show_and_replay_through_the_admin_api(db) {
        let rx = Receiver::start().await;
        rx.script([Reply::status(500), Reply::status(500)]);
        let once = "retry: { initial_interval: 10ms, max_interval: 10ms, max_attempts: 1 }";
        let app = TestApp::spawn(db, &policy_yaml(&hook("hook-a", &rx.url, "[a.b]", once))).await;
        for i in 0..2 {
            app.post_events(&json!({"id": format!("ev-{i}"), "topic": "a.b", "payload": i}))
                .await;
        }
        app.drain().await;
        let base = app.base.as_str();

        let o = cli(base, API_KEY, &["webhooks"]).await;
        assert!(o.status.success(), "{}", err(&o));
        let table = out(&o);
        assert!(table.starts_with("ID "), "{table}");
        assert!(table.contains("hook-a"), "{table}");

        let o = cli(
            base,
            API_KEY,
            &["deliveries", "list", "--status", "dead", "--json"],
        )
        .await;
        assert!(o.status.success(), "{}", err(&o));
        let listed: Value = serde_json::from_slice(&o.stdout).expect("json");
        let data = listed["data"].as_array().expect("data");
        assert_eq!(data.len(), 2);
        let id = data[0]["id"].as_str().expect("id").to_owned();

        let o = cli(base, API_KEY, &["deliveries", "show", &id]).await;
        assert!(o.status.success(), "{}", err(&o));
        assert!(out(&o).contains("ATTEMPT"), "{}", out(&o));
        assert!(out(&o).contains("http_status"), "{}", out(&o));

        let o = cli(
            base,
            API_KEY,
            &["deliveries", "replay", "--webhook", "hook-a"],
        )
        .await;
        assert!(o.status.success(), "{}", err(&o));
        assert_eq!(out(&o), "replayed: 2\n");
        app.drain().await;
        assert_eq!(rx.received().len(), 4, "both sent again");

        let o = cli(base, API_KEY, &["policy", "status"]).await;
        assert!(o.status.success(), "{}", err(&o));
        assert!(out(&o).contains("sha256"), "{}", out(&o));

        // Failures: the API's code and message, exit 1; usage errors from clap.
        let o = cli(base, "wrong-key", &["webhooks"]).await;
        assert_eq!(o.status.code(), Some(1));
        assert!(err(&o).contains("unauthorized"), "{}", err(&o));
        let o = cli(base, PUBLISHER_KEY, &["deliveries", "list"]).await;
        assert_eq!(o.status.code(), Some(1));
        assert!(err(&o).contains("403"), "{}", err(&o));
        let o = cli(base, API_KEY, &["deliveries", "replay"]).await;
        assert_eq!(o.status.code(), Some(1));
        assert!(err(&o).contains("--webhook"), "{}", err(&o));
        let o = cli(base, API_KEY, &["deliveries", "show", "dlv_nope"]).await;
        assert_eq!(o.status.code(), Some(1));
        assert!(err(&o).contains("not_found"), "{}", err(&o));
        let o = cli(base, API_KEY, &["deliveries", "list", "--limit", "many"]).await;
        assert_eq!(o.status.code(), Some(2), "{}", err(&o));
        let o = cli("http://127.0.0.1:9", API_KEY, &["webhooks"]).await;
        assert_ne!(o.status.code(), Some(0));
        assert!(err(&o).contains("cannot reach"), "{}", err(&o));
    }
}

both! {
    async fn webhooks_are_disabled_and_enabled_from_the_command_line(db) {
        let rx = Receiver::start().await;
        let app = TestApp::spawn(db, &policy_yaml(&hook("hook-a", &rx.url, "[a.b]", ""))).await;
        let base = app.base.as_str();

        let o = cli(base, API_KEY, &["webhooks", "disable", "hook-a"]).await;
        assert!(o.status.success(), "{}", err(&o));
        let o = cli(base, API_KEY, &["webhooks"]).await;
        let table = out(&o);
        assert!(table.contains("STATE"), "{table}");
        let row = table
            .lines()
            .find(|l| l.starts_with("hook-a"))
            .unwrap_or_default();
        assert!(
            row.contains("disabled") && row.contains("manual"),
            "{table}"
        );

        let o = cli(base, API_KEY, &["webhooks", "enable", "hook-a"]).await;
        assert!(o.status.success(), "{}", err(&o));
        let o = cli(base, API_KEY, &["webhooks", "--json"]).await;
        let listed: Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(listed["data"][0]["state"], "active", "{listed}");

        // An unknown webhook: the API's error, exit 1.
        let o = cli(base, API_KEY, &["webhooks", "disable", "nope"]).await;
        assert!(!o.status.success());
        assert!(err(&o).contains("not_found"), "{}", err(&o));
    }
}
