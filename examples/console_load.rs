//! The console with a million deliveries (issue 28, item 3): fills a fresh
//! store with 100,000 events fanned out to 10 webhooks (1,000,000
//! deliveries, each with one attempt: 97 % succeeded, 2 % dead, 1 % pending
//! for later), starts the release engine on it (API only: no workers), signs
//! in and times every console page, 15 times each after 2 warm-ups.
//!
//! ```text
//! cargo run --release --example console_load -- [--sqlite] [--engine BIN]
//! ```
//!
//! PostgreSQL: a fresh database on `DATABASE_URL`'s server, dropped after.
//! SQLite: a file in a temporary directory. Prints a table of p50 and max
//! milliseconds per page; the docs' figures come from it.

#[allow(dead_code)]
mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use common::process::{EngineProcess, build_this};
use sha2::Digest;
use uuid::Uuid;

const EVENTS: usize = 100_000;
const WEBHOOKS: usize = 10;
const KEY: &str = "console-load-admin-key";
/// Creation times spread over this many hours, ending now.
const HOURS: i64 = 24;

struct Args {
    sqlite: bool,
    /// Keep (or reuse, if it exists) the SQLite file here.
    sqlite_file: Option<PathBuf>,
    engine: Option<PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        sqlite: false,
        sqlite_file: None,
        engine: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--sqlite" => a.sqlite = true,
            "--sqlite-file" => {
                a.sqlite = true;
                a.sqlite_file = Some(it.next().context("--sqlite-file PATH")?.into());
            }
            "--engine" => a.engine = Some(it.next().context("--engine BIN")?.into()),
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    Ok(a)
}

/// A UUIDv7 for `ms`, with `n` in its random bits (unique, ordered by time).
fn v7(ms: i64, n: u64) -> Uuid {
    let mut rand = [0u8; 10];
    rand[2..].copy_from_slice(&n.to_be_bytes());
    uuid::Builder::from_unix_timestamp_millis(u64::try_from(ms).unwrap_or(0), &rand).into_uuid()
}

/// What fills the store (nothing when a kept SQLite file is reused).
type Seed =
    Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>>>>>;

/// One delivery row to seed.
struct Row {
    id: Uuid,
    event: usize,
    webhook: usize,
    state: &'static str,
    at_ms: i64,
}

fn rows(now_ms: i64) -> impl Iterator<Item = Row> {
    let span = HOURS * 3_600_000;
    (0..EVENTS).flat_map(move |e| {
        let at_ms = now_ms - span + (span * e as i64) / EVENTS as i64;
        (0..WEBHOOKS).map(move |w| {
            let n = (e * WEBHOOKS + w) as u64;
            let state = match (e * 7 + w * 13) % 100 {
                0 | 1 => "dead",
                2 => "pending",
                _ => "succeeded",
            };
            Row {
                id: v7(at_ms, n),
                event: e,
                webhook: w,
                state,
                at_ms,
            }
        })
    })
}

fn policy_yaml() -> String {
    let mut s = String::from("version: 1\nwebhooks:\n");
    for w in 0..WEBHOOKS {
        s.push_str(&format!(
            "  - id: w{w}\n    url: http://127.0.0.1:9/hook\n    secret: secret-{w}\n    topics: [\"orders.*\"]\n"
        ));
    }
    s.push_str(&format!(
        "auth:\n  api_keys:\n    - id: operator\n      sha256: \"{}\"\n      roles: [admin]\nnetwork:\n  allow_private_targets: [127.0.0.0/8]\n",
        hex::encode(sha2::Sha256::digest(KEY.as_bytes()))
    ));
    s
}

async fn seed_postgres(url: &str) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(url).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(10_000) {
        let ids: Vec<String> = chunk.iter().map(|e| format!("evt-{e}")).collect();
        let topics: Vec<String> = chunk
            .iter()
            .map(|e| format!("orders.t{}", e % 10))
            .collect();
        let payloads: Vec<String> = chunk.iter().map(|e| format!("{{\"n\":{e}}}")).collect();
        let times: Vec<_> = chunk
            .iter()
            .map(|e| at(now - HOURS * 3_600_000 + (HOURS * 3_600_000 * *e as i64) / EVENTS as i64))
            .collect();
        sqlx::query(
            "INSERT INTO events (id, topic, payload, body, occurred_at, received_at)
             SELECT i, t, p, convert_to(p, 'UTF8'), a, a FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS x(i, t, p, a)",
        )
        .bind(&ids).bind(&topics).bind(&payloads).bind(&times)
        .execute(&pool)
        .await?;
    }
    let all: Vec<Row> = rows(now).collect();
    for chunk in all.chunks(20_000) {
        let ids: Vec<Uuid> = chunk.iter().map(|r| r.id).collect();
        let events: Vec<String> = chunk.iter().map(|r| format!("evt-{}", r.event)).collect();
        let hooks: Vec<String> = chunk.iter().map(|r| format!("w{}", r.webhook)).collect();
        let states: Vec<&str> = chunk.iter().map(|r| r.state).collect();
        let times: Vec<_> = chunk.iter().map(|r| at(r.at_ms)).collect();
        sqlx::query(
            "WITH x AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS x(i, e, w, s, a)),
                  d AS (INSERT INTO deliveries (id, event_id, webhook_id, state, attempts, next_attempt_at, last_status, last_error, created_at, updated_at, completed_at)
                        SELECT i, e, w, s, 1,
                               CASE WHEN s = 'pending' THEN now() + interval '1 day' ELSE a END,
                               CASE WHEN s = 'succeeded' THEN 200 ELSE 503 END,
                               CASE WHEN s = 'succeeded' THEN NULL ELSE 'http_status: HTTP 503 Service Unavailable' END,
                               a, a, CASE WHEN s = 'pending' THEN NULL ELSE a END FROM x RETURNING 1)
             INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error_kind, response_body)
             SELECT i, 1, a, 12, CASE WHEN s = 'succeeded' THEN 200 ELSE 503 END,
                    CASE WHEN s = 'succeeded' THEN NULL ELSE 'http_status' END, 'ok' FROM x",
        )
        .bind(&ids).bind(&events).bind(&hooks).bind(&states).bind(&times)
        .execute(&pool)
        .await?;
    }
    sqlx::query("ANALYZE").execute(&pool).await?;
    pool.close().await;
    Ok(())
}

async fn seed_sqlite(path: &std::path::Path) -> anyhow::Result<()> {
    use sqlx::sqlite::SqliteConnectOptions;
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false);
    let pool = sqlx::SqlitePool::connect_with(opts).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut tx = pool.begin().await?;
    for e in 0..EVENTS {
        let at = now - HOURS * 3_600_000 + (HOURS * 3_600_000 * e as i64) / EVENTS as i64;
        let p = format!("{{\"n\":{e}}}");
        sqlx::query("INSERT INTO events (id, topic, payload, body, occurred_at, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)")
            .bind(format!("evt-{e}")).bind(format!("orders.t{}", e % 10)).bind(&p).bind(p.as_bytes()).bind(at)
            .execute(&mut *tx).await?;
    }
    for r in rows(now) {
        let ok = r.state == "succeeded";
        let next = if r.state == "pending" {
            now + 86_400_000
        } else {
            r.at_ms
        };
        sqlx::query(
            "INSERT INTO deliveries (id, event_id, webhook_id, state, attempts, next_attempt_at, last_status, last_error, created_at, updated_at, completed_at)
             VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?7, ?8, ?8, ?9)",
        )
        .bind(r.id).bind(format!("evt-{}", r.event)).bind(format!("w{}", r.webhook)).bind(r.state).bind(next)
        .bind(if ok { 200 } else { 503 })
        .bind((!ok).then_some("http_status: HTTP 503 Service Unavailable"))
        .bind(r.at_ms)
        .bind((r.state != "pending").then_some(r.at_ms))
        .execute(&mut *tx).await?;
        sqlx::query("INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error_kind, response_body) VALUES (?1, 1, ?2, 12, ?3, ?4, 'ok')")
            .bind(r.id).bind(r.at_ms).bind(if ok { 200 } else { 503 }).bind((!ok).then_some("http_status"))
            .execute(&mut *tx).await?;
    }
    tx.commit().await?;
    sqlx::query("ANALYZE").execute(&pool).await?;
    pool.close().await;
    Ok(())
}

/// Times `path` `n` times after 2 warm-ups: (p50, max) in ms.
async fn time(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    path: &str,
    n: usize,
) -> anyhow::Result<(f64, f64)> {
    let mut ms = Vec::with_capacity(n);
    for i in 0..n + 2 {
        let t = Instant::now();
        let r = http
            .get(format!("{base}{path}"))
            .header("cookie", cookie)
            .send()
            .await?;
        let status = r.status();
        let body = r.text().await?;
        anyhow::ensure!(
            status.is_success(),
            "{path}: {status} {}",
            &body[..body.len().min(300)]
        );
        if i >= 2 {
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    ms.sort_by(f64::total_cmp);
    Ok((ms[ms.len() / 2], ms[ms.len() - 1]))
}

/// The next-page link of a list page.
fn next_of(html: &str) -> Option<String> {
    let rest = html
        .split("rel=\"next\" data-testid=\"next\" href=\"")
        .nth(1)?;
    Some(rest.split('"').next()?.replace("&#38;", "&"))
}

async fn measure(base: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let r = http
        .post(format!("{base}/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("credential={KEY}&next=%2Fconsole"))
        .send()
        .await?;
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("signed in")?
        .to_owned();
    // A page 50 deep, by following the links.
    let mut deep = "/console/deliveries?webhook=w3".to_owned();
    for _ in 0..50 {
        let html = http
            .get(format!("{base}{deep}"))
            .header("cookie", &cookie)
            .send()
            .await?
            .text()
            .await?;
        deep = next_of(&html).context("a next page")?;
    }
    let hour = (chrono::Utc::now() - chrono::Duration::hours(12))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let hour_end = (chrono::Utc::now() - chrono::Duration::hours(11))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let (_, page) = {
        let html = http
            .get(format!("{base}/console/deliveries?webhook=w5&status=dead"))
            .header("cookie", &cookie)
            .send()
            .await?
            .text()
            .await?;
        ((), html)
    };
    let one = page
        .split("data-delivery=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .context("a dead delivery")?
        .to_owned();
    let pages = [
        "/console".to_owned(),
        "/console/webhooks".to_owned(),
        "/console/deliveries".to_owned(),
        "/console/deliveries?webhook=w3".to_owned(),
        deep,
        "/console/deliveries?webhook=w3&status=succeeded".to_owned(),
        "/console/deliveries?status=pending".to_owned(),
        "/console/deliveries?topic=orders.t7".to_owned(),
        "/console/deliveries?event_id=evt-51234".to_owned(),
        format!("/console/deliveries?since={hour}&until={hour_end}"),
        "/console/deliveries?webhook=gone".to_owned(),
        "/console/deliveries?topic=no.such.topic".to_owned(),
        "/console/dead".to_owned(),
        "/console/dead?webhook=w5".to_owned(),
        format!("/console/deliveries/{one}"),
        "/console/events/evt-51234".to_owned(),
        "/console/sources".to_owned(),
        "/console/policy".to_owned(),
        "/console/audit".to_owned(),
    ];
    println!("| page | p50 ms | max ms |\n|---|---|---|");
    for p in &pages {
        let (p50, max) = time(&http, base, &cookie, p, 15).await?;
        let shown = if p.contains("cursor=") {
            "/console/deliveries?webhook=w3 (page 51)"
        } else {
            p.as_str()
        };
        println!("| `{shown}` | {p50:.1} | {max:.1} |");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let bin = match a.engine {
        Some(b) => b,
        None => build_this().await?,
    };
    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("webhooks.yaml");
    std::fs::write(&policy, policy_yaml())?;
    let env = [
        ("AION_WEBHOOKS_WORKERS", "0".to_owned()),
        ("AION_WEBHOOKS_SOURCES", "0".to_owned()),
    ];
    let run = |url: String, seed: Seed| {
        let (bin, policy, dir) = (bin.clone(), policy.clone(), dir.path().to_owned());
        async move {
            // The engine creates the tables, then stops; the rows go in;
            // then the engine serves them.
            let mut engine =
                EngineProcess::spawn(&bin, &policy, &url, &env, dir.join("migrate.log"))?;
            engine.wait_healthy().await?;
            engine.stop().await?;
            let t = Instant::now();
            seed().await?;
            eprintln!(
                "seeded 1,000,000 deliveries in {:.0} s",
                t.elapsed().as_secs_f64()
            );
            let mut engine =
                EngineProcess::spawn(&bin, &policy, &url, &env, dir.join("engine.log"))?;
            engine.wait_healthy().await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let result = measure(&engine.base).await;
            engine.stop().await?;
            result
        }
    };
    if a.sqlite {
        let file = a
            .sqlite_file
            .unwrap_or_else(|| dir.path().join("console.db"));
        let url = format!("sqlite://{}", file.display());
        let (f, seeded) = (file.clone(), file.exists());
        run(
            url,
            Box::new(move || {
                Box::pin(async move {
                    if seeded {
                        eprintln!("reusing {}", f.display());
                        return Ok(());
                    }
                    seed_sqlite(&f).await
                })
            }),
        )
        .await
    } else {
        common::with_fresh_database("aion_console_load", |url| {
            let u = url.clone();
            run(
                url,
                Box::new(move || Box::pin(async move { seed_postgres(&u).await })),
            )
        })
        .await
    }
}
