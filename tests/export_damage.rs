//! A finished export file damaged on disk (truncated, extended, a bit
//! flipped, zeroed) is refused with `corrupt` naming the file, by the
//! library's `download`, the admin tool's `export download` (to stdout and
//! to a file) and `verify`; the undamaged file is served byte for byte.

mod export_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use auditstore::export::{ExportError, Exports, Role};
use export_common::*;
use redb::ReadableTable;
use serde_json::Value;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_auditstore");
const REQUESTED: &str = "2026-06-10T09:31:00Z";
const PROCESSED: &str = "2026-06-10T10:30:00Z";
const NOW: &str = "2026-06-10T10:31:00Z";

/// One way of damaging a file's bytes.
type Damage = (&'static str, fn(&mut Vec<u8>));

fn damages() -> Vec<Damage> {
    vec![
        ("truncated to half", |b| b.truncate(b.len() / 2)),
        ("truncated to 0", |b| b.clear()),
        ("extended by 37 bytes", |b| b.extend_from_slice(&[b'7'; 37])),
        ("a bit flipped in the middle", |b| {
            let mid = b.len() / 2;
            b[mid] ^= 0x10;
        }),
        ("64 bytes zeroed in the middle", |b| {
            let mid = b.len() / 2;
            b[mid - 32..mid + 32].fill(0);
        }),
    ]
}

/// A store holding a finished export of 1,000 rows (about 550 KB) of
/// `org-00`, as of [`NOW`]; returns the request id and the file's path.
fn finished_export() -> (Env, Uuid, PathBuf) {
    let mut env = Env::new(REQUESTED);
    env.store = None;
    env.store = Some(one_org_store(env.dir.path(), &env.clock, 1 << 20, false, 1_000));
    let exports = Exports::new(env.store()).unwrap();
    let req = exports
        .request("org-00", "ann", Role::Admin, d("2026-06-01"), d("2026-06-02"))
        .unwrap();
    env.set_now(PROCESSED);
    Exports::new(env.store()).unwrap().process().unwrap();
    env.set_now(NOW);
    let done = Exports::new(env.store()).unwrap().get(req.id).unwrap();
    assert_eq!(done.rows, Some(1_000));
    let path = env.exports_dir().join(format!("{}.csv", req.id));
    assert_eq!(done.bytes, Some(std::fs::metadata(&path).unwrap().len()));
    (env, req.id, path)
}

/// `download` is refused with `corrupt` naming `path`.
fn assert_download_corrupt(env: &Env, id: Uuid, path: &Path, what: &str) {
    match Exports::new(env.store()).unwrap().download(id) {
        Err(ExportError::Store(auditstore::Error::Corrupt {
            path: named, reason, ..
        })) => {
            assert_eq!(named, path, "{what}: {reason}");
        }
        other => panic!("{what}: expected corrupt, got {other:?}"),
    }
}

/// `check_files` (verify's part) reports exactly one problem, naming `path`.
fn assert_check_names(env: &Env, path: &Path, what: &str) {
    let problems = Exports::new(env.store()).unwrap().check_files().unwrap();
    assert_eq!(problems.len(), 1, "{what}: {problems:?}");
    assert_eq!(problems[0].file, path, "{what}: {problems:?}");
}

fn assert_serves(env: &Env, id: Uuid, original: &[u8]) {
    let exports = Exports::new(env.store()).unwrap();
    let mut got = Vec::new();
    std::io::copy(&mut exports.download(id).unwrap(), &mut got).unwrap();
    assert!(
        got == original,
        "{} bytes served, {} written",
        got.len(),
        original.len()
    );
    assert_eq!(exports.check_files().unwrap(), vec![]);
}

#[test]
fn a_damaged_export_file_is_refused_by_download_and_reported_by_check_files() {
    let (env, id, path) = finished_export();
    let original = std::fs::read(&path).unwrap();
    assert_serves(&env, id, &original);
    for (what, damage) in damages() {
        let mut bytes = original.clone();
        damage(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        assert_download_corrupt(&env, id, &path, what);
        assert_check_names(&env, &path, what);
        std::fs::write(&path, &original).unwrap();
        assert_serves(&env, id, &original);
    }
}

struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

fn run(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(["--as-of", NOW])
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Exit 1 with `{"error": {"code": "corrupt", ...}}` as the only output;
/// returns the error object.
fn assert_corrupt(r: &Run, what: &str) -> Value {
    let text = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.code, 1, "{what}: stdout {text:?} stderr {:?}", r.stderr);
    assert_eq!(text.trim().lines().count(), 1, "{what}: {text:?}");
    let v: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["error"]["code"], "corrupt", "{what}: {v}");
    v["error"].clone()
}

#[test]
fn the_admin_tool_refuses_a_damaged_export_file_and_verify_names_it() {
    let (mut env, id, path) = finished_export();
    env.store = None;
    let dir = env.dir.path().to_owned();
    let id = id.to_string();
    let file = path.display().to_string();
    let original = std::fs::read(&path).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out.csv");
    let out_s = out.to_str().unwrap();

    // Undamaged: served byte for byte, to stdout and to a file; verify is
    // clean; the printed request has the contract's keys only.
    let r = run(&dir, &["export", "download", &id, "--out", "-"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout == original);
    let r = run(&dir, &["export", "download", &id, "--out", out_s]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::read(&out).unwrap() == original);
    std::fs::remove_file(&out).unwrap();
    let r = run(&dir, &["--json", "verify"]);
    assert_eq!(r.code, 0, "{} {}", String::from_utf8_lossy(&r.stdout), r.stderr);
    let r = run(&dir, &["--json", "export", "list", "--org", "org-00"]);
    let list: Value = serde_json::from_slice(&r.stdout).unwrap();
    let keys: Vec<&str> = list[0].as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = [
        "id",
        "org",
        "requested_by",
        "from",
        "to",
        "window_start",
        "window_end",
        "created_at",
        "status",
        "expires_at",
        "has_data",
        "rows",
        "bytes",
        "completed_at",
        "failure_reason",
    ];
    want.sort_unstable();
    assert_eq!(keys, want, "{list}");

    for (what, damage) in damages() {
        let mut bytes = original.clone();
        damage(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();

        let r = run(&dir, &["--json", "export", "download", &id, "--out", "-"]);
        assert_eq!(assert_corrupt(&r, what)["file"], file.as_str(), "{what}");
        let r = run(&dir, &["export", "download", &id]);
        assert_eq!(r.code, 1, "{what}");
        assert!(r.stdout.is_empty(), "{what}: served {} bytes", r.stdout.len());
        assert!(r.stderr.contains(&file), "{what}: {}", r.stderr);

        let r = run(&dir, &["--json", "export", "download", &id, "--out", out_s]);
        assert_eq!(assert_corrupt(&r, what)["file"], file.as_str(), "{what}");
        let left: Vec<_> = std::fs::read_dir(out_dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{what}: left {left:?}");

        let r = run(&dir, &["--json", "verify"]);
        let err = assert_corrupt(&r, what);
        let problems = err["problems"].as_array().unwrap();
        assert_eq!(problems.len(), 1, "{what}: {err}");
        assert_eq!(problems[0]["file"], file.as_str(), "{what}: {err}");

        std::fs::write(&path, &original).unwrap();
    }
    let r = run(&dir, &["export", "download", &id, "--out", out_s]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::read(&out).unwrap() == original);
    assert_eq!(run(&dir, &["verify"]).code, 0);
}

const REQUESTS: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("export_requests");

/// A request recorded before the CRC-32 existed (its record without
/// `crc32`) still reads: its file's size is checked, not its bytes.
#[test]
fn a_request_recorded_without_a_crc_has_its_size_checked() {
    let (mut env, id, path) = finished_export();
    let original = std::fs::read(&path).unwrap();
    env.store = None;
    let db = redb::Database::open(env.dir.path().join("meta.redb")).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut table = tx.open_table(REQUESTS).unwrap();
        let key = id.to_string();
        let text = table.get(key.as_str()).unwrap().unwrap().value().to_owned();
        let mut record: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(record["crc32"], crc32fast::hash(&original), "{text}");
        record.remove("crc32");
        let text = Value::Object(record).to_string();
        table.insert(key.as_str(), text.as_str()).unwrap();
    }
    tx.commit().unwrap();
    drop(db);
    env.reopen();

    assert_serves(&env, id, &original);
    // Same size, other bytes: not detectable without the CRC.
    let mut flipped = original.clone();
    flipped[original.len() / 2] ^= 0x10;
    std::fs::write(&path, &flipped).unwrap();
    assert_serves(&env, id, &flipped);
    for (what, damage) in &damages()[..3] {
        let mut bytes = original.clone();
        damage(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        assert_download_corrupt(&env, id, &path, what);
        assert_check_names(&env, &path, what);
    }
}
