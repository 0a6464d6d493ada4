//! CSV export rows/s: every event of a store of 200,000 events (50
//! organizations), prepared once, written through `CsvSink` to a file (no
//! fsync: that is one call per export) and to `io::sink()` (CPU only).
//! `AUDITSTORE_BENCH_EXPORT_EVENTS` changes the size.
//!
//! ```text
//! cargo bench --bench export
//! ```

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use auditstore::export::csv::CsvSink;
use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::{Durability, FixedClock, Options, Query, Store, Timestamp};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn prepare(dir: &std::path::Path) -> (Store, Vec<String>) {
    let n: usize = std::env::var("AUDITSTORE_BENCH_EXPORT_EVENTS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(200_000);
    let cfg = SampleConfig {
        orgs: 50,
        step_nanos: 500_000_000,
        ..SampleConfig::default()
    };
    {
        let store = Store::open_with(
            dir,
            Options {
                durability: Durability::Buffered,
                ..Options::default()
            },
        )
        .expect("open");
        SampleGenerator::new(cfg.clone())
            .append_to(&store, n, 50_000)
            .expect("append");
    }
    // Evaluate retention at the end of the data, whenever the bench runs.
    let end = cfg.start.as_nanos() + n as i64 * 2 * cfg.step_nanos;
    let store = Store::open_with(
        dir,
        Options {
            clock: Arc::new(FixedClock::new(Timestamp::from_nanos(end))),
            ..Options::default()
        },
    )
    .expect("reopen");
    (store, (0..50).map(|i| format!("org-{i:02}")).collect())
}

fn export_all<W: Write>(store: &Store, orgs: &[String], out: W) -> (u64, W) {
    let mut sink = CsvSink::new(out).expect("csv");
    for org in orgs {
        let mut s = store
            .scan(&Query::new(org.as_str(), Timestamp::MIN, Timestamp::MAX))
            .expect("scan");
        while let Some(r) = s.next_with(|v| sink.write_record(v)) {
            r.expect("read").expect("row");
        }
    }
    let rows = sink.rows();
    (rows, sink.finish().expect("finish"))
}

fn export(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, orgs) = prepare(&dir.path().join("store"));
    let (rows, _) = export_all(&store, &orgs, std::io::sink());
    let mut group = c.benchmark_group("export");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(rows));
    let csv = dir.path().join("export.csv");
    group.bench_function("csv_file", |b| {
        b.iter(|| {
            let (n, file) = export_all(&store, &orgs, File::create(&csv).expect("create"));
            assert_eq!(n, rows);
            drop(file);
        })
    });
    group.bench_function("csv_sink", |b| {
        b.iter(|| {
            let (n, _) = export_all(&store, &orgs, std::io::sink());
            assert_eq!(n, rows);
        })
    });
    group.finish();
}

criterion_group!(benches, export);
criterion_main!(benches);
