//! The embedded default (contract §8): with `DATABASE_URL` unset the real
//! binary keeps its data in `aion-webhooks.db` in its working directory,
//! says so, survives a SIGKILL, and a second engine on the same file
//! refuses to start instead of sharing it.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::pgtmp::free_port;
use crate::support::*;

/// `aion-webhooks ARGS` in `dir` with no `DATABASE_URL`.
fn command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aion-webhooks"));
    c.args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("AION_WEBHOOKS_POLICY")
        .env_remove("AION_WEBHOOKS_LISTEN")
        .env("AION_WEBHOOKS_WATCH_POLICY", "0")
        .stdin(Stdio::null());
    c
}

fn serve(dir: &Path, listen: &str, log: &str) -> Child {
    let out = std::fs::File::create(dir.join(log)).expect("log file");
    command(
        dir,
        &["serve", "--policy", "policy.yaml", "--listen", listen],
    )
    .stdout(out.try_clone().expect("log file"))
    .stderr(out)
    .spawn()
    .expect("spawn serve")
}

async fn wait_ready(http: &reqwest::Client, base: &str, child: &mut Child, dir: &Path, log: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = || std::fs::read_to_string(dir.join(log)).unwrap_or_default();
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("the engine exited ({status}):\n{}", text());
        }
        let ready = http.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == reqwest::StatusCode::OK) {
            return;
        }
        assert!(Instant::now() < deadline, "not ready:\n{}", text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn finished(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn with_nothing_set_the_engine_keeps_an_embedded_file_that_one_engine_owns() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("policy.yaml"),
        policy_yaml(&hook("h", &rx.url, "[e.x]", "")),
    )
    .expect("policy");
    let http = reqwest::Client::new();
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let mut first = serve(dir.path(), &listen, "first.log");
    wait_ready(&http, &base, &mut first, dir.path(), "first.log").await;
    assert!(dir.path().join("aion-webhooks.db").exists());
    let log = std::fs::read_to_string(dir.path().join("first.log")).expect("log");
    assert!(log.contains(&format!("ready on {base}")), "{log}");
    assert!(log.contains("SQLite file aion-webhooks.db"), "{log}");
    assert!(log.contains("single node"), "{log}");

    let posted = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(API_KEY)
        .json(&json!({"id": "kept-1", "topic": "e.x", "payload": {"n": 1}}))
        .send()
        .await
        .expect("post");
    assert_eq!(posted.status(), 202);
    rx.wait_for_count(1).await;

    // A second engine, and `migrate`, on the same file: refused, clearly.
    let second = command(
        dir.path(),
        &[
            "serve",
            "--policy",
            "policy.yaml",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
        ],
    )
    .output()
    .expect("second engine");
    assert!(!second.status.success());
    let text = finished(&second);
    assert!(
        text.contains("aion-webhooks.db is in use by another aion-webhooks process")
            && text.contains(&format!("pid {}", first.id())),
        "{text}"
    );
    let migrate = command(dir.path(), &["migrate"]).output().expect("migrate");
    assert!(!migrate.status.success(), "{}", finished(&migrate));

    // SIGKILL: the lock goes with the process, the data stays.
    first.kill().expect("kill");
    first.wait().expect("reap");
    let migrate = command(dir.path(), &["migrate"]).output().expect("migrate");
    assert!(migrate.status.success(), "{}", finished(&migrate));
    let mut again = serve(dir.path(), &listen, "again.log");
    wait_ready(&http, &base, &mut again, dir.path(), "again.log").await;
    let stored: serde_json::Value = http
        .get(format!("{base}/v1/events/kept-1"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(stored["payload"], json!({"n": 1}), "{stored}");
    again.kill().expect("kill");
    again.wait().expect("reap");
}

#[tokio::test]
async fn a_database_url_that_names_no_store_is_refused_with_the_schemes() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("policy.yaml"), policy_yaml("  []")).expect("policy");
    let out = command(dir.path(), &["migrate"])
        .env("DATABASE_URL", "mysql://localhost/x")
        .output()
        .expect("migrate");
    assert!(!out.status.success());
    let text = finished(&out);
    assert!(
        text.contains("postgres://") && text.contains("sqlite://"),
        "{text}"
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_store_or_a_missing_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("policy.yaml"), policy_yaml("  []")).expect("policy");
    let garbage = b"not a database, and never to be overwritten\n".repeat(100);
    std::fs::write(dir.path().join("aion-webhooks.db"), &garbage).expect("garbage");
    std::fs::create_dir(dir.path().join("a-directory")).expect("mkdir");
    let cases = [
        (
            None,
            "cannot use aion-webhooks.db: it is not an SQLite database, or it is damaged",
        ),
        (
            Some("sqlite://no/such/dir/x.db"),
            "cannot use no/such/dir/x.db: its directory no/such/dir does not exist",
        ),
        (
            Some("sqlite://a-directory"),
            "cannot use a-directory: it is a directory",
        ),
    ];
    for (url, expected) in cases {
        let mut c = command(
            dir.path(),
            &[
                "serve",
                "--policy",
                "policy.yaml",
                "--listen",
                &format!("127.0.0.1:{}", free_port()),
            ],
        );
        if let Some(url) = url {
            c.env("DATABASE_URL", url);
        }
        let out = c.output().expect("serve");
        let text = finished(&out);
        assert_eq!(out.status.code(), Some(2), "{url:?}: {text}");
        assert!(text.contains(expected), "{url:?}: {text}");
        assert!(!text.contains("panicked"), "{text}");
    }
    assert_eq!(
        std::fs::read(dir.path().join("aion-webhooks.db")).expect("read"),
        garbage,
        "the file was not touched"
    );
}
