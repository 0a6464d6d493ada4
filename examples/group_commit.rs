//! Group commit at work: `T` threads each appending single events with the
//! default durability (every `append` returns only after an `fdatasync`
//! covering it), against one thread doing the same:
//! `cargo run --release --example group_commit -- [EVENTS_PER_THREAD] [DIR] [SYNC_MICROS]`
//! (default 2,000 per thread, a temporary directory under the current one,
//! so the store sits on the same disk as the work tree rather than in a
//! possibly memory-backed /tmp). `GROUP_COMMIT_THREADS=1,16` picks the
//! thread counts (default 1, 4, 16, 64). Each line also says how many
//! appends one `fdatasync` covered on average.
//!
//! With `SYNC_MICROS`, every `fdatasync` is replaced by a sleep of that many
//! microseconds (use a memory-backed `DIR` such as /dev/shm): a lab setting
//! that isolates the group-commit mechanism from a disk whose latency moves
//! by 10x over a day. It is not durable and is labelled as such.

use std::time::Instant;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use auditstore::io::{Io, RealIo};
use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::{Event, Options, Store};

/// Real writes; `fdatasync` counted and, when a duration is given,
/// replaced by a sleep of that duration.
#[derive(Debug)]
struct CountedSync(Option<Duration>, std::sync::atomic::AtomicU64);

impl CountedSync {
    /// The simulated sync if there is one, else `real`.
    fn sync_with(&self, real: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
        match self.0 {
            Some(pause) => {
                std::thread::sleep(pause);
                Ok(())
            }
            None => real(),
        }
    }
}

impl Io for CountedSync {
    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
        RealIo.write_at(file, buf, offset)
    }
    fn sync_data(&self, file: &File) -> std::io::Result<()> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.sync_with(|| RealIo.sync_data(file))
    }
    fn sync_all(&self, file: &File) -> std::io::Result<()> {
        self.sync_with(|| RealIo.sync_all(file))
    }
    fn set_len(&self, file: &File, len: u64) -> std::io::Result<()> {
        RealIo.set_len(file, len)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        RealIo.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        match self.0 {
            Some(_) => Ok(()),
            None => RealIo.sync_dir(dir),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let per_thread: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let base = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| ".".into());
    let sync_micros: Option<u64> = args.next().and_then(|a| a.parse().ok());
    let mut options = Options::default();
    let pause = sync_micros.map(|us| {
        println!("SIMULATED fdatasync of {us} µs (not durable)");
        Duration::from_micros(us)
    });
    let counted = Arc::new(CountedSync(pause, Default::default()));
    options.io = counted.clone();
    let syncs = || counted.1.load(std::sync::atomic::Ordering::Relaxed);
    let mut gen = SampleGenerator::new(SampleConfig {
        orgs: 50,
        duplicate_per_mille: 0,
        ..SampleConfig::default()
    });
    let mut single = 0.0;
    // GROUP_COMMIT_THREADS="1,16" picks the thread counts (1 is always run
    // first: the others are relative to it).
    let counts: Vec<usize> = std::env::var("GROUP_COMMIT_THREADS")
        .ok()
        .map(|v| v.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 4, 16, 64]);
    for threads in std::iter::once(1).chain(counts.into_iter().filter(|&t| t != 1)) {
        let tmp = tempfile::tempdir_in(&base)?;
        let store = Store::open_with(tmp.path(), options.clone())?;
        let events: Vec<(String, Event)> = (&mut gen).take(per_thread * threads).collect();
        let store = &store;
        let syncs_before = syncs();
        let t = Instant::now();
        std::thread::scope(|s| {
            for chunk in events.chunks(per_thread) {
                s.spawn(move || {
                    for (org, e) in chunk {
                        if let Err(err) = store.append(org, e) {
                            eprintln!("append failed: {err}");
                            std::process::exit(1);
                        }
                    }
                });
            }
        });
        let rate = events.len() as f64 / t.elapsed().as_secs_f64();
        if threads == 1 {
            single = rate;
        }
        let synced = syncs() - syncs_before;
        let per_sync = if synced > 0 {
            format!(
                "  {:.1} events per fdatasync",
                events.len() as f64 / synced as f64
            )
        } else {
            String::new()
        };
        println!(
            "threads {threads:>3}: {:>9.0} events/s  {:>5.2}x one thread{per_sync}",
            rate,
            rate / single
        );
    }
    Ok(())
}
