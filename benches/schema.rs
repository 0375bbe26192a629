//! What a topic's JSON Schema costs at ingest (issue 16): `ingest::parse`
//! of one event with a realistic 1 KiB payload, on a policy without a
//! schema for its topic and on one with a schema describing the payload
//! (required members, types, formats of every item), all valid.
//!
//! Run: `cargo bench --bench schema -- --warm-up-time 1 --measurement-time 5`.
//! The ratio of the two times is the CPU cost of validation per event; the
//! end-to-end figure (through the database) is in docs/src/performance/index.md.

use std::hint::black_box;

use aion_webhooks::ingest::parse;
use aion_webhooks::policy::PolicySet;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "common/order.rs"]
mod order;

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["order_id", "customer", "total", "currency", "items"],
  "properties": {
    "order_id": {"type": "string", "pattern": "^ord-[0-9]+$"},
    "customer": {
      "type": "object",
      "required": ["id", "email"],
      "properties": {
        "id": {"type": "string"},
        "email": {"type": "string", "maxLength": 254},
        "tier": {"enum": ["bronze", "silver", "gold"]}
      }
    },
    "total": {"type": "number", "minimum": 0},
    "currency": {"type": "string", "minLength": 3, "maxLength": 3},
    "items": {
      "type": "array",
      "minItems": 1,
      "items": {
        "type": "object",
        "required": ["sku", "qty", "price"],
        "properties": {
          "sku": {"type": "string"},
          "name": {"type": "string"},
          "qty": {"type": "integer", "minimum": 0},
          "price": {"type": "number"},
          "tags": {"type": "array", "items": {"type": "string"}}
        },
        "additionalProperties": false
      }
    },
    "shipping": {"type": "object"}
  }
}"#;

fn policy(dir: &std::path::Path, with_schema: bool) -> PolicySet {
    let mut yaml = String::from(
        "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example/\n    secret: s\n    topics: [\"shop.**\"]\n",
    );
    if with_schema {
        std::fs::write(dir.join("order.json"), SCHEMA).expect("write schema");
        yaml.push_str("schemas:\n  - topic: shop.order.created\n    file: order.json\n");
    }
    PolicySet::parse(&yaml, "bench", dir, &|_| None).expect("policy")
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let payload = order::realistic();
    assert!((900..1400).contains(&payload.len()));
    let body = format!(r#"{{"topic":"shop.order.created","payload":{payload}}}"#).into_bytes();
    let now = chrono::Utc::now();
    let mut g = c.benchmark_group("ingest parse, 1 KiB payload");
    g.throughput(Throughput::Elements(1));
    for (name, with_schema) in [("no schema", false), ("with schema", true)] {
        let policy = policy(dir.path(), with_schema);
        let (events, _) = parse(&body, &policy, 1 << 20, now).expect("valid");
        assert_eq!(events[0].webhooks.len(), 1);
        g.bench_function(name, |b| {
            b.iter(|| parse(black_box(&body), &policy, 1 << 20, now).expect("valid"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
