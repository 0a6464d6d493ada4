//! Leaf hashing, the integrator's and `export verify`'s cost per event:
//! 10,000 CircleCI-shaped sample events, each hashed as the tree needs it.
//!
//! - `leaf/data`: the RFC 8785 leaf data only (the canonicalizer);
//! - `leaf/sha256`: `SHA-256(0x00 || data)` of the prepared leaf data;
//! - `leaf/hash`: both, as the integrator runs them.
//!
//! ```text
//! cargo bench --bench leaf
//! ```

use auditstore::integrity::leaf::{fast_leaf_data, fast_leaf_hash, LeafParts};
use auditstore::integrity::leaf_hash;
use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::Event;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const EVENTS: usize = 10_000;

fn events() -> Vec<(String, Event)> {
    SampleGenerator::new(SampleConfig::default())
        .take(EVENTS)
        .collect()
}

fn bench(c: &mut Criterion) {
    let events = events();
    let data: Vec<Vec<u8>> = events
        .iter()
        .map(|(org, e)| {
            let mut out = Vec::new();
            fast_leaf_data(&LeafParts::of_event(org, e), &mut out).expect("sample events are canonical");
            out
        })
        .collect();
    let mut g = c.benchmark_group("leaf");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("data", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            for (org, e) in &events {
                out.clear();
                let _ = fast_leaf_data(&LeafParts::of_event(org, e), &mut out);
            }
            out.len()
        })
    });
    g.bench_function("sha256", |b| {
        b.iter(|| data.iter().map(|d| leaf_hash(d)[0] as usize).sum::<usize>())
    });
    g.bench_function("hash", |b| {
        b.iter(|| {
            events
                .iter()
                .filter_map(|(org, e)| fast_leaf_hash(&LeafParts::of_event(org, e)))
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
