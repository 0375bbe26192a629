//! Hostile receivers (issue 12, item 2): one that never answers, trickles,
//! sends endless or huge headers, streams an endless body, resets
//! mid-response or stalls the TLS handshake. Each attempt ends by the
//! webhook's timeout with its error kind recorded, the engine reads only a
//! bounded amount, and another webhook's deliveries carry on meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// The hostile webhook's timeout.
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug)]
enum Hostile {
    /// Accepts, reads the request, never answers.
    Silent,
    /// The status line and headers one byte a second.
    Trickle,
    /// A status line, then header lines without end.
    EndlessHeaders,
    /// One header of 1 MiB.
    HugeHeader,
    /// `200` with a 4 GiB body, streamed as fast as the engine reads.
    EndlessBody,
    /// Half a status line, then a TCP reset.
    ResetMidHead,
}

/// Starts `kind` on loopback; returns its address and the bytes it managed
/// to write (what the engine let it send).
async fn start(kind: Hostile) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(behave(kind, socket, counter.clone()));
        }
    });
    (addr, written)
}

async fn behave(kind: Hostile, mut s: TcpStream, written: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 64 * 1024];
    let _ = s.read(&mut buf).await;
    let send = |bytes: Vec<u8>| {
        let written = written.clone();
        async move {
            written.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            bytes
        }
    };
    match kind {
        Hostile::Silent => {
            tokio::time::sleep(Duration::from_secs(120)).await;
        }
        Hostile::Trickle => {
            for b in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" {
                if s.write_all(&send(vec![*b]).await).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Hostile::EndlessHeaders => {
            if s.write_all(b"HTTP/1.1 200 OK\r\n").await.is_err() {
                return;
            }
            let line =
                b"X-Endless: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
            loop {
                if s.write_all(&send(line.repeat(64)).await).await.is_err() {
                    return;
                }
            }
        }
        Hostile::HugeHeader => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nX-Huge: {}\r\n\r\n",
                "h".repeat(1024 * 1024)
            );
            let _ = s.write_all(&send(head.into_bytes()).await).await;
            tokio::time::sleep(Duration::from_secs(120)).await;
        }
        Hostile::EndlessBody => {
            let head = b"HTTP/1.1 200 OK\r\nContent-Length: 4294967296\r\n\r\n".to_vec();
            if s.write_all(&head).await.is_err() {
                return;
            }
            let chunk = vec![b'z'; 64 * 1024];
            loop {
                if s.write_all(&send(chunk.clone()).await).await.is_err() {
                    return;
                }
            }
        }
        Hostile::ResetMidHead => {
            let _ = s.write_all(b"HTTP/1.1 20").await;
            let _ = s.flush().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = s.set_zero_linger();
            drop(s);
        }
    }
}

/// Webhook `bad` (one attempt, then dead) at `url` beside a healthy `ok`.
async fn app(db: TestDb, url: &str, ok: &Receiver) -> TestApp {
    let extra = format!(
        "timeout: {}s\nretry: {{ initial_interval: 1s, max_interval: 1s, max_attempts: 1 }}",
        TIMEOUT.as_secs()
    );
    let policy = policy_yaml(&format!(
        "{}{}",
        hook("bad", url, "[bad.event]", &extra),
        hook("ok", &ok.url, "[ok.event]", "")
    ));
    TestApp::spawn(db, &policy).await
}

/// Posts one event to `bad`, then events to `ok` while `bad`'s attempt is
/// open; returns `bad`'s recorded error kind and the attempt's recorded
/// duration.
async fn run(app: &TestApp, ok: &Receiver) -> (Option<String>, Duration) {
    let started = Instant::now();
    app.post_events(&json!({"topic": "bad.event", "payload": {}}))
        .await;
    for i in 0..20 {
        app.post_events(&json!({"topic": "ok.event", "payload": i}))
            .await;
    }
    ok.wait_for_count(20).await;
    let healthy_took = started.elapsed();
    assert!(
        healthy_took < TIMEOUT,
        "the healthy webhook waited {healthy_took:?} on the hostile one"
    );
    wait_for("bad's attempt to be recorded", || async {
        app.count("SELECT count(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = 'bad'")
            .await
            == 1
    })
    .await;
    let (kind, ms): (Option<String>, i32) = app.db.one(
        "SELECT a.error_kind, a.duration_ms FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = 'bad'",
    )
    .await;
    (kind, Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

async fn case(db: TestDb, kind: Hostile, scheme: &str) -> (Option<String>, Duration, u64) {
    let ok = Receiver::start().await;
    let (addr, written) = start(kind).await;
    let app = app(db, &format!("{scheme}://{addr}/hook"), &ok).await;
    let (error_kind, took) = run(&app, &ok).await;
    assert!(
        took < TIMEOUT + Duration::from_secs(1),
        "{kind:?}: the attempt took {took:?}; the timeout is {TIMEOUT:?}"
    );
    (error_kind, took, written.load(Ordering::Relaxed))
}

both! {
    async fn a_receiver_that_never_answers_times_out(db) {
        let (kind, _, _) = case(db, Hostile::Silent, "http").await;
        assert_eq!(kind.as_deref(), Some("timeout"));
    }
}

both! {
    async fn a_receiver_trickling_its_answer_times_out(db) {
        let (kind, _, written) = case(db, Hostile::Trickle, "http").await;
        assert_eq!(kind.as_deref(), Some("timeout"));
        assert!(written <= 4, "{written} bytes trickled in {TIMEOUT:?}");
    }
}

both! {
    async fn endless_headers_are_cut_off_as_a_protocol_error(db) {
        let (kind, took, written) = case(db, Hostile::EndlessHeaders, "http").await;
        assert_eq!(kind.as_deref(), Some("protocol"));
        assert!(took < TIMEOUT, "refused at the size limit, not the timeout");
        // What the engine read is capped (hyper's ~400 KB head buffer); the
        // rest sits in socket buffers until the connection is closed.
        assert!(written < 16 << 20, "{written} bytes of headers");
    }
}

both! {
    async fn a_huge_header_is_a_protocol_error(db) {
        let (kind, _, _) = case(db, Hostile::HugeHeader, "http").await;
        assert_eq!(kind.as_deref(), Some("protocol"));
    }
}

both! {
    async fn an_endless_body_is_read_only_up_to_the_cap(db) {
        let (kind, took, written) = case(db, Hostile::EndlessBody, "http").await;
        // The status is the receiver's answer: a 200 is a success, and its body
        // is diagnostics, of which 4 KiB are kept.
        assert_eq!(kind, None);
        assert!(took < TIMEOUT, "{took:?}");
        assert!(written < 64 << 20, "the engine let {written} bytes through");
    }
}

both! {
    async fn a_reset_in_the_middle_of_the_head_is_recorded_as_connection_closed(db) {
        let (kind, took, _) = case(db, Hostile::ResetMidHead, "http").await;
        assert_eq!(kind.as_deref(), Some("connection_closed"));
        assert!(took < TIMEOUT, "{took:?}");
    }
}

both! {
    async fn a_stalled_tls_handshake_times_out(db) {
        // The silent server never sends a ServerHello.
        let (kind, _, _) = case(db, Hostile::Silent, "https").await;
        assert_eq!(kind.as_deref(), Some("timeout"));
    }
}
