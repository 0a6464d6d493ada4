//! The parent: children, medians, the table.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::*;

pub(crate) fn base_dir(a: &Args) -> Res<(PathBuf, Option<tempfile::TempDir>)> {
    if let Some(d) = &a.dir {
        std::fs::create_dir_all(d)?;
        return Ok((d.clone(), None));
    }
    // The workspace's target directory: on the same disk as the work tree.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let parent = if target.is_dir() {
        target
    } else {
        std::env::temp_dir()
    };
    let tmp = tempfile::Builder::new().prefix("compare-").tempdir_in(parent)?;
    Ok((tmp.path().to_path_buf(), Some(tmp)))
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub(crate) fn parent(a: &Args) -> Res<()> {
    if let Some(path) = &a.report {
        let results: Vec<Value> = std::fs::read_to_string(path)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        let mut a = a.clone();
        a.runs = results
            .iter()
            .filter_map(|r| r["run"].as_u64())
            .max()
            .unwrap_or(1) as usize;
        a.systems
            .retain(|s| results.iter().any(|r| r["system"] == s.as_str()));
        print_table(&a, &results);
        return Ok(());
    }
    let (base, _guard) = base_dir(a)?;
    let exe = std::env::current_exe()?;
    eprintln!(
        "compare: {} events, batches of {}, {} queries, {} run(s), systems {:?}, under {}",
        a.events,
        a.batch,
        a.queries,
        a.runs,
        a.systems,
        base.display()
    );
    let mut results: Vec<Value> = Vec::new();
    for run in 1..=a.runs {
        for sys in &a.systems {
            let dir = base.join(format!("{sys}-run{run}"));
            let (found, status) = run_child(a, &exe, sys, &dir)?;
            if !a.keep {
                let _ = std::fs::remove_dir_all(&dir);
            }
            let Some(mut r) = found.filter(|_| status.success()) else {
                return Err(format!("{sys} (run {run}) failed: {status}").into());
            };
            r["run"] = json!(run);
            eprintln!("[{sys}] run {run}: {r}");
            if let Some(path) = &a.save {
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
                writeln!(f, "{r}")?;
            }
            results.push(r);
        }
    }
    print_table(a, &results);
    Ok(())
}

/// Touch `mb` MiB of fresh memory and free it again, just before a timed
/// phase. On this VM the balloon device reports free memory back to the
/// host (free page reporting), and the first touch of a reported page
/// faults on the host: a system that needs fresh pages (its page cache, its
/// buffers) right after an idle spell ran 3-4x slower with 7-9x the system
/// time, which hit whichever system ran first. Freed just before the
/// ingest, these pages are what the kernel hands out next, before it
/// reports them again. Every system gets the same; 0 turns it off.
pub(crate) fn prefault(mb: usize) {
    if mb > 0 {
        let mut block = vec![0xA5u8; mb << 20];
        std::hint::black_box(&mut block);
    }
}

/// Run one system in a child process; its RESULT line and exit status.
pub(crate) fn run_child(
    a: &Args,
    exe: &Path,
    sys: &str,
    dir: &Path,
) -> Res<(Option<Value>, std::process::ExitStatus)> {
    // Start every system with no dirty pages of the previous one.
    sync_everything();
    let mut child = Command::new(exe)
        .args(["--only", sys, "--dir"])
        .arg(dir)
        .args(["--events", &a.events.to_string()])
        .args(["--batch", &a.batch.to_string()])
        .args(["--queries", &a.queries.to_string()])
        .args(["--seed", &a.seed.to_string()])
        .args(["--prefault-mb", &a.prefault_mb.to_string()])
        .args(["--export-threads", &a.export_threads.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut found = None;
    let stdout = child.stdout.take().ok_or("child without stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(j) = line.strip_prefix("RESULT ") {
            found = Some(serde_json::from_str::<Value>(j)?);
        } else {
            println!("{line}");
        }
    }
    Ok((found, child.wait()?))
}

pub(crate) fn print_table(a: &Args, results: &[Value]) {
    let med = |sys: &str, key: &str| {
        median(
            results
                .iter()
                .filter(|r| r["system"] == sys)
                .filter_map(|r| r[key].as_f64())
                .collect(),
        )
    };
    let first = |sys: &str, key: &str| -> Value {
        results
            .iter()
            .find(|r| r["system"] == sys)
            .map(|r| r[key].clone())
            .unwrap_or(Value::Null)
    };
    // Ratios: the median over runs of the ratio within each run (the
    // systems of one run share the machine's conditions more closely).
    let ratio = |sys: &str, key: &str| {
        let per_run = (1..=a.runs as u64)
            .filter_map(|run| {
                let get = |s: &str| {
                    results
                        .iter()
                        .find(|r| r["system"] == s && r["run"].as_u64() == Some(run))
                        .and_then(|r| r[key].as_f64())
                };
                Some(get("auditstore")? / get(sys)?)
            })
            .collect();
        median(per_run)
    };
    let mib = |b: f64| b / (1u64 << 20) as f64;
    println!();
    println!(
        "{} events ({} unique, {:.1} MB JSON), batches of {} with a durability point after each; {} queries of (org, 1 day); medians of {} run(s)",
        first("auditstore", "events_offered").as_u64().or(first("raw", "events_offered").as_u64()).unwrap_or(a.events as u64),
        first(&a.systems[0], "unique_events"),
        first(&a.systems[0], "offered_json_bytes").as_f64().unwrap_or(0.0) / 1e6,
        a.batch,
        a.queries,
        a.runs
    );
    println!();
    println!(
        "| system | ingest events/s | MB/s | bytes on disk | disk / encoded | peak RSS (MiB, above workload) | scan events/s | first event p50 (µs) | auditstore ingest ÷ system | auditstore scan ÷ system |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for sys in &a.systems {
        let ev = med(sys, "events_per_sec");
        let scan = med(sys, "scan_events_per_sec");
        let disk = med(sys, "disk_bytes");
        // auditstore stores its own record; every other system the JSON line.
        let encoded = if sys == "auditstore" {
            med(sys, "unique_record_bytes")
        } else if sys == "raw" {
            med(sys, "offered_record_bytes")
        } else {
            med(sys, "unique_json_bytes")
        };
        let scan_label = if sys == "raw" { " (seq. read+CRC)" } else { "" };
        println!(
            "| {sys} | {:.0} | {:.1} | {:.1} MiB | {:.2}x | {:.0} | {:.0}{scan_label} | {:.0} | {} | {} |",
            ev,
            med(sys, "mb_per_sec"),
            mib(disk),
            disk / encoded,
            mib(med(sys, "ingest_peak_rss_above_workload")),
            scan,
            med(sys, "first_event_us_p50"),
            if sys == "auditstore" {
                "1.00x".to_string()
            } else {
                format!("{:.2}x", ratio(sys, "events_per_sec"))
            },
            if sys == "auditstore" || sys == "raw" {
                "-".to_string()
            } else {
                format!("{:.2}x", ratio(sys, "scan_events_per_sec"))
            },
        );
    }
    println!();
    // Every system must answer the queries identically.
    let reference = first("auditstore", "scan_checksum");
    for sys in a.systems.iter().filter(|s| *s != "raw" && *s != "auditstore") {
        if reference != Value::Null && first(sys, "scan_checksum") != reference {
            println!(
                "WARNING: {sys} returned different query results ({} events, checksum {}) than auditstore ({} events, checksum {})",
                first(sys, "scan_events"),
                first(sys, "scan_checksum"),
                first("auditstore", "scan_events"),
                reference
            );
        }
    }
    if a.systems.iter().any(|s| s == "auditstore") {
        println!(
            "auditstore: ingest CPU {:.2}s of {:.2}s wall; scan first event p99 {:.0} µs, max {:.0} µs; zero-copy scan {:.0} events/s; \
             CSV export {:.0} rows in {:.2}s = {:.0} rows/s ({:.1} MB, fsynced, {} formatter thread(s), {:.2}s CPU); reopen after clean close {:.1} ms; index memory {:.1} MiB",
            med("auditstore", "ingest_cpu_secs"),
            med("auditstore", "ingest_secs"),
            med("auditstore", "first_event_us_p99"),
            med("auditstore", "first_event_us_max"),
            med("auditstore", "zero_copy_scan_events_per_sec"),
            med("auditstore", "export_rows"),
            med("auditstore", "export_secs"),
            med("auditstore", "export_rows_per_sec"),
            med("auditstore", "export_bytes") / 1e6,
            med("auditstore", "export_threads"),
            med("auditstore", "export_cpu_secs"),
            med("auditstore", "reopen_ms"),
            mib(med("auditstore", "index_memory_bytes")),
        );
    }
    if a.systems.iter().any(|s| s == "raw") && a.systems.iter().any(|s| s == "auditstore") {
        let per_run: Vec<String> = (1..=a.runs as u64)
            .filter_map(|run| {
                let get = |s: &str| {
                    results
                        .iter()
                        .find(|r| r["system"] == s && r["run"].as_u64() == Some(run))
                        .and_then(|r| r["events_per_sec"].as_f64())
                };
                Some(format!("{:.0}%", 100.0 * get("auditstore")? / get("raw")?))
            })
            .collect();
        println!(
            "auditstore ingest = {:.1}% of the raw ceiling measured in the same run (median; per run: {})",
            100.0 * ratio("raw", "events_per_sec"),
            per_run.join(", ")
        );
    }
}
