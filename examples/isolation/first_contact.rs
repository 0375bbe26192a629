//! The first-contact scenario (issue 29, item 2): what a receiver the
//! engine has not sent to yet sees when a burst is due for it — how many
//! requests at once at first, and, with a small accept queue, how many
//! deliveries the burst costs a retry or a timeout. Reads the receiver's
//! counters and the engine's `GET /v1/deliveries`; changes nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::Args;
use crate::common::process::EngineProcess;
use crate::harness::{self, KEY, Neighbour, Store};

/// Events of the burst to the fast receiver (two requests of 1,000).
const BURST: usize = 2000;
/// Events to the receiver with the small accept queue.
const SMALL_QUEUE_EVENTS: usize = 300;
/// Longest either part may take to deliver everything.
const LIMIT: Duration = Duration::from_secs(300);
/// Most pages of deliveries read (500 each).
const MAX_PAGES: usize = 20;

pub async fn run(args: &Args, store: Store, bin: &Path, neighbour: &Path) -> anyhow::Result<()> {
    let slow_start = args
        .initial_in_flight
        .map_or_else(|| "unset (the engine's default)".into(), |n| n.to_string());
    println!(
        "\nfirst contact, {}: initial_in_flight {slow_start}, timeout {}",
        store.name(),
        args.timeout
    );
    let extra = args
        .initial_in_flight
        .map_or_else(String::new, |n| format!("    initial_in_flight: {n}\n"));
    keep_on_failure("burst", |dir| {
        burst(args, store, bin, neighbour, &extra, dir)
    })
    .await?;
    keep_on_failure("small queue", |dir| {
        small_queue(args, store, bin, neighbour, &extra, dir)
    })
    .await
}

/// Runs a part in a fresh temp dir, kept (with the engine's log) if it fails.
async fn keep_on_failure<F, Fut>(part: &str, body: F) -> anyhow::Result<()>
where
    F: FnOnce(std::path::PathBuf) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let dir = tempfile::Builder::new().prefix("aion-iso-fc-").tempdir()?;
    let result = body(dir.path().to_owned()).await;
    if result.is_err() {
        let kept = dir.keep();
        eprintln!(
            "{part}: failed; policy and engine log kept in {}",
            kept.display()
        );
    }
    result.with_context(|| format!("first contact, {part}"))
}

/// A neighbour serving `behaviour`, and a policy of one webhook `id` to it
/// on topic `fc.event`.
async fn fresh(
    args: &Args,
    neighbour: &Path,
    behaviour: &str,
    id: &str,
    extra: &str,
) -> anyhow::Result<(Neighbour, String)> {
    let nb = Neighbour::spawn(neighbour, &[behaviour]).await?;
    let hooks = [harness::hook(
        id,
        &nb.url(behaviour)?,
        "fc.event",
        &args.timeout,
        extra,
    )];
    Ok((nb, harness::policy_yaml(&hooks)))
}

/// 2,000 events to a fresh `ok-50ms` webhook.
async fn burst(
    args: &Args,
    store: Store,
    bin: &Path,
    neighbour: &Path,
    extra: &str,
    dir: std::path::PathBuf,
) -> anyhow::Result<()> {
    let (nb, policy) = fresh(args, neighbour, "ok-50ms", "fresh", extra).await?;
    let nb_ref = &nb;
    let result = harness::with_engine(store, bin, &dir, &policy, |mut engine| async move {
        let start = harness::unix_us();
        // Sequential: a batch is at most 1,000 events.
        harness::post(&engine.base, "fc.event", "fc", BURST, 1000).await?;
        let stats = harness::wait_requests(nb_ref, "ok-50ms", BURST as u64, &mut engine, LIMIT).await?;
        let failed = failed_attempts(&engine, "fresh").await?;
        engine.stop().await?;
        println!(
            "  ok-50ms, {BURST} events: {} open at once in the first 100 ms, {} at most; all received {:.2} s after the first post; {} deliveries needed more than one attempt",
            stats.peak_first_100ms,
            stats.peak,
            harness::secs_since(start, &stats),
            failed.retried
        );
        Ok(())
    })
    .await;
    nb.stop().await;
    result
}

/// 300 events to a fresh `backlog-5` webhook.
async fn small_queue(
    args: &Args,
    store: Store,
    bin: &Path,
    neighbour: &Path,
    extra: &str,
    dir: std::path::PathBuf,
) -> anyhow::Result<()> {
    let (nb, policy) = fresh(args, neighbour, "backlog-5", "small", extra).await?;
    let nb_ref = &nb;
    let result = harness::with_engine(store, bin, &dir, &policy, |mut engine| async move {
        let start = harness::unix_us();
        harness::post(&engine.base, "fc.event", "fc", SMALL_QUEUE_EVENTS, 1000).await?;
        wait_succeeded(&mut engine, "small", SMALL_QUEUE_EVENTS).await?;
        let failed = failed_attempts(&engine, "small").await?;
        engine.stop().await?;
        // Only now: the receiver serves `/_stats` in its one line too.
        let stats = nb_ref
            .stats("backlog-5")
            .await?
            .context("backlog-5 keeps counters")?;
        let kinds: Vec<String> = failed.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!(
            "  backlog-5, {SMALL_QUEUE_EVENTS} events: the receiver saw {} requests; {} deliveries needed more than one attempt, {} hit the timeout; failed attempts: {}; all received {:.2} s after the first post",
            stats.requests,
            failed.retried,
            failed.timed_out,
            if kinds.is_empty() { "none".into() } else { kinds.join(", ") },
            harness::secs_since(start, &stats)
        );
        Ok(())
    })
    .await;
    nb.stop().await;
    result
}

#[derive(Debug, Deserialize)]
struct Page {
    data: Vec<Delivery>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Delivery {
    id: String,
    status: String,
    attempts: i32,
    #[serde(default)]
    attempts_detail: Vec<Attempt>,
}

#[derive(Debug, Deserialize)]
struct Attempt {
    error_kind: Option<String>,
}

/// Every delivery to `webhook`, from `GET /v1/deliveries`.
async fn deliveries(base: &str, webhook: &str) -> anyhow::Result<Vec<Delivery>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut query = vec![("webhook", webhook.to_owned()), ("limit", "500".into())];
        if let Some(c) = cursor.take() {
            query.push(("cursor", c));
        }
        let url = format!("{base}/v1/deliveries");
        let page: Page = http
            .get(&url)
            .bearer_auth(KEY)
            .query(&query)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("GET {url}"))?
            .json()
            .await
            .with_context(|| format!("GET {url}: not a page of deliveries"))?;
        all.extend(page.data);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(all),
        }
    }
    anyhow::bail!("more than {MAX_PAGES} pages of deliveries to {webhook}")
}

/// Waits until `n` deliveries to `webhook` have succeeded.
async fn wait_succeeded(engine: &mut EngineProcess, webhook: &str, n: usize) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let all = deliveries(&engine.base, webhook).await?;
        let done = all.iter().filter(|d| d.status == "succeeded").count();
        if done >= n {
            return Ok(());
        }
        engine.check_running()?;
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{webhook}: {done} of {n} deliveries succeeded after {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the failed attempts to a webhook were.
#[derive(Debug, Default)]
struct Failed {
    /// Deliveries with more than one attempt.
    retried: usize,
    /// Deliveries with at least one attempt that timed out.
    timed_out: usize,
    /// Failed attempts by `error_kind`.
    kinds: BTreeMap<String, usize>,
}

/// Reads every delivery to `webhook` with more than one attempt, and its
/// attempts (`GET /v1/deliveries/{id}`).
async fn failed_attempts(engine: &EngineProcess, webhook: &str) -> anyhow::Result<Failed> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut failed = Failed::default();
    for d in deliveries(&engine.base, webhook).await? {
        if d.attempts <= 1 {
            continue;
        }
        failed.retried += 1;
        let url = format!("{}/v1/deliveries/{}", engine.base, d.id);
        let one: Delivery = http
            .get(&url)
            .bearer_auth(KEY)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("GET {url}"))?
            .json()
            .await
            .with_context(|| format!("GET {url}: not a delivery"))?;
        let kinds: Vec<&str> = one
            .attempts_detail
            .iter()
            .filter_map(|a| a.error_kind.as_deref())
            .collect();
        if kinds.contains(&"timeout") {
            failed.timed_out += 1;
        }
        for k in kinds {
            *failed.kinds.entry(k.to_owned()).or_default() += 1;
        }
    }
    Ok(failed)
}
