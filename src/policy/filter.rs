//! A webhook's `filter:` (contract §10), compiled once per policy and
//! evaluated at fan-out on the event as delivered: conditions on
//! `payload.<path>` and the envelope (`tenant_id`, `source`, `key`,
//! `version`, `topic`), combined with `$and`, `$or`, `$not`.
//!
//! Comparison follows JSON types: numbers as exact decimals ([`Decimal`]),
//! strings by code point, arrays and objects as JSON values; a comparison
//! between different types, or with a missing field, is false — `$ne`,
//! `$nin` included — except that `$ne` and `$nin` are true for a missing
//! field (contract §10). Pure: no I/O, and no recursion over the event:
//! an array or object field is compared through the iterative
//! [`same_value`], so no payload depth can overflow a stack.

use std::collections::HashMap;

use serde_json::value::RawValue;

use crate::domain::decimal::Decimal;
use crate::domain::payload::same_value;

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

/// A filter's operand: a JSON value, numbers kept exact; an array or an
/// object as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Decimal),
    String(String),
    /// `[…]` or `{…}`, compared as a JSON value.
    Composite(String),
}

/// A field's value in one event: a scalar, or an array or object left as
/// the event's text.
#[derive(Debug, Clone)]
enum Got<'a> {
    Scalar(Value),
    Composite(&'a str),
}

/// JSON's types, for "a comparison between different types is false".
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
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
    /// The payload's top-level members, read once (`None` until needed;
    /// empty when the payload is not an object).
    top: Option<HashMap<String, &'a RawValue>>,
    cache: HashMap<Field, Option<Got<'a>>>,
}

impl<'a> Lookup<'a> {
    pub fn new(subject: Subject<'a>) -> Self {
        Self {
            subject,
            top: None,
            cache: HashMap::new(),
        }
    }

    fn get(&mut self, field: &Field) -> Option<&Got<'a>> {
        if !self.cache.contains_key(field) {
            let s = self.subject;
            let text = |t: Option<&str>| t.map(|t| Got::Scalar(Value::String(t.to_owned())));
            let v = match field {
                Field::Payload(path) => match path.split_first() {
                    None => leaf(s.payload),
                    Some((first, rest)) => {
                        let top = self
                            .top
                            .get_or_insert_with(|| members(s.payload).unwrap_or_default());
                        top.get(first.as_str())
                            .and_then(|at| resolve(at.get(), rest))
                    }
                },
                Field::TenantId => text(s.tenant_id),
                Field::Source => text(s.source),
                Field::Key => text(s.key),
                Field::Topic => text(Some(s.topic)),
                Field::Version => s.version.and_then(leaf),
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
    fn holds(&self, got: Option<&Got<'_>>) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let Some(got) = got else {
            // A missing field: only $ne, $nin and `$exists: false` hold.
            return matches!(self, Self::Ne(_) | Self::Nin(_) | Self::Exists(false));
        };
        // `Some(equal?)` for values of one type, `None` across types.
        let compare = |want: &Value| (got.kind() == want.kind()).then(|| got.equals(want));
        let order = |want: &Value| match (got, want) {
            (Got::Scalar(Value::Number(a)), Value::Number(b)) => Some(a.cmp(b)),
            (Got::Scalar(Value::String(a)), Value::String(b)) => Some(a.as_str().cmp(b.as_str())),
            _ => None,
        };
        match self {
            Self::Eq(v) => compare(v) == Some(true),
            Self::Ne(v) => compare(v) == Some(false),
            Self::Gt(v) => order(v) == Some(Greater),
            Self::Gte(v) => matches!(order(v), Some(Greater | Equal)),
            Self::Lt(v) => order(v) == Some(Less),
            Self::Lte(v) => matches!(order(v), Some(Less | Equal)),
            Self::In(vs) => vs.iter().any(|v| compare(v) == Some(true)),
            Self::Nin(vs) => vs.iter().all(|v| compare(v) == Some(false)),
            Self::Exists(want) => *want,
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
    fn kind(&self) -> Kind {
        match self {
            Self::Null => Kind::Null,
            Self::Bool(_) => Kind::Bool,
            Self::Number(_) => Kind::Number,
            Self::String(_) => Kind::String,
            Self::Composite(text) => composite_kind(text),
        }
    }

    /// Short JSON-ish text for messages (at most 64 characters).
    pub fn show(&self) -> String {
        let text = match self {
            Self::Null => "null".into(),
            Self::Bool(b) => b.to_string(),
            Self::Number(d) => d.canonical(),
            Self::String(s) => format!("{s:?}"),
            Self::Composite(text) => text.clone(),
        };
        match text.char_indices().nth(64) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text,
        }
    }
}

impl Got<'_> {
    fn kind(&self) -> Kind {
        match self {
            Self::Scalar(v) => v.kind(),
            Self::Composite(text) => composite_kind(text),
        }
    }

    /// Equality with `want`, of the same kind.
    fn equals(&self, want: &Value) -> bool {
        match (self, want) {
            (Self::Composite(text), Value::Composite(w)) => same_value(text, w),
            (Self::Scalar(v), w) => v == w,
            _ => false,
        }
    }

    fn show(&self) -> String {
        match self {
            Self::Scalar(v) => v.show(),
            Self::Composite(text) => Value::Composite(text.chars().take(65).collect()).show(),
        }
    }
}

fn composite_kind(text: &str) -> Kind {
    if text.trim_start().starts_with('[') {
        Kind::Array
    } else {
        Kind::Object
    }
}

/// The members of a JSON object text; `None` if it is not one (or a
/// member name cannot be decoded: a lone surrogate).
fn members(text: &str) -> Option<HashMap<String, &RawValue>> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// The value at `path` inside the JSON text `at`, if there is one. One
/// level of objects or arrays is read per segment: no recursion.
fn resolve<'a>(mut at: &'a str, path: &[String]) -> Option<Got<'a>> {
    for seg in path {
        let text = at.trim_start();
        let next: &'a RawValue = if text.starts_with('{') {
            members(text)?.get(seg.as_str())?
        } else if text.starts_with('[') {
            let items: Vec<&'a RawValue> = serde_json::from_str(text).ok()?;
            items.get(seg.parse::<usize>().ok()?).copied()?
        } else {
            return None;
        };
        at = next.get();
    }
    leaf(at)
}

/// A JSON text as a field's value: scalars decoded (numbers exact), arrays
/// and objects kept as text.
fn leaf(text: &str) -> Option<Got<'_>> {
    let text = text.trim();
    Some(match text.as_bytes().first()? {
        // A string with a lone surrogate cannot be decoded: kept as text,
        // it equals only the same text.
        b'"' => match serde_json::from_str(text) {
            Ok(s) => Got::Scalar(Value::String(s)),
            Err(_) => Got::Composite(text),
        },
        b't' => Got::Scalar(Value::Bool(true)),
        b'f' => Got::Scalar(Value::Bool(false)),
        b'n' => Got::Scalar(Value::Null),
        b'{' | b'[' => Got::Composite(text),
        _ => Got::Scalar(Value::Number(Decimal::parse(text)?)),
    })
}

#[cfg(test)]
mod tests;
