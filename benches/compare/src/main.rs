//! `compare`: one deterministic audit-event workload run through a raw
//! framed log (the practical ceiling of the machine), auditstore, sled,
//! SQLite, redb and fjall, side by side (issue 4).
//!
//! ```text
//! cargo run --release -p auditstore-compare -- --events 1000000 --runs 3
//! cargo run --release -p auditstore-compare -- open-time --events 10000000
//! ```
//!
//! The parent process runs each system in a child process of this same
//! binary (`compare --only SYSTEM ...`) so that peak memory (VmHWM) is per
//! system; each child prints one `RESULT {json}` line, and the parent prints
//! the table of medians over `--runs`.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditstore::export;
use auditstore::export::pipe::PipedFile;
use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::{codec, Event, FixedClock, Options, Query, Store, Timestamp};
use serde_json::{json, Value};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const SYSTEMS: [&str; 7] = [
    "raw",
    "auditstore",
    "auditstore-notree",
    "sled",
    "sqlite",
    "redb",
    "fjall",
];
const DAY: i64 = 86_400 * 1_000_000_000;
const ORGS: u32 = 50;
/// Mean gap between events: 1,000,000 events span about 5.8 days, so a
/// 1-day range of one organization holds about 3,500 events.
const STEP_NANOS: i64 = 500_000_000;

const USAGE: &str = "\
usage:
  compare [--events N] [--runs K] [--dir DIR] [--systems a,b,..] [--queries Q] [--batch B] [--seed S]
          [--save FILE (every child's RESULT json, one a line)] [--keep]
          [--prefault-mb M (fresh memory touched before each timed ingest; default 4096, 0: none)]
          [--export-threads T (auditstore's CSV formatter threads; default: the cores, at most 4)]
  compare --report FILE [--systems ...]      (the table again, from a --save file)
  compare --only SYSTEM [same options]        (one system; prints a RESULT line; used by the parent)
  compare open-time [--events N] [--reps R] [--dir DIR] [--keep]
systems: raw, auditstore, sled, sqlite, redb, fjall";

#[derive(Debug, Clone)]
struct Args {
    events: usize,
    runs: usize,
    dir: Option<PathBuf>,
    only: Option<String>,
    systems: Vec<String>,
    queries: usize,
    batch: usize,
    seed: u64,
    keep: bool,
    reps: usize,
    start: Option<i64>,
    save: Option<PathBuf>,
    report: Option<PathBuf>,
    prefault_mb: usize,
    export_threads: usize,
}

fn parse_args(args: &[String]) -> Res<Args> {
    let mut a = Args {
        events: 1_000_000,
        runs: 1,
        dir: None,
        only: None,
        systems: SYSTEMS.iter().map(|s| s.to_string()).collect(),
        queries: 100,
        batch: 1_000,
        seed: 42,
        keep: false,
        reps: 5,
        start: None,
        save: None,
        report: None,
        prefault_mb: 4096,
        export_threads: export::rows::default_threads(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--events" => a.events = val()?.replace('_', "").parse()?,
            "--runs" => a.runs = val()?.parse()?,
            "--dir" => a.dir = Some(PathBuf::from(val()?)),
            "--only" => a.only = Some(val()?.clone()),
            "--systems" => a.systems = val()?.split(',').map(|s| s.trim().to_string()).collect(),
            "--queries" => a.queries = val()?.parse()?,
            "--batch" => a.batch = val()?.parse()?,
            "--seed" => a.seed = val()?.parse()?,
            "--reps" => a.reps = val()?.parse()?,
            "--start" => a.start = Some(val()?.parse()?),
            "--save" => a.save = Some(PathBuf::from(val()?)),
            "--report" => a.report = Some(PathBuf::from(val()?)),
            "--keep" => a.keep = true,
            "--prefault-mb" => a.prefault_mb = val()?.parse()?,
            "--export-threads" => a.export_threads = val()?.parse::<usize>()?.max(1),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    for s in a.systems.iter().chain(a.only.iter()) {
        if !SYSTEMS.contains(&s.as_str()) {
            return Err(format!("unknown system {s:?}\n{USAGE}").into());
        }
    }
    if a.runs == 0 || a.batch == 0 || a.reps == 0 {
        return Err("--runs, --batch and --reps must be at least 1".into());
    }
    Ok(a)
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = match argv.first().map(String::as_str) {
        Some("open-time") => parse_args(&argv[1..]).and_then(|a| open_time(&a)),
        Some("open-time-writer") => parse_args(&argv[1..]).and_then(|a| open_time_writer(&a)),
        _ => parse_args(&argv).and_then(|a| match &a.only {
            Some(sys) => child(&a, sys),
            None => parent(&a),
        }),
    };
    if let Err(e) = result {
        eprintln!("compare: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------
// Process measurements

/// (VmRSS, VmHWM) in bytes.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// (RssAnon, RssFile) in bytes: heap versus mapped file pages.
fn rss_split() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    (field("RssAnon:"), field("RssFile:"))
}

/// Reset VmHWM to the current RSS (Linux >= 4.0); false if refused.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// (user, system) CPU seconds of the whole process (all threads), from
/// `/proc/self/stat` (fields 14 and 15, in USER_HZ = 100 ticks a second on
/// Linux: 10 ms resolution); zeros if unreadable.
fn cpu_split() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    // The command name (field 2) may hold spaces: count from after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |n: usize| -> f64 {
        rest.split_whitespace()
            .nth(n - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (field(14), field(15))
}

/// Flush every dirty page of the system (`sync`), so that no system starts
/// with the previous one's writeback.
fn sync_everything() {
    let _ = Command::new("sync").status();
}

/// User + system CPU seconds of the whole process (all threads).
fn cpu_secs() -> f64 {
    let (u, s) = cpu_split();
    u + s
}

/// (allocated bytes, apparent bytes) of every file under `dir`.
fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut alloc = 0;
    let mut apparent = 0;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            let (a, b) = disk_usage(&e.path());
            alloc += a;
            apparent += b;
        } else {
            alloc += m.blocks() * 512;
            apparent += m.len();
        }
    }
    (alloc, apparent)
}

/// Phase bookkeeping: wall time, CPU time and peak RSS above the start.
struct Phase {
    t: Instant,
    cpu: f64,
    split: (f64, f64),
    rss0: u64,
    peak_reset: bool,
}

impl Phase {
    fn start() -> Phase {
        let peak_reset = reset_peak();
        Phase {
            t: Instant::now(),
            cpu: cpu_secs(),
            split: cpu_split(),
            rss0: rss().0,
            peak_reset,
        }
    }
    /// (user, system) CPU seconds since the start.
    fn user_sys(&self) -> (f64, f64) {
        let (u, s) = cpu_split();
        (u - self.split.0, s - self.split.1)
    }
    /// (wall secs, cpu secs, rss at start, peak rss)
    fn end(&self) -> (f64, f64, u64, u64) {
        (
            self.t.elapsed().as_secs_f64(),
            cpu_secs() - self.cpu,
            self.rss0,
            rss().1,
        )
    }
}

// ---------------------------------------------------------------------------
// The workload

struct Item {
    org: u8,
    id: [u8; 16],
    ts: i64,
    json: String,
}

struct Workload {
    orgs: Vec<String>,
    /// For every system but auditstore: the JSON lines with their keys.
    items: Vec<Item>,
    /// For the raw ceiling: auditstore's own record body of every offered
    /// event (the bytes auditstore writes, minus its frame).
    records: Vec<Vec<u8>>,
    offered_record_bytes: u64,
    /// For auditstore: the parsed events (parsing is not part of the timing
    /// of any system; peers get the id and time pre-extracted).
    events: Vec<(u8, Event)>,
    offered: u64,
    offered_json_bytes: u64,
    unique: u64,
    unique_json_bytes: u64,
    unique_record_bytes: u64,
    min_ts: i64,
    max_ts: i64,
    gen_secs: f64,
}

fn sample_config(seed: u64, start: Timestamp) -> SampleConfig {
    SampleConfig {
        seed,
        orgs: ORGS,
        start,
        step_nanos: STEP_NANOS,
        duplicate_per_mille: 10,
        out_of_order_per_mille: 10,
        max_skew_nanos: 60_000_000_000,
    }
}

fn org_no(org: &str) -> u8 {
    org.strip_prefix("org-")
        .and_then(|n| n.parse().ok())
        .expect("generator org names are org-NN")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    Json,
    Records,
    Events,
}

fn generate(n: usize, seed: u64, keep: Keep) -> Workload {
    let t = Instant::now();
    let mut gen = SampleGenerator::new(sample_config(seed, SampleConfig::default().start));
    let mut seen: HashSet<[u8; 16]> = HashSet::with_capacity(n);
    let mut scratch = Vec::with_capacity(2048);
    let mut wl = Workload {
        orgs: (0..ORGS).map(|i| format!("org-{i:02}")).collect(),
        items: Vec::new(),
        records: Vec::new(),
        offered_record_bytes: 0,
        events: Vec::new(),
        offered: 0,
        offered_json_bytes: 0,
        unique: 0,
        unique_json_bytes: 0,
        unique_record_bytes: 0,
        min_ts: i64::MAX,
        max_ts: i64::MIN,
        gen_secs: 0.0,
    };
    for _ in 0..n {
        let (org, line) = gen.next_line();
        let event = Event::from_json(&line).expect("generated events are valid");
        let id = *event.id().as_bytes();
        let ts = event.occurred_at().as_nanos();
        wl.offered += 1;
        wl.offered_json_bytes += line.len() as u64;
        scratch.clear();
        codec::encode(&org, &event, &mut scratch);
        wl.offered_record_bytes += scratch.len() as u64;
        if seen.insert(id) {
            wl.unique += 1;
            wl.unique_json_bytes += line.len() as u64;
            wl.unique_record_bytes += scratch.len() as u64;
            wl.min_ts = wl.min_ts.min(ts);
            wl.max_ts = wl.max_ts.max(ts);
        }
        let o = org_no(&org);
        match keep {
            Keep::Events => wl.events.push((o, event)),
            Keep::Records => wl.records.push(scratch.clone()),
            Keep::Json => wl.items.push(Item {
                org: o,
                id,
                ts,
                json: line,
            }),
        }
    }
    wl.gen_secs = t.elapsed().as_secs_f64();
    wl
}

/// SplitMix64, for the query mix.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `count` random (organization, 1-day) ranges inside the data.
fn queries(wl: &Workload, count: usize, seed: u64) -> Vec<(String, i64, i64)> {
    let mut rng = Rng(seed ^ 0x5151_5151);
    let span = (wl.max_ts - wl.min_ts - DAY).max(1) as u64;
    (0..count)
        .map(|_| {
            let org = wl.orgs[(rng.next() % ORGS as u64) as usize].clone();
            let from = wl.min_ts + (rng.next() % span) as i64;
            (org, from, from + DAY)
        })
        .collect()
}

/// Sortable key `org|ts|id` (the sign bit of ts flipped, big endian).
fn time_key(org: &str, ts: i64, id: Option<&[u8; 16]>) -> Vec<u8> {
    let mut k = Vec::with_capacity(org.len() + 25);
    k.extend_from_slice(org.as_bytes());
    k.push(b'|');
    k.extend_from_slice(&((ts as u64) ^ (1 << 63)).to_be_bytes());
    if let Some(id) = id {
        k.extend_from_slice(id);
    }
    k
}

// ---------------------------------------------------------------------------
// Range-query bookkeeping, identical for every system

#[derive(Default)]
struct ScanStats {
    events: u64,
    /// XOR of the first 8 id bytes of every event returned (order-free).
    checksum: u64,
    first_us: Vec<f64>,
    secs: f64,
}

impl ScanStats {
    fn to_json(&self) -> Value {
        let mut f = self.first_us.clone();
        f.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| {
            if f.is_empty() {
                0.0
            } else {
                f[((f.len() - 1) as f64 * p).round() as usize]
            }
        };
        json!({
            "scan_events": self.events,
            "scan_checksum": format!("{:016x}", self.checksum),
            "scan_secs": self.secs,
            "scan_events_per_sec": self.events as f64 / self.secs.max(1e-9),
            "first_event_us_p50": pct(0.5),
            "first_event_us_p99": pct(0.99),
            "first_event_us_max": pct(1.0),
        })
    }
}

/// Run every query: `run(org, from, to, on_event)` must call `on_event`
/// with each decoded event, in order.
fn run_queries(
    qs: &[(String, i64, i64)],
    mut run: impl FnMut(&str, i64, i64, &mut dyn FnMut(&Event)) -> Res<()>,
) -> Res<ScanStats> {
    let mut st = ScanStats::default();
    let all = Instant::now();
    for (org, from, to) in qs {
        let t = Instant::now();
        let mut first = true;
        let mut stats_events = 0u64;
        let mut checksum = 0u64;
        let mut first_us = None;
        run(org, *from, *to, &mut |e: &Event| {
            if first {
                first_us = Some(t.elapsed().as_secs_f64() * 1e6);
                first = false;
            }
            stats_events += 1;
            checksum ^= u64::from_le_bytes(e.id().as_bytes()[..8].try_into().unwrap());
        })?;
        st.events += stats_events;
        st.checksum ^= checksum;
        st.first_us
            .push(first_us.unwrap_or(t.elapsed().as_secs_f64() * 1e6));
    }
    st.secs = all.elapsed().as_secs_f64();
    Ok(st)
}

fn parse_stored(bytes: &[u8]) -> Res<Event> {
    Ok(Event::from_json(std::str::from_utf8(bytes)?)?)
}

// ---------------------------------------------------------------------------
// The child: one system

thread_local! {
    static SYS: std::cell::Cell<&'static str> = const { std::cell::Cell::new("") };
}

fn child(a: &Args, sys: &str) -> Res<()> {
    SYS.with(|s| s.set(SYSTEMS.iter().find(|n| **n == sys).copied().unwrap_or("")));
    let dir = a.dir.clone().ok_or("--only needs --dir")?;
    std::fs::create_dir_all(&dir)?;
    let store_dir = dir.join("store");
    eprintln!("[{sys}] generating {} events ...", a.events);
    let keep = match sys {
        "auditstore" | "auditstore-notree" => Keep::Events,
        "raw" => Keep::Records,
        _ => Keep::Json,
    };
    let wl = generate(a.events, a.seed, keep);
    let qs = queries(&wl, a.queries, a.seed);
    eprintln!("[{sys}] generated in {:.1}s; ingesting ...", wl.gen_secs);
    prefault(a.prefault_mb);
    profiling_pause();
    let mut out = json!({
        "system": sys,
        "events_offered": wl.offered,
        "offered_json_bytes": wl.offered_json_bytes,
        "unique_events": wl.unique,
        "unique_json_bytes": wl.unique_json_bytes,
        "unique_record_bytes": wl.unique_record_bytes,
        "offered_record_bytes": wl.offered_record_bytes,
        "batch": a.batch,
        "gen_secs": wl.gen_secs,
    });
    let extra = match sys {
        "raw" => run_raw(a, &wl, &store_dir)?,
        "auditstore" | "auditstore-notree" => run_auditstore(a, &wl, &qs, &store_dir, &dir)?,
        "sled" => run_sled(a, &wl, &qs, &store_dir)?,
        "sqlite" => run_sqlite(a, &wl, &qs, &store_dir)?,
        "redb" => run_redb(a, &wl, &qs, &store_dir)?,
        "fjall" => run_fjall(a, &wl, &qs, &store_dir)?,
        _ => unreachable!(),
    };
    let o = out.as_object_mut().unwrap();
    for (k, v) in extra.as_object().unwrap() {
        o.insert(k.clone(), v.clone());
    }
    let secs = o["ingest_secs"].as_f64().unwrap_or(0.0);
    o.insert("events_per_sec".into(), json!(wl.offered as f64 / secs.max(1e-9)));
    o.insert(
        "mb_per_sec".into(),
        json!(wl.offered_json_bytes as f64 / 1e6 / secs.max(1e-9)),
    );
    eprintln!("[{sys}] done");
    println!("RESULT {out}");
    Ok(())
}

/// With `COMPARE_PAUSE_MS` set, sleep between phases (outside every timed
/// section) so that a profiler attached with `perf record -p` can be
/// started and stopped on the phase markers printed to stderr.
fn profiling_pause() {
    if let Some(ms) = std::env::var("COMPARE_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// Common fields after an ingest phase.
fn ingest_json(p: &Phase, appended: u64, duplicates: u64) -> Value {
    let (secs, cpu, rss0, peak) = p.end();
    json!({
        "ingest_secs": secs,
        "ingest_cpu_secs": cpu,
        "ingest_sys_secs": p.user_sys().1,
        "appended": appended,
        "duplicates": duplicates,
        "rss_before_ingest": rss0,
        "ingest_peak_rss": peak,
        "ingest_peak_rss_above_workload": peak.saturating_sub(rss0),
        "peak_reset_ok": p.peak_reset,
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    let o = a.as_object_mut().unwrap();
    for (k, v) in b.as_object().unwrap() {
        o.insert(k.clone(), v.clone());
    }
    a
}

fn disk_json(prefix: &str, dir: &Path) -> Value {
    let (alloc, apparent) = disk_usage(dir);
    json!({ format!("{prefix}disk_bytes"): alloc, format!("{prefix}disk_apparent_bytes"): apparent })
}

// raw ceiling ----------------------------------------------------------------

fn run_raw(a: &Args, wl: &Workload, dir: &Path) -> Res<Value> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("raw.log");
    let p = Phase::start();
    let mut w = BufWriter::with_capacity(1 << 20, File::create(&path)?);
    for batch in wl.records.chunks(a.batch) {
        for body in batch {
            w.write_all(&(body.len() as u32).to_le_bytes())?;
            w.write_all(&crc32fast::hash(body).to_le_bytes())?;
            w.write_all(body)?;
        }
        w.flush()?;
        w.get_ref().sync_data()?;
    }
    let ingest = ingest_json(&p, wl.offered, 0);
    drop(w);
    // Sequential read with CRC check (no index: no range queries).
    let p = Phase::start();
    let mut r = BufReader::with_capacity(1 << 20, File::open(&path)?);
    let mut hdr = [0u8; 8];
    let mut body = Vec::new();
    let mut n = 0u64;
    let mut first_us = 0.0;
    loop {
        match r.read_exact(&mut hdr) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_le_bytes(hdr[..4].try_into().unwrap()) as usize;
        body.resize(len, 0);
        r.read_exact(&mut body)?;
        if crc32fast::hash(&body) != u32::from_le_bytes(hdr[4..].try_into().unwrap()) {
            return Err("raw log: CRC mismatch".into());
        }
        if n == 0 {
            first_us = p.t.elapsed().as_secs_f64() * 1e6;
        }
        n += 1;
    }
    let (secs, _, _, _) = p.end();
    Ok(merge(
        merge(ingest, disk_json("", dir)),
        json!({
            "scan_kind": "full sequential read + CRC, no decode",
            "scan_events": n,
            "scan_secs": secs,
            "scan_events_per_sec": n as f64 / secs.max(1e-9),
            "first_event_us_p50": first_us,
        }),
    ))
}

// auditstore -------------------------------------------------------------------

fn run_auditstore(
    a: &Args,
    wl: &Workload,
    qs: &[(String, i64, i64)],
    dir: &Path,
    run_dir: &Path,
) -> Res<Value> {
    let clock = Arc::new(FixedClock::new(Timestamp::from_nanos(wl.max_ts + DAY)));
    let open = |clock: Arc<FixedClock>| {
        Store::open_with(
            dir,
            Options {
                clock,
                // `auditstore-notree`: the tamper-evidence tree and its
                // checkpoints off, to measure what they cost.
                integrity: SYS.with(|s| s.get()) != "auditstore-notree",
                ..Options::default()
            },
        )
    };
    let store = open(clock.clone())?;
    let p = Phase::start();
    let (mut appended, mut dups) = (0, 0);
    for batch in wl.events.chunks(a.batch) {
        let r = store.append_batch(batch.iter().map(|(o, e)| (wl.orgs[*o as usize].as_str(), e)))?;
        appended += r.appended;
        dups += r.duplicates + r.conflicts;
    }
    let ingest = ingest_json(&p, appended, dups);
    eprintln!("[{}] ingested; querying ...", SYS.with(|s| s.get()));
    profiling_pause();
    let stats = store.stats()?;
    let disk_open = disk_json("open_", dir);

    let p = Phase::start();
    let scan = run_queries(qs, |org, from, to, f| {
        let q = Query::new(org, Timestamp::from_nanos(from), Timestamp::from_nanos(to));
        for e in store.scan(&q)? {
            f(&e?);
        }
        Ok(())
    })?;
    let (_, _, _, scan_peak) = p.end();
    let (scan_user, scan_sys) = p.user_sys();

    // Zero-copy visit of the same queries (no owned Event).
    let t = Instant::now();
    let mut zc = 0u64;
    for (org, from, to) in qs {
        let q = Query::new(
            org.as_str(),
            Timestamp::from_nanos(*from),
            Timestamp::from_nanos(*to),
        );
        let mut s = store.scan(&q)?;
        while let Some(r) = s.next_with(|v| v.payload.len()) {
            r?;
            zc += 1;
        }
    }
    let zc_secs = t.elapsed().as_secs_f64();

    // CSV export of every stored event, formatted on `--export-threads`
    // threads (as export builds are), to a file written by a helper thread
    // (PipedFile, as export builds do), fsynced.
    eprintln!("[auditstore] queried; exporting ...");
    profiling_pause();
    let csv_path = run_dir.join("export.csv");
    let p = Phase::start();
    let mut out = PipedFile::create(&csv_path)?;
    out.write_all(&export::csv::header())?;
    let mut rows = 0;
    for org in &wl.orgs {
        let q = Query::new(org.as_str(), Timestamp::MIN, Timestamp::MAX);
        rows += export::rows::write_rows(store.scan(&q)?, a.export_threads, &mut out)?;
    }
    let file = out.finish()?;
    file.sync_all()?;
    let (export_secs, export_cpu, _, export_peak) = p.end();
    let export_sys = p.user_sys().1;
    let export_bytes = std::fs::metadata(&csv_path)?.len();
    drop(file);
    std::fs::remove_file(&csv_path)?;
    drop(store);

    // Reopen after a clean close (its cost, for the record).
    let t = Instant::now();
    let store = open(clock)?;
    let reopen_ms = t.elapsed().as_secs_f64() * 1e3;
    drop(store);

    Ok(merge(
        merge(
            merge(ingest, scan.to_json()),
            merge(disk_open, disk_json("", dir)),
        ),
        json!({
            "scan_peak_rss": scan_peak,
            "scan_user_secs": scan_user,
            "scan_sys_secs": scan_sys,
            "zero_copy_scan_events": zc,
            "zero_copy_scan_events_per_sec": zc as f64 / zc_secs.max(1e-9),
            "export_rows": rows,
            "export_threads": a.export_threads,
            "export_secs": export_secs,
            "export_cpu_secs": export_cpu,
            "export_sys_secs": export_sys,
            "export_rows_per_sec": rows as f64 / export_secs.max(1e-9),
            "export_bytes": export_bytes,
            "export_peak_rss": export_peak,
            "stats_events": stats.events,
            "stats_segments": stats.segments,
            "index_memory_bytes": stats.index_memory_bytes,
            "reopen_ms": reopen_ms,
        }),
    ))
}

// sled -------------------------------------------------------------------------

fn run_sled(a: &Args, wl: &Workload, qs: &[(String, i64, i64)], dir: &Path) -> Res<Value> {
    let db = sled::open(dir)?;
    let time = db.open_tree("time")?;
    let ids = db.open_tree("ids")?;
    let p = Phase::start();
    let (mut appended, mut dups) = (0, 0);
    let mut seen = HashSet::new();
    for batch in wl.items.chunks(a.batch) {
        let mut tb = sled::Batch::default();
        let mut ib = sled::Batch::default();
        seen.clear();
        for it in batch {
            if !seen.insert(it.id) || ids.contains_key(it.id)? {
                dups += 1;
                continue;
            }
            let key = time_key(&wl.orgs[it.org as usize], it.ts, Some(&it.id));
            ib.insert(&it.id[..], key.as_slice());
            tb.insert(key, it.json.as_bytes());
            appended += 1;
        }
        time.apply_batch(tb)?;
        ids.apply_batch(ib)?;
        db.flush()?;
    }
    let ingest = ingest_json(&p, appended, dups);
    eprintln!("[{}] ingested; querying ...", SYS.with(|s| s.get()));
    profiling_pause();
    let disk_open = disk_json("open_", dir);
    let scan = run_queries(qs, |org, from, to, f| {
        for kv in time.range(time_key(org, from, None)..time_key(org, to, None)) {
            let (_, v) = kv?;
            f(&parse_stored(&v)?);
        }
        Ok(())
    })?;
    drop((time, ids));
    drop(db);
    Ok(merge(
        merge(ingest, scan.to_json()),
        merge(disk_open, disk_json("", dir)),
    ))
}

// SQLite -------------------------------------------------------------------------

fn run_sqlite(a: &Args, wl: &Workload, qs: &[(String, i64, i64)], dir: &Path) -> Res<Value> {
    use rusqlite::{params, Connection};
    std::fs::create_dir_all(dir)?;
    let mut conn = Connection::open(dir.join("events.sqlite"))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    assert_eq!(mode.to_lowercase(), "wal");
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE events(id BLOB NOT NULL UNIQUE, org TEXT NOT NULL, ts INTEGER NOT NULL, body TEXT NOT NULL);
         CREATE INDEX events_org_ts ON events(org, ts);",
    )?;
    let p = Phase::start();
    let (mut appended, mut dups) = (0, 0);
    for batch in wl.items.chunks(a.batch) {
        let tx = conn.transaction()?;
        {
            let mut st =
                tx.prepare_cached("INSERT OR IGNORE INTO events(id, org, ts, body) VALUES (?1, ?2, ?3, ?4)")?;
            for it in batch {
                let n = st.execute(params![&it.id[..], wl.orgs[it.org as usize], it.ts, it.json])?;
                if n == 0 {
                    dups += 1;
                } else {
                    appended += 1;
                }
            }
        }
        tx.commit()?;
    }
    let ingest = ingest_json(&p, appended, dups);
    eprintln!("[{}] ingested; querying ...", SYS.with(|s| s.get()));
    profiling_pause();
    let disk_open = disk_json("open_", dir);
    let scan = {
        let mut st =
            conn.prepare("SELECT body FROM events WHERE org = ?1 AND ts >= ?2 AND ts < ?3 ORDER BY ts")?;
        run_queries(qs, |org, from, to, f| {
            let mut rows = st.query(params![org, from, to])?;
            while let Some(row) = rows.next()? {
                let body = row.get_ref(0)?.as_str()?;
                f(&Event::from_json(body)?);
            }
            Ok(())
        })?
    };
    drop(conn);
    Ok(merge(
        merge(ingest, scan.to_json()),
        merge(disk_open, disk_json("", dir)),
    ))
}

// redb ---------------------------------------------------------------------------

const REDB_TIME: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("time");
const REDB_IDS: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("ids");

fn run_redb(a: &Args, wl: &Workload, qs: &[(String, i64, i64)], dir: &Path) -> Res<Value> {
    // redb 5: `begin_read` is on the `ReadableDatabase` trait.
    use redb::{ReadableDatabase, ReadableTable};
    std::fs::create_dir_all(dir)?;
    // The default concurrency mode (ExclusiveWriter), as with redb 2.
    let db = redb::Database::create(dir.join("events.redb"))?;
    let p = Phase::start();
    let (mut appended, mut dups) = (0, 0);
    for batch in wl.items.chunks(a.batch) {
        let mut tx = db.begin_write()?;
        // Every batch a synced commit. Immediate is redb's default in 2 and
        // 5 alike; redb 5's `set_durability` returns a Result (it refuses
        // `None` in the multi-process modes), hence the `?`.
        tx.set_durability(redb::Durability::Immediate)?;
        {
            let mut time = tx.open_table(REDB_TIME)?;
            let mut ids = tx.open_table(REDB_IDS)?;
            for it in batch {
                if ids.get(&it.id[..])?.is_some() {
                    dups += 1;
                    continue;
                }
                let key = time_key(&wl.orgs[it.org as usize], it.ts, Some(&it.id));
                time.insert(key.as_slice(), it.json.as_bytes())?;
                ids.insert(&it.id[..], key.as_slice())?;
                appended += 1;
            }
        }
        tx.commit()?;
    }
    let ingest = ingest_json(&p, appended, dups);
    eprintln!("[{}] ingested; querying ...", SYS.with(|s| s.get()));
    profiling_pause();
    let disk_open = disk_json("open_", dir);
    let scan = run_queries(qs, |org, from, to, f| {
        let rtx = db.begin_read()?;
        let time = rtx.open_table(REDB_TIME)?;
        let (lo, hi) = (time_key(org, from, None), time_key(org, to, None));
        // redb 5's `range` takes the key type from the range: no turbofish.
        for kv in time.range(lo.as_slice()..hi.as_slice())? {
            let (_, v) = kv?;
            f(&parse_stored(v.value())?);
        }
        Ok(())
    })?;
    drop(db);
    Ok(merge(
        merge(ingest, scan.to_json()),
        merge(disk_open, disk_json("", dir)),
    ))
}

// fjall --------------------------------------------------------------------------

fn run_fjall(a: &Args, wl: &Workload, qs: &[(String, i64, i64)], dir: &Path) -> Res<Value> {
    // fjall 3 renamed fjall 2's Keyspace (the whole store, with the journal)
    // to `Database` and its partitions to `Keyspace`s; the settings are the
    // same as with fjall 2: the defaults, two keyspaces, and after each
    // batch's commit (journal written, `PersistMode::Buffer`, the default)
    // an explicit `persist(PersistMode::SyncAll)`, so each acknowledged batch
    // is fsynced.
    use fjall::{Database, KeyspaceCreateOptions, PersistMode};
    let db = Database::builder(dir).open()?;
    let time = db.keyspace("time", KeyspaceCreateOptions::default)?;
    let ids = db.keyspace("ids", KeyspaceCreateOptions::default)?;
    let p = Phase::start();
    let (mut appended, mut dups) = (0, 0);
    let mut seen = HashSet::new();
    for batch in wl.items.chunks(a.batch) {
        let mut b = db.batch();
        seen.clear();
        for it in batch {
            if !seen.insert(it.id) || ids.contains_key(it.id)? {
                dups += 1;
                continue;
            }
            let key = time_key(&wl.orgs[it.org as usize], it.ts, Some(&it.id));
            b.insert(&ids, &it.id[..], key.as_slice());
            b.insert(&time, key, it.json.as_bytes());
            appended += 1;
        }
        b.commit()?;
        db.persist(PersistMode::SyncAll)?;
    }
    let ingest = ingest_json(&p, appended, dups);
    eprintln!("[{}] ingested; querying ...", SYS.with(|s| s.get()));
    profiling_pause();
    let disk_open = disk_json("open_", dir);
    let scan = run_queries(qs, |org, from, to, f| {
        // fjall 3's iterators yield guards; `into_inner` reads the pair.
        for kv in time.range(time_key(org, from, None)..time_key(org, to, None)) {
            let (_, v) = kv.into_inner()?;
            f(&parse_stored(&v)?);
        }
        Ok(())
    })?;
    drop((time, ids));
    drop(db);
    Ok(merge(
        merge(ingest, scan.to_json()),
        merge(disk_open, disk_json("", dir)),
    ))
}

// ---------------------------------------------------------------------------
// The parent: children, medians, the table

fn base_dir(a: &Args) -> Res<(PathBuf, Option<tempfile::TempDir>)> {
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

fn median(mut v: Vec<f64>) -> f64 {
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

fn parent(a: &Args) -> Res<()> {
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
fn prefault(mb: usize) {
    if mb > 0 {
        let mut block = vec![0xA5u8; mb << 20];
        std::hint::black_box(&mut block);
    }
}

/// Run one system in a child process; its RESULT line and exit status.
fn run_child(a: &Args, exe: &Path, sys: &str, dir: &Path) -> Res<(Option<Value>, std::process::ExitStatus)> {
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

fn print_table(a: &Args, results: &[Value]) {
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

// ---------------------------------------------------------------------------
// Open time: clean and after kill -9

fn open_time(a: &Args) -> Res<()> {
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
fn open_time_writer(a: &Args) -> Res<()> {
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
