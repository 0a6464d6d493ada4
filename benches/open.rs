//! Open time of a store of about 1,000,000 events (50 organizations,
//! CircleCI-shaped; `AUDITSTORE_BENCH_OPEN_EVENTS=10000000` for the issue's
//! 10,000,000):
//!
//! - `open/clean`: `Store::open` after a clean shutdown;
//! - `open/after_kill`: the first `Store::open` after a writer process was
//!   killed with SIGKILL while appending (default durability, batches of
//!   1,000): the open finds the active segment's records without a
//!   checkpoint, reads them back and cuts a torn tail, if any.
//!
//! ```text
//! cargo bench --bench open
//! AUDITSTORE_BENCH_OPEN_EVENTS=10000000 cargo bench --bench open
//! ```
//!
//! The store is built once under `target/bench-stores/open-N` and kept (a
//! 10,000,000-event store takes ~5 GB and half a minute to build). The crash is
//! real: this benchmark starts itself again as a writer child, waits until
//! it has acknowledged 50 batches and kills it. The directory it leaves is
//! kept as an image; every measured open gets a fresh copy of the image
//! (the sealed segments, which no open modifies, as hard links; the active
//! segment and the metadata as copies), made before the clock starts.
//! Drops (clean shutdowns) happen outside the measurement.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::{Durability, Options, Store, Timestamp};
use criterion::{criterion_group, BatchSize, Criterion};

/// Set in the writer child: the store directory to append to until killed.
const WRITER_ENV: &str = "AUDITSTORE_BENCH_OPEN_WRITER";
/// Batches the writer child acknowledges before it is killed.
const ACKED_BATCHES: usize = 50;
/// Mean gap between generated events (one organization's day then holds
/// about 3,500 of them, as in the other benches).
const STEP_NANOS: i64 = 500_000_000;

fn events() -> usize {
    std::env::var("AUDITSTORE_BENCH_OPEN_EVENTS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000)
}

fn config(seed: u64, start: Timestamp) -> SampleConfig {
    SampleConfig {
        seed,
        orgs: 50,
        start,
        step_nanos: STEP_NANOS,
        ..SampleConfig::default()
    }
}

/// `target/bench-stores` (next to the build output, on the same disk).
fn stores_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("bench-stores")
}

/// The store of `n` events, built unless a complete one is there already.
fn prepared_store(n: usize) -> PathBuf {
    let dir = stores_dir().join(format!("open-{n}"));
    let done = dir.join("BENCH_COMPLETE");
    if done.exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create store dir");
    let t = Instant::now();
    {
        // Preparation only: buffered appends, one fsync at the end.
        let store = Store::open_with(
            &dir,
            Options {
                durability: Durability::Buffered,
                ..Options::default()
            },
        )
        .expect("open");
        SampleGenerator::new(config(42, SampleConfig::default().start))
            .append_to(&store, n, 50_000)
            .expect("append");
    }
    std::fs::write(&done, b"").expect("mark the store complete");
    eprintln!("open: built {n} events in {:.1} s", t.elapsed().as_secs_f64());
    dir
}

/// The writer child: append batches of 1,000 with the default durability
/// after the prepared store's data, saying `acked` after each, until killed.
fn writer(dir: &Path) -> ! {
    let start = Timestamp::from_nanos(
        SampleConfig::default().start.as_nanos() + events() as i64 * STEP_NANOS + 60_000_000_000,
    );
    let mut gen = SampleGenerator::new(config(7, start));
    let store = Store::open(dir).expect("writer: open");
    let mut out = std::io::stdout().lock();
    loop {
        let batch: Vec<_> = (&mut gen).take(1_000).collect();
        store
            .append_batch(batch.iter().map(|(o, e)| (o.as_str(), e)))
            .expect("writer: append");
        writeln!(out, "acked").expect("writer: stdout");
        out.flush().expect("writer: stdout");
    }
}

/// Files of the store at `from` (not `LOCK`) into the empty directory
/// `to`: sealed segments (a `.log` with its `.idx`, both immutable) as hard
/// links, everything else copied, subdirectories (the tree's `tree/`) too.
fn restore(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).expect("create work dir");
    for entry in std::fs::read_dir(from).expect("read image") {
        let entry = entry.expect("image entry");
        let name = entry.file_name();
        let path = entry.path();
        if entry.file_type().expect("file type").is_dir() {
            restore(&path, &to.join(&name));
            continue;
        }
        if !entry.file_type().expect("file type").is_file() || name == "LOCK" {
            continue;
        }
        let sealed = match path.extension().and_then(|e| e.to_str()) {
            Some("idx") => true,
            Some("log") => path.with_extension("idx").exists(),
            _ => false,
        };
        if sealed {
            std::fs::hard_link(&path, to.join(&name)).expect("link sealed segment");
        } else {
            std::fs::copy(&path, to.join(&name)).expect("copy file");
        }
    }
}

/// A crash image: the prepared store after a writer child appended
/// [`ACKED_BATCHES`] acknowledged batches to it and was killed.
fn crash_image(store: &Path) -> PathBuf {
    let image = stores_dir().join(format!("open-{}-killed", events()));
    restore(store, &image);
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .env(WRITER_ENV, &image)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the writer child");
    let stdout = child.stdout.take().expect("writer stdout");
    let acked = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .filter(|l| l == "acked")
        .take(ACKED_BATCHES)
        .count();
    child.kill().expect("SIGKILL the writer");
    let _ = child.wait();
    assert_eq!(acked, ACKED_BATCHES, "the writer child stopped early");
    image
}

fn bench_open(c: &mut Criterion) {
    let n = events();
    let store = prepared_store(n);
    let image = crash_image(&store);
    let work = stores_dir().join(format!("open-{n}-work"));

    // What the benchmark measures: the kill left records to recover.
    restore(&image, &work);
    let report = Store::open(&work)
        .expect("open after kill")
        .recovery_report()
        .clone();
    assert!(
        report.records_scanned > 0,
        "the crash image has nothing to recover"
    );
    eprintln!(
        "open: after kill -9, {} records re-read, {} bytes cut",
        report.records_scanned, report.truncated_bytes
    );

    let mut group = c.benchmark_group("open");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.bench_function("clean", |b| {
        // One store open at a time (the directory lock): each dropped
        // after its own measurement.
        b.iter_batched(
            || (),
            |()| Store::open(&store).expect("clean open"),
            BatchSize::PerIteration,
        );
    });
    group.bench_function("after_kill", |b| {
        b.iter_batched(
            || restore(&image, &work),
            |()| Store::open(&work).expect("open after kill"),
            BatchSize::PerIteration,
        );
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&work);
}

criterion_group!(benches, bench_open);

fn main() {
    if let Some(dir) = std::env::var_os(WRITER_ENV) {
        writer(Path::new(&dir));
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
