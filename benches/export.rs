//! CSV export rows/s: every event of a store of 200,000 events (50
//! organizations), prepared once, written through `CsvSink` (one thread)
//! to a file (no fsync: that is one call per export) and to `io::sink()`
//! (CPU only); then through `export::rows::write_rows` on 1 and 2
//! formatter threads, to `io::sink()` and to a `PipedFile::create` file
//! (direct I/O where the filesystem allows, as request builds write).
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
use auditstore::export::pipe::PipedFile;
use auditstore::export::rows::write_rows;
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
    for threads in [1, 2] {
        group.bench_function(format!("rows_sink_{threads}_threads"), |b| {
            b.iter(|| {
                let mut out = std::io::sink();
                assert_eq!(export_rows(&store, &orgs, threads, &mut out), rows);
            })
        });
        group.bench_function(format!("rows_piped_file_{threads}_threads"), |b| {
            b.iter(|| {
                let mut out = PipedFile::create(&csv).expect("create");
                assert_eq!(export_rows(&store, &orgs, threads, &mut out), rows);
                drop(out.finish().expect("finish"));
            })
        });
    }
    group.finish();
}

fn export_rows<W: Write>(store: &Store, orgs: &[String], threads: usize, out: &mut W) -> u64 {
    orgs.iter()
        .map(|org| {
            let scan = store
                .scan(&Query::new(org.as_str(), Timestamp::MIN, Timestamp::MAX))
                .expect("scan");
            write_rows(scan, threads, out).expect("rows")
        })
        .sum()
}

criterion_group!(benches, export);
criterion_main!(benches);
