//! Shared helpers for integration tests.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use auditstore::{Event, Timestamp};

/// Copy a store's files (not its `LOCK`, not subdirectories) into `to`.
pub fn copy_store_files(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() && entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

pub fn shared_data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name)
}

/// The sample file's events (org from scope.id) in file order.
pub fn sample_events() -> Vec<(String, Event)> {
    let text = std::fs::read_to_string(shared_data("sample-events.jsonl")).expect("sample data");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let e = Event::from_json(l).expect("sample line parses");
            (e.scope_id().expect("sample has scope"), e)
        })
        .collect()
}

/// First-write-wins view of a sequence of appends: id -> (org, event).
pub fn model(events: &[(String, Event)]) -> HashMap<uuid::Uuid, (String, Event)> {
    let mut m = HashMap::new();
    for (o, e) in events {
        m.entry(e.id()).or_insert_with(|| (o.clone(), e.clone()));
    }
    m
}

/// Brute-force answer of a range query over the model.
pub fn brute_force(
    model: &HashMap<uuid::Uuid, (String, Event)>,
    org: &str,
    from: Timestamp,
    to: Timestamp,
) -> Vec<Event> {
    let mut v: BTreeMap<(Timestamp, [u8; 16]), Event> = BTreeMap::new();
    for (o, e) in model.values() {
        if o == org && e.occurred_at() >= from && e.occurred_at() < to {
            v.insert((e.occurred_at(), *e.id().as_bytes()), e.clone());
        }
    }
    v.into_values().collect()
}

pub fn ts(s: &str) -> Timestamp {
    Timestamp::parse_instant_or_date(s).expect("test timestamp")
}

/// A whole number from the environment (for the long variants of tests).
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Readable events of the sample's four organizations, over all time.
pub fn count_readable(store: &auditstore::Store) -> usize {
    ["org-00", "org-01", "org-02", "org-03"]
        .iter()
        .map(|o| {
            store
                .scan(&auditstore::Query::new(*o, ts("2026-01-01"), ts("2027-01-01")))
                .expect("scan starts")
                .filter(|e| e.is_ok())
                .count()
        })
        .sum()
}

/// Run the admin tool on `dir` with `--json` and `args`, its stdin empty.
pub fn tool_json(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_auditstore"))
        .arg("--data-dir")
        .arg(dir)
        .arg("--json")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the admin tool")
}

/// The first line of a command's stdout, as JSON (`null` if there is none).
pub fn first_json(out: &std::process::Output) -> serde_json::Value {
    let line = out.stdout.split(|b| *b == b'\n').next().unwrap_or(b"null");
    serde_json::from_slice(line)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(line)))
}

/// The `id` of each JSON line of a command's stdout (`query --json`), in
/// order.
pub fn listed_ids(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
            v["id"]
                .as_str()
                .unwrap_or_else(|| panic!("no id: {l}"))
                .to_owned()
        })
        .collect()
}
