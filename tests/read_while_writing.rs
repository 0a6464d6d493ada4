//! Reads from a second process while `ingest` holds the store for writing
//! (issue 14, part 6): `query`, `get`, `stats` and `verify` answer from a
//! read-only snapshot instead of failing with `locked`, and change nothing.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{first_json as json, tool_json as run};

#[test]
fn query_get_stats_and_verify_work_while_ingest_holds_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(
        run(d, &["org", "set", "org-01", "--plan", "scale", "--user", "alice"])
            .status
            .success()
    );
    let sample = std::fs::read_to_string(common::shared_data("sample-events.jsonl")).unwrap();
    let lines: Vec<&str> = sample.lines().collect();
    let (first, rest) = lines.split_at(1000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_auditstore"))
        .arg("--data-dir")
        .arg(d)
        .args(["--json", "ingest"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all((first.join("\n") + "\n").as_bytes()).unwrap();
    stdin.flush().unwrap();
    // The writer holds the lock: a second writer is refused...
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let out = run(d, &["stats"]);
        assert!(out.status.success(), "stats while ingest runs: {out:?}");
        let events = json(&out)["events"].as_u64().unwrap();
        if events > 0 {
            break events;
        }
        assert!(
            Instant::now() < deadline,
            "the ingest's appends never became visible"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(seen <= 1001, "{seen}");
    let locked = run(d, &["org", "set", "org-02", "--plan", "server"]);
    assert_eq!(locked.status.code(), Some(1));
    assert_eq!(json(&locked)["error"]["code"], "locked", "{locked:?}");
    // Commands that write get `locked` from the read-only snapshot too,
    // before they touch a file (processing removes leftover files first).
    std::fs::create_dir_all(d.join("exports")).unwrap();
    std::fs::write(d.join("exports/leftover.csv.tmp"), b"x").unwrap();
    for cmd in [&["export", "process"][..], &["retention", "apply"][..]] {
        let out = run(d, cmd);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}: {out:?}");
        assert_eq!(json(&out)["error"]["code"], "locked", "{cmd:?}: {out:?}");
    }
    assert!(d.join("exports/leftover.csv.tmp").exists());
    // ...while reads answer from a snapshot and change nothing.
    let before: Vec<(std::path::PathBuf, u64)> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n == "meta.redb" || n == "store.id"))
        .map(|p| (p.clone(), std::fs::metadata(&p).unwrap().len()))
        .collect();
    let q = run(
        d,
        &[
            "query",
            "--org",
            "org-01",
            "--from",
            "2026-01-01",
            "--to",
            "2027-01-01",
        ],
    );
    assert!(q.status.success(), "{q:?}");
    let first_line = String::from_utf8_lossy(&q.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    let event: serde_json::Value = serde_json::from_str(&first_line).unwrap();
    let id = event["id"].as_str().unwrap();
    let g = run(d, &["get", id]);
    assert!(g.status.success(), "{g:?}");
    assert_eq!(json(&g)["id"], id);
    let v = run(d, &["verify"]);
    assert!(v.status.success(), "verify while ingest runs: {v:?}");
    for (p, len) in &before {
        assert_eq!(
            std::fs::metadata(p).unwrap().len(),
            *len,
            "{} changed",
            p.display()
        );
    }
    stdin.write_all((rest.join("\n") + "\n").as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let report = json(&out);
    let stored = report["appended"].as_u64().unwrap();
    let stats = json(&run(d, &["stats"]));
    // The sample's events plus the store's own org.settings.update.
    assert_eq!(stats["events"].as_u64().unwrap(), stored + 1);
    assert!(run(d, &["verify"]).status.success());
}
