//! A webhook receiver, as a third party would write one: verifies
//! `X-Aion-Signature`, deduplicates on `Idempotency-Key`, and prints one line
//! per request. Use it to watch the engine deliver, sign and retry.
//!
//! ```text
//! cargo run --example receiver -- --help
//! cargo run --example receiver                                  # 127.0.0.1:9000, the dev policy's secret
//! cargo run --example receiver -- --secret new --secret old     # rotation: either secret is accepted
//! cargo run --example receiver -- --fail                        # answer 500 until told otherwise
//! curl -X POST localhost:9000/_control/fail                     # start failing (500) at runtime
//! curl -X POST localhost:9000/_control/ok                       # answer normally again
//! ```
//!
//! It accepts deliveries on any path (`policies/dev.yaml` sends to `/hooks`).
//! Each request is answered, in this order: `401` if the signature is
//! missing, malformed, stale or wrong; `500` while failing on purpose; `200`
//! with "duplicate" if its `Idempotency-Key` was already answered `200`;
//! otherwise `200`. Only a `200` records the key, so a retry after a `500`
//! is processed, and a retry after a lost `200` is not processed twice.
//!
//! The signature check is written out here with `hmac` and `sha2` rather than
//! taken from the engine's library, so it can be copied into a receiver that
//! does not depend on this crate. It checks only `X-Aion-Signature`; a webhook
//! with `signature: standard` is verified with any Standard Webhooks library.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use clap::Parser;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, Parser)]
#[command(about = "Receives aion-webhooks deliveries, verifies and prints them")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Webhook secret; repeat it or separate with commas during a rotation
    /// (any one matching is enough; a secret cannot contain a comma here).
    /// The default is `policies/dev.yaml`'s.
    #[arg(long, value_delimiter = ',', default_value = "dev-local-secret")]
    secret: Vec<String>,
    /// Largest accepted |now - t| of a signature, in seconds.
    #[arg(long, default_value_t = 300)]
    tolerance_secs: u64,
    /// Start out answering every delivery with 500.
    #[arg(long)]
    fail: bool,
    /// Also print each verified body.
    #[arg(long)]
    print_body: bool,
}

#[derive(Debug)]
struct Receiver {
    secrets: Vec<String>,
    tolerance_secs: u64,
    print_body: bool,
    failing: AtomicBool,
    /// Keys answered 200. In memory and unbounded here; a real receiver
    /// keeps them in its database, in the transaction that does the work,
    /// for as long as a replay may come (a replay reuses the key).
    seen: Mutex<HashSet<String>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.secret.iter().all(|s| !s.is_empty()),
        "--secret must not be empty"
    );
    let state = Arc::new(Receiver {
        secrets: args.secret,
        tolerance_secs: args.tolerance_secs,
        print_body: args.print_body,
        failing: AtomicBool::new(args.fail),
        seen: Mutex::default(),
    });
    let app = Router::new()
        .route("/_control/fail", post(control_fail))
        .route("/_control/ok", post(control_ok))
        .fallback(receive)
        // Above axum's 2 MB default: the engine's event limit is configurable
        // (`AION_WEBHOOKS_MAX_EVENT_BYTES`), and a 413 here would be silent.
        .layer(DefaultBodyLimit::max(64 << 20))
        .with_state(state.clone());

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!(
        "listening on http://{} ({} secret(s), tolerance {} s{})",
        listener.local_addr()?,
        state.secrets.len(),
        state.tolerance_secs,
        if args.fail { ", failing" } else { "" }
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

async fn control_fail(State(state): State<Arc<Receiver>>) -> &'static str {
    state.failing.store(true, Ordering::SeqCst);
    println!("control: failing every delivery with 500");
    "failing\n"
}

async fn control_ok(State(state): State<Arc<Receiver>>) -> &'static str {
    state.failing.store(false, Ordering::SeqCst);
    println!("control: answering normally");
    "ok\n"
}

async fn receive(
    State(state): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let summary = format!(
        "event={} topic={} attempt={} key={}",
        header("x-aion-event-id").unwrap_or("-"),
        header("x-aion-event").unwrap_or("-"),
        header("x-aion-attempt").unwrap_or("-"),
        header("idempotency-key").unwrap_or("-"),
    );

    let Some(signature) = header("x-aion-signature") else {
        println!("refused (no X-Aion-Signature) {summary} -> 401");
        return (StatusCode::UNAUTHORIZED, "missing signature\n");
    };
    let secrets: Vec<&[u8]> = state.secrets.iter().map(|s| s.as_bytes()).collect();
    if let Err(reason) = verify(signature, &secrets, &body, unix_now(), state.tolerance_secs) {
        println!("refused ({reason}) {summary} -> 401");
        return (StatusCode::UNAUTHORIZED, "invalid signature\n");
    }

    if state.failing.load(Ordering::SeqCst) {
        println!("verified {summary} -> 500 (failing on purpose)");
        return (StatusCode::INTERNAL_SERVER_ERROR, "failing on purpose\n");
    }
    if let Some(key) = header("idempotency-key") {
        let first = state.seen.lock().expect("seen lock").insert(key.to_owned());
        if !first {
            println!("verified {summary} -> 200 duplicate");
            return (StatusCode::OK, "duplicate\n");
        }
    }
    println!("verified {summary} -> 200");
    if state.print_body {
        println!("  {}", String::from_utf8_lossy(&body));
    }
    (StatusCode::OK, "ok\n")
}

/// Checks `t=<unix>,v1=<hex>[,v1=<hex>…]` against `body` (contract §3):
/// `t` within `tolerance_secs` of `now` in either direction, and some `v1`
/// equal to the lowercase hex HMAC-SHA256 of `<t>.<body>` under some
/// secret's UTF-8 bytes. The engine sends one `v1` per active secret, so a
/// receiver holding only the new or only the old secret still matches.
fn verify(
    header: &str,
    secrets: &[&[u8]],
    body: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<(), String> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (scheme, value) = item
            .split_once('=')
            .ok_or_else(|| format!("malformed item {item:?}"))?;
        match scheme.trim() {
            "t" if timestamp.is_some() => return Err("more than one t".into()),
            "t" => timestamp = Some(value.trim()),
            "v1" => signatures
                .push(hex::decode(value.trim()).map_err(|_| "a v1 is not hex".to_owned())?),
            _ => {} // other schemes: a future version we do not speak yet
        }
    }
    let raw_t = timestamp.ok_or("no t")?;
    let t: i64 = raw_t
        .parse()
        .map_err(|_| format!("t is not a number: {raw_t:?}"))?;
    if signatures.is_empty() {
        return Err("no v1 signature".into());
    }
    // Freshness first: it is cheap, and it is what stops a replay.
    let skew = now.abs_diff(t);
    if skew > tolerance_secs {
        return Err(format!(
            "stale: t={t} is {skew} s from now, tolerance {tolerance_secs} s"
        ));
    }
    for secret in secrets {
        for signature in &signatures {
            // The MAC covers `t` exactly as the sender wrote it.
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
            mac.update(raw_t.as_bytes());
            mac.update(b".");
            mac.update(body);
            // `verify_slice` compares in constant time.
            if mac.verify_slice(signature).is_ok() {
                return Ok(());
            }
        }
    }
    Err("signature mismatch: no v1 matches any secret".into())
}

fn unix_now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_secs()).expect("seconds fit in i64")
}
