//! What the payload rules cost: `check` runs on every ingested event (the
//! repeated-member and exponent checks); `same_value` only when an event id
//! is posted again with different bytes. A realistic 1 KiB payload, and a
//! 1 MiB array nested 50,000 deep for the worst case.
//!
//! Run: `cargo bench --bench payload -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use aion_webhooks::domain::payload::{check, same_value};
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "common/order.rs"]
mod order;
use order::realistic;

fn bench(c: &mut Criterion) {
    let small = realistic();
    assert!((900..1400).contains(&small.len()), "{}", small.len());
    let reordered = small.replacen(r#""currency":"EUR","#, "", 1).replacen(
        r#""order_id":"#,
        r#""currency":"EUR","order_id":"#,
        1,
    );
    let deep = format!("{}1{}", "[".repeat(50_000), "]".repeat(50_000));
    let deep_spaced = format!("{} 1 {}", "[".repeat(50_000), "]".repeat(50_000));
    let mut g = c.benchmark_group("payload");
    g.bench_function("check 1 KiB", |b| b.iter(|| check(black_box(&small))));
    g.bench_function("same_value 1 KiB, equal bytes", |b| {
        b.iter(|| same_value(black_box(&small), black_box(&small)))
    });
    g.bench_function("same_value 1 KiB, reordered", |b| {
        b.iter(|| same_value(black_box(&small), black_box(&reordered)))
    });
    g.bench_function("check 50,000 deep", |b| b.iter(|| check(black_box(&deep))));
    g.bench_function("same_value 50,000 deep, respaced", |b| {
        b.iter(|| same_value(black_box(&deep), black_box(&deep_spaced)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
