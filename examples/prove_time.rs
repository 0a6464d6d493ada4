//! Times `Store::prove` on a store of N sample events (default 1,000,000):
//! cold (first proof of a segment and tile) and warm (the same again, and
//! other events of tiles already read).
//!
//! `cargo run --release --example prove_time -- DIR [N]`

use std::time::Instant;

use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::{Event, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: prove_time DIR [N]")?;
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1_000_000);
    let store = Store::open(&dir)?;
    let mut gen = SampleGenerator::new(SampleConfig {
        duplicate_per_mille: 0,
        ..SampleConfig::default()
    });
    let mut ids = Vec::new();
    let t = Instant::now();
    let mut left = n;
    while left > 0 {
        let batch: Vec<(String, Event)> = (&mut gen).take(left.min(10_000)).collect();
        left -= batch.len();
        ids.extend(batch.iter().step_by(997).map(|(_, e)| e.id()));
        store.append_batch(batch.iter().map(|(o, e)| (o.as_str(), e)))?;
    }
    println!("appended {n} in {:.2}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let cp = store.checkpoint()?;
    println!(
        "checkpoint (integrate the rest) {:.2}s: size {}",
        t.elapsed().as_secs_f64(),
        cp.tree_size
    );
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for id in &ids {
        let t = Instant::now();
        let a = store.prove(*id)?.ok_or("missing")?;
        cold.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        let b = store.prove(*id)?.ok_or("missing")?;
        warm.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(a, b);
    }
    for (name, v) in [("first", &mut cold), ("warm", &mut warm)] {
        v.sort_by(f64::total_cmp);
        println!(
            "prove {name}: {} proofs, p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
            v.len(),
            v[v.len() / 2],
            v[v.len() * 99 / 100],
            v[v.len() - 1]
        );
    }
    Ok(())
}
