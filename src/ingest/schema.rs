//! Checking an event's payload against its topic's JSON Schema (issue 16).

use serde_json::value::RawValue;

use super::IngestFailure;
use crate::domain::{EventVersion, Topic};
use crate::policy::PolicySet;
use crate::policy::schemas::{SchemaMode, Violation};

/// Checks `payload` against its topic's schema, if the policy has one:
/// `Err` in `enforce` mode, the violations as JSON text in `warn` mode.
pub(super) fn check_schema(
    policy: &PolicySet,
    topic: &Topic,
    version: Option<&EventVersion>,
    payload: &RawValue,
    prefix: &str,
) -> Result<Option<String>, IngestFailure> {
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
            file: failed.file,
            violations: failed.violations,
        }),
        Err(failed) => Ok(Some(
            serde_json::to_string(&failed.violations).unwrap_or_else(|_| "[]".into()),
        )),
    }
}

pub(super) fn schema_message(topic: &str, file: &str, violations: &[Violation]) -> String {
    let mut message = format!("the payload does not match the schema of topic {topic}");
    if !file.is_empty() {
        message.push_str(&format!(" ({file})"));
    }
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
