//! Range-scan throughput on a store of N events (50 organizations, one event
//! every 0.5 s on average, so one organization's day holds ~3,500 events):
//! 100 random (organization, 1 day) queries, every event decoded into an
//! owned `Event`, then the same through the zero-copy `Scan::next_with`.
//! `cargo run --release --example scan_rate -- [N] [DIR] [ROUNDS]`
//! (default 1,000,000 events; `DIR` is built if missing and reused if not,
//! so a 10,000,000-event store is prepared once). `ORGS=1` builds a store
//! of one organization instead of 50, whose records are contiguous in the
//! log: the scan without the scatter of 50 interleaved organizations.

use std::sync::Arc;
use std::time::Instant;

use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::{Durability, FixedClock, Options, Query, Store, Timestamp};

const DAY: i64 = 86_400 * 1_000_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let tmp = tempfile::tempdir_in(".")?;
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("store"));
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let cfg = SampleConfig {
        orgs: std::env::var("ORGS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50),
        step_nanos: 500_000_000,
        ..SampleConfig::default()
    };
    let start = cfg.start.as_nanos();
    let mut end = start;
    if !dir.exists() {
        let t = Instant::now();
        let store = Store::open_with(
            &dir,
            Options {
                durability: Durability::Buffered,
                ..Options::default()
            },
        )?;
        SampleGenerator::new(cfg.clone()).append_to(&store, n, 50_000)?;
        println!("prepared {n} events in {:.1} s", t.elapsed().as_secs_f64());
    }
    // The data's end: the generator is deterministic, so the last event's
    // time follows from n (plus the out-of-order jitter, covered by a day).
    end += n as i64 * cfg.step_nanos;
    let clock = Arc::new(FixedClock::new(Timestamp::from_nanos(end + 2 * DAY)));
    let t = Instant::now();
    let store = Store::open_with(
        &dir,
        Options {
            clock,
            ..Options::default()
        },
    )?;
    println!("open: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    let span = ((end - start - DAY).max(1)) as u64;
    let queries: Vec<Query> = (0..100u64)
        .map(|i| {
            let org = format!("org-{:02}", (i * 7 + i / 7) % cfg.orgs as u64);
            let from = start + ((i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) % span) as i64;
            Query::new(
                org,
                Timestamp::from_nanos(from),
                Timestamp::from_nanos(from + DAY),
            )
        })
        .collect();
    for round in 0..rounds {
        let mut firsts = Vec::with_capacity(queries.len());
        let mut count = 0u64;
        let t = Instant::now();
        for q in &queries {
            let q0 = Instant::now();
            let mut first = true;
            for e in store.scan(q)? {
                std::hint::black_box(e?);
                if first {
                    firsts.push(q0.elapsed());
                    first = false;
                }
                count += 1;
            }
        }
        let decoded = count as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut zc = 0u64;
        for q in &queries {
            let mut s = store.scan(q)?;
            while let Some(r) = s.next_with(|v| v.payload.len()) {
                std::hint::black_box(r?);
                zc += 1;
            }
        }
        let zero_copy = zc as f64 / t.elapsed().as_secs_f64();
        firsts.sort();
        let p50 = firsts
            .get(firsts.len() / 2)
            .map_or(0.0, |d| d.as_secs_f64() * 1e6);
        println!(
            "round {round}: {count} events, decoded {:.2} M/s, zero-copy {:.2} M/s, first event p50 {p50:.0} µs",
            decoded / 1e6,
            zero_copy / 1e6
        );
    }
    Ok(())
}
