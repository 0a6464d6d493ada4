//! Kill -9 during an export build: the request stays `requested`, no partial
//! file is ever visible under the final name, and the next run builds the
//! complete file.

mod export_common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditstore::export::{Exports, Progress, Role};
use auditstore::{FixedClock, Options, Store};
use export_common::{d, own_row, parse_csv, t};

const BIN: &str = env!("CARGO_BIN_EXE_auditstore");
/// When the export is requested, and when it is processed.
const REQUESTED_AT: &str = "2026-06-20T09:31:00Z";
const RUN_AT: &str = "2026-06-20T10:30:00Z";
/// Set in the environment of the child copy of this test binary.
const CHILD_ENV: &str = "AUDITSTORE_EXPORT_CRASH_CHILD";

/// A store with `n` events of org-00 in June 2026 and one pending request
/// covering them all; returns the request id.
fn prepare(dir: &Path, n: usize) -> uuid::Uuid {
    let clock = Arc::new(FixedClock::new(t(REQUESTED_AT)));
    let store = export_common::one_org_store(dir, &clock, Options::default().segment_size, false, n);
    let ex = Exports::new(&store).unwrap();
    ex.request("org-00", "ann", Role::Admin, d("2026-06-01"), d("2026-06-20"))
        .unwrap()
        .id
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("exports"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn cli(dir: &Path, as_of: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(["--as-of", as_of, "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Wait until `path` exists; panics after `limit`.
fn wait_for(path: &Path, limit: Duration, child: &mut std::process::Child) {
    let start = Instant::now();
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child ended ({status}) before {} appeared", path.display());
        }
        assert!(start.elapsed() < limit, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn finish_and_verify(dir: &Path, id: uuid::Uuid, n: usize) {
    let p = cli(dir, RUN_AT, &["export", "process"]);
    assert_eq!(p["processed"], serde_json::json!([id.to_string()]));
    assert_eq!(
        files(dir),
        vec![format!("{id}.csv"), format!("{id}.manifest.json")],
        "the leftover was removed; the finished file has its signed manifest"
    );
    // The window (2026-06-01 to 2026-06-20) also holds the store's own
    // events of `prepare`, both at REQUESTED_AT: org-00's
    // org.settings.update (set to server) and this request's
    // audit_log.requested. Its audit_log.processed comes after the build.
    let own = 2;
    let list = cli(dir, RUN_AT, &["export", "list", "--org", "org-00"]);
    assert_eq!(list[0]["status"], "success");
    assert_eq!(list[0]["rows"], n + own);
    let text = std::fs::read_to_string(dir.join("exports").join(format!("{id}.csv"))).unwrap();
    let rows = parse_csv(&text);
    assert_eq!(rows.len(), n + own + 1);
    let mut own_rows: Vec<(&str, &str)> = rows[1..]
        .iter()
        .filter(|r| own_row(r))
        .map(|r| (r[1].as_str(), r[5].as_str()))
        .collect();
    // Same instant: their order is their ids' (derived, so arbitrary).
    own_rows.sort_by_key(|&(action, _)| action != "org.settings.update");
    assert_eq!(
        own_rows,
        [
            ("org.settings.update", "2026-06-20T09:31:00Z"),
            ("audit_log.requested", "2026-06-20T09:31:00Z"),
        ]
    );
    assert_eq!(list[0]["bytes"], text.len());
}

#[test]
fn kill_9_of_the_admin_tool_during_a_large_build() {
    let dir = tempfile::tempdir().unwrap();
    // Large enough that the build (about a second in a debug build) is
    // still running when the poll sees the temporary file.
    let n = 50_000;
    let id = prepare(dir.path(), n);
    let tmp = dir.path().join("exports").join(format!("{id}.csv.tmp"));
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--as-of", RUN_AT, "export", "process"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&tmp, Duration::from_secs(60), &mut child);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        tmp.exists(),
        "the build finished before the kill: make the export larger"
    );
    check_recovery_state(dir.path(), id);
    finish_and_verify(dir.path(), id, n);
}

/// The same, deterministic: a child copy of this test binary runs the
/// processing with a progress callback that stops for good after the first
/// 65,536 rows (so the kill lands mid-build, with part of the file written).
#[test]
fn kill_9_at_a_known_point_of_the_build() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return; // this copy is the child: see `child_process`
    }
    let dir = tempfile::tempdir().unwrap();
    let n = auditstore::export::builder::PROGRESS_EVERY as usize + 5_000;
    let id = prepare(dir.path(), n);
    let ready = dir.path().join("child-is-stopped");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_for(&ready, Duration::from_secs(120), &mut child);
    let tmp = dir.path().join("exports").join(format!("{id}.csv.tmp"));
    assert!(
        std::fs::metadata(&tmp).unwrap().len() > 0,
        "part of the file is written"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    check_recovery_state(dir.path(), id);
    finish_and_verify(dir.path(), id, n);
}

fn check_recovery_state(dir: &Path, id: uuid::Uuid) {
    assert_eq!(
        files(dir),
        vec![format!("{id}.csv.tmp")],
        "never a partial {id}.csv"
    );
    let list = cli(dir, RUN_AT, &["export", "list", "--org", "org-00"]);
    assert_eq!(list[0]["status"], "requested");
}

/// Runs only in the child (`CHILD_ENV` set): process the export and stop
/// forever at the first progress report, after saying so with a file.
#[test]
fn child_process() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let clock = Arc::new(FixedClock::new(t(RUN_AT)));
    let store = Store::open_with(
        &dir,
        Options {
            clock,
            ..Options::default()
        },
    )
    .unwrap();
    let ready = dir.join("child-is-stopped");
    let ex = Exports::new(&store)
        .unwrap()
        .with_progress(Arc::new(move |p: &Progress<'_>| {
            if !p.done {
                std::fs::write(&ready, b"").unwrap();
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
        }));
    ex.process().unwrap();
    unreachable!("the child is killed during the build");
}
