//! Crash recovery (contract §3, "at least once … across crashes of the engine
//! or the database"): the real binary SIGKILLed with sends in flight, and a
//! private PostgreSQL stopped and restarted under load. Every event that got
//! a `202` must reach the receiver; duplicates are allowed and counted.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::pgtmp::{PrivatePg, free_port};
use crate::support::*;

/// The real `aion-webhooks serve` in a child process, logging to a file.
/// Dropping it SIGKILLs a still-running child (and, if the test is failing,
/// prints its log).
pub(crate) struct Engine {
    child: Child,
    pub base: String,
    log: PathBuf,
}

impl Engine {
    pub fn spawn(database_url: &str, policy: &Path, log: PathBuf) -> Self {
        let listen = format!("127.0.0.1:{}", free_port());
        let log_file = std::fs::File::create(&log).expect("engine log file");
        let child = Command::new(env!("CARGO_BIN_EXE_aion-webhooks"))
            .arg("serve")
            .arg("--policy")
            .arg(policy)
            .args(["--listen", &listen])
            .env("DATABASE_URL", database_url)
            .env("AION_WEBHOOKS_LEASE_MARGIN_SECS", "1")
            .env("AION_WEBHOOKS_POLL_INTERVAL_MS", "50")
            // Few sends at a time, so the kill lands with most still to do.
            .env("AION_WEBHOOKS_MAX_IN_FLIGHT_PER_WEBHOOK", "32")
            .env("AION_WEBHOOKS_DB_MAX_CONNECTIONS", "8")
            .env("AION_WEBHOOKS_WATCH_POLICY", "0")
            .env_remove("AION_WEBHOOKS_POLICY")
            .env_remove("AION_WEBHOOKS_LISTEN")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("spawn aion-webhooks serve");
        Self {
            child,
            base: format!("http://{listen}"),
            log,
        }
    }

    /// Waits for `/readyz` to answer 200; fails at once if the process exits.
    pub async fn wait_ready(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "engine exited before it was ready ({status}):\n{}",
                    self.log_text()
                );
            }
            let ready = http.get(format!("{}/readyz", self.base)).send().await;
            if ready.is_ok_and(|r| r.status() == reqwest::StatusCode::OK) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "engine not ready after 30 s:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `signal` (e.g. `HUP`) to the engine.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} failed");
    }

    /// SIGKILL: no shutdown code runs, nothing in flight is recorded.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the engine");
        self.child.wait().expect("reap the engine");
    }

    /// SIGTERM, then waits up to `within` for the exit status.
    async fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "engine still running {within:?} after SIGTERM:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- engine log {} ---\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// Waits until no session of an engine binary (`application_name`
/// `aion-webhooks`) is left on the test's database: a process that exited
/// has closed its sockets, but on a loaded machine its server backends can
/// outlive it for a moment.
pub(crate) async fn engine_sessions_gone(pool: &PgPool) {
    wait_for("the engine's database sessions to end", || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'aion-webhooks'",
        )
        .fetch_one(pool)
        .await
        .is_ok_and(|n| n == 0)
    })
    .await;
}

/// The URL of the test's fresh database (trust auth, no password).
pub(crate) fn database_url(pool: &PgPool) -> String {
    let o = pool.connect_options();
    let db = o.get_database().expect("the test pool names its database");
    format!(
        "postgres://{}@{}:{}/{db}",
        o.get_username(),
        o.get_host(),
        o.get_port()
    )
}

/// Writes `webhooks.yaml` in `dir`: webhook `h` on `crash.test` to `url`,
/// with `extra` settings; returns its path.
fn write_policy(dir: &Path, url: &str, extra: &str) -> PathBuf {
    let policy = dir.join("webhooks.yaml");
    std::fs::write(&policy, policy_yaml(&hook("h", url, "[crash.test]", extra)))
        .expect("write policy");
    policy
}

/// Posts one batch; returns the status and, on 202, the ids it accepted.
async fn post_batch(
    http: &reqwest::Client,
    base: &str,
    batch: &[Value],
) -> Result<(u16, Vec<String>), reqwest::Error> {
    let r = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(API_KEY)
        .timeout(Duration::from_secs(10))
        .json(batch)
        .send()
        .await?;
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let ids = if status == 202 {
        body.as_array()
            .expect("a batch answers with an array")
            .iter()
            .map(|a| a["id"].as_str().expect("answer id").to_owned())
            .collect()
    } else {
        Vec::new()
    };
    Ok((status, ids))
}

/// How many times each event id reached the receiver.
fn receipts(rx: &Receiver) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in rx.received() {
        *seen
            .entry(r.header("x-aion-event-id").to_owned())
            .or_insert(0) += 1;
    }
    seen
}

async fn unfinished(db: &TestDb) -> Option<i64> {
    db.try_count("SELECT count(*) FROM deliveries WHERE state IN ('pending', 'in_flight')")
        .await
}

/// Every accepted id reached the receiver at least once; returns the
/// duplicated ids (received more than once).
fn assert_all_received(accepted: &[String], seen: &HashMap<String, usize>) -> Vec<String> {
    let missing: Vec<&String> = accepted
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} accepted events never delivered: {missing:?}",
        missing.len()
    );
    let mut dups: Vec<String> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id.clone())
        .collect();
    dups.sort();
    dups
}
both_binary! {
    async fn engine_killed_mid_flight_delivers_every_accepted_event_after_restart(db) {
        let t0 = Instant::now();
        let rx = Receiver::start().await;
        // Slow replies keep sends in flight long enough for the kill to hit them.
        let slow = Reply {
            status: 200,
            headers: Vec::new(),
            delay: Duration::from_millis(200),
        };
        rx.script(std::iter::repeat_n(slow, 2000));
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = write_policy(
            dir.path(),
            &rx.url,
            "timeout: 1s\nretry: { initial_interval: 100ms, max_interval: 1s, max_attempts: 20 }",
        );
        let url = db.url();
        let http = reqwest::Client::new();

        let mut first = Engine::spawn(&url, &policy, dir.path().join("first.log"));
        first.wait_ready(&http).await;
        let mut accepted = Vec::new();
        for b in 0..6 {
            let batch: Vec<Value> = (0..50)
                .map(|i| json!({"id": format!("crash-{b}-{i}"), "topic": "crash.test", "payload": i}))
                .collect();
            let (status, ids) = post_batch(&http, &first.base, &batch)
                .await
                .expect("post batch");
            assert_eq!(status, 202, "batch {b}");
            accepted.extend(ids);
        }
        assert_eq!(accepted.len(), 300);

        // 32 sends at a time, 200 ms each: 300 deliveries take ~2 s, so after
        // 40 arrivals the second round is in flight and most are still to do.
        rx.wait_for_count(40).await;
        first.kill();
        let seen_at_kill = rx.received().len();
        // A statement the engine sent just before it died still runs to its
        // commit in PostgreSQL; read the in-flight set once it stops changing.
        let in_flight_now = || async {
            let mut ids: Vec<(uuid::Uuid,)> = db
                .all("SELECT id FROM deliveries WHERE state = 'in_flight'")
                .await;
            ids.sort();
            ids
        };
        let mut in_flight = in_flight_now().await;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let again = in_flight_now().await;
            if again == in_flight {
                break;
            }
            in_flight = again;
        }
        let undelivered = unfinished(&db).await.expect("count");
        println!(
            "killed after {:?}: receiver had seen {seen_at_kill}, {} in flight, {undelivered} pending or in flight",
            t0.elapsed(),
            in_flight.len()
        );
        assert!(
            seen_at_kill < 300,
            "the kill came too late to test anything"
        );
        assert!(undelivered > 0, "nothing was left to recover");
        assert!(!in_flight.is_empty(), "no send was in flight at the kill");

        let restart = Instant::now();
        let mut second = Engine::spawn(&url, &policy, dir.path().join("second.log"));
        second.wait_ready(&http).await;
        wait_for(
            "every accepted event at the receiver and an empty queue",
            || async {
                let seen = receipts(&rx);
                accepted.iter().all(|id| seen.contains_key(id)) && unfinished(&db).await == Some(0)
            },
        )
        .await;
        println!("recovered {:?} after the restart", restart.elapsed());

        let seen = receipts(&rx);
        let dups = assert_all_received(&accepted, &seen);
        let total: usize = seen.values().sum();
        println!(
            "{total} requests for {} events: {} duplicated: {dups:?}",
            seen.len(),
            dups.len()
        );
        assert_eq!(seen.len(), 300, "only our events were sent");
        let succeeded = db
            .count("SELECT count(*) FROM deliveries WHERE state = 'succeeded'")
            .await;
        assert_eq!(succeeded, 300);

        // Only a send that may have reached the receiver before the kill can be
        // repeated: every duplicate belongs to a delivery that was in flight.
        let in_flight_events: HashSet<String> = db
            .all::<(uuid::Uuid, String)>("SELECT id, event_id FROM deliveries")
            .await
            .into_iter()
            .filter(|(id, _)| in_flight.contains(&(*id,)))
            .map(|(_, event)| event)
            .collect();
        let stray: Vec<&String> = dups
            .iter()
            .filter(|id| !in_flight_events.contains(*id))
            .collect();
        assert!(
            stray.is_empty(),
            "duplicates of deliveries not in flight at the kill: {stray:?}"
        );

        // The rescuer recorded the lost attempt of every delivery the kill cut off.
        let rescued_ids: HashSet<uuid::Uuid> = db
            .all::<(uuid::Uuid,)>(
                "SELECT delivery_id FROM delivery_attempts WHERE error_kind = 'lease_expired'",
            )
            .await
            .into_iter()
            .map(|(id,)| id)
            .filter(|id| in_flight.contains(&(*id,)))
            .collect();
        let rescued = rescued_ids.len() as i64;
        assert_eq!(
            rescued,
            in_flight.len() as i64,
            "a lease_expired attempt for each delivery in flight at the kill"
        );

        let status = second.terminate(Duration::from_secs(15)).await;
        assert_eq!(
            status.code(),
            Some(0),
            "SIGTERM exits 0:\n{}",
            second.log_text()
        );
        db.engine_sessions_gone().await;
        println!("test took {:?}", t0.elapsed());
    }
}

/// One producer: 20 batches of 20 events with short pauses; returns the ids
/// that got a 202. Anything else is a refusal a real producer would retry;
/// here the batch is just not counted as accepted.
async fn produce(
    http: &reqwest::Client,
    base: &str,
    lane: usize,
    batches_done: &AtomicUsize,
    refused: &Mutex<Vec<String>>,
) -> Vec<String> {
    let mut accepted = Vec::new();
    for b in 0..20 {
        let batch: Vec<Value> = (0..20)
            .map(
                |i| json!({"id": format!("pg-{lane}-{b}-{i}"), "topic": "load.test", "payload": i}),
            )
            .collect();
        let outcome = match post_batch(http, base, &batch).await {
            Ok((202, ids)) => {
                accepted.extend(ids);
                None
            }
            Ok((status, _)) => Some(status.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = outcome {
            refused
                .lock()
                .expect("lock")
                .push(format!("pg-{lane}-{b}: {why}"));
        }
        batches_done.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_loses_nothing() {
    let t0 = Instant::now();
    let pg = PrivatePg::start_new();
    // A short acquire timeout, like the engine's own pool (5 s): requests
    // during the outage fail fast instead of waiting for the database.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(1))
        .connect(&pg.url())
        .await
        .expect("connect to the private PostgreSQL");
    let rx = Receiver::start().await;
    let extra =
        "timeout: 2s\nretry: { initial_interval: 100ms, max_interval: 1s, max_attempts: 30 }";
    let app = TestApp::spawn_with(
        pool.clone(),
        &policy_yaml(&hook("h", &rx.url, "[load.test]", extra)),
        test_config(),
    )
    .await;

    // Four producers at once, so some batches are mid-transaction when the
    // database goes away.
    let batches_done = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let lanes: Vec<_> = (0..4)
        .map(|lane| {
            let (http, base) = (app.http.clone(), app.base.clone());
            let (batches_done, refused) = (batches_done.clone(), refused.clone());
            tokio::spawn(async move { produce(&http, &base, lane, &batches_done, &refused).await })
        })
        .collect();

    wait_for("the producer to get going", || async {
        batches_done.load(Ordering::SeqCst) >= 16
    })
    .await;
    tokio::task::block_in_place(|| pg.stop());
    let down_at = Instant::now();
    let readyz = app
        .http
        .get(format!("{}/readyz", app.base))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    let readyz_down = readyz.map(|r| r.status().as_u16());
    // The outage is the point: the producer keeps posting into it.
    tokio::time::sleep(Duration::from_millis(2000).saturating_sub(down_at.elapsed())).await;
    tokio::task::block_in_place(|| pg.start());
    println!("database down for {:?}", down_at.elapsed());
    assert!(
        matches!(readyz_down, Ok(503)),
        "/readyz while the database was down: {readyz_down:?}"
    );

    let mut accepted = Vec::new();
    for lane in lanes {
        accepted.extend(lane.await.expect("producer"));
    }
    let refused = refused.lock().expect("lock").clone();
    println!(
        "{} events accepted; refused batches: {refused:?}",
        accepted.len()
    );
    assert!(
        !refused.is_empty(),
        "the outage refused nothing: it did not happen under load"
    );
    assert!(
        accepted.len() >= 1000,
        "most batches were accepted: {}",
        accepted.len()
    );

    wait_for("/readyz to answer 200 again", || async {
        app.http
            .get(format!("{}/readyz", app.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
    })
    .await;
    wait_for(
        "every accepted event at the receiver and an empty queue",
        || async {
            let seen = receipts(&rx);
            accepted.iter().all(|id| seen.contains_key(id))
                && unfinished(&TestDb::Postgres(pool.clone())).await == Some(0)
        },
    )
    .await;
    let seen = receipts(&rx);
    let dups = assert_all_received(&accepted, &seen);
    let total: usize = seen.values().sum();
    println!(
        "{total} requests for {} events: {} duplicated: {dups:?}",
        seen.len(),
        dups.len()
    );
    assert!(
        seen.keys().all(|id| id.starts_with("pg-")),
        "only our events were sent"
    );
    // A batch is one transaction: the outage left none of them half stored.
    let torn: Vec<(String, i64)> = sqlx::query_as(
        "SELECT substring(id from '^pg-[0-9]+-[0-9]+') AS batch, count(*) FROM events
         GROUP BY 1 HAVING count(*) <> 20",
    )
    .fetch_all(&pool)
    .await
    .expect("query");
    assert!(torn.is_empty(), "partly stored batches: {torn:?}");
    let dead = app
        .count("SELECT count(*) FROM deliveries WHERE state = 'dead'")
        .await;
    assert_eq!(dead, 0, "no delivery died of the outage");

    app.stop().await;
    pool.close().await;
    println!("test took {:?}", t0.elapsed());
    drop(pg);
}

/// What `/metrics` says about how sends started (`ingest`, `claim`).
pub(crate) async fn sends_started(http: &reqwest::Client, base: &str, path: &str) -> u64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text");
    let prefix = format!("aion_webhooks_sends_started_total{{path=\"{path}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().expect("a counter value"))
}

both_binary! {
    /// The engine that accepts an event sends it at once, without a claim: the
    /// delivery is stored `in_flight` under that engine's lease (attempt 1) in
    /// the ingest statement, before the send starts. Killed before recording
    /// the outcome, it loses nothing: the lease expires and another engine
    /// sends the delivery again, with the same idempotency key.
    async fn a_delivery_sent_at_once_is_rescued_when_its_engine_dies_before_recording_it(db) {
        let rx = Receiver::start().await;
        // The first send hangs until the engine is dead; the next one succeeds.
        rx.script([Reply {
            status: 200,
            headers: Vec::new(),
            delay: Duration::from_secs(30),
        }]);
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = write_policy(
            dir.path(),
            &rx.url,
            "timeout: 4s\nretry: { initial_interval: 100ms, max_interval: 1s, max_attempts: 5 }",
        );
        let url = db.url();
        let http = reqwest::Client::new();

        let mut first = Engine::spawn(&url, &policy, dir.path().join("first.log"));
        first.wait_ready(&http).await;
        // A claim or two (every 50 ms) finds nothing due: the webhook is caught up.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = http
            .post(format!("{}/v1/events", first.base))
            .bearer_auth(PUBLISHER_KEY)
            .json(&json!({"id": "at-once-1", "topic": "crash.test", "payload": {"n": 1}}))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 202);
        let sent = rx.wait_for_count(1).await;
        assert_eq!(sends_started(&http, &first.base, "ingest").await, 1);
        assert_eq!(sends_started(&http, &first.base, "claim").await, 0);
        let (state, attempts, holder): (String, i32, Option<String>) = db
            .one("SELECT state, attempts, leased_by FROM deliveries WHERE event_id = 'at-once-1'")
            .await;
        assert_eq!((state.as_str(), attempts), ("in_flight", 1));
        assert!(holder.is_some(), "leased to the engine that accepted it");
        first.kill();

        let mut second = Engine::spawn(&url, &policy, dir.path().join("second.log"));
        second.wait_ready(&http).await;
        let again = rx.wait_for_count(2).await;
        assert_eq!(
            again[1].header("idempotency-key"),
            sent[0].header("idempotency-key"),
            "the rescued send is the same delivery"
        );
        wait_for("the rescued delivery to succeed", || async {
            db.try_count(
                "SELECT count(*) FROM deliveries WHERE event_id = 'at-once-1' AND state = 'succeeded'",
            )
            .await
                == Some(1)
        })
        .await;
        let (attempts,): (i32,) = db
            .one("SELECT attempts FROM deliveries WHERE event_id = 'at-once-1'")
            .await;
        assert_eq!(attempts, 2, "the unrecorded first attempt still counts");
        assert_eq!(sends_started(&http, &second.base, "claim").await, 1);
        second.terminate(Duration::from_secs(20)).await;
        db.engine_sessions_gone().await;
    }
}

/// The delivery path keeps its database connections between statements and
/// reuses them unchecked for a second (`store::postgres::hot`). After a
/// restart a statement on such a connection may fail, as transient; a broken
/// connection is never kept, and the statements after it run on fresh ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_connections_are_dropped_when_the_database_restarts() {
    use aion_webhooks::store::Store;
    use sqlx::Connection;
    let pg = PrivatePg::start_new();
    // 8 connections: the delivery path holds at most 2 of them.
    let store = Store::connect_lazy(&pg.url(), 8).expect("store");
    store.migrate().await.expect("migrate");
    let event = crate::support::plain_event;
    // Two writers at once, so two connections are held. Under load the two
    // may run one after the other (and share one connection): rounds go on
    // until two are open, at most 20.
    let count_open = || async {
        let mut probe = sqlx::PgConnection::connect(&pg.url())
            .await
            .expect("connect");
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut probe)
        .await
        .expect("count connections");
        probe.close().await.expect("close");
        n as usize
    };
    let mut open = 0;
    for round in 0..20 {
        let (first, second) = ([event(format!("a{round}"))], [event(format!("b{round}"))]);
        let (a, b) = tokio::join!(
            store.insert_independent(&first, chrono::Utc::now()),
            store.insert_independent(&second, chrono::Utc::now()),
        );
        a.expect("insert before the restart");
        b.expect("insert before the restart");
        // Every connection open now may fail once after the restart: the
        // held ones and any the pool hands out unchecked (idle under a second).
        open = count_open().await;
        if round >= 1 && open >= 2 {
            break;
        }
    }
    assert!(open >= 2, "both writers held a connection: {open} open");
    tokio::task::block_in_place(|| {
        pg.stop_immediate();
        pg.start();
    });
    let (mut failed, mut stored) = (0, Vec::new());
    for i in 0..10 {
        let id = format!("c{i}");
        match store
            .insert_independent(&[event(id.clone())], chrono::Utc::now())
            .await
        {
            Ok(_) => stored.push(id),
            Err(e) => {
                assert!(
                    e.is_transient(),
                    "a dropped connection is a transient failure: {e}"
                );
                failed += 1;
            }
        }
    }
    assert!(
        failed <= open,
        "only connections open before the restart may fail, once each: \
         {failed} failures, {open} connections"
    );
    assert_eq!(stored.len() + failed, 10);
    assert!(
        stored.iter().any(|id| id == "c9"),
        "statements after the failures run on fresh connections: {stored:?}"
    );
    let pool = sqlx::PgPool::connect(&pg.url()).await.expect("connect");
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM events WHERE id LIKE 'c%'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(
        n as usize,
        stored.len(),
        "every statement that succeeded is stored"
    );
    pool.close().await;
    store.close().await;
}
