//! The command line (contract §8): argument parsing and the small offline
//! commands. `serve` and `migrate` hand over to the application; everything
//! else here is pure apart from reading stdin and files.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::policy::{PolicySet, parse_duration};
use crate::signing::{aion_sign, aion_verify};

mod keys;
mod operator;
mod policy_match;

use operator::{DeliveriesCommand, Request, Target, View};

use keys::VerifyKeys;
pub use keys::{keygen, keygen_ed25519};

const DEFAULT_POLICY: &str = "policies/webhooks.yaml";

#[derive(Debug, Parser)]
#[command(
    name = "aion-webhooks",
    version,
    about = "Durable, signed webhook delivery engine"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run migrations, the HTTP API and the delivery workers.
    Serve {
        #[arg(long, env = "AION_WEBHOOKS_POLICY", default_value = DEFAULT_POLICY)]
        policy: PathBuf,
        #[arg(long, env = "AION_WEBHOOKS_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Check a policy file or see how it routes.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Print an X-Aion-Signature value for the body on stdin.
    Sign {
        /// Signing secret; repeat for rotation (one v1= per secret).
        #[arg(long, required = true)]
        secret: Vec<String>,
        /// Unix seconds to sign at (default: now).
        #[arg(long)]
        timestamp: Option<i64>,
    },
    /// Verify a signature against the body on stdin (exit 0 valid, 1 not):
    /// an X-Aion-Signature value, or with --id and --timestamp a Standard
    /// Webhooks `webhook-signature` value (`v1` with a `whsec_` secret, `v1a`
    /// with a `whpk_` public key).
    Verify {
        /// Secret or public key to accept; repeat to accept several (rotation).
        #[arg(long, required = true)]
        secret: Vec<String>,
        #[arg(long)]
        signature: String,
        /// The `webhook-id` header: selects the Standard Webhooks form.
        #[arg(long, requires = "timestamp")]
        id: Option<String>,
        /// The `webhook-timestamp` header (with --id).
        #[arg(long, requires = "id")]
        timestamp: Option<String>,
        /// Maximum |now - t|, e.g. 5m.
        #[arg(long, default_value = "5m")]
        tolerance: String,
    },
    /// Generate a new API key and the `sha256:` line for the policy file;
    /// with --ed25519, a Standard Webhooks `whsk_` signing key and its
    /// `whpk_` public key instead.
    Keygen {
        #[arg(long)]
        ed25519: bool,
    },
    /// List, show and replay deliveries (a client of the admin API).
    Deliveries {
        #[command(subcommand)]
        command: DeliveriesCommand,
        #[command(flatten)]
        target: Target,
    },
    /// The health and state of each webhook; `disable ID` / `enable ID`
    /// stop or resume sending to one, `test ID` sends it a test event (a
    /// client of the admin API).
    Webhooks {
        #[command(subcommand)]
        command: Option<WebhooksCommand>,
        #[command(flatten)]
        target: Target,
    },
    /// Each event-bus source: state, lag, counts, last error; `rejects ID`
    /// lists what a source refused (a client of the admin API).
    Sources {
        #[command(subcommand)]
        command: Option<SourcesCommand>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
pub enum SourcesCommand {
    /// The messages a source could not turn into events, newest first.
    Rejects {
        id: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Stop sending to a webhook: its deliveries stay pending until enabled.
    Disable { id: String },
    /// Resume sending to a webhook disabled at runtime.
    Enable { id: String },
    /// Send a signed test event (`aion.webhooks.test`) through the
    /// webhook's real path and print the first attempt's outcome; exits 1
    /// unless it succeeded.
    Test { id: String },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file: exit 0 if valid, 1 with every error otherwise.
    Check {
        #[arg(env = "AION_WEBHOOKS_POLICY", default_value = DEFAULT_POLICY)]
        file: PathBuf,
    },
    /// List the webhooks that would receive TOPIC, with the pattern that matched.
    Match(policy_match::MatchArgs),
    /// The policy a running engine has in force, and its last reload.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Ask a running engine to reload its policy file now.
    Reload {
        #[command(flatten)]
        target: Target,
    },
}

/// Runs one command. Errors that are the user's (bad file, bad signature)
/// are printed here and become exit code 1; `Err` is for the unexpected.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { policy, listen } => crate::app::serve_blocking(policy, listen),
        Command::Migrate => crate::app::migrate_blocking(),
        Command::Policy(PolicyCommand::Check { file }) => Ok(policy_check(&file)),
        Command::Policy(PolicyCommand::Status { target }) => {
            operator::call(&target, Request::Get("/v1/policy".into()), View::Policy)
        }
        Command::Policy(PolicyCommand::Reload { target }) => operator::call(
            &target,
            Request::Post("/v1/policy/reload".into(), serde_json::json!({})),
            View::Policy,
        ),
        Command::Deliveries { command, target } => match operator::deliveries(command) {
            Ok((request, view)) => operator::call(&target, request, view),
            Err(e) => {
                eprintln!("error: {e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Webhooks { command, target } => {
            let (request, view) = match command {
                None => (Request::Get("/v1/webhooks".into()), View::Webhooks),
                Some(WebhooksCommand::Disable { id }) => (
                    Request::Post(
                        format!("/v1/webhooks/{}/disable", operator::path(&id)),
                        serde_json::json!({}),
                    ),
                    View::Plain,
                ),
                Some(WebhooksCommand::Enable { id }) => (
                    Request::Post(
                        format!("/v1/webhooks/{}/enable", operator::path(&id)),
                        serde_json::json!({}),
                    ),
                    View::Plain,
                ),
                Some(WebhooksCommand::Test { id }) => (
                    Request::Post(
                        format!("/v1/webhooks/{}/test", operator::path(&id)),
                        serde_json::json!({}),
                    ),
                    View::TestSend,
                ),
            };
            operator::call(&target, request, view)
        }
        Command::Sources { command, target } => {
            let (request, view) = match command {
                None => (Request::Get("/v1/sources".into()), View::Sources),
                Some(SourcesCommand::Rejects { id, limit }) => (
                    Request::Get(format!(
                        "/v1/sources/{}/rejects?limit={limit}",
                        operator::path(&id)
                    )),
                    View::Rejects,
                ),
            };
            operator::call(&target, request, view)
        }
        Command::Policy(PolicyCommand::Match(args)) => Ok(policy_match::run(&args)),
        Command::Sign { secret, timestamp } => {
            let body = read_stdin()?;
            let t = timestamp.unwrap_or_else(unix_now);
            let keys: Vec<&[u8]> = secret.iter().map(|s| s.as_bytes()).collect();
            println!("{}", aion_sign(&keys, t, &body));
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            secret,
            signature,
            id,
            timestamp,
            tolerance,
        } => {
            let tolerance =
                parse_duration(&tolerance).map_err(|e| anyhow::anyhow!("--tolerance: {e}"))?;
            let body = read_stdin()?;
            let verdict = match id.zip(timestamp) {
                Some((id, t)) => {
                    let keys = VerifyKeys::parse(&secret)?;
                    keys.verify(&id, &t, &signature, &body, tolerance.as_secs())
                }
                None => {
                    let keys: Vec<&[u8]> = secret.iter().map(|s| s.as_bytes()).collect();
                    aion_verify(&signature, &keys, &body, unix_now(), tolerance.as_secs())
                }
            };
            match verdict {
                Ok(t) => {
                    println!("valid (t={t})");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("invalid: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Keygen { ed25519 } => {
            let out = &mut std::io::stdout().lock();
            if ed25519 {
                keygen_ed25519(out)?;
            } else {
                keygen(out)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn policy_check(file: &std::path::Path) -> ExitCode {
    match PolicySet::load_file(file) {
        Ok(p) => {
            println!(
                "{}: ok ({} webhook{}, {} inbound action{}, {} api key{}) sha256={}",
                file.display(),
                p.webhooks().len(),
                plural(p.webhooks().len()),
                p.inbound().map_or(0, |i| i.actions.len()),
                plural(p.inbound().map_or(0, |i| i.actions.len())),
                p.auth().api_keys.len(),
                plural(p.auth().api_keys.len()),
                p.sha256()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .context("reading the body from stdin")?;
    Ok(body)
}

pub(super) fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
