//! Open time: clean and after kill -9.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::{Store, Timestamp};
use serde_json::json;

use crate::*;

pub(crate) fn open_time(a: &Args) -> Res<()> {
    let (base, _guard) = base_dir(a)?;
    let dir = base.join("open-time-store");
    let exe = std::env::current_exe()?;
    let start = SampleConfig::default().start;
    let mut gen = SampleGenerator::new(sample_config(a.seed, start));
    let mut last_ts = start.as_nanos();
    eprintln!(
        "open-time: building a store of {} events in {}",
        a.events,
        dir.display()
    );
    let store = Store::open(&dir)?;
    let p = Phase::start();
    let mut left = a.events;
    let mut batch = Vec::with_capacity(10_000);
    let mut max_rss_at = Vec::new();
    let mut appended = 0u64;
    while left > 0 {
        batch.clear();
        batch.extend((&mut gen).take(left.min(10_000)));
        left -= batch.len();
        for (_, e) in &batch {
            last_ts = last_ts.max(e.occurred_at().as_nanos());
        }
        appended += store
            .append_batch(batch.iter().map(|(o, e)| (o.as_str(), e)))?
            .appended;
        if (a.events - left).is_multiple_of(1_000_000) {
            let (rss, hwm) = rss();
            let (anon, file) = rss_split();
            max_rss_at
                .push(json!({"events": a.events - left, "rss": rss, "hwm": hwm, "anon": anon, "file": file}));
            eprintln!(
                "  {} events, {:.0} events/s, RSS {:.0} MiB (peak {:.0} MiB; anon {:.0} MiB, mapped files {:.0} MiB)",
                a.events - left,
                (a.events - left) as f64 / p.t.elapsed().as_secs_f64(),
                rss as f64 / 1048576.0,
                hwm as f64 / 1048576.0,
                anon as f64 / 1048576.0,
                file as f64 / 1048576.0
            );
        }
    }
    let (build_secs, build_cpu, _, build_peak) = p.end();
    let stats = store.stats()?;
    drop(store);
    let (disk, _) = disk_usage(&dir);

    // Clean: open after a clean drop, `reps` times (each drop is clean).
    let mut clean_ms = Vec::new();
    for _ in 0..a.reps {
        sync_everything();
        let t = Instant::now();
        let s = Store::open(&dir)?;
        clean_ms.push(t.elapsed().as_secs_f64() * 1e3);
        drop(s);
    }

    // Kill: a child appends (default durability, batches of 1,000) until it
    // has acknowledged a varying number of batches, then gets SIGKILL while
    // it is appending; we time the first open afterwards.
    let mut kill_ms = Vec::new();
    let mut kill_reports = Vec::new();
    for rep in 0..a.reps {
        let target_batches = 50 + 37 * rep;
        let mut child = Command::new(&exe)
            .arg("open-time-writer")
            .arg("--dir")
            .arg(&dir)
            .args(["--seed", &(1000 + rep).to_string()])
            .args(["--start", &(last_ts + 1).to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = 0usize;
        for line in lines.by_ref() {
            if line?.starts_with("acked") {
                acked += 1;
                if acked >= target_batches {
                    break;
                }
            }
        }
        child.kill()?; // SIGKILL
        child.wait()?;
        drop(lines);
        sync_everything();
        let t = Instant::now();
        let s = Store::open(&dir)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let r = s.recovery_report().clone();
        let events = s.stats()?.events;
        kill_ms.push(ms);
        kill_reports.push(json!({
            "open_ms": ms,
            "acked_batches": acked,
            "records_scanned": r.records_scanned,
            "truncated_bytes": r.truncated_bytes,
            "events": events,
        }));
        eprintln!(
            "  kill -9 after {acked} acked batches: open {ms:.1} ms, {} records scanned, {} bytes cut, {events} events",
            r.records_scanned, r.truncated_bytes
        );
        // This drop is clean: the next writer starts from a clean store.
        drop(s);
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = json!({
        "events": a.events,
        "appended": appended,
        "build_secs": build_secs,
        "build_cpu_secs": build_cpu,
        "build_events_per_sec": a.events as f64 / build_secs,
        "build_peak_rss": build_peak,
        "rss_during_build": max_rss_at,
        "stats_events": stats.events,
        "segments": stats.segments,
        "index_memory_bytes": stats.index_memory_bytes,
        "index_bytes_per_event": stats.index_memory_bytes as f64 / stats.events.max(1) as f64,
        "disk_bytes": disk,
        "clean_open_ms": clean_ms,
        "kill_open_ms": kill_ms,
        "kill": kill_reports,
    });
    println!("RESULT {out}");
    println!();
    println!(
        "| store | open after clean shutdown (median of {}) | open after kill -9 mid-ingest (median of {}) |",
        a.reps, a.reps
    );
    println!("|---|---:|---:|");
    println!(
        "| {} events, {} segments, {:.0} MiB | {:.1} ms | {:.1} ms |",
        stats.events,
        stats.segments,
        disk as f64 / 1048576.0,
        median(clean_ms),
        median(kill_ms)
    );
    println!(
        "build: {:.0} events/s (batches of 10,000, default durability), peak RSS {:.0} MiB, index memory {:.1} MiB = {:.1} bytes/event",
        a.events as f64 / build_secs,
        build_peak as f64 / 1048576.0,
        stats.index_memory_bytes as f64 / 1048576.0,
        stats.index_memory_bytes as f64 / stats.events.max(1) as f64
    );
    if !a.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// The writer child of `open-time`: appends from `--start` on until killed.
pub(crate) fn open_time_writer(a: &Args) -> Res<()> {
    let dir = a.dir.clone().ok_or("open-time-writer needs --dir")?;
    let start = Timestamp::from_nanos(a.start.ok_or("open-time-writer needs --start")?);
    let mut gen = SampleGenerator::new(sample_config(a.seed, start));
    let store = Store::open(&dir)?;
    let mut out = std::io::stdout().lock();
    loop {
        let batch: Vec<_> = (&mut gen).take(1_000).collect();
        store.append_batch(batch.iter().map(|(o, e)| (o.as_str(), e)))?;
        writeln!(out, "acked")?;
        out.flush()?;
    }
}
