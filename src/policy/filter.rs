//! A webhook's `filter:` (contract §10), compiled once per policy and
//! evaluated at fan-out on the event as delivered: conditions on
//! `payload.<path>` and the envelope (`tenant_id`, `source`, `key`,
//! `version`, `topic`), combined with `$and`, `$or`, `$not`.
//!
//! Comparison follows JSON types: numbers as exact decimals ([`Decimal`]),
//! strings by code point; a comparison between different types, or with a
//! missing field, is false, so `$ne` and `$nin` (the negations of `$eq` and
//! `$in`) are true for a missing field. Pure: no I/O.

use std::collections::{BTreeMap, HashMap};

use serde_json::value::RawValue;

use crate::domain::decimal::Decimal;

/// A compiled filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Cond(Field, Op),
}

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    /// `payload` (the whole payload) or `payload.a.b.0` (members and array
    /// indexes).
    Payload(Vec<String>),
    TenantId,
    Source,
    Key,
    Version,
    Topic,
}

/// A condition's operator and operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Eq(Value),
    Ne(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
}

/// A JSON value, numbers kept exact.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Decimal),
    String(String),
    Array(Vec<Value>),
    Object(BTreeMap<String, Value>),
}

/// The event a filter looks at. `payload` is the payload's JSON text.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub payload: &'a str,
    pub tenant_id: Option<&'a str>,
    pub source: Option<&'a str>,
    pub key: Option<&'a str>,
    /// The `event_version` as JSON (`3` or `"1.2.0"`).
    pub version: Option<&'a str>,
    pub topic: &'a str,
}

/// One event's fields as the filters of a policy read them: each path is
/// resolved once per event, however many webhooks look at it.
#[derive(Debug)]
pub struct Lookup<'a> {
    subject: Subject<'a>,
    cache: HashMap<Field, Option<Value>>,
}

impl<'a> Lookup<'a> {
    pub fn new(subject: Subject<'a>) -> Self {
        Self {
            subject,
            cache: HashMap::new(),
        }
    }

    fn get(&mut self, field: &Field) -> Option<&Value> {
        if !self.cache.contains_key(field) {
            let s = self.subject;
            let text = |t: Option<&str>| t.map(|t| Value::String(t.to_owned()));
            let v = match field {
                Field::Payload(path) => resolve(s.payload, path),
                Field::TenantId => text(s.tenant_id),
                Field::Source => text(s.source),
                Field::Key => text(s.key),
                Field::Topic => text(Some(s.topic)),
                Field::Version => s.version.and_then(parse),
            };
            self.cache.insert(field.clone(), v);
        }
        self.cache.get(field).and_then(Option::as_ref)
    }
}

impl Filter {
    /// Whether the event passes ([`Filter::check`] says why not).
    pub fn admits(&self, event: &mut Lookup<'_>) -> bool {
        match self {
            Self::And(all) => all.iter().all(|f| f.admits(event)),
            Self::Or(any) => any.iter().any(|f| f.admits(event)),
            Self::Not(inner) => !inner.admits(event),
            Self::Cond(field, op) => op.holds(event.get(field)),
        }
    }

    /// `Ok` if the event passes, else the condition that refused it.
    pub fn check(&self, event: &mut Lookup<'_>) -> Result<(), String> {
        match self {
            Self::And(all) => all.iter().try_for_each(|f| f.check(event)),
            Self::Or(any) => {
                let mut why = Vec::new();
                for f in any {
                    match f.check(event) {
                        Ok(()) => return Ok(()),
                        Err(e) => why.push(e),
                    }
                }
                Err(format!("no branch of $or matched ({})", why.join("; ")))
            }
            Self::Not(inner) => match inner.check(event) {
                Ok(()) => Err(format!("$not: {} matched", inner.describe())),
                Err(_) => Ok(()),
            },
            Self::Cond(field, op) => {
                let got = event.get(field);
                if op.holds(got) {
                    Ok(())
                } else {
                    let got =
                        got.map_or_else(|| "missing".to_owned(), |v| format!("got {}", v.show()));
                    Err(format!("{} {}: {got}", field.name(), op.show()))
                }
            }
        }
    }

    /// The filter as written, roughly, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::And(all) => format!(
                "$and [{}]",
                all.iter()
                    .map(Self::describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Or(any) => format!(
                "$or [{}]",
                any.iter()
                    .map(Self::describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Not(inner) => format!("$not {}", inner.describe()),
            Self::Cond(field, op) => format!("{} {}", field.name(), op.show()),
        }
    }
}

impl Field {
    pub fn name(&self) -> String {
        match self {
            Self::Payload(path) if path.is_empty() => "payload".into(),
            Self::Payload(path) => format!("payload.{}", path.join(".")),
            Self::TenantId => "tenant_id".into(),
            Self::Source => "source".into(),
            Self::Key => "key".into(),
            Self::Version => "version".into(),
            Self::Topic => "topic".into(),
        }
    }
}

impl Op {
    fn holds(&self, got: Option<&Value>) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let order = |want: &Value| got.and_then(|g| g.order(want));
        match self {
            Self::Eq(v) => got.is_some_and(|g| g == v),
            Self::Ne(v) => !got.is_some_and(|g| g == v),
            Self::Gt(v) => order(v) == Some(Greater),
            Self::Gte(v) => matches!(order(v), Some(Greater | Equal)),
            Self::Lt(v) => order(v) == Some(Less),
            Self::Lte(v) => matches!(order(v), Some(Less | Equal)),
            Self::In(vs) => got.is_some_and(|g| vs.contains(g)),
            Self::Nin(vs) => !got.is_some_and(|g| vs.contains(g)),
            Self::Exists(want) => got.is_some() == *want,
        }
    }

    fn show(&self) -> String {
        let list = |vs: &[Value]| {
            format!(
                "[{}]",
                vs.iter().map(Value::show).collect::<Vec<_>>().join(", ")
            )
        };
        match self {
            Self::Eq(v) => format!("$eq {}", v.show()),
            Self::Ne(v) => format!("$ne {}", v.show()),
            Self::Gt(v) => format!("$gt {}", v.show()),
            Self::Gte(v) => format!("$gte {}", v.show()),
            Self::Lt(v) => format!("$lt {}", v.show()),
            Self::Lte(v) => format!("$lte {}", v.show()),
            Self::In(vs) => format!("$in {}", list(vs)),
            Self::Nin(vs) => format!("$nin {}", list(vs)),
            Self::Exists(b) => format!("$exists {b}"),
        }
    }
}

impl Value {
    /// The order of two numbers or two strings; `None` across types.
    fn order(&self, other: &Self) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Self::Number(a), Self::Number(b)) => Some(a.cmp(b)),
            (Self::String(a), Self::String(b)) => Some(a.as_str().cmp(b.as_str())),
            _ => None,
        }
    }

    /// Short JSON-ish text for messages (at most 64 characters).
    pub fn show(&self) -> String {
        let text = match self {
            Self::Null => "null".into(),
            Self::Bool(b) => b.to_string(),
            Self::Number(d) => d.canonical(),
            Self::String(s) => format!("{s:?}"),
            Self::Array(a) => format!("[{} items]", a.len()),
            Self::Object(o) => format!("{{{} members}}", o.len()),
        };
        match text.char_indices().nth(64) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text,
        }
    }
}

/// The value at `path` inside the JSON text `payload`, if there is one.
fn resolve(payload: &str, path: &[String]) -> Option<Value> {
    let mut at: &RawValue = serde_json::from_str(payload).ok()?;
    for seg in path {
        let text = at.get().trim_start();
        at = if text.starts_with('{') {
            let members: HashMap<String, &RawValue> = serde_json::from_str(text).ok()?;
            members.get(seg.as_str()).copied()?
        } else if text.starts_with('[') {
            let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
            items.get(seg.parse::<usize>().ok()?).copied()?
        } else {
            return None;
        };
    }
    parse(at.get())
}

/// The JSON text's value, numbers exact. Depth is bounded by the payload
/// checks at ingest (and serde_json's own limit).
fn parse(text: &str) -> Option<Value> {
    let text = text.trim();
    Some(match text.as_bytes().first()? {
        b'"' => Value::String(serde_json::from_str(text).ok()?),
        b't' | b'f' => Value::Bool(serde_json::from_str(text).ok()?),
        b'n' => Value::Null,
        b'{' => {
            let members: BTreeMap<String, &RawValue> = serde_json::from_str(text).ok()?;
            Value::Object(
                members
                    .into_iter()
                    .map(|(k, v)| Some((k, parse(v.get())?)))
                    .collect::<Option<_>>()?,
            )
        }
        b'[' => {
            let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
            Value::Array(
                items
                    .into_iter()
                    .map(|v| parse(v.get()))
                    .collect::<Option<_>>()?,
            )
        }
        _ => Value::Number(Decimal::parse(text)?),
    })
}

#[cfg(test)]
mod tests;
