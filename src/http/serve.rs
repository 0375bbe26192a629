//! The listener: accepts connections under a cap and serves each with
//! HTTP/1.1 limits a public deployment can keep, so slow, stalled or
//! oversized clients are closed and counted instead of holding descriptors
//! forever (and starving the database pool and outbound sends of them).
//!
//! It owns connection-level limits only; body size and body read time are
//! the extractors' (`extract::read_body`), so their refusals are JSON like
//! every other error. HTTP/2 is not enabled.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_http::add_extension::AddExtension;

use super::meters::{ConnectionEvent, Meters};

/// Connection limits of the API listener.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// The request line and headers must arrive within this, counted from
    /// the connection's start or from the end of the previous response — so
    /// it is also the keep-alive idle timeout.
    pub header_timeout: Duration,
    /// Connections served at once; more are answered `503` and closed.
    pub max_connections: usize,
    /// Header lines per request (`431` beyond).
    pub max_headers: usize,
    /// Bytes of request line plus headers (`431` beyond).
    pub max_header_bytes: usize,
    /// How long a response write may make no progress (a client that stops
    /// reading) before the connection is closed.
    pub write_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_headers: 64,
            max_header_bytes: 16 * 1024,
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Descriptors the process may hold. Raises the soft limit to the hard one
/// first (the usual soft default, 1024, is far below what a listener plus a
/// delivery engine needs); returns the limit in force.
pub fn raise_descriptor_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// The connection cap that leaves `reserved` descriptors to everything else
/// (database pool, outbound sends, files) under a limit of `nofile`.
pub fn connection_cap(wanted: usize, nofile: u64, reserved: u64) -> usize {
    let room = usize::try_from(nofile.saturating_sub(reserved)).unwrap_or(usize::MAX);
    let cap = wanted.min(room).max(16);
    if cap < wanted {
        tracing::warn!(
            wanted,
            cap,
            nofile,
            reserved,
            "API connections capped so the database pool and deliveries keep their descriptors; raise the open-file limit (ulimit -n) for more"
        );
    }
    cap
}

/// Serves `router` on `listener` until `shutdown`, then lets open requests
/// finish for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    meters: Arc<Meters>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Refusals answer on their own small budget: a flood over the cap must
    // not turn into a flood of tasks.
    let refusing = Arc::new(Semaphore::new(64));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(limits.max_headers)
        .max_header_size(limits.max_header_bytes)
        // The read buffer bounds what a pipelining client can queue.
        .max_buf_size(limits.max_header_bytes.max(8192) * 2);
    let mut connections = JoinSet::new();
    let mut warnings = LogBudget::default();
    loop {
        // Reap finished connections so the set holds only open ones.
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                meters.connection(ConnectionEvent::AcceptFailed);
                if warnings.allow() {
                    tracing::warn!(error = %e, "accepting a connection failed");
                }
                // Out of descriptors or memory: back off briefly instead of
                // spinning. A connection aborted before accept is not a
                // reason to slow down the others.
                if is_resource_exhaustion(&e) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            meters.connection(ConnectionEvent::Refused);
            if warnings.allow() {
                tracing::warn!(
                    max = limits.max_connections,
                    "connection limit reached: refusing new connections (counted in aion_webhooks_http_connections_total)"
                );
            }
            if let Ok(permit) = refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(permit);
                });
            }
            continue;
        };
        // Responses are small; without TCP_NODELAY, Nagle and delayed ACKs
        // add tens of milliseconds to every answer.
        let _ = stream.set_nodelay(true);
        meters.connection(ConnectionEvent::Opened);
        let service = TowerToHyperService::new(AddExtension::new(
            router.clone(),
            ConnectInfo::<SocketAddr>(peer),
        ));
        let io = TokioIo::new(WriteStallGuard::new(stream, limits.write_timeout));
        let conn = graceful.watch(http.serve_connection(io, service));
        let meters = meters.clone();
        connections.spawn(async move {
            let ended = conn.await;
            drop(slot);
            meters.connection(ConnectionEvent::Closed);
            if let Err(e) = ended {
                meters.connection(classify(&e));
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(
                open = connections.len(),
                "HTTP connections still open after the grace period; closing them"
            );
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// EMFILE, ENFILE, ENOBUFS, ENOMEM (Linux numbers): the process or the
/// machine is out of something, and accepting again at once would spin.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// Why hyper ended a connection with an error, as counted in metrics.
fn classify(e: &hyper::Error) -> ConnectionEvent {
    if e.is_timeout() {
        ConnectionEvent::HeaderTimeout
    } else if e.is_parse_too_large() {
        ConnectionEvent::HeaderTooLarge
    } else if e.is_parse() {
        ConnectionEvent::Malformed
    } else if std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<io::Error>())
        .is_some_and(|io| io.kind() == io::ErrorKind::TimedOut)
    {
        ConnectionEvent::WriteTimeout
    } else {
        ConnectionEvent::Aborted
    }
}

/// Answers a connection over the cap with `503` and closes it, spending at
/// most a second on it. The request is not parsed; what the client sent is
/// read and discarded after the answer, so closing does not reset the
/// connection (a reset can make the client lose the answer).
async fn refuse(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const BODY: &str = r#"{"error":{"code":"too_many_connections","message":"the server is at its connection limit; retry later"}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < 64 * 1024 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        io::Result::Ok(())
    })
    .await;
}

/// At most one warning every ten seconds.
#[derive(Default)]
struct LogBudget {
    last: Option<Instant>,
}

impl LogBudget {
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(10))
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// A connection whose writes may stall for at most `timeout`: a client
/// that stops reading its response (its receive window full) would
/// otherwise hold the connection, its task and its response forever.
/// Reads are bounded by hyper's header timeout and the body timeout.
struct WriteStallGuard<T> {
    inner: T,
    timeout: Duration,
    /// Running while a write or flush is pending.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteStallGuard<T> {
    fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stall: None,
        }
    }

    /// Turns a pending write into an error once it has been pending for
    /// `timeout`; any progress disarms the timer.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.stall = None;
            return polled;
        }
        let timeout = self.timeout;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading its response",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteStallGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteStallGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_the_reserve_and_never_drops_below_a_floor() {
        assert_eq!(connection_cap(4096, 20_000, 2_320), 4096);
        assert_eq!(connection_cap(4096, 4_096, 2_320), 1_776);
        assert_eq!(connection_cap(4096, 1_024, 2_320), 16);
    }

    #[tokio::test]
    async fn a_write_the_peer_never_reads_fails_after_the_stall_timeout() {
        use tokio::io::AsyncWriteExt;
        // A pipe with room for 1 KiB that nobody reads.
        let (near, _far) = tokio::io::duplex(1024);
        let mut guarded = WriteStallGuard::new(near, Duration::from_millis(200));
        let started = Instant::now();
        let err = guarded
            .write_all(&[0u8; 64 * 1024])
            .await
            .expect_err("the write stalls");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_slow_but_steady_reader_is_not_cut_off() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (near, mut far) = tokio::io::duplex(1024);
        let mut guarded = WriteStallGuard::new(near, Duration::from_secs(1));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let mut total = 0;
            while total < 8 * 1024 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                total += far.read(&mut buf).await.expect("read");
            }
            total
        });
        guarded
            .write_all(&[1u8; 8 * 1024])
            .await
            .expect("steady progress");
        assert_eq!(reader.await.expect("reader"), 8 * 1024);
    }
}
