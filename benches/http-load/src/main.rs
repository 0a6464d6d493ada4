//! `http-load`: HTTP ingest beside the admin tool's `ingest` of the same
//! file, in the same run, and the latency of a 100-event query page while
//! the HTTP ingest runs.
//!
//! One JSON Lines file of N generated events (`SampleGenerator`, a few
//! organizations) is written once. Each run then, in a fresh data directory
//! per side:
//! - **http**: tokens made with the release binary, `auditstore serve
//!   --listen 127.0.0.1:0` started, the file's events posted in batches of
//!   `--batch` (one organization per batch, to that organization's endpoint,
//!   `application/x-ndjson`) by `--clients` keep-alive connections, every
//!   response checked (200, and appended + duplicates = the batch); a
//!   further connection queries a 100-event page of one organization in a
//!   loop meanwhile and records each latency;
//! - **tool**: `auditstore --data-dir D --json ingest FILE`, timed from spawn
//!   to exit.
//!
//! The order of the two sides alternates from run to run. Default
//! durability on both sides: the server fsyncs before each 200, the tool
//! before it exits.

mod client;
mod cluster;
mod run;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::Timestamp;

use client::Res;
use run::{Batch, RunResult};

const USAGE: &str = "\
usage: http-load [--events N (1000000)] [--runs K (3)] [--batch B (1000)] [--clients C (4)]
                 [--orgs O (4)] [--seed S (42)] [--dir DIR (target/http-load)] [--keep]
                 [--bin PATH (auditstore next to this binary)] [--query-gap-ms MS (0)]
                 [--no-query] [--idle-queries Q (1000: the query again after the ingest)]
                 [--perf FILE (perf record -g on the server during the first run's ingest)]
                 [--cluster NATS_SERVER (3 NATS servers + 3 nodes beside one node; docs/performance.md)]
                 [--partitions P (16, with --cluster)] [--route-compression MODE (the NATS default)]
                 [--direct (with --cluster: each request to a node serving its organization's partition)]";

/// Mean gap between generated events: 1,000,000 events span about 5.8 days.
const STEP_NANOS: i64 = 500_000_000;

#[derive(Debug, Clone)]
pub struct Args {
    pub events: usize,
    pub runs: usize,
    pub batch: usize,
    pub clients: usize,
    pub orgs: u32,
    pub seed: u64,
    pub dir: PathBuf,
    pub keep: bool,
    pub bin: PathBuf,
    pub query_gap_ms: u64,
    pub query: bool,
    pub idle_queries: usize,
    pub perf: Option<PathBuf>,
    /// The nats-server binary: run the cluster mode.
    pub cluster: Option<PathBuf>,
    pub partitions: u32,
    /// `compression:` of the NATS servers' routes (`off`, `s2_fast`, ...).
    pub route_compression: Option<String>,
    /// Send each request to a node serving its organization's partition
    /// (as a partition-aware client would), not round-robin.
    pub direct: bool,
}

fn parse_args() -> Res<Args> {
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut a = Args {
        events: 1_000_000,
        runs: 3,
        batch: 1000,
        clients: 4,
        orgs: 4,
        seed: 42,
        dir: PathBuf::from("target/http-load"),
        keep: false,
        bin: exe_dir.join("auditstore"),
        query_gap_ms: 0,
        query: true,
        idle_queries: 1000,
        perf: None,
        cluster: None,
        partitions: 16,
        route_compression: None,
        direct: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--events" => a.events = value()?.parse()?,
            "--runs" => a.runs = value()?.parse()?,
            "--batch" => a.batch = value()?.parse()?,
            "--clients" => a.clients = value()?.parse()?,
            "--orgs" => a.orgs = value()?.parse()?,
            "--seed" => a.seed = value()?.parse()?,
            "--dir" => a.dir = PathBuf::from(value()?),
            "--bin" => a.bin = PathBuf::from(value()?),
            "--query-gap-ms" => a.query_gap_ms = value()?.parse()?,
            "--idle-queries" => a.idle_queries = value()?.parse()?,
            "--perf" => a.perf = Some(PathBuf::from(value()?)),
            "--cluster" => a.cluster = Some(PathBuf::from(value()?)),
            "--partitions" => a.partitions = value()?.parse()?,
            "--route-compression" => a.route_compression = Some(value()?),
            "--direct" => a.direct = true,
            "--keep" => a.keep = true,
            "--no-query" => a.query = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}").into()),
        }
    }
    if a.events == 0 || a.runs == 0 || a.batch == 0 || a.clients == 0 || a.orgs == 0 || a.partitions == 0 {
        return Err(format!("counts must be at least 1\n{USAGE}").into());
    }
    if !a.bin.is_file() {
        return Err(format!(
            "{} not found: run `cargo build --release` first, or pass --bin",
            a.bin.display()
        )
        .into());
    }
    Ok(a)
}

/// The workload: the file, and its events grouped into per-organization
/// batches (each batch's lines in file order, one after another).
pub struct Workload {
    pub file: PathBuf,
    pub lines: usize,
    pub bytes: u64,
    pub batches: Vec<Batch>,
    /// A range that holds every event: the query's `from` and `to`.
    pub from: String,
    pub to: String,
    pub query_org: String,
}

fn generate(a: &Args) -> Res<Workload> {
    std::fs::create_dir_all(&a.dir)?;
    let file = a.dir.join("events.jsonl");
    let start = SampleConfig::default().start;
    let mut gen = SampleGenerator::new(SampleConfig {
        seed: a.seed,
        orgs: a.orgs,
        start,
        step_nanos: STEP_NANOS,
        ..SampleConfig::default()
    });
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&file)?);
    let mut open: Vec<Option<Batch>> = (0..a.orgs).map(|_| None).collect();
    let mut batches = Vec::with_capacity(a.events / a.batch + a.orgs as usize);
    let mut bytes = 0u64;
    for _ in 0..a.events {
        let (org, line) = gen.next_line();
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        bytes += line.len() as u64 + 1;
        let no: usize = org
            .strip_prefix("org-")
            .and_then(|n| n.parse().ok())
            .ok_or("generator org names are org-NN")?;
        let b = open[no].get_or_insert_with(|| Batch {
            org: org.clone(),
            events: 0,
            body: Vec::with_capacity(a.batch * 700),
        });
        b.body.extend_from_slice(line.as_bytes());
        b.body.push(b'\n');
        b.events += 1;
        if b.events == a.batch {
            batches.extend(open[no].take());
        }
    }
    batches.extend(open.into_iter().flatten());
    out.flush()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    // Every event lies within a day of the generator's start and end.
    let day = 86_400 * 1_000_000_000i64;
    let end = start.as_nanos() + STEP_NANOS * 2 * a.events as i64 + day;
    Ok(Workload {
        file,
        lines: a.events,
        bytes,
        batches,
        from: Timestamp::from_nanos(start.as_nanos() - day).to_string(),
        to: Timestamp::from_nanos(end).to_string(),
        query_org: "org-00".into(),
    })
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn ms(d: f64) -> String {
    format!("{:.2}", d * 1e3)
}

fn report(a: &Args, w: &Workload, runs: &[RunResult]) {
    println!();
    println!(
        "{} events ({:.0} MB of JSON Lines, {} orgs), batches of {}, {} ingest clients{}",
        w.lines,
        w.bytes as f64 / 1e6,
        a.orgs,
        a.batch,
        a.clients,
        if a.query {
            format!(", 1 query client (limit=100, org {})", w.query_org)
        } else {
            String::new()
        }
    );
    println!(
        "{:>4} {:>12} {:>12} {:>7} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "run",
        "http ev/s",
        "tool ev/s",
        "ratio",
        "q p50 ms",
        "q p99 ms",
        "q max ms",
        "queries",
        "idle p50",
        "idle p99",
        "srv cpu",
        "gen cpu",
        "tool cpu"
    );
    for (i, r) in runs.iter().enumerate() {
        println!(
            "{:>4} {:>12.0} {:>12.0} {:>7.3} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9.2} {:>9.2} {:>9.2}",
            i + 1,
            r.http_rate,
            r.tool_rate,
            r.http_rate / r.tool_rate,
            ms(r.q_p50),
            ms(r.q_p99),
            ms(r.q_max),
            r.queries,
            ms(r.idle_p50),
            ms(r.idle_p99),
            r.server_cpu,
            r.gen_cpu,
            r.tool_cpu
        );
    }
    let col = |f: &dyn Fn(&RunResult) -> f64| median(runs.iter().map(f).collect());
    println!(
        "{:>4} {:>12.0} {:>12.0} {:>7.3} {:>9} {:>9} {:>9} {:>8.0} {:>9} {:>9} {:>9.2} {:>9.2} {:>9.2}",
        "med",
        col(&|r| r.http_rate),
        col(&|r| r.tool_rate),
        col(&|r| r.http_rate / r.tool_rate),
        ms(col(&|r| r.q_p50)),
        ms(col(&|r| r.q_p99)),
        ms(col(&|r| r.q_max)),
        col(&|r| r.queries as f64),
        ms(col(&|r| r.idle_p50)),
        ms(col(&|r| r.idle_p99)),
        col(&|r| r.server_cpu),
        col(&|r| r.gen_cpu),
        col(&|r| r.tool_cpu)
    );
    println!(
        "ratio: median {:.3} (target >= 0.60); query p99: median {} ms (target < 10 ms)",
        col(&|r| r.http_rate / r.tool_rate),
        ms(col(&|r| r.q_p99))
    );
    println!(
        "idle p50/p99: the same query, {} times, after the ingest",
        a.idle_queries
    );
    println!(
        "cpu columns: seconds of CPU (user+system) per second of that side's wall time \
         (2.00 = both cores of a 2-core machine)"
    );
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("http-load: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Res<()> {
    let a = parse_args()?;
    eprintln!("generating {} events into {}", a.events, a.dir.display());
    let w = generate(&a)?;
    eprintln!(
        "{} lines, {} batches; range {} .. {}",
        w.lines,
        w.batches.len(),
        w.from,
        w.to
    );
    if let Some(nats) = &a.cluster {
        let unique = cluster::unique_events(&w)?;
        eprintln!("{unique} distinct event ids");
        let mut runs = Vec::new();
        for i in 0..a.runs {
            let r = cluster::one(&a, nats, &w, unique, i)?;
            eprintln!(
                "run {}: cluster {:.0} ev/s, single {:.0} ev/s, ratio {:.3}, apply lag {:.3} s",
                i + 1,
                r.cluster_rate,
                r.single_rate,
                r.cluster_rate / r.single_rate,
                r.apply_lag
            );
            runs.push(r);
        }
        cluster::report(&a, &w, &runs);
        if !a.keep {
            let _ = std::fs::remove_file(&w.file);
        }
        return Ok(());
    }
    let mut results = Vec::new();
    for i in 0..a.runs {
        let r = run::one(&a, &w, i)?;
        eprintln!(
            "run {}: http {:.0} ev/s, tool {:.0} ev/s, ratio {:.3}, query p50 {} ms p99 {} ms max {} ms \
             ({} queries, {} full pages); {} appended on each side",
            i + 1,
            r.http_rate,
            r.tool_rate,
            r.http_rate / r.tool_rate,
            ms(r.q_p50),
            ms(r.q_p99),
            ms(r.q_max),
            r.queries,
            r.full_pages,
            r.appended
        );
        results.push(r);
    }
    report(&a, &w, &results);
    if !a.keep {
        let _ = std::fs::remove_file(&w.file);
    }
    Ok(())
}
