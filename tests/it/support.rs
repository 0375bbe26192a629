//! Test harness: the real application on port 0 with a fresh database
//! (PostgreSQL or SQLite: see `db`), a scriptable receiver on loopback, and helpers
//! that wait for a condition instead of sleeping a fixed time.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::db::TestDb;
use aion_webhooks::app::{App, Config};
use aion_webhooks::delivery::worker::WorkerConfig;
use aion_webhooks::http::Limits;
use aion_webhooks::policy::PolicySet;
use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;

/// The key every test policy grants `publisher` and `admin`.
pub const API_KEY: &str = "test-key-publisher-admin";
/// A key with `publisher` only.
pub const PUBLISHER_KEY: &str = "test-key-publisher-only";

pub fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// A policy with the test keys, loopback allowed, and the given webhooks YAML
/// (a list under `webhooks:`, indented by two spaces).
pub fn policy_yaml(webhooks: &str) -> String {
    format!(
        "version: 1\nwebhooks:\n{webhooks}\nauth:\n  api_keys:\n    - id: tester\n      sha256: \"{}\"\n      roles: [publisher, admin]\n    - id: producer\n      sha256: \"{}\"\n      roles: [publisher]\nnetwork:\n  allow_private_targets: [127.0.0.0/8]\n",
        sha256_hex(API_KEY),
        sha256_hex(PUBLISHER_KEY)
    )
}

/// One webhook entry for [`policy_yaml`].
pub fn hook(id: &str, url: &str, topics: &str, extra: &str) -> String {
    let mut s =
        format!("  - id: {id}\n    url: {url}\n    secret: secret-{id}\n    topics: {topics}\n");
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        s.push_str(&format!("    {}\n", line.trim()));
    }
    s
}

/// An event of topic `a.b` with payload `1`, for webhook `h`, written
/// straight through the store (no policy involved).
pub fn plain_event(id: String) -> aion_webhooks::store::NewEvent {
    aion_webhooks::store::NewEvent {
        id,
        topic: "a.b".into(),
        payload: "1".into(),
        body: b"{\"payload\":1}".to_vec(),
        occurred_at: chrono::Utc::now(),
        tenant_id: None,
        source: None,
        key: None,
        trace_id: None,
        meta: Default::default(),
        notes: Default::default(),
        webhooks: vec![aion_webhooks::store::Recipient::unordered("h")],
    }
}

pub fn test_config() -> Config {
    Config {
        database_url: String::new(),
        listen: "127.0.0.1:0".into(),
        policy_path: "unused".into(),
        limits: Limits::default(),
        server: aion_webhooks::http::serve::ServerLimits::default(),
        worker: WorkerConfig {
            poll_interval: Duration::from_millis(50),
            rescue_interval: Duration::from_millis(200),
            lease_margin: Duration::from_secs(5),
            ..WorkerConfig::default()
        },
        run_workers: true,
        db_max_connections: 10,
        watch_policy: false,
        ingest_writers: 2,
        run_sources: true,
        otlp: None,
        console: Default::default(),
    }
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub db: TestDb,
    pub policy: Arc<ArcSwap<PolicySet>>,
    /// Every subsystem's counters, and the registry that renders them.
    pub meters: aion_webhooks::app::Meters,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub async fn spawn(db: impl Into<TestDb>, policy: &str) -> Self {
        Self::spawn_with(db, policy, test_config()).await
    }

    pub async fn spawn_with(db: impl Into<TestDb>, policy: &str, config: Config) -> Self {
        let db = db.into();
        let policy = PolicySet::parse(policy, "test-policy", std::path::Path::new("."), &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        let app = App::build_with(config, db.store(), policy)
            .await
            .expect("build app");
        let base = format!("http://{}", app.local_addr());
        let policy = app.policy();
        let meters = app.meters();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            http: reqwest::Client::new(),
            db,
            policy,
            meters,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Swaps in a new policy, as a reload does.
    pub fn set_policy(&self, yaml: &str) {
        let p = PolicySet::parse(yaml, "test-policy", std::path::Path::new("."), &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        self.policy.store(Arc::new(p));
    }

    /// Graceful shutdown, as on SIGTERM; returns once the app has stopped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("app task").expect("app run");
        }
    }

    pub async fn post_events(&self, body: &Value) -> (StatusCode, Value) {
        self.post_raw("/v1/events", API_KEY, body.to_string().into_bytes())
            .await
    }

    pub async fn post_raw(&self, path: &str, key: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = StatusCode::from_u16(r.status().as_u16()).expect("status");
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("request");
        let status = StatusCode::from_u16(r.status().as_u16()).expect("status");
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.db.count(sql).await
    }

    /// `webhook`'s adaptive concurrency limit, as its gauge shows it.
    pub fn limit_of(&self, webhook: &str) -> Option<u64> {
        let text = self.meters.engine.render();
        let prefix = format!("aion_webhooks_webhook_concurrency_limit{{webhook=\"{webhook}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Waits until no delivery is pending or in flight (or panics after 30 s).
    pub async fn drain(&self) {
        wait_for("the queue to drain", || async {
            self.count("SELECT count(*) FROM deliveries WHERE state IN ('pending', 'in_flight')")
                .await
                == 0
        })
        .await;
    }
}

/// Runs an outside tool (Schemathesis, the browser test) off the runtime's
/// threads; whether it succeeded, and all it printed.
pub async fn run_tool(mut cmd: std::process::Command) -> (bool, String) {
    let what = format!("{:?}", cmd.get_program());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// Polls `cond` every 20 ms until it holds; panics after 30 s naming `what`.
pub async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A receiver that answers every request with `status` and `body` after
/// `delay` (a hostile or failing endpoint) and records nothing.
pub async fn fixed_receiver(
    status: axum::http::StatusCode,
    body: &'static [u8],
    delay: Duration,
) -> String {
    let app = axum::Router::new().fallback(move || async move {
        tokio::time::sleep(delay).await;
        (status, body)
    });
    serve_loopback(app).await
}

/// Serves `app` on a free loopback port; returns its `…/hook` URL.
pub async fn serve_loopback(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback receiver");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: tokio::time::Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// What the receiver answers: a status, extra headers, an optional delay.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct ReceiverState {
    got: Vec<Received>,
    script: VecDeque<Reply>,
}

/// A loopback HTTP receiver that records every request and answers from a
/// script (then 200).
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let s = state.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            async move {
                let reply = {
                    let mut st = s.lock().expect("lock");
                    st.got.push(Received {
                        headers,
                        body,
                        at: tokio::time::Instant::now(),
                    });
                    st.script.pop_front().unwrap_or_else(|| Reply::status(200))
                };
                tokio::time::sleep(reply.delay).await;
                let mut resp = axum::response::Response::builder().status(reply.status);
                for (k, v) in &reply.headers {
                    resp = resp.header(*k, v);
                }
                resp.body(axum::body::Body::from(format!("reply {}", reply.status)))
                    .expect("response")
            }
        });
        let url = serve_loopback(app).await;
        Self { url, state }
    }

    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().expect("lock").script.extend(replies);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().expect("lock").got.clone()
    }

    pub async fn wait_for_count(&self, n: usize) -> Vec<Received> {
        wait_for(&format!("{n} requests at the receiver"), || async {
            self.received().len() >= n
        })
        .await;
        self.received()
    }
}

/// A `MakeWriter` that appends everything to one buffer.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    /// Captures every log line of this thread (the test's runtime) at TRACE
    /// level until the guard is dropped.
    pub fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let capture = Self::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(capture.clone())
            .finish();
        (capture, tracing::subscriber::set_default(subscriber))
    }
}
