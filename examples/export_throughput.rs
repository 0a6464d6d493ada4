//! Export throughput: 1,000,000 generated events of one organization, then
//! the engine's raw scan, a full export, a scheduled request build (with
//! its signed manifest) and the manifest's offline check, each timed. Run it in a release build:
//!
//! ```text
//! cargo run --release --example export_throughput [EVENTS] [DIR]
//! ```
//!
//! `THREADS=n` sets the formatter threads (default: the cores, at most 4).

use std::sync::Arc;
use std::time::Instant;

use auditstore::export::{Exports, Role};
use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::{Durability, FixedClock, Options, Plan, Query, Store, Timestamp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1_000_000);
    let tmp = tempfile::tempdir()?;
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    // 1,000,000 events 1 s apart on average: June 1 to about June 24, 2026.
    let requested = Timestamp::parse_rfc3339("2026-07-01T09:31:00Z")?;
    let clock = Arc::new(FixedClock::new(requested));
    let store = Store::open_with(
        &dir,
        Options {
            clock: clock.clone(),
            durability: Durability::Buffered,
            ..Options::default()
        },
    )?;
    store.set_org("org-00", Some(Plan::Server), None)?;
    let mut gen = SampleGenerator::new(SampleConfig {
        orgs: 1,
        step_nanos: 1_000_000_000,
        duplicate_per_mille: 0,
        ..SampleConfig::default()
    });
    // A DIR that already holds the events (an earlier run) is reused.
    let t = Instant::now();
    gen.append_to(&store, n.saturating_sub(store.stats()?.events as usize), 50_000)?;
    println!(
        "store holds {n} events (generated and appended in {:.2}s)",
        t.elapsed().as_secs_f64()
    );

    let rate = |rows: u64, secs: f64| rows as f64 / secs.max(1e-9);
    let all = Query::new("org-00", Timestamp::MIN, Timestamp::MAX);
    let t = Instant::now();
    let mut scan = store.scan(&all)?;
    let mut rows = 0u64;
    let mut bytes = 0usize;
    while let Some(r) = scan.next_with(|v| v.payload.len() + v.actor.len()) {
        bytes += r?;
        rows += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    println!("engine scan (zero-copy visit): {rows} rows in {secs:.3}s = {:.0} rows/s ({bytes} payload+actor bytes)", rate(rows, secs));

    let threads = match std::env::var("THREADS") {
        Ok(s) => s.parse()?,
        Err(_) => auditstore::export::rows::default_threads(),
    };
    let exports = Exports::new(&store)?.with_threads(threads);
    println!("formatter threads: {threads}");
    let t = Instant::now();
    let full = exports.full("org-00", "bench", Role::Admin, std::io::sink())?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "full export to /dev/null: {} rows in {secs:.3}s = {:.0} rows/s",
        full.rows,
        rate(full.rows, secs)
    );

    let req = exports.request(
        "org-00",
        "bench",
        Role::Admin,
        "2026-06-01".parse()?,
        "2026-07-01".parse()?,
    )?;
    clock.set(exports.processed_at(req.created_at));
    let t = Instant::now();
    let cpu = cpu_secs();
    let report = exports.process()?;
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu;
    let done = exports.get(req.id)?;
    let rows = done.rows.unwrap_or(0);
    println!(
        "scheduled build to {} (tmp, fsync, rename): {rows} rows, {} bytes in {secs:.3}s = {:.0} rows/s, {:.0} MB/s, {cpu:.2}s CPU",
        exports.dir().display(),
        done.bytes.unwrap_or(0),
        rate(rows, secs),
        done.bytes.unwrap_or(0) as f64 / secs.max(1e-9) / 1e6,
    );
    assert_eq!(report.processed.len(), 1);
    // The signed manifest, checked offline as `export verify` does.
    let csv = exports.download(req.id)?.path().to_path_buf();
    let manifest = exports.manifest(req.id)?;
    let key = auditstore::integrity::VerifierKey::parse(&store.key_info()?.verifier_key)?;
    let t = Instant::now();
    let cpu = cpu_secs();
    let checked = auditstore::export::manifest_check::check_export(&csv, &manifest, &key)?;
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu;
    println!(
        "manifest ({} bytes) verify: {} rows in {secs:.3}s = {:.0} rows/s, {cpu:.2}s CPU",
        manifest.len(),
        checked.rows,
        rate(checked.rows, secs)
    );
    // Let the download expire, so that the store's own expiry deletes the
    // 0.5 GB file: a reused DIR does not collect one per run.
    if let Some(expires_at) = done.expires_at {
        clock.set(expires_at);
        let expired = exports.process()?.expired;
        assert!(
            expired.iter().any(|r| r.id == req.id),
            "the build's file was not expired"
        );
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        for line in status
            .lines()
            // RssAnon is the heap; RssFile counts the mapped segments the scans touched.
            .filter(|l| l.starts_with("RssAnon") || l.starts_with("RssFile"))
        {
            println!("{line}");
        }
    }
    Ok(())
}

/// User + system CPU seconds of this process so far (0 where /proc is absent).
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command's closing parenthesis; utime and stime are
    // the 12th and 13th of them, in clock ticks (100 per second here).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
