//! "No crash from any file" (shared/spec/cli.md, "Metadata, damage and
//! backups"): every regular file of a real store, damaged in each of several
//! ways, under every command of the admin tool, run as a real process.
//!
//! One pristine store is built (sealed segments with their `.idx`, an
//! active segment, `dedup.fp`, `meta.redb` with two organizations and a
//! processed export request, the export's CSV), plus a second variant of it
//! that also holds a `quarantine/*.cut` file. Every file found in the data
//! directory (not a fixed list: a file added later is swept too) is damaged
//! on a fresh copy of the store, one damage and one command per copy, and
//! each outcome is checked against the contract:
//! - no panic, no exit 101, no signal, exit status 0 or 1 only;
//! - exit 1 prints one `{"error": {"code", "message", ...}}` object whose
//!   code is honest for the damage (below), and a `corrupt` error names
//!   the damaged file;
//! - exit 0 from a read command prints exactly what the pristine store
//!   prints (a damage the store silently "repairs" into a different answer
//!   is a wrong answer);
//! - `meta.redb` missing or empty while segments exist is refused by every
//!   command with `corrupt` naming `meta.redb`;
//! - `verify` changes nothing in the data directory, and exits 0 only for
//!   the damages of an explicit allow-list.
//!
//! Every violation is collected; the test prints them all and fails at the
//! end if there is any.

mod common;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditstore::{FixedClock, Options, Store};
use common::*;
use serde_json::Value;

/// "now" of every command of the sweep (and of the pristine outputs).
const AS_OF: &str = "2026-08-10T12:00:00Z";
/// When the export request is made, and when it is processed (the run of
/// 10:30 handles a request created at 10:00).
const REQUEST_AT: &str = "2026-08-10T10:00:00Z";
const PROCESS_AT: &str = "2026-08-10T11:00:00Z";
/// Small segments so that the sample (2,000 events) fills several: the CLI
/// has no option for the segment size, so the events are appended through
/// the library.
const SEGMENT_SIZE: u64 = 256 * 1024;
/// The id of the event `ingest` appends (not in the sample).
const NEW_EVENT_ID: &str = "5eedf00d-0000-4000-8000-00000000da6e";
/// A command that runs longer than this is killed and reported (a hang on
/// a damaged file is a failure too, and must not hang CI).
const TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Files, damages, commands

/// What a file of the data directory is, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// The highest-numbered `.log`, without an `.idx`.
    ActiveSegment,
    SealedSegment,
    Index,
    Dedup,
    Meta,
    Lock,
    ExportCsv,
    Quarantine,
    /// Any other file (e.g. a descriptor added after this test was written).
    Other,
    /// No file: the pristine store itself.
    Pristine,
}

fn classify(rel: &Path, active: Option<&str>) -> Kind {
    let name = rel.file_name().unwrap().to_string_lossy().into_owned();
    let parent = rel
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    match (parent.as_str(), name.as_str()) {
        ("", "LOCK") => Kind::Lock,
        ("", "meta.redb") => Kind::Meta,
        ("", "dedup.fp") => Kind::Dedup,
        ("", n) if n.ends_with(".log") && Some(n) == active => Kind::ActiveSegment,
        ("", n) if n.ends_with(".log") => Kind::SealedSegment,
        ("", n) if n.ends_with(".idx") => Kind::Index,
        ("exports", n) if n.ends_with(".csv") => Kind::ExportCsv,
        ("quarantine", _) => Kind::Quarantine,
        _ => Kind::Other,
    }
}

/// The active segment's file name: the highest-numbered `.log`, unless it
/// has an `.idx` (then it is sealed and there is none).
fn active_segment(dir: &Path) -> Option<String> {
    let mut logs: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 20 && n.ends_with(".log") && n[..16].bytes().all(|b| b.is_ascii_digit()))
        .collect();
    logs.sort();
    let last = logs.pop()?;
    let idx = format!("{}.idx", &last[..16]);
    (!dir.join(idx).exists()).then_some(last)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Pos {
    Start,
    Middle,
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Damage {
    /// Cut to half its length.
    TruncHalf,
    /// Cut to 0 bytes.
    TruncZero,
    /// 37 bytes of (non-zero) garbage appended.
    Extend,
    /// One bit flipped at the first byte, in the middle or at the end
    /// (see [`live_byte`]).
    Flip(Pos),
    /// 64 bytes zeroed in the middle (around [`live_byte`]).
    ZeroRange,
    Delete,
}

impl Damage {
    const ALL: [Damage; 8] = [
        Damage::TruncHalf,
        Damage::TruncZero,
        Damage::Extend,
        Damage::Flip(Pos::Start),
        Damage::Flip(Pos::Middle),
        Damage::Flip(Pos::End),
        Damage::ZeroRange,
        Damage::Delete,
    ];

    fn name(self) -> &'static str {
        match self {
            Damage::TruncHalf => "truncated-half",
            Damage::TruncZero => "truncated-0",
            Damage::Extend => "extended-37",
            Damage::Flip(Pos::Start) => "bitflip-start",
            Damage::Flip(Pos::Middle) => "bitflip-middle",
            Damage::Flip(Pos::End) => "bitflip-end",
            Damage::ZeroRange => "zeroed-64",
            Damage::Delete => "deleted",
        }
    }

    /// The damaged bytes of a file (`None`: the file is deleted).
    fn apply_to(self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut b = bytes.to_vec();
        let len = b.len();
        match self {
            Damage::TruncHalf => b.truncate(len / 2),
            Damage::TruncZero => b.clear(),
            Damage::Extend => {
                // A fixed xorshift stream, never a zero byte (zeros after the
                // data are free space, not garbage).
                let mut x: u32 = 0x9e37_79b9;
                b.extend((0..37).map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    (x as u8) | 1
                }));
            }
            Damage::Flip(pos) if len > 0 => {
                let at = match pos {
                    Pos::Start => 0,
                    Pos::Middle => live_byte(bytes, len / 2),
                    Pos::End => live_byte(bytes, len - 1),
                };
                b[at] ^= 0x04;
            }
            Damage::Flip(_) => {}
            Damage::ZeroRange => {
                let start = live_byte(bytes, len / 2).saturating_sub(32);
                let end = (start + 64).min(len);
                b[start..end].fill(0);
            }
            Damage::Delete => return None,
        }
        Some(b)
    }
}

/// Where a flip or a zeroed range in the middle or at the end aims: the
/// nearest byte at or before `at` that is neither 0x00 nor 0xFF. Runs of
/// those are typically padding or slack (redb fills the unused tail of each
/// page with 0xFF, and neither its checksums nor a reader look there), where
/// damage is harmless and a passing `verify` would prove nothing.
fn live_byte(bytes: &[u8], at: usize) -> usize {
    (0..=at)
        .rev()
        .find(|&i| bytes[i] != 0 && bytes[i] != 0xff)
        .unwrap_or(at)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Cmd {
    Stats,
    Query,
    Get,
    Verify,
    OrgShow,
    ExportList,
    Download,
    /// Opens for writing: one new valid event.
    Ingest,
    /// Opens for writing: changes `meta.redb`.
    OrgSet,
}

impl Cmd {
    const ALL: [Cmd; 9] = [
        Cmd::Stats,
        Cmd::Query,
        Cmd::Get,
        Cmd::Verify,
        Cmd::OrgShow,
        Cmd::ExportList,
        Cmd::Download,
        Cmd::Ingest,
        Cmd::OrgSet,
    ];

    fn name(self) -> &'static str {
        match self {
            Cmd::Stats => "stats",
            Cmd::Query => "query",
            Cmd::Get => "get",
            Cmd::Verify => "verify",
            Cmd::OrgShow => "org show",
            Cmd::ExportList => "export list",
            Cmd::Download => "export download",
            Cmd::Ingest => "ingest",
            Cmd::OrgSet => "org set",
        }
    }
}

/// What the commands need to know about the pristine store.
struct Fixture {
    /// An event of org-01 within its retention as of `AS_OF`.
    get_id: String,
    /// The processed export request of org-01.
    request_id: String,
    /// One valid JSON line for `ingest`.
    new_event: String,
}

impl Fixture {
    fn query_args() -> [&'static str; 7] {
        [
            "query",
            "--org",
            "org-01",
            "--from",
            "2026-01-01",
            "--to",
            "2027-01-01",
        ]
    }

    fn args(&self, cmd: Cmd) -> Vec<&str> {
        match cmd {
            Cmd::Stats => vec!["stats"],
            Cmd::Query => Fixture::query_args().to_vec(),
            Cmd::Get => vec!["get", &self.get_id],
            Cmd::Verify => vec!["verify"],
            Cmd::OrgShow => vec!["org", "show", "org-01"],
            Cmd::ExportList => vec!["export", "list", "--org", "org-01"],
            Cmd::Download => vec!["export", "download", &self.request_id, "--out", "-"],
            Cmd::Ingest => vec!["ingest", "-"],
            Cmd::OrgSet => vec!["org", "set", "org-02", "--retention-days", "90"],
        }
    }

    fn stdin(&self, cmd: Cmd) -> &[u8] {
        match cmd {
            Cmd::Ingest => self.new_event.as_bytes(),
            _ => b"",
        }
    }
}

// ---------------------------------------------------------------------------
// Running the tool

struct Outcome {
    /// `None`: killed by a signal (or by the timeout).
    code: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Run the tool on `dir` with `--json --as-of <as_of>`; stdout and stderr
/// go to files in `scratch` (outside the data directory), so a large output
/// cannot block the child and a hang can be timed out.
fn run_tool(dir: &Path, scratch: &Path, as_of: &str, args: &[&str], stdin: &[u8]) -> Outcome {
    let out_path = scratch.join("stdout");
    let err_path = scratch.join("stderr");
    let in_path = scratch.join("stdin");
    std::fs::write(&in_path, stdin).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_auditstore"))
        .env_remove("AUDITSTORE_DATA_DIR")
        .env("RUST_BACKTRACE", "0")
        .arg("--data-dir")
        .arg(dir)
        .args(["--json", "--as-of", as_of])
        .args(args)
        .stdin(Stdio::from(std::fs::File::open(&in_path).unwrap()))
        .stdout(Stdio::from(std::fs::File::create(&out_path).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err_path).unwrap()))
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    Outcome {
        code: status.code(),
        signal: status.signal(),
        timed_out,
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    }
}

/// Run the tool on a store being built; it must succeed.
fn setup_run(dir: &Path, as_of: &str, args: &[&str]) -> Value {
    let scratch = tempfile::tempdir().unwrap();
    let out = run_tool(dir, scratch.path(), as_of, args, b"");
    assert_eq!(
        out.code,
        Some(0),
        "setup: {args:?}: stdout {} stderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------
// Directory copies and snapshots

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let ty = entry.file_type().unwrap();
        if ty.is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else if ty.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Every regular file under `dir`, relative to it, sorted.
fn regular_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let ty = entry.file_type().unwrap();
            if ty.is_dir() {
                walk(root, &entry.path(), out);
            } else if ty.is_file() {
                out.push(entry.path().strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

/// What `verify` must not change: every entry (directories too) with its
/// type, size, content checksum, inode and modification time (a rewrite
/// with the same bytes, or a replacement by rename, is a change too).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    dir: bool,
    len: u64,
    crc: u32,
    ino: u64,
    mtime: (i64, i64),
}

fn snapshot(dir: &Path) -> BTreeMap<String, Entry> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let crc = match meta.is_file() {
                true => crc32fast::hash(&std::fs::read(&path).unwrap()),
                false => 0,
            };
            out.insert(
                rel,
                Entry {
                    dir: meta.is_dir(),
                    len: if meta.is_dir() { 0 } else { meta.len() },
                    crc,
                    ino: meta.ino(),
                    mtime: if meta.is_dir() {
                        (0, 0)
                    } else {
                        (meta.mtime(), meta.mtime_nsec())
                    },
                },
            );
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(dir, dir, &mut m);
    m
}

fn snapshot_diff(before: &BTreeMap<String, Entry>, after: &BTreeMap<String, Entry>) -> Vec<String> {
    let mut d = Vec::new();
    for (name, b) in before {
        match after.get(name) {
            None => d.push(format!("removed {name}")),
            Some(a) if a.dir != b.dir => d.push(format!("{name} changed type")),
            Some(a) if (a.len, a.crc) != (b.len, b.crc) => {
                d.push(format!("modified {name} ({} -> {} bytes)", b.len, a.len))
            }
            Some(a) if a.ino != b.ino => d.push(format!("replaced {name} (same bytes, new inode)")),
            Some(a) if a.mtime != b.mtime => d.push(format!("rewrote {name} (same bytes, new mtime)")),
            Some(_) => {}
        }
    }
    for name in after.keys().filter(|n| !before.contains_key(*n)) {
        d.push(format!("created {name}"));
    }
    d
}

// ---------------------------------------------------------------------------
// Building the pristine store

fn build_pristine(dir: &Path) -> Fixture {
    // Sealed segments with indexes need small segments: the library.
    {
        let events = sample_events();
        let store = Store::open_with(
            dir,
            Options {
                segment_size: SEGMENT_SIZE,
                clock: Arc::new(FixedClock::new(ts("2026-08-01"))),
                ..Options::default()
            },
        )
        .unwrap();
        for c in events.chunks(50) {
            store
                .append_batch(c.iter().map(|(o, e)| (o.as_str(), e)))
                .unwrap();
        }
    }
    // The rest as an operator would.
    setup_run(
        dir,
        REQUEST_AT,
        &[
            "org",
            "set",
            "org-01",
            "--plan",
            "scale",
            "--retention-days",
            "30",
        ],
    );
    setup_run(dir, REQUEST_AT, &["org", "set", "org-02", "--plan", "server"]);
    let req = setup_run(
        dir,
        REQUEST_AT,
        &[
            "export",
            "request",
            "--org",
            "org-01",
            "--user",
            "ann",
            "--from",
            "2026-07-01",
            "--to",
            "2026-07-31",
        ],
    );
    let request_id = req["id"].as_str().expect("request id").to_owned();
    let processed = setup_run(dir, PROCESS_AT, &["export", "process"]);
    assert_eq!(processed["processed"][0], request_id.as_str(), "{processed}");

    // An event of org-01 that `get` returns: one from the middle of what a
    // query returns (within retention).
    let scratch = tempfile::tempdir().unwrap();
    let q = run_tool(dir, scratch.path(), AS_OF, &Fixture::query_args(), b"");
    let ids: Vec<String> = String::from_utf8(q.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(ids.len() > 10, "org-01 has events within retention");
    let get_id = ids[ids.len() / 2].clone();

    // One new valid event: a sample line with a new id, on the day before.
    let line = std::fs::read_to_string(shared_data("sample-events.jsonl"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let mut ev: Value = serde_json::from_str(&line).unwrap();
    ev["id"] = Value::from(NEW_EVENT_ID);
    ev["occurred_at"] = Value::from("2026-08-09T12:00:00.000000Z");
    let new_event = format!("{ev}\n");

    let fixture = Fixture {
        get_id,
        request_id,
        new_event,
    };
    let files = regular_files(dir);
    let has = |pred: &dyn Fn(&str) -> bool| files.iter().any(|f| pred(&f.to_string_lossy()));
    assert!(
        files
            .iter()
            .filter(|f| f.to_string_lossy().ends_with(".idx"))
            .count()
            >= 2,
        "several sealed segments: {files:?}"
    );
    assert!(active_segment(dir).is_some(), "an active segment: {files:?}");
    assert!(has(&|f| f == "dedup.fp"), "{files:?}");
    assert!(has(&|f| f == "meta.redb"), "{files:?}");
    let csv = format!("exports/{}.csv", fixture.request_id);
    assert!(has(&|f| f == csv), "{files:?}");
    fixture
}

/// The pristine store plus a `quarantine/*.cut` file: a byte flipped a
/// third of the way into the active segment (records before and after it),
/// then an open (format.md, Recovery step 4).
fn build_quarantined(pristine: &Path, dir: &Path) {
    copy_dir(pristine, dir);
    let active = dir.join(active_segment(dir).unwrap());
    let mut bytes = std::fs::read(&active).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x5a;
    std::fs::write(&active, &bytes).unwrap();
    setup_run(dir, AS_OF, &["stats"]);
    let cut = regular_files(dir)
        .into_iter()
        .any(|f| f.starts_with("quarantine") && f.to_string_lossy().ends_with(".cut"));
    assert!(cut, "a quarantine/*.cut file: {:?}", regular_files(dir));
}

// ---------------------------------------------------------------------------
// The rules

/// Whether redb itself finds a (damaged) `meta.redb` intact: it opens with
/// the integrity check on (every page of the committed trees has its
/// checksum verified), on a copy, and the check passes without repair.
/// Used only to tell damage that touches no live byte of the database
/// (slack at the end of a page, a freed page) from damage that does.
fn redb_intact(bytes: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    std::fs::write(&path, bytes).unwrap();
    std::panic::catch_unwind(|| {
        let mut builder = redb::Builder::new();
        builder.set_check_integrity_on_open(true);
        let Ok(mut db) = builder.open(&path) else {
            return false;
        };
        matches!(db.check_integrity(), Ok(true))
    })
    .unwrap_or(false)
}

/// `meta.redb` gone or empty while segments exist: refused by every command
/// with `corrupt` naming `meta.redb`, never replaced by defaults.
fn meta_lost(kind: Kind, damage: Damage) -> bool {
    kind == Kind::Meta && matches!(damage, Damage::Delete | Damage::TruncZero)
}

/// Damages `verify` may accept (exit 0). Everything else is damage that it
/// must report (exit 1, `corrupt`). `redb_intact`: redb's own integrity
/// check finds nothing wrong with the damaged `meta.redb` ([`redb_intact`]).
fn verify_may_pass(kind: Kind, damage: Damage, redb_intact: bool) -> bool {
    match (kind, damage) {
        // The bytes changed are none that redb reads: the unused tail of a
        // page (filled with 0xFF) or a page freed by copy-on-write. Only
        // redb can tell; its check verifies the checksum of every page of
        // the committed trees. The other commands must still give the
        // pristine answers.
        (Kind::Meta, _) if redb_intact && !meta_lost(kind, damage) => true,
        // A cache, missing after any unclean shutdown; ignored and rebuilt
        // (format.md, "De-duplication checkpoint").
        (Kind::Dedup, Damage::Delete) => true,
        // A sealed segment's missing `.idx` is what a crash between a roll
        // and its seal leaves; format.md (Recovery step 3) says it is not a
        // problem. A damaged one is.
        (Kind::Index, Damage::Delete) => true,
        // An empty lock file; it holds nothing.
        (Kind::Lock, Damage::Delete) => true,
        // Removing a `.cut` file is how an operator clears what `verify`
        // reports about it (format.md, quarantine/).
        (Kind::Quarantine, Damage::Delete) => true,
        // Nothing is left to report: the segment is as a crash while
        // creating it (or right after sealing the one before) leaves it
        // ([`recovered_like_a_crash`]).
        (Kind::ActiveSegment, Damage::Delete | Damage::TruncZero) => true,
        _ => false,
    }
}

/// Damage to the active segment is what recovery after a crash handles
/// (format.md, Recovery step 4): an open for writing cuts a damaged tail
/// (from the bytes alone a bit flipped in the last record, garbage after
/// it, or a cut short segment cannot be told from an append whose write a
/// crash interrupted) and salvages the records after damage inside it
/// (losing only the damaged record); a segment cut to nothing or deleted
/// is what a crash while creating it, or right after sealing the previous
/// one, leaves. So the commands that open the store may answer from the
/// recovered store (fewer events, `get` of a lost one `not_found`); what
/// detects that this was not a crash is the checkpoints of the
/// tamper-evidence work. `verify`, which repairs nothing, must still report
/// everything an open would cut or salvage.
fn recovered_like_a_crash(kind: Kind, cmd: Cmd) -> bool {
    kind == Kind::ActiveSegment && cmd != Cmd::Verify
}

/// Damages every command except `verify` must get through (exit 0, with the
/// pristine answer): the missing files a crash leaves, which an open handles
/// (format.md). A refusal there would make every crash fatal.
fn must_open(kind: Kind, damage: Damage) -> bool {
    damage == Damage::Delete && matches!(kind, Kind::Dedup | Kind::Index | Kind::Lock)
}

/// The error codes that are honest for a damage.
/// - `corrupt` always (with the file named; checked separately).
/// - `io` only when the file is gone: an OS-level "not found" is an I/O
///   error; for damaged *content* (cut, extended, flipped, zeroed) `io`
///   (e.g. "failed to fill whole buffer") hides the damage behind what
///   looks like a disk problem, so it is reported. Not for a lost
///   `meta.redb`, which must be `corrupt`.
/// - No allowance for `not_found` (`get`, `export download`): the event and
///   the request exist in the pristine store, so if the damaged file is
///   irrelevant to them the answer must be the pristine one (exit 0), and
///   if it is relevant, "not found" hides data loss behind an ordinary
///   answer; `corrupt` is the honest code. Likewise `expired`, `no_data`,
///   `not_ready`, `failed`, `locked`, ...: none is true of the damaged copy.
fn honest_codes(kind: Kind, damage: Damage) -> &'static [&'static str] {
    if damage == Damage::Delete && !meta_lost(kind, damage) {
        &["corrupt", "io"]
    } else {
        &["corrupt"]
    }
}

/// The part of a successful output that must equal the pristine one: all
/// of it, except for a `verify` that passes (only on the allow-list), where
/// the number of index files checked and their bytes differ when an `.idx`
/// or `dedup.fp` is gone; the segments and records checked must match (a
/// failing `verify` has its counts inside the error object).
fn comparable(cmd: Cmd, stdout: &[u8]) -> Vec<u8> {
    if cmd != Cmd::Verify {
        return stdout.to_vec();
    }
    let Ok(v) = serde_json::from_slice::<Value>(stdout) else {
        return stdout.to_vec();
    };
    let src = v.get("error").unwrap_or(&v);
    let counts: Vec<Value> = ["segments", "records"]
        .iter()
        .map(|k| src.get(*k).cloned().unwrap_or(Value::Null))
        .collect();
    serde_json::to_vec(&counts).unwrap()
}

struct Pristine {
    code: Option<i32>,
    stdout: Vec<u8>,
}

struct Job<'a> {
    variant: &'a Variant,
    /// Relative to the data directory; `None`: the pristine store itself.
    file: Option<PathBuf>,
    kind: Kind,
    damage: Option<Damage>,
    cmd: Cmd,
    /// For `meta.redb` damage: whether redb finds the damaged file intact.
    redb_intact: bool,
}

struct Variant {
    name: &'static str,
    dir: PathBuf,
    pristine: BTreeMap<Cmd, Pristine>,
}

struct Violation {
    variant: &'static str,
    file: String,
    kind: Kind,
    damage: &'static str,
    cmd: Cmd,
    status: String,
    reason: String,
    stdout: String,
    stderr: String,
}

fn head(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    s.replace('\n', "\\n")
}

/// Every rule a job's outcome breaks (empty: none).
fn check(job: &Job<'_>, out: &Outcome, verify_diff: &[String]) -> Vec<String> {
    let mut why = Vec::new();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.timed_out {
        why.push(format!("hung: killed after {TIMEOUT:?}"));
    } else if let Some(sig) = out.signal {
        why.push(format!("killed by signal {sig}"));
    }
    if out.code == Some(101) {
        why.push("exit 101 (a panic)".into());
    }
    if stdout.contains("panicked") || stderr.contains("panicked") {
        why.push("\"panicked\" in the output".into());
    }
    if let Some(c) = out.code.filter(|c| *c != 0 && *c != 1 && *c != 101) {
        why.push(format!("exit status {c} (only 0 or 1 allowed)"));
    }
    for d in verify_diff {
        why.push(format!("verify changed the data directory: {d}"));
    }
    let file_name = job
        .file
        .as_ref()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned());
    let lost = job.damage.is_some_and(|d| meta_lost(job.kind, d));
    let pristine = &job.variant.pristine[&job.cmd];
    match out.code {
        Some(0) => {
            if lost {
                why.push(
                    "exit 0 with meta.redb missing or empty: must be refused (corrupt naming meta.redb)"
                        .into(),
                );
            }
            if job.cmd == Cmd::Verify {
                let allowed = match job.damage {
                    None => pristine.code == Some(0),
                    Some(d) => verify_may_pass(job.kind, d, job.redb_intact),
                };
                if !allowed {
                    why.push("verify passed (exit 0) on a damage it must report".into());
                }
            }
            let want = comparable(job.cmd, &pristine.stdout);
            let got = comparable(job.cmd, &out.stdout);
            let recovered = job.damage.is_some() && recovered_like_a_crash(job.kind, job.cmd);
            let verify_of_nothing_left = job.cmd == Cmd::Verify
                && job.kind == Kind::ActiveSegment
                && matches!(job.damage, Some(Damage::Delete | Damage::TruncZero));
            if !lost && !recovered && !verify_of_nothing_left && want != got {
                why.push(format!(
                    "exit 0 with an answer different from the pristine store's ({} bytes, pristine {} bytes; pristine starts {})",
                    out.stdout.len(),
                    pristine.stdout.len(),
                    head(&pristine.stdout[..pristine.stdout.len().min(120)])
                ));
            }
        }
        Some(1) => {
            if let Some(d) = job
                .damage
                .filter(|d| must_open(job.kind, *d) && job.cmd != Cmd::Verify)
            {
                why.push(format!(
                    "refused a store with a {} {:?} (a crash leaves that; open must handle it)",
                    d.name(),
                    job.kind
                ));
            }
            let parsed: Option<Value> = serde_json::from_str(stdout.trim())
                .ok()
                .filter(|_| stdout.trim().lines().count() == 1);
            let err = parsed.as_ref().and_then(|v| v.get("error")).filter(|e| {
                e.get("code").is_some_and(Value::is_string) && e.get("message").is_some_and(Value::is_string)
            });
            match err {
                None => why.push(
                    "exit 1 without exactly one {\"error\": {\"code\", \"message\"}} object on stdout".into(),
                ),
                Some(e) => {
                    let code = e["code"].as_str().unwrap();
                    let honest: &[&str] = match job.damage {
                        // A `get` of an event the recovery cut.
                        Some(_) if recovered_like_a_crash(job.kind, job.cmd) && job.cmd == Cmd::Get => {
                            &["corrupt", "io", "not_found"]
                        }
                        Some(d) => honest_codes(job.kind, d),
                        None => &["corrupt"], // the pristine quarantined store's verify
                    };
                    if !honest.contains(&code) {
                        why.push(format!(
                            "error code {code:?} (honest for this damage: {honest:?})"
                        ));
                    }
                    if lost && code != "corrupt" {
                        why.push("meta.redb missing or empty must be refused with corrupt".into());
                    }
                    if code == "corrupt" {
                        if let Some(name) = &file_name {
                            if !e.to_string().contains(name.as_str()) {
                                why.push(format!("corrupt error does not name {name}"));
                            }
                        }
                    }
                }
            }
        }
        _ => {}
    }
    why
}

/// Run one job on a fresh copy in `scratch`; returns its violations.
fn run_job(job: &Job<'_>, fixture: &Fixture, scratch: &Path) -> Option<Violation> {
    let data = scratch.join("data");
    if data.exists() {
        std::fs::remove_dir_all(&data).unwrap();
    }
    copy_dir(&job.variant.dir, &data);
    if let (Some(file), Some(damage)) = (&job.file, job.damage) {
        let path = data.join(file);
        match damage.apply_to(&std::fs::read(&path).unwrap()) {
            None => std::fs::remove_file(&path).unwrap(),
            Some(bytes) => {
                let mut f = OpenOptions::new().write(true).truncate(true).open(&path).unwrap();
                std::io::Write::write_all(&mut f, &bytes).unwrap();
            }
        }
    }
    let before = (job.cmd == Cmd::Verify).then(|| snapshot(&data));
    let out = run_tool(
        &data,
        scratch,
        AS_OF,
        &fixture.args(job.cmd),
        fixture.stdin(job.cmd),
    );
    let diff = match before {
        Some(b) => snapshot_diff(&b, &snapshot(&data)),
        None => Vec::new(),
    };
    std::fs::remove_dir_all(&data).unwrap();
    let why = check(job, &out, &diff);
    if why.is_empty() {
        return None;
    }
    let status = match (out.code, out.signal, out.timed_out) {
        (_, _, true) => "timeout".to_string(),
        (Some(c), _, _) => format!("exit {c}"),
        (None, Some(s), _) => format!("signal {s}"),
        (None, None, _) => "unknown".to_string(),
    };
    Some(Violation {
        variant: job.variant.name,
        file: job
            .file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "(pristine)".into()),
        kind: job.kind,
        damage: job.damage.map(Damage::name).unwrap_or("none"),
        cmd: job.cmd,
        status,
        reason: why.join("; "),
        stdout: head(&out.stdout),
        stderr: head(&out.stderr),
    })
}

/// The pristine outputs of every command, each on a fresh copy.
fn record_pristine(variant: &mut Variant, fixture: &Fixture, scratch: &Path) {
    for cmd in Cmd::ALL {
        let data = scratch.join("data");
        if data.exists() {
            std::fs::remove_dir_all(&data).unwrap();
        }
        copy_dir(&variant.dir, &data);
        let out = run_tool(&data, scratch, AS_OF, &fixture.args(cmd), fixture.stdin(cmd));
        std::fs::remove_dir_all(&data).unwrap();
        variant.pristine.insert(
            cmd,
            Pristine {
                code: out.code,
                stdout: out.stdout,
            },
        );
    }
}

#[test]
fn no_damaged_file_crashes_the_tool_or_gives_a_wrong_answer() {
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let scratch = root.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();

    let mut plain = Variant {
        name: "store",
        dir: root.path().join("pristine"),
        pristine: BTreeMap::new(),
    };
    let fixture = build_pristine(&plain.dir);
    let mut quarantined = Variant {
        name: "store+quarantine",
        dir: root.path().join("quarantined"),
        pristine: BTreeMap::new(),
    };
    build_quarantined(&plain.dir, &quarantined.dir);
    record_pristine(&mut plain, &fixture, &scratch);
    record_pristine(&mut quarantined, &fixture, &scratch);

    // The pristine store answers every command; the quarantined one too,
    // except that `verify` reports the `.cut` file.
    for (v, cmd) in Cmd::ALL
        .iter()
        .map(|c| (&plain, *c))
        .chain(Cmd::ALL.iter().map(|c| (&quarantined, *c)))
    {
        let p = &v.pristine[&cmd];
        let want = if v.name != "store" && cmd == Cmd::Verify {
            1
        } else {
            0
        };
        assert_eq!(
            p.code,
            Some(want),
            "pristine {} {}: {}",
            v.name,
            cmd.name(),
            String::from_utf8_lossy(&p.stdout)
        );
    }
    let setup_time = started.elapsed();

    // The sweep: every file of the plain store, and the quarantine files
    // of the other variant (its other files are the plain store's again).
    let mut jobs: Vec<Job<'_>> = Vec::new();
    let mut swept: Vec<(String, Kind, usize)> = Vec::new();
    let mut redb_intact_damages: Vec<&str> = Vec::new();
    for variant in [&plain, &quarantined] {
        // `verify` on the pristine store changes nothing either.
        jobs.push(Job {
            variant,
            file: None,
            kind: Kind::Pristine,
            damage: None,
            cmd: Cmd::Verify,
            redb_intact: false,
        });
        let active = active_segment(&variant.dir);
        for file in regular_files(&variant.dir) {
            let kind = classify(&file, active.as_deref());
            if variant.name != "store" && kind != Kind::Quarantine {
                continue;
            }
            let bytes = std::fs::read(variant.dir.join(&file)).unwrap();
            let mut damages = 0;
            for damage in Damage::ALL {
                // Only deleting the (empty) lock file is interesting.
                if kind == Kind::Lock && damage != Damage::Delete {
                    continue;
                }
                // A damage that leaves the bytes as they were is no damage.
                if damage.apply_to(&bytes).as_deref() == Some(&bytes[..]) {
                    continue;
                }
                damages += 1;
                let intact = match (kind, damage.apply_to(&bytes)) {
                    (Kind::Meta, Some(b)) if !b.is_empty() => redb_intact(&b),
                    _ => false,
                };
                if intact {
                    redb_intact_damages.push(damage.name());
                }
                for cmd in Cmd::ALL {
                    jobs.push(Job {
                        variant,
                        file: Some(file.clone()),
                        kind,
                        damage: Some(damage),
                        cmd,
                        redb_intact: intact,
                    });
                }
            }
            swept.push((format!("{}:{}", variant.name, file.display()), kind, damages));
        }
    }

    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2);
    let next = AtomicUsize::new(0);
    let violations: Mutex<Vec<Violation>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..threads {
            let scratch = scratch.join(format!("worker-{t}"));
            std::fs::create_dir_all(&scratch).unwrap();
            let (jobs, next, violations, fixture) = (&jobs, &next, &violations, &fixture);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                if let Some(v) = run_job(job, fixture, &scratch) {
                    violations.lock().unwrap().push(v);
                }
            });
        }
    });
    let mut violations = violations.into_inner().unwrap();
    violations
        .sort_by(|a, b| (a.variant, &a.file, a.damage, a.cmd).cmp(&(b.variant, &b.file, b.damage, b.cmd)));

    for v in &violations {
        println!(
            "VIOLATION {} {} [{:?}] damage={} cmd={:?} {}: {}\n    stdout: {}\n    stderr: {}",
            v.variant,
            v.file,
            v.kind,
            v.damage,
            v.cmd.name(),
            v.status,
            v.reason,
            v.stdout,
            v.stderr
        );
    }
    // Grouped: file kind x damage x command x status.
    let mut groups: BTreeMap<(Kind, &str, Cmd, &str), (usize, &Violation)> = BTreeMap::new();
    for v in &violations {
        groups
            .entry((v.kind, v.damage, v.cmd, v.status.as_str()))
            .or_insert((0, v))
            .0 += 1;
    }
    let mut summary = String::new();
    for ((kind, damage, cmd, status), (n, v)) in &groups {
        summary.push_str(&format!(
            "  {kind:?} x {damage} x {} -> {status} (x{n}): {} | stdout: {} | stderr: {}\n",
            cmd.name(),
            v.reason,
            v.stdout.chars().take(160).collect::<String>(),
            v.stderr.chars().take(160).collect::<String>(),
        ));
    }

    let files = swept.len();
    let damage_count: usize = swept.iter().map(|s| s.2).sum();
    println!("swept files:");
    for (f, k, d) in &swept {
        println!("  {f} [{k:?}]: {d} damages");
    }
    println!(
        "damage sweep: {files} files, {damage_count} (file, damage) pairs (up to {} damages a file) x {} commands + 2 pristine verifies = {} invocations (+ {} for the pristine outputs), {threads} threads; setup {:.1?}, total {:.1?}",
        Damage::ALL.len(),
        Cmd::ALL.len(),
        jobs.len(),
        2 * Cmd::ALL.len(),
        setup_time,
        started.elapsed()
    );
    println!("meta.redb damages redb finds intact (verify may pass): {redb_intact_damages:?}");
    println!("{} violations in {} groups", violations.len(), groups.len());
    assert!(
        violations.is_empty(),
        "{} violations in {} groups (file kind x damage x command -> status):\n{summary}",
        violations.len(),
        groups.len()
    );
}
