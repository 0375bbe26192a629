//! A webhook's `filter:` (contract §10), from YAML to a compiled
//! [`Filter`]: each problem at the line and column of the node concerned.

use serde_saphyr::Spanned;

use super::Compiler;
use crate::domain::decimal::Decimal;
use crate::policy::filter::{Field, Filter, Op, Value};
use crate::policy::raw::RawNode;

/// Nesting of `$and`/`$or`/`$not` and of values.
const MAX_DEPTH: usize = 16;
/// Conditions in one filter, and values in one `$in`.
const MAX_NODES: usize = 1000;

const FIELDS: &str = "payload.<path>, tenant_id, source, key, version or topic";

impl Compiler<'_> {
    /// `filter:` at `path`; `None` after recording what is wrong.
    pub(super) fn filter(&mut self, raw: &Spanned<RawNode>, path: &str) -> Option<Filter> {
        let before = self.errors.len();
        let mut nodes = 0;
        let f = self.document(raw, path, 0, &mut nodes);
        if nodes > MAX_NODES {
            self.error(
                path,
                raw.referenced,
                format!("a filter holds at most {MAX_NODES} conditions and values"),
            );
        }
        (self.errors.len() == before).then_some(f).flatten()
    }

    /// Whether `depth` is past [`MAX_DEPTH`]; an error at `path` if so.
    fn too_deep(&mut self, depth: usize, path: &str, at: &Spanned<RawNode>) -> bool {
        if depth > MAX_DEPTH {
            self.error(
                path,
                at.referenced,
                format!("nested deeper than {MAX_DEPTH}"),
            );
        }
        depth > MAX_DEPTH
    }

    /// A mapping of conditions, all of which must hold.
    fn document(
        &mut self,
        raw: &Spanned<RawNode>,
        path: &str,
        depth: usize,
        nodes: &mut usize,
    ) -> Option<Filter> {
        if self.too_deep(depth, path, raw) {
            return None;
        }
        let RawNode::Map(members) = &raw.value else {
            self.error(
                path,
                raw.referenced,
                "a filter is a mapping of conditions (`field: value`, `field: {$op: value}`, `$and`, `$or`, `$not`)",
            );
            return None;
        };
        if members.is_empty() {
            self.error(
                path,
                raw.referenced,
                "an empty filter; leave `filter` out to take every event",
            );
            return None;
        }
        let mut all = Vec::new();
        for (key, value) in members {
            let p = format!("{path}.{key}");
            *nodes += 1;
            let f = match key.as_str() {
                "$and" | "$or" => {
                    let RawNode::Seq(items) = &value.value else {
                        self.error(
                            &p,
                            value.referenced,
                            format!("{key} takes a list of filters"),
                        );
                        continue;
                    };
                    if items.is_empty() {
                        self.error(
                            &p,
                            value.referenced,
                            format!("{key} needs at least one filter"),
                        );
                        continue;
                    }
                    let parts: Vec<_> = items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| {
                            self.document(item, &format!("{p}[{i}]"), depth + 1, nodes)
                        })
                        .collect();
                    let Some(parts) = parts.into_iter().collect::<Option<Vec<_>>>() else {
                        continue;
                    };
                    if key == "$and" {
                        Filter::And(parts)
                    } else {
                        Filter::Or(parts)
                    }
                }
                "$not" => match self.document(value, &p, depth + 1, nodes) {
                    Some(inner) => Filter::Not(Box::new(inner)),
                    None => continue,
                },
                k if k.starts_with('$') => {
                    self.error(
                        &p,
                        value.referenced,
                        format!("unknown {k:?} here; a filter combines conditions with $and, $or and $not"),
                    );
                    continue;
                }
                field => {
                    let Some(field) = self.field(field, &p, value) else {
                        continue;
                    };
                    match self.conditions(field, value, &p, depth, nodes) {
                        Some(f) => f,
                        None => continue,
                    }
                }
            };
            all.push(f);
        }
        match all.len() {
            1 => all.pop(),
            _ => Some(Filter::And(all)),
        }
    }

    fn field(&mut self, name: &str, p: &str, at: &Spanned<RawNode>) -> Option<Field> {
        let field = match name {
            "payload" => Field::Payload(Vec::new()),
            "tenant_id" => Field::TenantId,
            "source" => Field::Source,
            "key" => Field::Key,
            "version" => Field::Version,
            "topic" => Field::Topic,
            _ => match name.strip_prefix("payload.") {
                Some(path) if path.split('.').all(|s| !s.is_empty()) => {
                    Field::Payload(path.split('.').map(str::to_owned).collect())
                }
                _ => {
                    self.error(
                        p,
                        at.referenced,
                        format!("unknown field {name:?}; expected {FIELDS}"),
                    );
                    return None;
                }
            },
        };
        Some(field)
    }

    /// `field: value` (equality) or `field: {$op: value, …}` (all hold).
    fn conditions(
        &mut self,
        field: Field,
        raw: &Spanned<RawNode>,
        p: &str,
        depth: usize,
        nodes: &mut usize,
    ) -> Option<Filter> {
        let ops = match &raw.value {
            RawNode::Map(members) if members.iter().any(|(k, _)| k.starts_with('$')) => members,
            _ => {
                return Some(Filter::Cond(
                    field,
                    Op::Eq(self.value(raw, p, depth, nodes)?),
                ));
            }
        };
        let mut all = Vec::new();
        for (op, v) in ops {
            let q = format!("{p}.{op}");
            let value = |c: &mut Self, nodes: &mut usize| c.value(v, &q, depth, nodes);
            let op = match op.as_str() {
                "$eq" => Op::Eq(value(self, nodes)?),
                "$ne" => Op::Ne(value(self, nodes)?),
                "$gt" | "$gte" | "$lt" | "$lte" => {
                    let operand = value(self, nodes)?;
                    if !matches!(operand, Value::Number(_) | Value::String(_)) {
                        self.error(
                            &q,
                            v.referenced,
                            format!("{op} compares a number or a string"),
                        );
                        return None;
                    }
                    match op.as_str() {
                        "$gt" => Op::Gt(operand),
                        "$gte" => Op::Gte(operand),
                        "$lt" => Op::Lt(operand),
                        _ => Op::Lte(operand),
                    }
                }
                "$in" | "$nin" => {
                    let RawNode::Seq(items) = &v.value else {
                        self.error(&q, v.referenced, format!("{op} takes a list of values"));
                        return None;
                    };
                    let list = items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| self.value(item, &format!("{q}[{i}]"), depth + 1, nodes))
                        .collect::<Option<Vec<_>>>()?;
                    if op == "$in" {
                        Op::In(list)
                    } else {
                        Op::Nin(list)
                    }
                }
                "$exists" => match v.value {
                    RawNode::Bool(b) => Op::Exists(b),
                    _ => {
                        self.error(&q, v.referenced, "$exists takes true or false");
                        return None;
                    }
                },
                other if other.starts_with('$') => {
                    self.error(
                        &q,
                        v.referenced,
                        format!("unknown operator {other:?}; expected $eq $ne $gt $gte $lt $lte $in $nin $exists"),
                    );
                    return None;
                }
                other => {
                    self.error(
                        &q,
                        v.referenced,
                        format!("{other:?} beside operators: write either `{{$op: value}}` or a value to compare with"),
                    );
                    return None;
                }
            };
            all.push(Filter::Cond(field.clone(), op));
        }
        match all.len() {
            1 => all.pop(),
            _ => Some(Filter::And(all)),
        }
    }

    /// A YAML value as a JSON value (numbers exact as written).
    fn value(
        &mut self,
        raw: &Spanned<RawNode>,
        p: &str,
        depth: usize,
        nodes: &mut usize,
    ) -> Option<Value> {
        *nodes += 1;
        if self.too_deep(depth, p, raw) {
            return None;
        }
        let number = |c: &mut Self, text: String| match Decimal::parse(&text) {
            Some(d) => Some(Value::Number(d)),
            None => {
                c.error(
                    p,
                    raw.referenced,
                    format!("{text} is not a number the engine can compare"),
                );
                None
            }
        };
        match &raw.value {
            RawNode::Null => Some(Value::Null),
            RawNode::Bool(b) => Some(Value::Bool(*b)),
            RawNode::Int(n) => number(self, n.to_string()),
            // Debug prints the shortest round-trip digits in JSON number
            // syntax (`1000.1`, `1e-7`); the parser refuses `.inf`/`.nan`.
            RawNode::Float(f) => number(self, format!("{f:?}")),
            RawNode::Str(s) => Some(Value::String(s.clone())),
            RawNode::Seq(items) => {
                let mut parts = Vec::with_capacity(items.len());
                for (i, v) in items.iter().enumerate() {
                    let part = self.value(v, &format!("{p}[{i}]"), depth + 1, nodes)?;
                    parts.push(json(&part));
                }
                Some(Value::Composite(format!("[{}]", parts.join(","))))
            }
            RawNode::Map(members) => {
                let mut parts = Vec::with_capacity(members.len());
                for (k, v) in members {
                    if k.starts_with('$') {
                        self.error(p, v.referenced, format!("operator {k:?} inside a value"));
                        return None;
                    }
                    let part = self.value(v, &format!("{p}.{k}"), depth + 1, nodes)?;
                    let key = serde_json::Value::String(k.clone()).to_string();
                    parts.push(format!("{key}:{}", json(&part)));
                }
                Some(Value::Composite(format!("{{{}}}", parts.join(","))))
            }
        }
    }
}

/// A compiled value as JSON text (numbers in their exact form, `15e-1`).
fn json(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(d) => d.canonical(),
        Value::String(s) => serde_json::Value::String(s.clone()).to_string(),
        Value::Composite(text) => text.clone(),
    }
}
