//! Range scans: 1-day ranges of one organization out of a store of about
//! 1,000,000 events (50 organizations, CircleCI-shaped), prepared once per
//! run (`AUDITSTORE_BENCH_SCAN_EVENTS` changes the size).
//!
//! - `scan/decode`: every event of 20 fixed (organization, 1 day) queries,
//!   each decoded into an owned `Event` (the `Iterator` interface);
//! - `scan/zero_copy`: the same queries visited through `Scan::next_with`;
//! - `scan/first_event`: `Store::scan` plus the first event of one query.
//!
//! ```text
//! cargo bench --bench scan
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::{Durability, FixedClock, Options, Query, Store, Timestamp};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const DAY: i64 = 86_400 * 1_000_000_000;

struct Prepared {
    _dir: tempfile::TempDir,
    store: Store,
    queries: Vec<Query>,
}

fn prepare() -> Prepared {
    let n: usize = std::env::var("AUDITSTORE_BENCH_SCAN_EVENTS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let cfg = SampleConfig {
        orgs: 50,
        step_nanos: 500_000_000,
        ..SampleConfig::default()
    };
    let start = cfg.start.as_nanos();
    let dir = tempfile::tempdir().expect("temp dir");
    let t = Instant::now();
    let end;
    {
        // Preparation only: buffered appends, one fsync at the end.
        let store = Store::open_with(
            dir.path(),
            Options {
                durability: Durability::Buffered,
                ..Options::default()
            },
        )
        .expect("open");
        let latest = SampleGenerator::new(cfg)
            .append_to(&store, n, 50_000)
            .expect("append");
        end = latest.map_or(start, |t| t.as_nanos().max(start));
    }
    let clock = Arc::new(FixedClock::new(Timestamp::from_nanos(end + DAY)));
    let store = Store::open_with(
        dir.path(),
        Options {
            clock,
            ..Options::default()
        },
    )
    .expect("reopen");
    // 20 fixed (organization, 1 day) ranges inside the data.
    let span = ((end - start - DAY).max(1)) as u64;
    let queries = (0..20u64)
        .map(|i| {
            let org = format!("org-{:02}", (i * 7) % 50);
            let from = start + ((i * 0x9e37_79b9_7f4a_7c15) % span) as i64;
            Query::new(
                org,
                Timestamp::from_nanos(from),
                Timestamp::from_nanos(from + DAY),
            )
        })
        .collect();
    eprintln!(
        "scan bench: {n} events prepared in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    Prepared {
        _dir: dir,
        store,
        queries,
    }
}

fn scans(c: &mut Criterion) {
    let p = prepare();
    let total: u64 = p
        .queries
        .iter()
        .map(|q| p.store.scan(q).expect("scan").count() as u64)
        .sum();
    let mut group = c.benchmark_group("scan");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(total));
    group.bench_function("decode", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for q in &p.queries {
                for e in p.store.scan(q).expect("scan") {
                    std::hint::black_box(e.expect("event"));
                    n += 1;
                }
            }
            assert_eq!(n, total);
        })
    });
    group.bench_function("zero_copy", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for q in &p.queries {
                let mut s = p.store.scan(q).expect("scan");
                while let Some(r) = s.next_with(|v| v.payload.len()) {
                    std::hint::black_box(r.expect("event"));
                    n += 1;
                }
            }
            assert_eq!(n, total);
        })
    });
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("first_event", |b| {
        b.iter(|| {
            let q = &p.queries[i % p.queries.len()];
            i += 1;
            let mut s = p.store.scan(q).expect("scan");
            std::hint::black_box(s.next().expect("non-empty range").expect("event"))
        })
    });
    group.finish();
}

criterion_group!(benches, scans);
criterion_main!(benches);
