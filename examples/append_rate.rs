//! Measure `append_batch` throughput (default durability, batches of 1,000)
//! on pre-generated events, then the open time of the resulting store:
//! `cargo run --release --example append_rate -- 1000000 [DIR] [buffered]`
//! (`buffered` measures `Durability::Buffered`, which does not fsync per
//! batch, to separate CPU cost from fsync cost).

use std::time::Instant;

use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::{Event, Store};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let tmp = tempfile::tempdir()?;
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("store"));
    let mut gen = SampleGenerator::new(SampleConfig {
        orgs: 50,
        step_nanos: 50_000_000,
        ..SampleConfig::default()
    });
    let mut total = (0u64, 0u64, 0f64);
    let durability = match args.next().as_deref() {
        Some("buffered") => auditstore::Durability::Buffered,
        _ => auditstore::Durability::Sync,
    };
    let options = auditstore::Options {
        durability,
        ..Default::default()
    };
    let store = Store::open_with(&dir, options.clone())?;
    let chunk = 100_000usize.min(n);
    let mut done = 0;
    while done < n {
        let events: Vec<(String, Event)> = (&mut gen).take(chunk.min(n - done)).collect();
        let t = Instant::now();
        for batch in events.chunks(1000) {
            let r = store.append_batch(batch.iter().map(|(o, e)| (o.as_str(), e)))?;
            total.0 += r.appended;
            total.1 += r.duplicates;
        }
        total.2 += t.elapsed().as_secs_f64();
        done += events.len();
    }
    let stats = store.stats()?;
    println!(
        "append_batch x1000 ({durability:?}): {} events in {:.2}s = {:.0} events/s ({} appended, {} duplicates); RSS {} MiB; index memory {} MiB; {:.1} bytes on disk per event",
        n,
        total.2,
        n as f64 / total.2,
        total.0,
        total.1,
        rss_kib() / 1024,
        stats.index_memory_bytes >> 20,
        stats.bytes as f64 / stats.events.max(1) as f64
    );
    drop(store);
    let t = Instant::now();
    let store = Store::open_with(&dir, options)?;
    println!(
        "open after clean shutdown: {:.1} ms ({} events)",
        t.elapsed().as_secs_f64() * 1e3,
        store.stats()?.events
    );
    Ok(())
}
