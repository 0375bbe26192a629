//! The isolation tool's receivers, in a process of their own so that what
//! they cost is not the engine's nor the tool's: one loopback port per
//! behaviour named on the command line, each counting its requests and the
//! most it had open at once, reported as JSON on `GET /_stats` of that port.
//! It serves nothing else and owns no state beyond those counters.
//!
//! ```text
//! cargo run --example neighbour -- ok 500 hang     # prints `ready ok 40123`, `ready 500 40125`, …
//! curl -s 127.0.0.1:40123/_stats                   # {"behaviour":"ok","requests":0,…}
//! ```
//! Behaviours: `ok` (200 at once), `ok-50ms` (200 after 50 ms), `429-fast`
//! (429 at once, no `Retry-After`), `429-slow` (429 after 500 ms),
//! `429-retry-after` (429 with `Retry-After: 2`), `503`, `500`, `410`,
//! `slow-200` (200 after 2 s), `hang` (reads the request, never answers, until
//! the client hangs up), `refused` (a port bound then closed: nothing
//! listens, so it has no `/_stats`), `backlog-5` (an accept queue of 5, one
//! connection at a time, 50 ms per request, then closed: Python's
//! `http.server`).
//!
//! `--exit-with-stdin` ends the process when its stdin closes (the tool
//! that started it is gone); it ends after `--max-seconds` (default 3600)
//! in any case.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest a request's head and body may take to arrive.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest `hang` holds a connection its client does not close.
const HANG_FOR: Duration = Duration::from_secs(600);
/// The window of `peak_first_100ms`.
const EARLY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Ok,
    Ok50ms,
    TooManyFast,
    TooManySlow,
    TooManyRetryAfter,
    Unavailable,
    Fail,
    Gone,
    Slow200,
    Hang,
    Refused,
    Backlog5,
}

/// Every behaviour, by its command-line name.
const BEHAVIOURS: &[(&str, Behaviour)] = &[
    ("ok", Behaviour::Ok),
    ("ok-50ms", Behaviour::Ok50ms),
    ("429-fast", Behaviour::TooManyFast),
    ("429-slow", Behaviour::TooManySlow),
    ("429-retry-after", Behaviour::TooManyRetryAfter),
    ("503", Behaviour::Unavailable),
    ("500", Behaviour::Fail),
    ("410", Behaviour::Gone),
    ("slow-200", Behaviour::Slow200),
    ("hang", Behaviour::Hang),
    ("refused", Behaviour::Refused),
    ("backlog-5", Behaviour::Backlog5),
];

impl Behaviour {
    /// The behaviour `name` says, with its name.
    fn parse(name: &str) -> anyhow::Result<(&'static str, Self)> {
        match BEHAVIOURS.iter().find(|(n, _)| *n == name) {
            Some(entry) => Ok(*entry),
            None => {
                let names: Vec<&str> = BEHAVIOURS.iter().map(|(n, _)| *n).collect();
                bail!("unknown behaviour {name:?}; one of {}", names.join(", "))
            }
        }
    }

    /// The answer of an HTTP behaviour, after its delay.
    async fn answer(self) -> Response {
        let wait = |ms| tokio::time::sleep(Duration::from_millis(ms));
        match self {
            Behaviour::Ok => StatusCode::OK.into_response(),
            Behaviour::Ok50ms => {
                wait(50).await;
                StatusCode::OK.into_response()
            }
            Behaviour::TooManyFast => StatusCode::TOO_MANY_REQUESTS.into_response(),
            Behaviour::TooManySlow => {
                wait(500).await;
                StatusCode::TOO_MANY_REQUESTS.into_response()
            }
            Behaviour::TooManyRetryAfter => (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, HeaderValue::from_static("2"))],
            )
                .into_response(),
            Behaviour::Unavailable => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            Behaviour::Fail => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            Behaviour::Gone => StatusCode::GONE.into_response(),
            Behaviour::Slow200 => {
                wait(2000).await;
                StatusCode::OK.into_response()
            }
            // Served by hand (`serve_raw`) or not at all.
            Behaviour::Hang | Behaviour::Refused | Behaviour::Backlog5 => {
                StatusCode::NOT_IMPLEMENTED.into_response()
            }
        }
    }
}

/// One port's counters.
#[derive(Debug, Default)]
struct Counters {
    requests: u64,
    open: u64,
    peak: u64,
    peak_first_100ms: u64,
    first: Option<Instant>,
    first_unix_us: Option<u64>,
    last_unix_us: Option<u64>,
}

#[derive(Debug, Clone)]
struct Stats {
    name: &'static str,
    counters: Arc<Mutex<Counters>>,
}

impl Stats {
    /// Counts a request arriving; it stays open until the guard drops.
    fn enter(&self) -> OpenGuard {
        let now = Instant::now();
        let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        c.requests += 1;
        c.open += 1;
        c.peak = c.peak.max(c.open);
        let first = *c.first.get_or_insert(now);
        if now.duration_since(first) < EARLY {
            c.peak_first_100ms = c.peak_first_100ms.max(c.open);
        }
        let at = unix_us();
        c.first_unix_us.get_or_insert(at);
        c.last_unix_us = Some(at);
        OpenGuard(self.counters.clone())
    }

    fn json(&self) -> String {
        let c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::json!({
            "behaviour": self.name,
            "requests": c.requests,
            "open": c.open,
            "peak": c.peak,
            "peak_first_100ms": c.peak_first_100ms,
            "first_unix_us": c.first_unix_us,
            "last_unix_us": c.last_unix_us,
        })
        .to_string()
    }
}

/// Closes a request however it ends (answered, or dropped by a client
/// that hung up).
#[derive(Debug)]
struct OpenGuard(Arc<Mutex<Counters>>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        c.open = c.open.saturating_sub(1);
    }
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut exit_with_stdin = false;
    let mut max_seconds = 3600u64;
    let mut behaviours = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--exit-with-stdin" => exit_with_stdin = true,
            "--max-seconds" => {
                max_seconds = args
                    .next()
                    .context("--max-seconds needs a value")?
                    .parse()
                    .context("--max-seconds")?;
            }
            name => behaviours.push(Behaviour::parse(name)?),
        }
    }
    anyhow::ensure!(!behaviours.is_empty(), "name at least one behaviour");
    for (name, b) in behaviours {
        let port = start(name, b)
            .await
            .with_context(|| format!("starting {name}"))?;
        println!("ready {name} {port}");
    }
    let stdin_closed = async {
        if exit_with_stdin {
            let mut sink = Vec::new();
            let _ = tokio::io::stdin().read_to_end(&mut sink).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = stdin_closed => {}
        () = tokio::time::sleep(Duration::from_secs(max_seconds)) => {}
    }
    Ok(())
}

/// Starts one behaviour's port; returns the port.
async fn start(name: &'static str, behaviour: Behaviour) -> anyhow::Result<u16> {
    let stats = Stats {
        name,
        counters: Arc::default(),
    };
    match behaviour {
        Behaviour::Refused => {
            // Bound, then closed: a port nothing listens on (until the
            // kernel hands it out again, which it avoids for a while).
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            Ok(listener.local_addr()?.port())
        }
        Behaviour::Hang => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let port = listener.local_addr()?.port();
            tokio::spawn(async move {
                while let Ok((conn, _)) = listener.accept().await {
                    tokio::spawn(hang(conn, stats.clone()));
                }
            });
            Ok(port)
        }
        Behaviour::Backlog5 => {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind("127.0.0.1:0".parse()?)?;
            let port = socket.local_addr()?.port();
            let listener = socket.listen(5)?;
            tokio::spawn(async move {
                // One connection at a time: the next waits in the kernel's
                // accept queue (5), and beyond it its SYN is dropped.
                while let Ok((conn, _)) = listener.accept().await {
                    one_at_a_time(conn, &stats).await;
                }
            });
            Ok(port)
        }
        _ => {
            let app = axum::Router::new()
                .route(
                    "/_stats",
                    axum::routing::get({
                        let stats = stats.clone();
                        move || async move {
                            ([(header::CONTENT_TYPE, "application/json")], stats.json())
                        }
                    }),
                )
                .fallback(move |_body: axum::body::Bytes| {
                    // The body is read so that the connection can be reused.
                    let guard = stats.enter();
                    async move {
                        let answer = behaviour.answer().await;
                        drop(guard);
                        answer
                    }
                });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let port = listener.local_addr()?.port();
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            tokio::spawn(async move { axum::serve(listener, app).await });
            Ok(port)
        }
    }
}

/// `hang`: answers `/_stats`; any other request is read and held, open,
/// until the client closes the connection (or [`HANG_FOR`]).
async fn hang(mut conn: TcpStream, stats: Stats) {
    if !a_request(&mut conn, &stats).await {
        return;
    }
    let _open = stats.enter();
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(HANG_FOR, async {
        while let Ok(n) = conn.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// `backlog-5`: one request per connection, 50 ms each, then closed.
async fn one_at_a_time(mut conn: TcpStream, stats: &Stats) {
    if !a_request(&mut conn, stats).await {
        return;
    }
    let _open = stats.enter();
    tokio::time::sleep(Duration::from_millis(50)).await;
    reply(&mut conn, "200 OK", "").await;
}

/// Reads a request; `/_stats` is answered here. True for any other
/// request (the caller answers it), false once answered or unreadable.
async fn a_request(conn: &mut TcpStream, stats: &Stats) -> bool {
    match read_request(conn).await {
        Some(path) if path == "/_stats" => {
            reply(conn, "200 OK", &stats.json()).await;
            false
        }
        Some(_) => true,
        None => false,
    }
}

/// Reads one request's head and its body (by `Content-Length`); its path,
/// or `None` if the client hung up or was too slow.
async fn read_request(conn: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let path = head.lines().next()?.split_whitespace().nth(1)?;
                return Some(path.to_owned());
            }
        }
        match tokio::time::timeout_at(deadline, conn.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

/// Writes an HTTP/1.0-style answer and closes the connection.
async fn reply(conn: &mut TcpStream, status: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes()).await;
    let _ = conn.write_all(body.as_bytes()).await;
    let _ = conn.shutdown().await;
}
