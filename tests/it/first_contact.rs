//! Slow start (issue 29, item 2), opt-in (`initial_in_flight: 8` here): a
//! receiver the engine has not sent to yet is not met by hundreds of
//! requests at once. Its concurrency starts at `initial_in_flight` and grows
//! while its answers stay fast; a receiver with a small accept queue
//! (Python's `http.server` keeps 5) loses no request to the timeout; sends
//! left unanswered shrink the limit before any of them times out.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// A receiver answering 200 after 50 ms that notes, at each arrival, how
/// many requests it had open.
#[derive(Clone, Default)]
struct Arrivals {
    open: Arc<Mutex<usize>>,
    log: Arc<Mutex<Vec<(Instant, usize)>>>,
}

impl Arrivals {
    async fn start(&self) -> String {
        let a = self.clone();
        let app = axum::Router::new().fallback(move || {
            let a = a.clone();
            async move {
                {
                    let mut open = a.open.lock().expect("lock");
                    *open += 1;
                    a.log.lock().expect("lock").push((Instant::now(), *open));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                *a.open.lock().expect("lock") -= 1;
                StatusCode::OK
            }
        });
        serve_loopback(app).await
    }

    /// Peak open requests within `window` of the first arrival, and over
    /// the whole run.
    fn peaks(&self, window: Duration) -> (usize, usize) {
        let log = self.log.lock().expect("lock");
        let first = log.first().expect("some request arrived").0;
        let early = log
            .iter()
            .filter(|(at, _)| at.duration_since(first) < window)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0);
        let all = log.iter().map(|(_, n)| *n).max().unwrap_or(0);
        (early, all)
    }
}

both! {
    async fn a_fresh_receiver_sees_a_slow_start_and_then_full_speed(db) {
        let arrivals = Arrivals::default();
        let url = arrivals.start().await;
        let slow_start = "initial_in_flight: 8";
        let app = TestApp::spawn(db, &policy_yaml(&hook("fresh", &url, "[a.b]", slow_start))).await;
        for part in 0..2 {
            let batch: Vec<Value> =
                (0..1000).map(|i| json!({"topic": "a.b", "payload": [part, i]})).collect();
            assert_eq!(app.post_events(&Value::Array(batch)).await.0, StatusCode::ACCEPTED);
        }
        app.drain().await;
        assert_eq!(arrivals.log.lock().expect("lock").len(), 2000);
        let (early, all) = arrivals.peaks(Duration::from_millis(100));
        eprintln!("first contact: {early} at once in the first 100 ms, {all} at most");
        // Before: 207–221 at once from the first moment.
        assert!(early <= 32, "{early} requests at once in the first 100 ms");
        assert!(all > 64, "concurrency grew on fast 2xx (peak {all})");
        app.stop().await;
    }
}

/// A receiver like Python's single-threaded `http.server`: an accept queue
/// of 5, one connection served at a time (20 ms each), closed after its
/// answer.
async fn small_queue_receiver() -> (String, Arc<Mutex<usize>>) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    let listener = socket.listen(5).expect("listen");
    let served = Arc::new(Mutex::new(0usize));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // The head, then the body by its Content-Length.
            let complete = loop {
                match tokio::time::timeout(Duration::from_secs(2), conn.read(&mut chunk)).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break false,
                    Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                }
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + length {
                        break true;
                    }
                }
            };
            if complete {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = conn
                    .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                *count.lock().expect("lock") += 1;
            }
            let _ = conn.shutdown().await;
        }
    });
    (format!("http://{addr}/"), served)
}

both! {
    async fn a_receiver_with_a_small_accept_queue_loses_no_request_to_the_timeout(db) {
        let (url, served) = small_queue_receiver().await;
        let extra = "timeout: 10s\n    initial_in_flight: 8";
        let app = TestApp::spawn(db, &policy_yaml(&hook("small", &url, "[a.b]", extra))).await;
        let batch: Vec<Value> = (0..150).map(|i| json!({"topic": "a.b", "payload": i})).collect();
        assert_eq!(app.post_events(&Value::Array(batch)).await.0, StatusCode::ACCEPTED);
        app.drain().await;
        let failed = app.count("SELECT count(*) FROM delivery_attempts WHERE error_kind IS NOT NULL").await;
        let timeouts = app.count("SELECT count(*) FROM delivery_attempts WHERE error_kind = 'timeout'").await;
        eprintln!("small accept queue: {failed} failed attempts, {timeouts} timeouts");
        assert_eq!(timeouts, 0, "{timeouts} attempts timed out ({failed} failed in all)");
        assert_eq!(*served.lock().expect("lock"), 150, "each delivered once");
        assert_eq!(
            app.count("SELECT count(*) FROM deliveries WHERE state = 'succeeded'").await,
            150
        );
        app.stop().await;
    }
}

both! {
    async fn sends_left_unanswered_shrink_the_limit_before_any_of_them_times_out(db) {
        // The first 20 requests are answered at once; every later one is
        // held open (as behind a full accept queue, or a receiver stuck).
        let seen = Arc::new(Mutex::new(0usize));
        let release = Arc::new(tokio::sync::Notify::new());
        let (count, held) = (seen.clone(), release.clone());
        let app = axum::Router::new().fallback(move || {
            let (count, held) = (count.clone(), held.clone());
            async move {
                let n = {
                    let mut seen = count.lock().expect("lock");
                    *seen += 1;
                    *seen
                };
                if n > 20 {
                    let _ = tokio::time::timeout(Duration::from_secs(60), held.notified()).await;
                }
                StatusCode::OK
            }
        });
        let url = serve_loopback(app).await;
        let extra = "timeout: 30s\n    initial_in_flight: 8";
        let app = TestApp::spawn(db, &policy_yaml(&hook("stuck", &url, "[a.b]", extra))).await;
        let post = |n: usize| {
            let batch: Vec<Value> = (0..n).map(|i| json!({"topic": "a.b", "payload": i})).collect();
            Value::Array(batch)
        };
        assert_eq!(app.post_events(&post(20)).await.0, StatusCode::ACCEPTED);
        app.drain().await;
        let grown = app.limit_of("stuck").expect("a limit after 20 answers");
        let sent = Instant::now();
        assert_eq!(app.post_events(&post(40)).await.0, StatusCode::ACCEPTED);
        // No answer comes, and none times out for 30 s: only the sends'
        // own wait can say the receiver is in trouble.
        wait_for("the limit to fall to one", || async { app.limit_of("stuck") == Some(1) }).await;
        let took = sent.elapsed();
        eprintln!("unanswered sends: the limit fell from {grown} to 1 in {took:?}");
        assert_eq!(
            app.count("SELECT count(*) FROM delivery_attempts WHERE error_kind IS NOT NULL").await,
            0,
            "no send has timed out or failed yet"
        );
        // The receiver answers again: everything arrives, once.
        release.notify_waiters();
        let release_late = release.clone();
        tokio::spawn(async move {
            // Sends that had not reached the receiver yet.
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                release_late.notify_waiters();
            }
        });
        app.drain().await;
        assert_eq!(
            app.count("SELECT count(*) FROM deliveries WHERE state = 'succeeded'").await,
            60
        );
        app.stop().await;
    }
}
