//! The admin tool, driven as a user would: the real binary on real files,
//! checked against the contract in shared/spec/cli.md.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::Value;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_auditstore"));
    c.env_remove("AUDITSTORE_DATA_DIR");
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    bin().arg("--data-dir").arg(dir).args(args).output().unwrap()
}

fn run_stdin(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = bin()
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn ingest_sample_reports_counts_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let sample = shared_data("sample-events.jsonl");
    let unique = model(&sample_events()).len() as u64;
    let out = run(dir.path(), &["--json", "ingest", sample.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["appended"], unique);
    assert_eq!(v["duplicates"], 2000 - unique);
    assert_eq!(v["conflicts"], 0);
    assert_eq!(v["rejected"], 0);
    let again = json(&run(dir.path(), &["--json", "ingest", sample.to_str().unwrap()]));
    assert_eq!(again["appended"], 0);
    assert_eq!(again["duplicates"], 2000);
    let stats = json(&run(dir.path(), &["--json", "stats"]));
    assert_eq!(stats["events"], unique);
    assert_eq!(stats["organizations"], 4);
    assert!(stats["segments"].as_u64().unwrap() >= 1);
    assert!(stats["bytes"].as_u64().unwrap() > 0);
}

#[test]
fn every_bad_line_is_rejected_naming_line_and_field_and_good_lines_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let bad = std::fs::read_to_string(shared_data("bad-events.jsonl")).unwrap();
    let expected = std::fs::read_to_string(shared_data("bad-events.expected")).unwrap();
    let good: Vec<String> = std::fs::read_to_string(shared_data("sample-events.jsonl"))
        .unwrap()
        .lines()
        .take(3)
        .map(str::to_owned)
        .collect();
    // Good lines around the bad ones, and a blank line that is skipped.
    let mut input = String::new();
    input.push_str(&good[0]);
    input.push('\n');
    input.push('\n');
    input.push_str(&bad);
    input.push_str(&good[1]);
    input.push('\n');
    input.push_str(&good[2]);
    let out = run_stdin(dir.path(), &["--json", "ingest", "-"], input.as_bytes());
    assert_eq!(out.status.code(), Some(1), "rejected lines make exit status 1");
    let v = json(&out);
    assert_eq!(v["appended"], 3);
    assert_eq!(v["rejected"], 18);
    let err = stderr(&out);
    // Field named in each expected reason.
    let fields = [
        (1, "JSON"),
        (2, "id"),
        (3, "id"),
        (4, "action"),
        (5, "action"),
        (6, "actor"),
        (7, "actor.id"),
        (8, "occurred_at"),
        (9, "occurred_at"),
        (10, "success"),
        (11, "version"),
        (12, "extra_field"),
        (13, "payload"),
        (14, "256 KiB"),
        (15, "organization"),
        (16, "object"),
        (17, "request.id"),
        (18, "target"),
    ];
    assert_eq!(expected.lines().filter(|l| !l.starts_with('#')).count(), 18);
    for (bad_no, needle) in fields {
        let line_no = bad_no + 2; // one good line and one blank line first
        let prefix = format!("line {line_no}: ");
        let line = err
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no error for line {line_no} in {err}"));
        assert!(
            line.contains(needle),
            "line {line_no} should name {needle}: {line}"
        );
    }
    assert_eq!(err.lines().filter(|l| l.starts_with("line ")).count(), 18);
}

#[test]
fn ingest_with_org_overrides_scope_and_keeps_it_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let sample = shared_data("sample-events.jsonl");
    let out = run(
        dir.path(),
        &["--json", "ingest", sample.to_str().unwrap(), "--org", "tenant-x"],
    );
    assert_eq!(out.status.code(), Some(0));
    let out = run(
        dir.path(),
        &[
            "--json",
            "--as-of",
            "2026-08-01",
            "query",
            "--org",
            "tenant-x",
            "--from",
            "2026-06-01",
            "--to",
            "2026-06-02",
        ],
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    assert!(
        lines.iter().any(|e| e["scope"]["id"] == "org-01"),
        "scope kept as sent"
    );
    let none = run(
        dir.path(),
        &[
            "--json",
            "--as-of",
            "2026-08-01",
            "query",
            "--org",
            "org-01",
            "--from",
            "2026-06-01",
            "--to",
            "2026-08-01",
        ],
    );
    assert!(none.stdout.is_empty(), "events belong to tenant-x only");
}

#[test]
fn query_output_matches_brute_force_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let sample = shared_data("sample-events.jsonl");
    run(dir.path(), &["ingest", sample.to_str().unwrap()]);
    let m = model(&sample_events());
    let want = brute_force(&m, "org-02", ts("2026-06-05"), ts("2026-06-20T12:00:00Z"));
    assert!(want.len() > 10);
    let base = [
        "--as-of",
        "2026-08-01",
        "query",
        "--org",
        "org-02",
        "--from",
        "2026-06-05",
        "--to",
        "2026-06-20T12:00:00Z",
    ];
    let out = run(dir.path(), &[&["--json"], &base[..]].concat());
    assert_eq!(out.status.code(), Some(0));
    let got: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want_json: Vec<Value> = want
        .iter()
        .map(|e| serde_json::from_str(&e.to_json()).unwrap())
        .collect();
    assert_eq!(got, want_json);
    // CSV: header plus one row per event, same order.
    let out = run(dir.path(), &[&base[..], &["--format", "csv"]].concat());
    let mut rdr = csv::Reader::from_reader(out.stdout.as_slice());
    assert_eq!(
        rdr.headers().unwrap().iter().collect::<Vec<_>>(),
        auditstore::export::csv::COLUMNS.to_vec()
    );
    let ids: Vec<String> = rdr.records().map(|r| r.unwrap()[0].to_owned()).collect();
    assert_eq!(ids, want.iter().map(|e| e.id().to_string()).collect::<Vec<_>>());
    // Table: every id appears.
    let out = run(dir.path(), &[&base[..], &["--format", "table"]].concat());
    let text = String::from_utf8_lossy(&out.stdout);
    for e in &want {
        assert!(text.contains(&e.id().to_string()));
    }
    // Filters and limit.
    let out = run(
        dir.path(),
        &[
            &["--json"],
            &base[..],
            &["--action", "workflow.*", "--limit", "3"],
        ]
        .concat(),
    );
    let got: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want_wf: Vec<String> = want
        .iter()
        .filter(|e| e.action().starts_with("workflow."))
        .take(3)
        .map(|e| e.id().to_string())
        .collect();
    assert_eq!(
        got.iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>(),
        want_wf
    );
}

/// Commands that only read (and `retention apply`, which has nothing to
/// delete) on a data directory that does not exist, or holds no store: an
/// empty store, zero counts, and nothing created.
#[test]
fn read_only_commands_on_a_missing_directory_create_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("absent");
    let stats = json(&run(&dir, &["--json", "stats"]));
    for key in ["events", "organizations", "segments", "bytes"] {
        assert_eq!(stats[key], 0, "{key}: {stats}");
    }
    let verify = run(&dir, &["--json", "verify"]);
    assert_eq!(verify.status.code(), Some(0));
    assert_eq!(json(&verify)["segments"], 0);
    let query = run(
        &dir,
        &[
            "--json",
            "query",
            "--org",
            "o",
            "--from",
            "2026-01-01",
            "--to",
            "2026-02-01",
        ],
    );
    assert_eq!((query.status.code(), query.stdout.len()), (Some(0), 0));
    let get = run(&dir, &["--json", "get", &uuid::Uuid::new_v4().to_string()]);
    assert_eq!(get.status.code(), Some(1));
    assert_eq!(json(&get)["error"]["code"], "not_found");
    assert_eq!(json(&run(&dir, &["--json", "org", "show", "o"]))["plan"], "free");
    assert_eq!(
        json(&run(&dir, &["--json", "export", "list", "--org", "o"])),
        serde_json::json!([])
    );
    let retention = run(&dir, &["--json", "retention", "apply"]);
    assert_eq!(retention.status.code(), Some(0));
    assert_eq!(json(&retention)["segments_deleted"], 0);
    assert!(!dir.exists(), "a read created {}", dir.display());
    // Nor are a store's files created in an existing directory that holds none.
    std::fs::create_dir(&dir).unwrap();
    for args in [
        &["--json", "stats"][..],
        &["--json", "verify"],
        &["--json", "org", "show", "o"],
    ] {
        assert_eq!(run(&dir, args).status.code(), Some(0), "{args:?}");
    }
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "a read wrote into {}",
        dir.display()
    );
    // The first write creates the store.
    assert_eq!(run(&dir, &["org", "set", "o"]).status.code(), Some(0));
    assert!(dir.join("meta.redb").exists());
}

/// The 256 KiB limit is the event's JSON text: whitespace around it on the
/// line (trailing spaces, the `\r` of CRLF input) does not count.
#[test]
fn the_size_limit_is_the_json_text_not_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let event = |id: u32, size: usize| {
        let head = format!(
            r#"{{"id":"00000000-0000-4000-8000-{id:012}","action":"a.b","actor":{{"id":"u","type":"user"}},"target":{{"id":"t","type":"x"}},"occurred_at":"2026-06-01T00:00:00Z","success":true,"scope":{{"id":"org-x","type":"account"}},"payload":{{"p":""#
        );
        let tail = r#""}}"#;
        format!("{head}{}{tail}", "x".repeat(size - head.len() - tail.len()))
    };
    let limit = auditstore::event::MAX_EVENT_JSON_BYTES;
    let at_limit = event(1, limit);
    assert_eq!(at_limit.len(), limit);
    let over = event(2, limit + 1);
    let input = format!("{at_limit}   \r\n  {over}\n");
    let out = run_stdin(dir.path(), &["--json", "ingest"], input.as_bytes());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(
        (v["appended"].as_u64(), v["rejected"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(stderr(&out).starts_with("line 2: "), "{}", stderr(&out));
    assert!(stderr(&out).contains("limit"), "{}", stderr(&out));
}

/// Range ends beyond the store's representable years (1677-2262) mean
/// "everything" on that side, not a usage error; a malformed date still is.
#[test]
fn query_accepts_range_ends_in_any_year() {
    let dir = tempfile::tempdir().unwrap();
    let data = shared_data("sample-events.jsonl");
    let ingest = run(dir.path(), &["--json", "ingest", data.to_str().unwrap()]);
    assert_eq!(ingest.status.code(), Some(0), "{}", stderr(&ingest));
    let org = "org-01";
    let all = |from: &str, to: &str| {
        let out = run(
            dir.path(),
            &[
                "--json",
                "--as-of",
                "2026-09-01T00:00:00Z",
                "query",
                "--org",
                org,
                "--from",
                from,
                "--to",
                to,
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{from}..{to}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().lines().count()
    };
    let wide = all("0001-01-01", "9999-12-31T23:59:59Z");
    assert!(wide > 0);
    assert_eq!(wide, all("1970-01-01", "2100-01-01"));
    assert_eq!(all("9000-01-01", "9999-12-31"), 0);
    let bad = run(
        dir.path(),
        &[
            "query",
            "--org",
            org,
            "--from",
            "0001-13-01",
            "--to",
            "9999-12-31",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("month 13"), "{}", stderr(&bad));
}

#[test]
fn retention_clamps_query_and_get_as_of() {
    let dir = tempfile::tempdir().unwrap();
    let sample = shared_data("sample-events.jsonl");
    run(dir.path(), &["ingest", sample.to_str().unwrap()]);
    let out = run(
        dir.path(),
        &[
            "--json",
            "org",
            "set",
            "org-01",
            "--plan",
            "scale",
            "--retention-days",
            "30",
        ],
    );
    assert_eq!(
        json(&out),
        serde_json::json!({"org": "org-01", "plan": "scale", "retention_days": 30})
    );
    let show = json(&run(dir.path(), &["--json", "org", "show", "org-01"]));
    assert_eq!(show["retention_days"], 30);
    let fresh = json(&run(dir.path(), &["--json", "org", "show", "org-77"]));
    assert_eq!(
        fresh,
        serde_json::json!({"org": "org-77", "plan": "free", "retention_days": 365})
    );
    let out = run(
        dir.path(),
        &[
            "--json",
            "--as-of",
            "2026-07-20",
            "query",
            "--org",
            "org-01",
            "--from",
            "2026-06-01",
            "--to",
            "2026-08-01",
        ],
    );
    let times: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["occurred_at"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(!times.is_empty());
    assert!(
        times.iter().all(|t| t.as_str() >= "2026-06-20"),
        "clamped to 30 days before --as-of"
    );
    let first_id = "1818e811-892f-402b-923f-0824128b2f33"; // org-01, 2026-06-01
    let out = run(dir.path(), &["--json", "--as-of", "2026-07-20", "get", first_id]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["error"]["code"], "not_found");
    let out = run(dir.path(), &["--json", "--as-of", "2026-06-02", "get", first_id]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["id"], first_id);
}

#[test]
fn usage_errors_exit_2_and_refusals_exit_1_with_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["query", "--org", "o"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(dir.path(), &["org", "set", "o", "--retention-days", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(dir.path(), &["--as-of", "yesterday", "stats"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(
        dir.path(),
        &[
            "--json",
            "query",
            "--org",
            "o",
            "--from",
            "2026-06-02",
            "--to",
            "2026-06-01",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["error"]["code"], "invalid_range");
    let out = run(dir.path(), &["get", "not-a-uuid"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not_found"));
}

#[test]
fn a_second_writer_gets_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _held = auditstore::Store::open(dir.path()).unwrap();
    let sample = shared_data("sample-events.jsonl");
    let out = run(dir.path(), &["--json", "ingest", sample.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["error"]["code"], "locked");
}

#[test]
fn verify_reports_corruption_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let sample = shared_data("sample-events.jsonl");
    run(dir.path(), &["ingest", sample.to_str().unwrap()]);
    let ok = run(dir.path(), &["--json", "verify"]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(json(&ok)["records"].as_u64().unwrap() > 1900);
    // Corrupt the last frame: a torn tail, cut, the rest kept.
    let log: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    let mut bytes = std::fs::read(&log[0]).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0xff;
    std::fs::write(&log[0], &bytes).unwrap();
    // That record is covered by a signed checkpoint, so it was durable: no
    // crash tears it. The store is corrupt, and verify says which leaf.
    let refused = run(dir.path(), &["--json", "stats"]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(json(&refused)["error"]["code"], "corrupt");
    let bad = json(&run(dir.path(), &["--json", "verify"]));
    let problems = bad["error"]["problems"].as_array().unwrap().clone();
    assert!(problems.iter().any(|p| p["leaf_index"] == 1978), "{problems:?}");
    // Without the tamper-evidence files (as a store from before them), the
    // same bytes are what a crash leaves.
    let forget_tree = || {
        for f in ["checkpoints", "signing.key"] {
            std::fs::remove_file(dir.path().join(f)).unwrap();
        }
        std::fs::remove_dir_all(dir.path().join("tree")).unwrap();
    };
    forget_tree();
    let stats = json(&run(dir.path(), &["--json", "stats"]));
    let unique = model(&sample_events()).len() as u64;
    assert_eq!(stats["events"], unique - 1);
    let ok = run(dir.path(), &["--json", "verify"]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "a torn tail is crash recovery, not damage"
    );

    // A byte flipped in the middle, with records after it: not a tail. Only
    // that record is lost, and verify says where, now and on later runs.
    let mut bytes = std::fs::read(&log[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&log[0], &bytes).unwrap();
    for _ in 0..2 {
        let bad = run(dir.path(), &["--json", "verify"]);
        assert_eq!(bad.status.code(), Some(1));
        let err = &json(&bad)["error"];
        assert_eq!(err["code"], "corrupt");
        let problem = &err["problems"][0];
        assert_eq!(problem["file"], log[0].to_str().unwrap());
        let offset = problem["offset"].as_u64().unwrap();
        assert!(
            offset <= middle as u64 && middle as u64 - offset < 4096,
            "{problem}"
        );
    }
    forget_tree();
    let stats = json(&run(dir.path(), &["--json", "stats"]));
    assert_eq!(stats["events"], unique - 2);
    // The last stored event went with the torn tail; the one before it is
    // after the damage.
    let mut seen = HashSet::new();
    let appended: Vec<String> = sample_events()
        .iter()
        .map(|(_, e)| e.id().to_string())
        .filter(|id| seen.insert(id.clone()))
        .collect();
    let late_id = &appended[appended.len() - 2];
    let get = run(dir.path(), &["--json", "--as-of", "2026-08-01", "get", late_id]);
    assert_eq!(get.status.code(), Some(0), "records after the damage are kept");
}

#[test]
fn verify_exit_1_with_corrupt_code_on_sealed_damage() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = auditstore::Store::open_with(
            dir.path(),
            auditstore::Options {
                segment_size: 64 * 1024,
                ..Default::default()
            },
        )
        .unwrap();
        let ev = sample_events();
        store
            .append_batch(ev.iter().map(|(o, e)| (o.as_str(), e)))
            .unwrap();
    }
    let mut logs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    let mut bytes = std::fs::read(&logs[0]).unwrap();
    bytes[500] ^= 0x04;
    std::fs::write(&logs[0], &bytes).unwrap();
    let out = run(dir.path(), &["--json", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["error"]["code"], "corrupt");
    let p = &v["error"]["problems"][0];
    assert_eq!(p["file"], logs[0].to_str().unwrap());
    assert!(p["offset"].as_u64().unwrap() <= 500);
    let out = run(dir.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains(logs[0].to_str().unwrap()));
}

#[test]
fn hostile_input_lines_are_rejected_without_harm() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(shared_data("sample-events.jsonl"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let mut input: Vec<u8> = Vec::new();
    input.extend_from_slice(b"\xff\xfe not utf8\n");
    input.extend_from_slice(&vec![b'['; 200_000]);
    input.push(b'\n');
    input.extend_from_slice(b"{\"id\":\"\0\"}\n");
    let huge_id = format!("{{\"id\":\"{}\"}}\n", "a".repeat(10_000));
    input.extend_from_slice(huge_id.as_bytes());
    input.extend_from_slice(&vec![b'x'; 3 << 20]); // a 3 MiB line
    input.push(b'\n');
    input.extend_from_slice(good.as_bytes());
    input.push(b'\n');
    let out = run_stdin(dir.path(), &["--json", "ingest"], &input);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["appended"], 1);
    assert_eq!(v["rejected"], 5);
    let err = stderr(&out);
    let lines: HashSet<&str> = err.lines().filter_map(|l| l.split(':').next()).collect();
    for n in 1..=5 {
        assert!(lines.contains(format!("line {n}").as_str()), "{err}");
    }
    // Paths cannot be escaped through organization names: they are never
    // used in paths, and control characters are refused.
    let out = run(dir.path(), &["org", "set", "../../etc"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!dir.path().join("../../etc").join("meta.redb").exists());
}

/// Human-readable output is for a terminal: control characters from event
/// fields or arguments are shown escaped, so they neither run as terminal
/// escape sequences nor split a table row or an error line.
#[test]
fn control_characters_are_escaped_in_tables_and_error_lines() {
    let dir = tempfile::tempdir().unwrap();
    let line = r#"{"id":"6f1c3a52-8d1e-4c2b-9a57-3e0b8f1d2c4a","action":"user.logged_in","actor":{"id":"\u001b[31mRED\nline2","type":"user"},"target":{"id":"t\r1","type":"x"},"occurred_at":"2026-06-01T10:00:00Z","success":true,"scope":{"id":"org-01","type":"organization"}}"#;
    let out = run_stdin(
        dir.path(),
        &["--as-of", "2026-06-02", "ingest"],
        format!("{line}\n").as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let args: Vec<&str> = "--as-of 2026-06-02 query --org org-01 --from 2026-06-01 --to 2026-06-02"
        .split(' ')
        .collect();
    let out = run(dir.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
    assert_eq!(text.lines().count(), 3, "header, one row, count: {text}");
    assert!(text.contains(r"\u{1b}[31mRED\nline2"), "{text}");
    assert!(text.contains(r"t\r1"), "{text}");
    // The JSON Lines output keeps the value as stored.
    let out = run(dir.path(), &[&args[..], &["--format", "jsonl"]].concat());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["actor"]["id"], "\u{1b}[31mRED\nline2");
    // An argument echoed in an error message stays on one line.
    for args in [&["get", "a\nb\u{1b}[2J"][..], &["export", "download", "a\nb"][..]] {
        let out = run(dir.path(), args);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err:?}");
        assert!(err.starts_with("auditstore: not_found: "), "{err:?}");
        assert!(!err.trim_end().chars().any(char::is_control), "{err:?}");
    }
}

/// `demo` into a named directory: the sample is ingested durably, queried
/// and exported to a CSV that exists; run again on the same store it still
/// succeeds, counts the re-sent sample honestly (nothing appended twice) and
/// leaves settings an operator made alone.
#[test]
fn demo_into_a_named_store_runs_again_and_keeps_settings() {
    let dir = tempfile::tempdir().unwrap();
    let demo = || {
        let out = run(dir.path(), &["--json", "demo", "--events", "3000"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        json(&out)
    };
    let first = demo();
    let count = |v: &Value, k: &str| v[k].as_u64().unwrap();
    let stored = count(&first, "appended");
    // The sample re-sends ~1% of its events.
    assert!(stored > 2900 && stored < 3000, "{first}");
    assert_eq!(
        stored + count(&first, "duplicates") + count(&first, "conflicts"),
        3000
    );
    // The store's own events of org-00 are stored too: the demo's
    // org.settings.update (org-00 set to server), then its export's
    // audit_log.requested, audit_log.processed and the hand-out of its
    // file, audit_log.download_url.generated.
    assert_eq!(count(&first, "events"), stored + 4);
    assert_eq!(first["export"]["status"], "success");
    assert!(first["export"]["rows"].as_u64().unwrap() > 0);
    let csv = std::fs::read_to_string(first["export"]["path"].as_str().unwrap()).unwrap();
    assert_eq!(
        csv.lines().count() as u64,
        first["export"]["rows"].as_u64().unwrap() + 1
    );
    assert_eq!(
        first["data_dir"].as_str().map(Path::new),
        Some(dir.path()),
        "the named directory, not a temporary one"
    );
    // Its organization is on the self-hosted plan: no rate limit to run into.
    for run in 1..=3u64 {
        let again = demo();
        assert_eq!(count(&again, "appended"), 0);
        assert_eq!(
            count(&again, "duplicates") + count(&again, "conflicts"),
            3000,
            "{again}"
        );
        // Settings are kept (no new org.settings.update); each run's new
        // export request adds its audit_log.requested, audit_log.processed
        // and audit_log.download_url.generated.
        assert_eq!(count(&again, "events"), stored + 4 + 3 * run, "{again}");
        assert_eq!(again["export"]["status"], "success");
    }
    // Settings an operator made for org-00 are kept, and their rules hold:
    // on the scale plan, the 4 requests of the last 30 days are too many.
    let out = run(
        dir.path(),
        &[
            "org",
            "set",
            "org-00",
            "--plan",
            "scale",
            "--retention-days",
            "400",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(dir.path(), &["--json", "demo", "--events", "3000"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["error"]["code"], "rate_limited");
    let org = json(&run(dir.path(), &["--json", "org", "show", "org-00"]));
    assert_eq!(
        (org["plan"].as_str(), org["retention_days"].as_u64()),
        (Some("scale"), Some(400))
    );
}

/// An empty `AUDITSTORE_DATA_DIR` means unset: the default directory.
#[test]
fn an_empty_data_dir_variable_means_the_default_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_auditstore"));
    let out = cmd
        .current_dir(cwd.path())
        .env("AUDITSTORE_DATA_DIR", "")
        .args(["--json", "org", "set", "org-1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(cwd.path().join("auditstore-data").join("meta.redb").exists());
}

/// A byte order mark at the start of the input is not part of line 1.
#[test]
fn a_byte_order_mark_before_the_first_line_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let sample = std::fs::read_to_string(shared_data("sample-events.jsonl")).unwrap();
    let two: Vec<&str> = sample.lines().take(2).collect();
    let input = format!("\u{feff}{}\n{}\n", two[0], two[1]);
    let out = run_stdin(dir.path(), &["--json", "ingest"], input.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["appended"], 2);
    // Only at the start: elsewhere it is what it is, not JSON.
    let input = format!("{}\n\u{feff}{}\n", two[0], two[1]);
    let out = run_stdin(dir.path(), &["--json", "ingest"], input.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["rejected"], 1);
    assert!(stderr(&out).starts_with("line 2: "), "{}", stderr(&out));
}

/// `org set --user` records the change as the store's own
/// `org.settings.update` event of the organization, by that user, which
/// `query` shows like any other event; setting it again unchanged adds none.
#[test]
fn org_set_is_recorded_as_an_event_of_the_organization() {
    let dir = tempfile::tempdir().unwrap();
    let set = || {
        let out = run(
            dir.path(),
            &[
                "--as-of",
                "2026-08-01T12:00:00Z",
                "org",
                "set",
                "org-7",
                "--plan",
                "scale",
                "--user",
                "alice",
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    };
    let query = |format: &str| -> String {
        let out = run(
            dir.path(),
            &[
                "--as-of",
                "2026-08-02",
                "query",
                "--org",
                "org-7",
                "--from",
                "2026-08-01",
                "--to",
                "2026-08-02",
                "--format",
                format,
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    set();
    let lines: Vec<Value> = query("jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let e = &lines[0];
    assert_eq!(e["action"], "org.settings.update");
    assert_eq!(e["actor"], serde_json::json!({"id": "alice", "type": "user"}));
    assert_eq!(
        e["target"],
        serde_json::json!({"id": "org-7", "type": "organization"})
    );
    assert_eq!(
        e["scope"],
        serde_json::json!({"id": "org-7", "type": "organization"})
    );
    assert_eq!(e["occurred_at"], "2026-08-01T12:00:00Z");
    assert_eq!(e["payload"]["new"]["plan"], "scale");
    assert_eq!(e["payload"]["old"]["plan"], "free");
    // The table shows it too.
    let table = query("table");
    assert!(
        table.contains("org.settings.update") && table.contains("alice"),
        "{table}"
    );
    // Unchanged settings: nothing new.
    set();
    assert_eq!(query("jsonl").lines().count(), 1);
}

/// `demo` checks its export against its signed manifest, as `export verify`
/// does, and says so.
#[test]
fn the_demo_checks_its_export_against_the_signed_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["demo", "--events", "3000"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let line = said
        .lines()
        .find(|l| l.starts_with("signed manifest checked"))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        line.contains(" rows, each an event of the signed log of "),
        "{line}"
    );
}
