//! Fan-out with `filter:` (issue 30, item 5): routing one event through a
//! policy of 10,000 webhooks that all have a filter, as ingest does it —
//! the topic match, then each matching webhook's filter on one `Lookup` of
//! the event (each field read once per event).
//!
//! - `same-topic`: all 10,000 webhooks match the topic; each filter is
//!   evaluated (the worst case).
//! - `same-topic-unfiltered`: the same policy without filters (the cost of
//!   routing alone, for comparison).
//! - `distinct-topics`: each webhook on its own topic, so one filter runs.
//!
//! Run: `cargo bench --bench filters -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use aion_webhooks::domain::Topic;
use aion_webhooks::policy::PolicySet;
use aion_webhooks::policy::filter::{Lookup, Subject};
use criterion::{Criterion, criterion_group, criterion_main};

const WEBHOOKS: usize = 10_000;

/// A policy of `WEBHOOKS` webhooks; `topic(i)` and `filter(i)` for each.
fn policy(topic: impl Fn(usize) -> String, filter: impl Fn(usize) -> String) -> PolicySet {
    let mut text = String::from("version: 1\nwebhooks:\n");
    for i in 0..WEBHOOKS {
        text.push_str(&format!(
            "- {{id: w{i}, url: https://h.io, secret: s, topics: [{}]{}}}\n",
            topic(i),
            filter(i)
        ));
    }
    PolicySet::parse(&text, "bench", std::path::Path::new("."), &|_| None).expect("policy")
}

/// What ingest does per event: route, then filter each match.
fn fan_out(policy: &PolicySet, topic: &Topic, subject: Subject<'_>) -> usize {
    let mut lookup = Lookup::new(subject);
    policy
        .route(topic, subject.tenant_id)
        .iter()
        .filter(|r| {
            r.webhook
                .filter
                .as_ref()
                .is_none_or(|f| f.admits(&mut lookup))
        })
        .count()
}

fn filters(c: &mut Criterion) {
    let payload = r#"{"a": 5000.50, "s": "paid", "c": {"t": "g", "region": "eu"}, "items": [{"sku": "A", "qty": 2}]}"#;
    let subject = |topic: &'static str| Subject {
        payload,
        tenant_id: Some("t1"),
        source: Some("billing"),
        key: None,
        version: None,
        topic,
    };
    let same = policy(
        |_| "o.p".into(),
        // Half on an amount, half on a nested field: two paths, each read
        // once per event.
        |i| match i % 2 {
            0 => format!(", filter: {{payload.a: {{$gte: {i}}}}}"),
            _ => ", filter: {payload.c.t: {$in: [g, s]}}".into(),
        },
    );
    let bare = policy(|_| "o.p".into(), |_| String::new());
    let distinct = policy(
        |i| format!("t{i}.o.p"),
        |i| format!(", filter: {{payload.a: {{$gte: {i}}}}}"),
    );
    let o_p = Topic::parse("o.p").unwrap();
    let t42 = Topic::parse("t42.o.p").unwrap();
    assert_eq!(fan_out(&same, &o_p, subject("o.p")), 2501 + 5000);
    assert_eq!(fan_out(&bare, &o_p, subject("o.p")), WEBHOOKS);
    assert_eq!(fan_out(&distinct, &t42, subject("t42.o.p")), 1);

    let mut group = c.benchmark_group("fan-out");
    group.bench_function("same-topic/10000 filters", |b| {
        b.iter(|| fan_out(black_box(&same), black_box(&o_p), subject("o.p")))
    });
    group.bench_function("same-topic-unfiltered/10000", |b| {
        b.iter(|| fan_out(black_box(&bare), black_box(&o_p), subject("o.p")))
    });
    group.bench_function("distinct-topics/10000 filters", |b| {
        b.iter(|| fan_out(black_box(&distinct), black_box(&t42), subject("t42.o.p")))
    });
    group.finish();
}

criterion_group!(benches, filters);
criterion_main!(benches);
