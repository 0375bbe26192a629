//! `/metrics` (issue 9, item 3): Prometheus text that a real parser reads,
//! with counters that move as deliveries happen.

use std::collections::HashMap;

use axum::http::StatusCode;
use serde_json::json;

use crate::support::*;

/// Scrapes `/metrics` (no credentials) and parses it with `prometheus-parse`.
pub(crate) async fn scrape(app: &TestApp) -> prometheus_parse::Scrape {
    let r = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/plain; version=0.0.4"),
    );
    let text = r.text().await.expect("text");
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text")
}

pub(crate) fn value(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(k).is_some_and(|x| x == *v))
        })
        .and_then(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

both! {
    async fn metrics_parse_and_move_with_deliveries(db) {
        let rx = Receiver::start().await;
        rx.script([Reply::status(500)]);
        let retry = "retry: { initial_interval: 10ms, max_interval: 10ms, max_attempts: 3 }";
        let app = TestApp::spawn(db, &policy_yaml(&hook("h", &rx.url, "[a.b]", retry))).await;
        let before = scrape(&app).await;
        assert_eq!(value(&before, "aion_webhooks_build_info", &[]), Some(1.0));
        assert_eq!(
            value(&before, "aion_webhooks_policy_last_reload_successful", &[]),
            Some(1.0)
        );
        for i in 0..3 {
            assert_eq!(
                app.post_events(&json!({"topic": "a.b", "payload": i}))
                    .await
                    .0,
                StatusCode::ACCEPTED
            );
        }
        app.drain().await;
        let after = scrape(&app).await;
        let get = |name: &str, labels: &[(&str, &str)]| value(&after, name, labels).unwrap_or(0.0);
        assert_eq!(
            get("aion_webhooks_events_accepted_total", &[("source", "api")]),
            3.0
        );
        assert_eq!(
            get(
                "aion_webhooks_deliveries_finished_total",
                &[("webhook", "h"), ("outcome", "succeeded")]
            ),
            3.0
        );
        assert_eq!(
            get(
                "aion_webhooks_deliveries_finished_total",
                &[("webhook", "h"), ("outcome", "retry")]
            ),
            1.0
        );
        assert!(get("aion_webhooks_process_resident_memory_bytes", &[]) > 0.0);
        assert!(get("aion_webhooks_process_open_fds", &[]) > 0.0);
        let histogram_count: HashMap<String, f64> = after
            .samples
            .iter()
            .filter(|s| {
                s.metric
                    .starts_with("aion_webhooks_attempt_duration_seconds")
            })
            .filter_map(|s| match &s.value {
                prometheus_parse::Value::Histogram(h) => Some((
                    s.labels.get("webhook").unwrap_or("").to_owned(),
                    h.len() as f64,
                )),
                _ => None,
            })
            .collect();
        assert!(histogram_count.contains_key("h"), "{histogram_count:?}");
        // Labels are bounded: no topic, URL or event id anywhere.
        let text = format!("{:?}", after.samples);
        assert!(
            !text.contains("a.b") && !text.contains("127.0.0.1"),
            "{text}"
        );
    }
}

/// `promtool` (Debian's `prometheus` package; `.ci/run` installs it).
pub(crate) fn promtool() -> std::process::Command {
    let which = std::process::Command::new("promtool")
        .arg("--version")
        .output();
    assert!(
        which.is_ok_and(|o| o.status.success()),
        "promtool is needed: apt-get install prometheus (bash .ci/run installs it)"
    );
    std::process::Command::new("promtool")
}

both! {
    async fn prometheus_gets_openmetrics_and_everyone_else_classic_text_that_promtool_passes(db) {
        // Issue 28, item 5: each format under its own Content-Type.
        let rx = Receiver::start().await;
        let app = TestApp::spawn(db, &policy_yaml(&hook("h", &rx.url, "[a.b]", ""))).await;
        app.post_events(&json!({"topic": "a.b", "payload": 1})).await;
        app.drain().await;
        let get = |accept: Option<&'static str>| {
            let mut r = app.http.get(format!("{}/metrics", app.base));
            if let Some(a) = accept {
                r = r.header("accept", a);
            }
            async move {
                let r = r.send().await.expect("scrape");
                let ct = r.headers()["content-type"].to_str().unwrap_or("").to_owned();
                (ct, r.text().await.expect("text"))
            }
        };
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        let (ct, om) = get(Some(prometheus)).await;
        assert_eq!(ct, "application/openmetrics-text; version=1.0.0; charset=utf-8");
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(om.contains("# TYPE aion_webhooks_events_accepted counter\n"), "{om}");

        for accept in [None, Some("text/plain;version=0.0.4"), Some("*/*")] {
            let (ct, classic) = get(accept).await;
            assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8", "{accept:?}");
            assert!(!classic.contains("# EOF"), "{classic}");
            assert!(classic.contains("# TYPE aion_webhooks_events_accepted_total counter\n"), "{classic}");
            assert!(classic.contains("# HELP aion_webhooks_events_accepted_total "), "{classic}");
        }
        let (_, classic) = get(None).await;
        let mut check = promtool()
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool");
        use std::io::Write as _;
        check.stdin.take().expect("stdin").write_all(classic.as_bytes()).expect("write");
        let out = check.wait_with_output().expect("promtool");
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}");
        app.stop().await;
    }
}

#[test]
fn the_shipped_alert_rules_pass_promtool_and_their_unit_tests() {
    // Issue 28, item 6. Which metrics they query is checked against the
    // engine's own (src/metrics/deploy_tests.rs).
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");
    for args in [
        &["check", "rules", "alerts.yml"][..],
        &["test", "rules", "alerts.test.yml"][..],
    ] {
        let out = promtool()
            .args(args)
            .current_dir(dir)
            .output()
            .expect("promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana/aion-webhooks.json"
        ))
        .expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(
        panels
            .iter()
            .filter(|p| p["type"] != "row")
            .all(|p| p["targets"].as_array().is_some_and(|t| !t.is_empty()))
    );
}
