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

use std::path::PathBuf;

use auditstore::export;

mod measure;
mod open_time;
mod parent;
mod systems;
mod workload;

use measure::*;
use open_time::*;
use parent::*;
use systems::*;
use workload::*;

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
