//! `schemas:` — JSON Schemas per topic (issue 16), compiled once per policy
//! snapshot and checked against every event's payload at each way in.
//!
//! The first entry whose topic pattern matches an event's topic applies
//! (`policy check` refuses an entry an earlier one shadows). An entry holds
//! one schema, or one per event version (selected by the event's major
//! version; an event without `event_version` counts as version 1).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::domain::{EventVersion, Topic, TopicPattern};

/// At most this many violations are reported for one payload.
pub const MAX_VIOLATIONS: usize = 10;

/// What a violation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaMode {
    /// Refused: `422 schema_violation`, or a source's reject.
    Enforce,
    /// Accepted, counted, and marked with its `schema_errors`.
    Warn,
}

impl SchemaMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Warn => "warn",
        }
    }
}

/// One compiled schema and the file it came from.
#[derive(Clone)]
pub struct CompiledSchema {
    pub file: String,
    validator: Arc<jsonschema::Validator>,
}

impl CompiledSchema {
    pub(crate) fn new(file: String, validator: jsonschema::Validator) -> Self {
        Self {
            file,
            validator: Arc::new(validator),
        }
    }
}

impl fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompiledSchema({})", self.file)
    }
}

/// Which schema an entry checks with.
#[derive(Debug, Clone)]
pub enum Selection {
    One(CompiledSchema),
    /// By the event's major version.
    Versions(BTreeMap<u64, CompiledSchema>),
}

/// One `schemas:` entry.
#[derive(Debug, Clone)]
pub struct SchemaEntry {
    pub topic: TopicPattern,
    pub mode: SchemaMode,
    pub selection: Selection,
}

/// Where and why a payload does not match its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// JSON pointer into the payload (`""` is the payload itself).
    pub pointer: String,
    /// The schema keyword that failed (`type`, `required`, …).
    pub keyword: String,
    /// What failed, without echoing the offending value.
    pub message: String,
}

/// A payload that failed its schema.
#[derive(Debug, Clone)]
pub struct Failed {
    pub mode: SchemaMode,
    pub violations: Vec<Violation>,
}

impl SchemaEntry {
    /// Checks `payload`; `Err` lists at most [`MAX_VIOLATIONS`] violations.
    pub fn check(
        &self,
        version: Option<&EventVersion>,
        payload: &serde_json::Value,
    ) -> Result<(), Failed> {
        let schema = match &self.selection {
            Selection::One(s) => s,
            Selection::Versions(map) => {
                let major = version.map_or(1, EventVersion::major);
                match map.get(&major) {
                    Some(s) => s,
                    None => {
                        let known: Vec<String> = map.keys().map(u64::to_string).collect();
                        return Err(Failed {
                            mode: self.mode,
                            violations: vec![Violation {
                                pointer: String::new(),
                                keyword: "event_version".into(),
                                message: format!(
                                    "no schema for version {major} of topics {}; the policy has versions {}",
                                    self.topic,
                                    known.join(", ")
                                ),
                            }],
                        });
                    }
                }
            }
        };
        let violations: Vec<Violation> = schema
            .validator
            .iter_errors(payload)
            .take(MAX_VIOLATIONS)
            .map(|e| Violation {
                pointer: e.instance_path().to_string(),
                keyword: e.kind().keyword().to_owned(),
                message: e.masked().to_string(),
            })
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Failed {
                mode: self.mode,
                violations,
            })
        }
    }
}

/// Every entry, in file order.
#[derive(Debug, Clone, Default)]
pub struct Schemas {
    entries: Vec<SchemaEntry>,
}

impl Schemas {
    pub(crate) fn new(entries: Vec<SchemaEntry>) -> Self {
        Self { entries }
    }

    /// The entry that applies to `topic`: the first whose pattern matches.
    pub fn for_topic(&self, topic: &Topic) -> Option<&SchemaEntry> {
        self.entries.iter().find(|e| e.topic.matches(topic))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
