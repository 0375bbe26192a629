//! Filters on a table of payloads (issue 30, item 5): every operator,
//! missing paths, type mismatches, numbers as exact decimals, deep
//! payloads, the envelope fields; and what `policy check` says about bad
//! filters.

use super::*;
use crate::policy::PolicySet;

/// The filter of webhook `a` in a policy whose `filter:` is `yaml` (a flow
/// mapping).
fn compile(yaml: &str) -> Result<Filter, String> {
    let text = format!(
        "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secret: s\n    topics: [x]\n    filter: {yaml}\n"
    );
    match PolicySet::parse(&text, "t", std::path::Path::new("."), &|_| None) {
        Ok(p) => Ok((*p.webhook("a").unwrap().filter.clone().expect("a filter")).clone()),
        Err(e) => Err(e
            .errors
            .iter()
            .map(|e| format!("{}:{}: {}: {}", e.line, e.column, e.path, e.message))
            .collect::<Vec<_>>()
            .join("\n")),
    }
}

fn subject(payload: &str) -> Subject<'_> {
    Subject {
        payload,
        tenant_id: Some("t1"),
        source: Some("billing"),
        key: None,
        version: Some("2"),
        topic: "order.paid",
    }
}

fn admits(filter: &str, payload: &str) -> bool {
    let f = compile(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
    f.admits(&mut Lookup::new(subject(payload)))
}

#[test]
fn operators_on_a_table_of_payloads() {
    let cases: &[(&str, &str, bool)] = &[
        // Equality: by JSON type and exact value.
        ("{payload.status: paid}", r#"{"status":"paid"}"#, true),
        ("{payload.status: paid}", r#"{"status":"Paid"}"#, false),
        ("{payload.amount: 1000}", r#"{"amount":1000.0}"#, true),
        ("{payload.amount: 1000}", r#"{"amount":1e3}"#, true),
        ("{payload.amount: 1000}", r#"{"amount":"1000"}"#, false),
        ("{payload.flag: true}", r#"{"flag":true}"#, true),
        ("{payload.gone: null}", r#"{"gone":null}"#, true),
        ("{payload.gone: null}", r#"{}"#, false),
        ("{payload.tags: [a, b]}", r#"{"tags":["a","b"]}"#, true),
        ("{payload.tags: [a, b]}", r#"{"tags":["b","a"]}"#, false),
        ("{payload.who: {id: 7}}", r#"{"who":{"id":7.0}}"#, true),
        // $ne / $nin are true for a missing field and another type.
        (
            "{payload.status: {$ne: paid}}",
            r#"{"status":"open"}"#,
            true,
        ),
        ("{payload.status: {$ne: paid}}", r#"{}"#, true),
        (
            "{payload.status: {$ne: paid}}",
            r#"{"status":"paid"}"#,
            false,
        ),
        (
            "{payload.status: {$in: [paid, refunded]}}",
            r#"{"status":"refunded"}"#,
            true,
        ),
        ("{payload.status: {$in: [paid, refunded]}}", r#"{}"#, false),
        ("{payload.status: {$nin: [paid, refunded]}}", r#"{}"#, true),
        (
            "{payload.status: {$nin: [paid, refunded]}}",
            r#"{"status":"paid"}"#,
            false,
        ),
        // Order: numbers exactly, strings by code point, never across types.
        ("{payload.amount: {$gte: 1000}}", r#"{"amount":1000}"#, true),
        (
            "{payload.amount: {$gt: 1000}}",
            r#"{"amount":1000.0000000000000000001}"#,
            true,
        ),
        (
            "{payload.amount: {$gt: 1000}}",
            r#"{"amount":1000.000}"#,
            false,
        ),
        (
            "{payload.amount: {$lt: 12345678901234567891}}",
            r#"{"amount":12345678901234567890}"#,
            true,
        ),
        ("{payload.amount: {$lte: 0.1}}", r#"{"amount":0.1}"#, true),
        ("{payload.amount: {$gt: 5}}", r#"{"amount":"6"}"#, false),
        ("{payload.amount: {$lt: 5}}", r#"{"amount":"6"}"#, false),
        ("{payload.amount: {$gt: 5}}", r#"{}"#, false),
        (
            "{payload.amount: {$gte: 10, $lt: 20}}",
            r#"{"amount":15}"#,
            true,
        ),
        (
            "{payload.amount: {$gte: 10, $lt: 20}}",
            r#"{"amount":20}"#,
            false,
        ),
        ("{payload.name: {$gt: Zed}}", r#"{"name":"alice"}"#, true),
        ("{payload.name: {$gt: \"é\"}}", r#"{"name":"z"}"#, false),
        // $exists.
        ("{payload.note: {$exists: true}}", r#"{"note":null}"#, true),
        ("{payload.note: {$exists: false}}", r#"{}"#, true),
        ("{payload.note: {$exists: false}}", r#"{"note":1}"#, false),
        // Deep paths and array indexes; a path through a scalar is missing.
        ("{payload.a.b.c.d: 1}", r#"{"a":{"b":{"c":{"d":1}}}}"#, true),
        (
            "{payload.items.1.sku: B}",
            r#"{"items":[{"sku":"A"},{"sku":"B"}]}"#,
            true,
        ),
        (
            "{payload.items.9.sku: {$exists: true}}",
            r#"{"items":[]}"#,
            false,
        ),
        ("{payload.a.b: 1}", r#"{"a":5}"#, false),
        ("{payload: 5}", r#"5"#, true),
        // Combinators.
        (
            "{$and: [{payload.a: 1}, {payload.b: 2}]}",
            r#"{"a":1,"b":2}"#,
            true,
        ),
        (
            "{$and: [{payload.a: 1}, {payload.b: 2}]}",
            r#"{"a":1,"b":3}"#,
            false,
        ),
        (
            "{$or: [{payload.a: 1}, {payload.b: 2}]}",
            r#"{"a":0,"b":2}"#,
            true,
        ),
        ("{$or: [{payload.a: 1}, {payload.b: 2}]}", r#"{}"#, false),
        ("{$not: {payload.a: 1}}", r#"{"a":2}"#, true),
        ("{$not: {payload.a: 1}}", r#"{"a":1}"#, false),
        ("{payload.a: 1, payload.b: 2}", r#"{"a":1,"b":2}"#, true),
        // The envelope.
        (
            "{tenant_id: t1, source: billing, topic: order.paid}",
            "{}",
            true,
        ),
        ("{key: {$exists: false}}", "{}", true),
        ("{version: {$gte: 2}}", "{}", true),
        ("{tenant_id: {$in: [t2, t3]}}", "{}", false),
    ];
    for (filter, payload, want) in cases {
        assert_eq!(admits(filter, payload), *want, "{filter} on {payload}");
    }
}

#[test]
fn a_deep_payload_is_read_without_trouble() {
    let depth = 120;
    let payload = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
    let path = vec!["a"; depth].join(".");
    assert!(admits(&format!("{{payload.{path}: 1}}"), &payload));
    assert!(!admits("{payload.b: 1}", &payload));
    // A 50,000-deep value under a filtered field is compared without
    // recursion (ingest accepts such payloads).
    let deep = format!(
        r#"{{"status": {}1{}}}"#,
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    assert!(!admits("{payload.status: paid}", &deep));
    assert!(admits("{payload.status: {$exists: true}}", &deep));
    assert!(!admits("{payload.status: [1]}", &deep));
    assert!(!admits("{payload: {a: 1}}", &deep));
}

#[test]
fn arrays_and_objects_compare_as_json_values() {
    assert!(admits(
        "{payload.who: {id: 7, tags: [a, 1.50]}}",
        r#"{"who":{"tags":["a",1.5],"id":7.0}}"#
    ));
    assert!(!admits(
        "{payload.who: {id: 7}}",
        r#"{"who":{"id":7,"x":1}}"#
    ));
    assert!(admits("{payload.t: {$in: [[1, 2], [3]]}}", r#"{"t":[3]}"#));
    // A lone surrogate: present, equal only to itself.
    assert!(admits("{payload.s: {$exists: true}}", r#"{"s":"\udc00"}"#));
    assert!(!admits("{payload.s: x}", r#"{"s":"\udc00"}"#));
}

#[test]
fn a_refusal_names_the_condition_and_what_was_there() {
    let f = compile("{$and: [{payload.amount: {$gte: 1000}}, {payload.status: {$in: [paid]}}]}")
        .unwrap();
    let why = f
        .check(&mut Lookup::new(subject(
            r#"{"amount":500,"status":"paid"}"#,
        )))
        .unwrap_err();
    assert_eq!(why, "payload.amount $gte 1e3: got 5e2");
    let why = f
        .check(&mut Lookup::new(subject(r#"{"amount":5000}"#)))
        .unwrap_err();
    assert_eq!(why, "payload.status $in [\"paid\"]: missing");
}

#[test]
fn bad_filters_are_refused_at_their_line() {
    for (yaml, want) in [
        ("[a]", "a filter is a mapping"),
        ("{}", "an empty filter"),
        ("{amount: 5}", "unknown field \"amount\""),
        ("{payload..a: 5}", "unknown field"),
        (
            "{payload.a: {$gt: [1]}}",
            "$gt compares a number or a string",
        ),
        ("{payload.a: {$in: 5}}", "$in takes a list"),
        (
            "{payload.a: {$exists: \"yes\"}}",
            "$exists takes true or false",
        ),
        ("{payload.a: {$regex: x}}", "unknown operator \"$regex\""),
        ("{payload.a: {$gt: 1, b: 2}}", "beside operators"),
        ("{$and: {payload.a: 1}}", "$and takes a list"),
        ("{$or: []}", "needs at least one"),
        ("{$nor: []}", "unknown \"$nor\""),
        ("{payload.a: .inf}", "non-finite"),
    ] {
        let err = compile(yaml).expect_err(yaml);
        assert!(err.contains(want), "{yaml}: {err}");
        assert!(err.starts_with("7:"), "{yaml}: at the filter's line: {err}");
    }
}
