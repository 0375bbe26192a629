//! Routing one topic against a large policy: the trie router against a naive
//! scan of every pattern. Policy shape: 10,000 webhooks × 3 patterns, mostly
//! per-tenant literal topics, some per-service wildcards, a few global ones.
//!
//! Run: `cargo bench --bench routing -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use aion_webhooks::domain::{Topic, TopicPattern};
use aion_webhooks::policy::router::{Router, RouterBuilder};
use criterion::{Criterion, criterion_group, criterion_main};

const WEBHOOKS: u32 = 10_000;
const TENANTS: u32 = 2_000;
const SERVICES: u32 = 500;

type Value = (u32, u16);

fn patterns_of(webhook: u32) -> [String; 3] {
    // Consecutive webhooks share a tenant (5 each) or a service (20 each), so
    // one tenant's or service's subscribers mix literal and wildcard kinds.
    let tenant = (webhook / 5) % TENANTS;
    let service = (webhook / 20) % SERVICES;
    match webhook {
        // A few global subscribers: an auditor, the control plane, an archive.
        0 => [
            "aion.**".into(),
            "command.*".into(),
            "aion.audit.activity".into(),
        ],
        1 => [
            "kernel.proposal.*".into(),
            "command.*".into(),
            "aion.router.decisions".into(),
        ],
        2 => [
            "**".into(),
            "aion.audit.activity".into(),
            "kernel.proposal.created".into(),
        ],
        _ => match webhook % 10 {
            0..=6 => [
                format!("tenant{tenant}.orders.created"),
                format!("tenant{tenant}.orders.updated"),
                format!("tenant{tenant}.invoices.paid"),
            ],
            7 => [
                format!("svc{service}.*.updated"),
                format!("svc{service}.jobs.finished"),
                format!("tenant{tenant}.orders.*"),
            ],
            8 => [
                format!("svc{service}.**"),
                format!("tenant{tenant}.invoices.*"),
                format!("tenant{tenant}.**.failed"),
            ],
            _ => [
                format!("tenant{tenant}.orders.cancelled"),
                format!("svc{service}.deploy.*"),
                format!("svc{service}.**.failed"),
            ],
        },
    }
}

fn policy() -> Vec<(TopicPattern, Value)> {
    (0..WEBHOOKS)
        .flat_map(|webhook| {
            patterns_of(webhook)
                .into_iter()
                .enumerate()
                .map(move |(i, p)| {
                    let index = u16::try_from(i).expect("3 patterns");
                    (
                        TopicPattern::parse(&p).expect("valid pattern"),
                        (webhook, index),
                    )
                })
        })
        .collect()
}

fn naive<'a>(policy: &'a [(TopicPattern, Value)], topic: &Topic, out: &mut Vec<&'a Value>) {
    out.extend(
        policy
            .iter()
            .filter(|(p, _)| p.matches(topic))
            .map(|(_, v)| v),
    );
}

fn routing(c: &mut Criterion) {
    let policy = policy();
    let mut builder = RouterBuilder::new();
    for (pattern, value) in &policy {
        builder.insert(pattern, *value);
    }
    let router: Router<Value> = builder.build();
    eprintln!("{router:?}");

    let mut group = c.benchmark_group("route");
    for topic in [
        "tenant43.orders.created",
        "svc7.jobs.updated",
        "unknown.topic.name",
    ] {
        let topic = Topic::parse(topic).expect("valid topic");
        let mut out = Vec::with_capacity(64);
        router.route(&topic, &mut out);
        let mut expected = Vec::new();
        naive(&policy, &topic, &mut expected);
        assert_eq!(
            out.len(),
            expected.len(),
            "router and scan disagree on {topic}"
        );
        eprintln!("{topic}: {} matching patterns", out.len());

        group.bench_function(format!("router/{topic}"), |b| {
            b.iter(|| {
                out.clear();
                router.route(black_box(&topic), &mut out);
                black_box(out.len())
            })
        });
        if topic.as_str() == "tenant43.orders.created" {
            group.bench_function(format!("naive_scan/{topic}"), |b| {
                b.iter(|| {
                    out.clear();
                    naive(&policy, black_box(&topic), &mut out);
                    black_box(out.len())
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
