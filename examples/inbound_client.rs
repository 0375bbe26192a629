//! Sends one signed command to `POST /webhooks/inbound` (contract §4), the
//! way an external system would, and prints the engine's answer.
//!
//! ```text
//! cargo run --example inbound_client -- --help
//! cargo run --example inbound_client                               # approve_kernel_proposal {"proposal_id":"kp-42"}
//! cargo run --example inbound_client -- --idempotency-key approve-kp-42   # twice: the first answer again
//! cargo run --example inbound_client -- --action install_module --params '{"module":"m1","version":"1.2.0"}'
//! cargo run --example inbound_client -- --secret wrong            # 401 signature_invalid
//! ```
//!
//! The request carries three things, each checked by the engine: the body,
//! signed as `X-Aion-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
//! "<t>.<body>")>` with the inbound secret (the exact bytes signed are the
//! bytes sent); the caller's API key as `Authorization: Bearer`; and,
//! optionally, an `Idempotency-Key`, so a retried request is not dispatched
//! twice. The defaults fit `policies/dev.yaml`. Exits 0 on a 2xx answer.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use hmac::{Hmac, Mac};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{Value, json};
use sha2::Sha256;

/// The API key of `policies/dev.yaml` (roles include `kernel-approver` and
/// `module-admin`; public: never deploy it).
const DEV_KEY: &str = "aionk_dev0000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Parser)]
#[command(about = "Sends one signed inbound command to aion-webhooks")]
struct Args {
    /// The engine's base URL.
    #[arg(
        long,
        env = "AION_WEBHOOKS_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// API key (or JWT) of the caller; it needs a role the action allows.
    #[arg(long, env = "AION_WEBHOOKS_API_KEY", default_value = DEV_KEY, hide_env_values = true)]
    key: String,
    /// The policy's inbound secret (`inbound.secret`).
    #[arg(long, default_value = "dev-inbound-secret")]
    secret: String,
    /// The action: one of the policy's `inbound.actions`.
    #[arg(long, default_value = "approve_kernel_proposal")]
    action: String,
    /// The action's parameters, a JSON object.
    #[arg(
        long,
        visible_alias = "payload",
        default_value = r#"{"proposal_id":"kp-42"}"#,
        value_parser = json_arg
    )]
    params: Value,
    /// Sent as `Idempotency-Key` (at most 255 characters).
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Sign with this unix time instead of now (to see a stale signature refused).
    #[arg(long, allow_hyphen_values = true)]
    timestamp: Option<i64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    // Serialise once: the signature covers these exact bytes, and they are
    // what is sent (re-serialising could change spacing or member order).
    let body = serde_json::to_vec(&json!({ "action": args.action, "params": args.params }))?;
    let timestamp = args.timestamp.unwrap_or_else(unix_now);
    let signature = sign(&args.secret, timestamp, &body);

    let url = format!("{}/webhooks/inbound", args.url.trim_end_matches('/'));
    let mut request = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?
        .post(&url)
        .header(AUTHORIZATION, format!("Bearer {}", args.key))
        .header(CONTENT_TYPE, "application/json")
        .header("X-Aion-Signature", &signature);
    if let Some(key) = &args.idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    println!("POST {url}");
    println!("  X-Aion-Signature: {signature}");
    println!("  body: {}", String::from_utf8_lossy(&body));

    let response = request
        .body(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let text = response.text().await?;
    println!("{status}");
    println!("{text}");
    if status.is_success()
        && let Ok(answer) = serde_json::from_str::<Value>(&text)
    {
        println!(
            "command {} ({}) is {}: it is dispatched as an event on command.{}",
            answer["command_id"].as_str().unwrap_or("?"),
            answer["action"].as_str().unwrap_or("?"),
            answer["status"].as_str().unwrap_or("?"),
            args.action,
        );
    }
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `t=<timestamp>,v1=<lowercase hex HMAC-SHA256 of "<timestamp>.<body>">`,
/// keyed with the secret's UTF-8 bytes.
fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// A JSON argument, refused by clap (with usage) when it does not parse.
fn json_arg(s: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str(s)
}

fn unix_now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_secs()).expect("seconds fit in i64")
}
