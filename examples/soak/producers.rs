//! The load: producers of single events, batches and signed inbound
//! commands that re-send a request with an unknown outcome unchanged until
//! the answer is definite, and the [`Ledger`] of what those answers were.
//! The ledger records only what the engine answered; whether accepted items
//! arrived is for the verdict to decide.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{ACTION, API_KEY, Args, INBOUND_SECRET, TOPIC};

/// Longest a producer keeps re-sending one request before calling its
/// outcome unresolved (far beyond any outage the soak causes).
const GIVE_UP: Duration = Duration::from_secs(90);

/// What the producers learned: every item ends in exactly one of the sets.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Event ids answered 202, or 200 (duplicate).
    pub accepted: HashSet<String>,
    /// Of those, how many were accepted in batches.
    pub batched: usize,
    /// Accepted by a 200 duplicate answer: the first try was stored but its
    /// answer was lost to a kill.
    pub duplicate_answers: usize,
    /// Accepted commands: `command_id` → `Idempotency-Key`.
    pub commands: HashMap<String, String>,
    /// Event id or command key → the refusal.
    pub refused: HashMap<String, String>,
    /// Event id or command key → the last error when we gave up.
    pub unresolved: HashMap<String, String>,
    /// Requests sent again after an unknown outcome.
    pub resent: u64,
}

#[derive(Debug)]
enum Answer {
    Accepted { status: u16, body: String },
    Refused(String),
    Unresolved(String),
}

/// Shared by every producer task.
#[derive(Debug, Clone)]
struct Producer {
    http: reqwest::Client,
    base: String,
    ledger: Arc<Mutex<Ledger>>,
    next: Arc<AtomicU64>,
    /// Batches posted and not yet answered definitely.
    batches_in_flight: Arc<AtomicUsize>,
    stop: CancellationToken,
}

pub fn spawn_producers(
    args: &Args,
    base: &str,
    http: &reqwest::Client,
    ledger: &Arc<Mutex<Ledger>>,
    batches_in_flight: &Arc<AtomicUsize>,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let p = Producer {
        http: http.clone(),
        base: base.to_owned(),
        ledger: ledger.clone(),
        next: Arc::default(),
        batches_in_flight: batches_in_flight.clone(),
        stop: stop.clone(),
    };
    let mut tasks = Vec::new();
    if args.rate > 0.0 {
        for _ in 0..4 {
            let every = Duration::from_secs_f64(4.0 / args.rate);
            tasks.push(tokio::spawn(produce_events(p.clone(), every, 1)));
        }
    }
    if args.batch_rate > 0.0 && args.batch_size > 0 {
        let every = Duration::from_secs_f64(1.0 / args.batch_rate);
        tasks.push(tokio::spawn(produce_events(
            p.clone(),
            every,
            args.batch_size,
        )));
    }
    if args.command_rate > 0.0 {
        let every = Duration::from_secs_f64(1.0 / args.command_rate);
        tasks.push(tokio::spawn(produce_commands(p, every)));
    }
    tasks
}

/// Waits for the next tick; false once the producers are told to stop.
async fn tick(p: &Producer, ticker: &mut tokio::time::Interval) -> bool {
    tokio::select! {
        _ = p.stop.cancelled() => false,
        _ = ticker.tick() => true,
    }
}

fn ticker(every: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval(every.max(Duration::from_millis(1)));
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

/// Posts `batch` events per tick (a single object when `batch` is 1).
async fn produce_events(p: Producer, every: Duration, batch: usize) {
    let mut ticker = ticker(every);
    while tick(&p, &mut ticker).await {
        let ids: Vec<String> = (0..batch)
            .map(|_| format!("soak-{}", p.next.fetch_add(1, Ordering::Relaxed)))
            .collect();
        let events: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "topic": TOPIC, "payload": {"id": id, "batch": batch}}))
            .collect();
        let body = if batch == 1 {
            events[0].to_string()
        } else {
            Value::Array(events).to_string()
        };
        let url = format!("{}/v1/events", p.base);
        if batch > 1 {
            p.batches_in_flight.fetch_add(1, Ordering::SeqCst);
        }
        let (answer, resent) = until_definite(|| {
            p.http
                .post(&url)
                .bearer_auth(API_KEY)
                .header("content-type", "application/json")
                .body(body.clone())
        })
        .await;
        if batch > 1 {
            p.batches_in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        let mut ledger = p.ledger.lock().expect("ledger lock");
        ledger.resent += resent;
        match answer {
            Answer::Accepted { status, .. } => {
                if status == 200 {
                    ledger.duplicate_answers += ids.len();
                }
                if batch > 1 {
                    ledger.batched += ids.len();
                }
                ledger.accepted.extend(ids);
            }
            Answer::Refused(why) => ledger
                .refused
                .extend(ids.into_iter().map(|id| (id, why.clone()))),
            Answer::Unresolved(why) => ledger
                .unresolved
                .extend(ids.into_iter().map(|id| (id, why.clone()))),
        }
    }
}

/// Sends one signed command per tick; a retry keeps the body and the
/// `Idempotency-Key` and signs again with the current time.
async fn produce_commands(p: Producer, every: Duration) {
    let mut ticker = ticker(every);
    let mut n = 0u64;
    while tick(&p, &mut ticker).await {
        n += 1;
        let key = format!("soak-cmd-{n}");
        let body =
            json!({"action": ACTION, "params": {"proposal_id": format!("kp-{n}")}}).to_string();
        let url = format!("{}/webhooks/inbound", p.base);
        let (answer, resent) = until_definite(|| {
            let t = chrono::Utc::now().timestamp();
            let signature =
                aion_webhooks::signing::aion_sign(&[INBOUND_SECRET.as_bytes()], t, body.as_bytes());
            p.http
                .post(&url)
                .bearer_auth(API_KEY)
                .header("x-aion-signature", signature)
                .header("idempotency-key", &key)
                .header("content-type", "application/json")
                .body(body.clone())
        })
        .await;
        let mut ledger = p.ledger.lock().expect("ledger lock");
        ledger.resent += resent;
        match answer {
            Answer::Accepted { status: 202, body } => {
                let id = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v["command_id"].as_str().map(str::to_owned));
                match id {
                    Some(id) => {
                        ledger.commands.insert(id, key);
                    }
                    None => {
                        ledger
                            .unresolved
                            .insert(key, format!("202 without a command_id: {body}"));
                    }
                }
            }
            Answer::Accepted { status, body } => {
                ledger.refused.insert(key, format!("{status} {body}"));
            }
            Answer::Refused(why) => {
                ledger.refused.insert(key, why);
            }
            Answer::Unresolved(why) => {
                ledger.unresolved.insert(key, why);
            }
        }
    }
}

/// Sends the request `make` builds until the answer is definite: 200/202
/// (with its body read in full) is accepted, another 4xx but 429 refused;
/// a connection error, timeout, 429 or 5xx is unknown and sent again, for
/// up to [`GIVE_UP`]. Returns the answer and how many times it re-sent.
async fn until_definite<F>(mut make: F) -> (Answer, u64)
where
    F: FnMut() -> reqwest::RequestBuilder,
{
    let deadline = Instant::now() + GIVE_UP;
    let mut backoff = Duration::from_millis(50);
    let mut resent = 0;
    loop {
        let why = match make().send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.text().await;
                match (status, body) {
                    (200 | 202, Ok(body)) => return (Answer::Accepted { status, body }, resent),
                    (429 | 500..=599, _) => format!("answered {status}"),
                    (400..=499, body) => {
                        return (
                            Answer::Refused(format!("{status} {}", body.unwrap_or_default())),
                            resent,
                        );
                    }
                    (_, Err(e)) => format!("answered {status}, body lost: {e}"),
                    (_, Ok(_)) => format!("unexpected status {status}"),
                }
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return (Answer::Unresolved(why), resent);
        }
        resent += 1;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}
