//! Checking an event's payload against its topic's JSON Schema (issue 16).

use serde_json::value::RawValue;

use super::IngestFailure;
use crate::domain::{EventVersion, Topic};
use crate::policy::PolicySet;
use crate::policy::schemas::{SchemaMode, Violation};

/// A `warn`-mode violation: the violations as JSON text, and the schema
/// entry's topic pattern (the metrics label: bounded by the policy, not by
/// what producers send).
pub(super) struct Warned {
    pub errors: String,
    pub pattern: String,
}

/// Checks `payload` against its topic's schema, if the policy has one:
/// `Err` in `enforce` mode, the violations in `warn` mode.
pub(super) fn check_schema(
    policy: &PolicySet,
    topic: &Topic,
    version: Option<&EventVersion>,
    payload: &RawValue,
    prefix: &str,
) -> Result<Option<Warned>, IngestFailure> {
    let Some(entry) = policy.schemas().for_topic(topic) else {
        return Ok(None);
    };
    // serde_json's own nesting limit (128) bounds the validator's recursion.
    let value: serde_json::Value =
        serde_json::from_str(payload.get()).map_err(|e| IngestFailure::Invalid {
            field: format!("{prefix}payload"),
            message: format!(
                "the payload cannot be checked against the schema of topic {topic}: {e}"
            ),
        })?;
    match entry.check(version, &value) {
        Ok(()) => Ok(None),
        Err(failed) if failed.mode == SchemaMode::Enforce => Err(IngestFailure::SchemaViolation {
            field: format!("{prefix}payload"),
            topic: topic.to_string(),
            pattern: entry.topic.to_string(),
            violations: failed.violations,
        }),
        Err(failed) => Ok(Some(Warned {
            errors: serde_json::to_string(&failed.violations).unwrap_or_else(|_| "[]".into()),
            pattern: entry.topic.to_string(),
        })),
    }
}

/// The message of a `422 schema_violation`. The schema's file is not named:
/// it would show producers the server's layout.
pub(super) fn schema_message(topic: &str, violations: &[Violation]) -> String {
    let mut message = format!("the payload does not match the schema of topic {topic}");
    for (i, v) in violations.iter().enumerate() {
        let at = if v.pointer.is_empty() {
            "(root)"
        } else {
            &v.pointer
        };
        message.push_str(&format!(
            "{} at {at}: {} [{}]",
            if i == 0 { ":" } else { ";" },
            v.message,
            v.keyword
        ));
    }
    message
}
