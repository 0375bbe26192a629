//! Hostile clients (issue 12, item 1): connections that never finish their
//! headers, bodies that trickle, floods over the connection cap, oversized
//! headers — each is cut off within its limit and counted, while ordinary
//! requests keep being served.

use std::time::{Duration, Instant};

use aion_webhooks::http::ConnectionEvent;
use aion_webhooks::http::serve::ServerLimits;
use axum::http::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const HEADER_TIMEOUT: Duration = Duration::from_secs(1);

async fn spawn(db: TestDb, max_connections: usize) -> TestApp {
    let mut config = test_config();
    config.server = ServerLimits {
        header_timeout: HEADER_TIMEOUT,
        max_connections,
        ..ServerLimits::default()
    };
    config.limits.body_timeout = Duration::from_secs(1);
    let policy = policy_yaml(&hook(
        "h",
        "http://127.0.0.1:9/none",
        "[a.b]",
        "enabled: false",
    ));
    TestApp::spawn_with(db, &policy, config).await
}

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Waits until the server closes `stream` (EOF or reset); returns how long
/// it took, or `None` if it was still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + within).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            // A 408 or other answer before the close: keep reading.
            Ok(Ok(_)) => {}
        }
    }
}

async fn healthy(app: &TestApp) -> bool {
    app.http
        .get(format!("{}/healthz", app.base))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

both! {
    async fn connections_that_never_finish_their_headers_are_closed_and_others_are_served(db) {
        let app = spawn(db, 4096).await;
        let mut loris = Vec::new();
        for _ in 0..300 {
            let mut s = TcpStream::connect(addr(&app)).await.expect("connect");
            s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
                .await
                .expect("write");
            loris.push(s);
        }
        // Served meanwhile.
        assert!(
            healthy(&app).await,
            "a normal request while 300 clients stall"
        );
        let (status, body) = app
            .post_events(&json!({"topic": "a.b", "payload": 1}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        for s in &mut loris {
            let took = closed_within(s, HEADER_TIMEOUT + Duration::from_secs(5)).await;
            assert!(took.is_some(), "a stalled connection was left open");
        }
        let metrics = app.meters.http.clone();
        wait_for("the timeouts to be counted", || async {
            metrics.connections(ConnectionEvent::HeaderTimeout) >= 300
        })
        .await;
        assert!(healthy(&app).await);
    }
}

both! {
    async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout(db) {
        let app = spawn(db, 4096).await;
        let mut s = TcpStream::connect(addr(&app)).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.expect("answer");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        let took = closed_within(&mut s, HEADER_TIMEOUT + Duration::from_secs(5)).await;
        assert!(
            took.is_some(),
            "an idle keep-alive connection was left open"
        );
    }
}

both! {
    async fn a_trickled_body_is_cut_off_with_408_and_nothing_is_stored(db) {
        let app = spawn(db, 4096).await;
        let mut s = TcpStream::connect(addr(&app)).await.expect("connect");
        let body = r#"{"topic":"a.b","payload":1}"#;
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.expect("head");
        let started = Instant::now();
        // One byte every 300 ms: never a long silence, never the whole body.
        let mut answer = Vec::new();
        for b in body.as_bytes()[..body.len() - 1].iter() {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            let mut buf = [0u8; 1024];
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await
            {
                answer.extend_from_slice(&buf[..n]);
                if n == 0 || !answer.is_empty() {
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("request_timeout"), "{text}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
        assert!(app.meters.http.connections(ConnectionEvent::BodyTimeout) >= 1);
    }
}

both! {
    async fn connections_over_the_cap_are_refused_at_once_and_service_resumes(db) {
        let app = spawn(db, 20).await;
        let mut held = Vec::new();
        for _ in 0..20 {
            let mut s = TcpStream::connect(addr(&app)).await.expect("connect");
            s.write_all(b"GET /healthz HTTP/1.1\r\n")
                .await
                .expect("write");
            held.push(s);
        }
        // Wait until the server holds all 20.
        let metrics = app.meters.http.clone();
        wait_for("20 open connections", || async {
            metrics.connections(ConnectionEvent::Opened) >= 20
        })
        .await;
        let started = Instant::now();
        let mut extra = TcpStream::connect(addr(&app)).await.expect("connect");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), extra.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 503"), "over the cap: {text:?}");
        assert!(text.contains("too_many_connections"), "{text}");
        assert!(
            started.elapsed() < HEADER_TIMEOUT,
            "refused early, not after a timeout"
        );
        assert!(metrics.connections(ConnectionEvent::Refused) >= 1);
        // The stalled ones time out, and the slots come back.
        drop(held);
        wait_for("a normal request to be served again", || healthy(&app)).await;
    }
}

both! {
    async fn too_many_or_too_large_headers_get_431(db) {
        let app = spawn(db, 4096).await;
        // 80 headers: under hyper's own default (100), over our limit (64).
        for head in [
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
                "X-A: b\r\n".repeat(80)
            ),
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "b".repeat(64 * 1024)
            ),
        ] {
            let mut s = TcpStream::connect(addr(&app)).await.expect("connect");
            let _ = s.write_all(head.as_bytes()).await;
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut answer)).await;
            let text = String::from_utf8_lossy(&answer);
            assert!(text.starts_with("HTTP/1.1 431"), "{text}");
        }
        assert!(app.meters.http.connections(ConnectionEvent::HeaderTooLarge) >= 2);
        assert!(healthy(&app).await);
    }
}
