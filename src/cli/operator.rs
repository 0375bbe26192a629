//! Operator commands (contract §8): thin clients of the admin API. Human
//! tables by default, the API's JSON with `--json`; a refusal prints the
//! API's error code and message and exits 1. The key comes from
//! `AION_WEBHOOKS_API_KEY` and is never printed.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where the engine is and how to print.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The engine's API.
    #[arg(
        long,
        global = true,
        env = "AION_WEBHOOKS_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// Newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        webhook: Option<String>,
        #[arg(long)]
        event_id: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One delivery with every attempt.
    Show { id: String },
    /// Replay one delivery by id, or many with --webhook / --since / --until.
    Replay {
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        webhook: Option<String>,
        #[arg(long, conflicts_with = "id")]
        since: Option<String>,
        #[arg(long, conflicts_with = "id")]
        until: Option<String>,
        /// `dead` (default) or `succeeded`, with --webhook / --since / --until.
        #[arg(long, conflicts_with = "id")]
        status: Option<String>,
    },
}

/// What to ask the API.
#[derive(Debug)]
pub enum Request {
    Get(String),
    Post(String, Value),
}

/// How to print the answer.
#[derive(Debug, Clone, Copy)]
pub enum View {
    Deliveries,
    Delivery,
    Webhooks,
    Sources,
    Rejects,
    Policy,
    /// A test send's outcome (the command fails unless it succeeded).
    TestSend,
    Plain,
}

pub fn deliveries(cmd: DeliveriesCommand) -> anyhow::Result<(Request, View)> {
    Ok(match cmd {
        DeliveriesCommand::List {
            status,
            webhook,
            event_id,
            limit,
        } => {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.append_pair("limit", &limit.to_string());
            for (k, v) in [
                ("status", status),
                ("webhook", webhook),
                ("event_id", event_id),
            ] {
                if let Some(v) = v {
                    query.append_pair(k, &v);
                }
            }
            (
                Request::Get(format!("/v1/deliveries?{}", query.finish())),
                View::Deliveries,
            )
        }
        DeliveriesCommand::Show { id } => (
            Request::Get(format!("/v1/deliveries/{}", path(&id))),
            View::Delivery,
        ),
        DeliveriesCommand::Replay { id: Some(id), .. } => (
            Request::Post(format!("/v1/deliveries/{}/replay", path(&id)), json!({})),
            View::Plain,
        ),
        DeliveriesCommand::Replay {
            id: None,
            webhook,
            since,
            until,
            status,
        } => {
            if webhook.is_none() && since.is_none() && until.is_none() {
                anyhow::bail!("give a delivery id, or --webhook and/or --since / --until");
            }
            let mut body = serde_json::Map::new();
            for (k, v) in [
                ("webhook", webhook),
                ("since", since),
                ("until", until),
                ("status", status),
            ] {
                if let Some(v) = v {
                    body.insert(k.into(), json!(v));
                }
            }
            (
                Request::Post("/v1/deliveries/replay".into(), Value::Object(body)),
                View::Plain,
            )
        }
    })
}

/// A path segment, percent-encoded.
pub fn path(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

/// Sends `request`, prints the answer, and returns the exit code.
pub fn call(target: &Target, request: Request, view: View) -> anyhow::Result<ExitCode> {
    let key = std::env::var("AION_WEBHOOKS_API_KEY")
        .context("AION_WEBHOOKS_API_KEY is not set: the operator commands need an admin API key")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let base = target.url.trim_end_matches('/');
    let (status, body) = runtime.block_on(async {
        // A test send waits for its attempt: up to the webhook's timeout
        // (at most 300 s) plus 10 s.
        let wait = if matches!(view, View::TestSend) {
            330
        } else {
            30
        };
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(wait))
            .build()?;
        let builder = match &request {
            Request::Get(p) => client.get(format!("{base}{p}")),
            Request::Post(p, body) => client.post(format!("{base}{p}")).json(body),
        };
        let response = builder
            .bearer_auth(&key)
            .send()
            .await
            .with_context(|| format!("cannot reach the engine at {base}"))?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::Ok((status, text))
    })?;
    let value: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    if !status.is_success() {
        let code = match &value["error"]["code"] {
            Value::Null => "error".to_owned(),
            c => text(c),
        };
        let message = match &value["error"]["message"] {
            Value::Null if !value.is_object() => text(&value),
            Value::Null => String::new(),
            m => text(m),
        };
        eprintln!("error: {status}: {code}: {message}");
        if let Some(errors) = value["error"]["errors"].as_array() {
            for e in errors {
                eprintln!("  {}", text(e));
            }
        }
        return Ok(ExitCode::FAILURE);
    }
    if target.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", render(view, &value));
    }
    if matches!(view, View::TestSend) && value["outcome"] != "succeeded" {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

mod render;

pub use render::render;
#[cfg(test)]
use render::table;
use render::text;

#[cfg(test)]
mod tests;
