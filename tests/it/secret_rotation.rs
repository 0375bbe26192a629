//! Rotating a secret mounted as a file (issue 27, items 1 and 5): the
//! inbound `secret_file` and a webhook's `secret_file` replaced — in place,
//! or the way Kubernetes swaps a mounted secret (`..data` re-pointed) — are
//! picked up by `POST /v1/policy/reload` and by the file watcher; the old
//! secret stops working at once. A reload whose client hangs up at once is
//! still applied and audited exactly once.

use std::path::Path;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::inbound::{APPROVE, APPROVER_KEY, Call, now, send, sign};
use crate::support::*;

/// A policy whose inbound and webhook secrets are files.
fn policy(hook_url: &str, inbound_file: &Path, hook_file: &Path) -> String {
    format!(
        "version: 1
webhooks:
  - id: h
    url: {hook_url}
    secret_file: {}
    topics: [t.x]
inbound:
  secret_file: {}
  tolerance: 5m
  actions:
    approve_kernel_proposal: {{ roles: [kernel-approver] }}
auth:
  api_keys:
    - {{ id: approver, sha256: \"{}\", roles: [kernel-approver] }}
    - {{ id: tester, sha256: \"{}\", roles: [publisher, admin] }}
network:
  allow_private_targets: [127.0.0.0/8]
",
        hook_file.display(),
        inbound_file.display(),
        sha256_hex(APPROVER_KEY),
        sha256_hex(API_KEY)
    )
}

use crate::reload::spawn_watching as spawn;

/// An inbound command signed with `secret`: its status.
async fn command(app: &TestApp, secret: &str) -> StatusCode {
    let call = Call {
        signature: Some(sign(secret, now(), APPROVE)),
        ..Call::signed(APPROVE)
    };
    send(app, &call).await.0
}

/// Posts an event of topic `t.x` and returns its delivery as received.
async fn deliver(app: &TestApp, rx: &Receiver, id: &str) -> Received {
    let before = rx.received().len();
    let (status, body) = app
        .post_events(&json!({"id": id, "topic": "t.x", "payload": 1}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    rx.wait_for_count(before + 1)
        .await
        .into_iter()
        .find(|r| r.header("x-aion-event-id") == id)
        .expect("the event's delivery")
}

/// Posts an event and returns whether its delivery's `X-Aion-Signature`
/// verifies with `secret`.
async fn delivered_with(app: &TestApp, rx: &Receiver, id: &str, secret: &str) -> bool {
    let r = deliver(app, rx, id).await;
    aion_webhooks::signing::aion_verify(
        r.header("x-aion-signature"),
        &[secret.as_bytes()],
        &r.body,
        now(),
        300,
    )
    .is_ok()
}

async fn last_reload(app: &TestApp) -> Value {
    app.get("/v1/policy").await.1["last_reload"].clone()
}

both! {
    async fn secret_files_replaced_in_place_apply_on_api_reload(db) {
        let rx = Receiver::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let (inbound, hook) = (dir.path().join("inbound.secret"), dir.path().join("hook.secret"));
        std::fs::write(&inbound, "inbound-old-0123456789\n").expect("write");
        std::fs::write(&hook, "hook-old-0123456789").expect("write");
        let file = dir.path().join("webhooks.yaml");
        let app = spawn(db, &file, &policy(&rx.url, &inbound, &hook), false).await;
        assert_eq!(command(&app, "inbound-old-0123456789").await, StatusCode::ACCEPTED);
        assert!(delivered_with(&app, &rx, "before", "hook-old-0123456789").await);

        std::fs::write(&inbound, "inbound-new-9876543210\n").expect("write");
        std::fs::write(&hook, "hook-new-9876543210").expect("write");
        let (status, body) = app.post_raw("/v1/policy/reload", API_KEY, Vec::new()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["outcome"], "applied", "a rotated secret file is a change: {body}");
        assert_eq!(body["diff"]["changed"], json!(["h"]), "{body}");

        assert_eq!(command(&app, "inbound-old-0123456789").await, StatusCode::UNAUTHORIZED);
        assert_eq!(command(&app, "inbound-new-9876543210").await, StatusCode::ACCEPTED);
        assert!(delivered_with(&app, &rx, "after", "hook-new-9876543210").await);
        let (_, again) = app.post_raw("/v1/policy/reload", API_KEY, Vec::new()).await;
        assert_eq!(again["outcome"], "unchanged", "{again}");
        app.stop().await;
    }
}

/// A Kubernetes-style secret volume: `<dir>/<name>` → `..data/<name>`,
/// `..data` → `..<stamp>`. Returns the path the policy names.
fn mount(dir: &Path, stamp: &str, files: &[(&str, &str)]) {
    let data = dir.join(format!("..{stamp}"));
    std::fs::create_dir(&data).expect("mkdir");
    for (name, text) in files {
        std::fs::write(data.join(name), text).expect("write");
    }
    // Swapped atomically: a new link renamed over `..data`.
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{stamp}"), &tmp).expect("link");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap");
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).expect("link");
        }
    }
}

both! {
    async fn the_file_watcher_sees_a_kubernetes_secret_swap_and_an_in_place_write(db) {
        let rx = Receiver::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let secrets = dir.path().join("secrets");
        std::fs::create_dir(&secrets).expect("mkdir");
        mount(&secrets, "2026_12_06_1", &[("inbound", "inbound-one-0123456789"), ("hook", "hook-one-0123456789")]);
        let file = dir.path().join("webhooks.yaml");
        let yaml = policy(&rx.url, &secrets.join("inbound"), &secrets.join("hook"));
        let app = spawn(db, &file, &yaml, true).await;
        assert_eq!(command(&app, "inbound-one-0123456789").await, StatusCode::ACCEPTED);
        assert!(last_reload(&app).await.is_null());

        // The kubelet's swap: the events name `..data`, never `hook`.
        mount(&secrets, "2026_12_06_2", &[("inbound", "inbound-two-0123456789"), ("hook", "hook-two-0123456789")]);
        wait_for("the watcher's reload", || async {
            last_reload(&app).await["outcome"] == "applied"
        })
        .await;
        assert_eq!(command(&app, "inbound-one-0123456789").await, StatusCode::UNAUTHORIZED);
        assert_eq!(command(&app, "inbound-two-0123456789").await, StatusCode::ACCEPTED);
        assert!(delivered_with(&app, &rx, "swapped", "hook-two-0123456789").await);

        // The watch follows the new target: an in-place write of the file
        // the link now points at is seen too.
        let at = last_reload(&app).await["at"].clone();
        std::fs::write(secrets.join("..2026_12_06_2").join("hook"), "hook-three-0123456789")
            .expect("write");
        wait_for("the second reload", || async {
            let last = last_reload(&app).await;
            last["outcome"] == "applied" && last["at"] != at
        })
        .await;
        assert!(delivered_with(&app, &rx, "written", "hook-three-0123456789").await);
        app.stop().await;
    }
}

both! {
    async fn a_reload_whose_client_hangs_up_is_applied_and_audited_once(db) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("webhooks.yaml");
        let version = |n: usize| {
            policy_yaml(&hook("h", "http://127.0.0.1:9/", &format!("[t.v{n}]"), ""))
        };
        let app = spawn(db, &file, &version(0), false).await;
        let addr = app.base.trim_start_matches("http://").to_owned();
        let request = format!(
            "POST /v1/policy/reload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nContent-Length: 0\r\n\r\n"
        );
        let rounds = 20;
        for n in 1..=rounds {
            std::fs::write(&file, version(n)).expect("write");
            // The client sends the request and hangs up at once: the handler
            // is dropped mid-reload (or, if the server saw the hang-up
            // first, never runs: then nothing is applied either).
            use tokio::io::AsyncWriteExt;
            let mut conn = tokio::net::TcpStream::connect(&addr).await.expect("connect");
            conn.write_all(request.as_bytes()).await.expect("send");
            drop(conn);
            // Give the reload its time; whether it ran is read below.
            let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
            while tokio::time::Instant::now() < deadline
                && !app.policy.load().webhook("h").is_some_and(|w| {
                    w.topics.iter().any(|t| t.as_str() == format!("t.v{n}"))
                })
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let applied = || async {
            app.http
                .get(format!("{}/metrics", app.base))
                .send()
                .await
                .expect("scrape")
                .text()
                .await
                .expect("text")
                .lines()
                .find(|l| l.starts_with("aion_webhooks_policy_reloads_total{outcome=\"applied\"}"))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0) as i64
        };
        let audited = || async {
            app.count("SELECT count(*) FROM audit_log WHERE action = 'policy.reload'").await
        };
        let n = applied().await;
        assert!(n >= rounds as i64 / 2, "most hung-up reloads ran: {n} of {rounds}");
        wait_for("every applied reload audited", || async { audited().await >= n }).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            (audited().await, applied().await),
            (n, n),
            "one audit record per applied reload"
        );
        app.stop().await;
    }
}

both! {
    async fn a_header_value_from_a_file_is_sent_rotated_on_reload_and_never_shown(db) {
        let rx = Receiver::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = dir.path().join("partner.auth");
        std::fs::write(&auth, "Bearer partner-token-one\n").expect("write");
        let file = dir.path().join("webhooks.yaml");
        let yaml = policy_yaml(&hook(
            "h",
            &rx.url,
            "[t.x]",
            &format!("header_files: {{ Authorization: \"{}\" }}", auth.display()),
        ));
        let app = spawn(db, &file, &yaml, false).await;
        let send = |id: &'static str| {
            let (app, rx) = (&app, &rx);
            async move { deliver(app, rx, id).await.header("authorization").to_owned() }
        };
        assert_eq!(send("one").await, "Bearer partner-token-one");

        std::fs::write(&auth, "Bearer partner-token-two\n").expect("rotate");
        let (status, body) = app.post_raw("/v1/policy/reload", API_KEY, Vec::new()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["outcome"], "applied", "a rotated header file is a change: {body}");
        assert_eq!(body["diff"]["changed"], json!(["h"]), "{body}");
        assert_eq!(send("two").await, "Bearer partner-token-two");

        // Nothing the admin API answers shows the value.
        for path in ["/v1/policy", "/v1/webhooks", "/v1/deliveries?webhook=h", "/v1/audit"] {
            let (status, body) = app.get(path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            assert!(!body.to_string().contains("partner-token"), "{path}: {body}");
        }
        app.stop().await;
    }
}
