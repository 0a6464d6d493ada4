//! Append throughput: `append_batch` at batch sizes 1, 100, 1,000 and 10,000
//! into a fresh store, and 1, 4 and 16 threads each appending single events
//! with the default (synchronous) durability, where group commit shares one
//! `fdatasync` between the threads waiting for it.
//!
//! ```text
//! cargo bench --bench append                 # both groups
//! cargo bench --bench append -- group_commit # only the threads
//! ```
//!
//! Every measurement opens a fresh store in a temporary directory (under
//! `$TMPDIR`, or the target directory when `AUDITSTORE_BENCH_DIR` is set) and
//! appends events that were generated before the clock started.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::{Event, Store};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Generated events, reused by every fresh store (ids are unique within the
/// pool, so every append stores a record).
struct Pool {
    gen: SampleGenerator,
    events: Vec<(String, Event)>,
}

impl Pool {
    fn new() -> Pool {
        Pool {
            gen: SampleGenerator::new(SampleConfig {
                orgs: 50,
                step_nanos: 500_000_000,
                duplicate_per_mille: 0,
                ..SampleConfig::default()
            }),
            events: Vec::new(),
        }
    }

    fn take(&mut self, n: usize) -> &[(String, Event)] {
        while self.events.len() < n {
            let e = self.gen.next_event();
            self.events.push(e);
        }
        &self.events[..n]
    }
}

fn temp_dir() -> tempfile::TempDir {
    match std::env::var_os("AUDITSTORE_BENCH_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            std::fs::create_dir_all(&d).expect("create AUDITSTORE_BENCH_DIR");
            tempfile::tempdir_in(d).expect("temp dir")
        }
        None => tempfile::tempdir().expect("temp dir"),
    }
}

fn batch_sizes(c: &mut Criterion) {
    let mut pool = Pool::new();
    let mut group = c.benchmark_group("append_batch");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for size in [1usize, 100, 1_000, 10_000] {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.iter_custom(|iters| {
                let dir = temp_dir();
                let store = Store::open(dir.path()).expect("open");
                let events = pool.take(iters as usize * size);
                let t = Instant::now();
                for batch in events.chunks(size) {
                    let r = store
                        .append_batch(batch.iter().map(|(o, e)| (o.as_str(), e)))
                        .expect("append_batch");
                    assert_eq!(r.appended as usize, batch.len());
                }
                let elapsed = t.elapsed();
                drop(store);
                elapsed
            })
        });
    }
    group.finish();
}

fn group_commit(c: &mut Criterion) {
    let mut pool = Pool::new();
    let mut group = c.benchmark_group("group_commit");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    for threads in [1usize, 4, 16] {
        group.bench_with_input(BenchmarkId::new("threads", threads), &threads, |b, &threads| {
            b.iter_custom(|iters| {
                let dir = temp_dir();
                let store = Store::open(dir.path()).expect("open");
                let per_thread = (iters as usize).div_ceil(threads);
                let events = pool.take(per_thread * threads);
                let store = &store;
                let t = Instant::now();
                std::thread::scope(|s| {
                    for chunk in events.chunks(per_thread) {
                        s.spawn(move || {
                            for (org, e) in chunk {
                                store.append(org, e).expect("append");
                            }
                        });
                    }
                });
                // Time per event of the whole run: the threads' events
                // together, so throughput is events/s over all threads.
                t.elapsed().mul_f64(iters as f64 / (per_thread * threads) as f64)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, batch_sizes, group_commit);
criterion_main!(benches);
