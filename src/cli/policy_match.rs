//! `aion-webhooks policy match TOPIC`: which webhooks of a policy file an
//! event would go to, and with `--payload`, what each webhook's `filter:`
//! says about it (contract §10).

use std::path::PathBuf;
use std::process::ExitCode;

use super::DEFAULT_POLICY;
use crate::domain::{EventVersion, Topic};
use crate::policy::PolicySet;
use crate::policy::filter::{Lookup, Subject};

#[derive(Debug, clap::Args)]
pub struct MatchArgs {
    topic: String,
    #[arg(long, env = "AION_WEBHOOKS_POLICY", default_value = DEFAULT_POLICY)]
    policy: PathBuf,
    /// Route as an event of this tenant (webhooks with `tenants:` filter on it).
    #[arg(long)]
    tenant: Option<String>,
    /// A JSON file holding the event's payload, for the webhooks' `filter:`
    /// (without it, `{}`).
    #[arg(long)]
    payload: Option<PathBuf>,
    /// The event's `source`, for filters.
    #[arg(long)]
    source: Option<String>,
    /// The event's `key`, for filters.
    #[arg(long)]
    key: Option<String>,
    /// The event's `event_version` (`3` or `1.2.0`), for filters and
    /// `min_version`.
    #[arg(long)]
    version: Option<String>,
}

/// Prints one line per webhook whose topics match: id, pattern, URL, and
/// whether it gets the event (`min_version`, `filter`).
pub fn run(args: &MatchArgs) -> ExitCode {
    let topic = match Topic::parse(&args.topic) {
        Ok(t) => t,
        Err(e) => return fail(format!("invalid topic {:?}: {e}", args.topic)),
    };
    let policy = match PolicySet::load_file(&args.policy) {
        Ok(p) => p,
        Err(errors) => return fail(errors.to_string()),
    };
    let payload = match &args.payload {
        None => "{}".to_owned(),
        Some(file) => match std::fs::read_to_string(file) {
            Ok(text) if crate::domain::payload::check(&text).is_ok() => text,
            Ok(_) => {
                return fail(format!(
                    "{}: not a JSON value the engine accepts as a payload",
                    file.display()
                ));
            }
            Err(e) => return fail(format!("cannot read {}: {e}", file.display())),
        },
    };
    let version = match args.version.as_deref().map(version_json) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => return fail(format!("--version: {e}")),
    };
    let mut lookup = Lookup::new(Subject {
        payload: &payload,
        tenant_id: args.tenant.as_deref(),
        source: args.source.as_deref(),
        key: args.key.as_deref(),
        version: version.as_ref().map(EventVersion::json),
        topic: topic.as_str(),
    });
    let routes = policy.route(&topic, args.tenant.as_deref());
    if routes.is_empty() {
        println!("no webhook receives {topic}");
    }
    for r in routes {
        let w = r.webhook;
        let verdict = if !w.accepts_version(version.as_ref()) {
            "  (below its min_version: not delivered)".to_owned()
        } else {
            match w.filter.as_ref().map(|f| f.check(&mut lookup)) {
                None => String::new(),
                Some(Ok(())) => "  (filter admits it)".to_owned(),
                Some(Err(why)) => format!("  (filter refuses it: {why})"),
            }
        };
        let disabled = if w.enabled {
            ""
        } else {
            "  (disabled: kept pending)"
        };
        let url = crate::domain::redact::url_origin(&w.url);
        println!("{}\t{}\t{url}{verdict}{disabled}", w.id, r.pattern);
    }
    ExitCode::SUCCESS
}

/// `--version` as the engine reads `event_version`: an integer, or a
/// version string.
fn version_json(text: &str) -> Result<EventVersion, String> {
    let json = if text.bytes().all(|b| b.is_ascii_digit()) {
        text.to_owned()
    } else {
        serde_json::Value::String(text.to_owned()).to_string()
    };
    EventVersion::from_json(&json)
}

fn fail(message: String) -> ExitCode {
    eprintln!("{message}");
    ExitCode::FAILURE
}
