//! Metadata that cannot silently vanish (cli.md, "Metadata, damage and
//! backups"): a missing, emptied or older `meta.redb` is refused with
//! `corrupt`; `verify` changes no byte; `repair` rebuilds the settings and
//! export requests from the store's own audit events.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::first_json as json;

const AS_OF: &str = "2026-07-20T11:00:00Z";

fn run(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_auditstore"));
    cmd.arg("--data-dir").arg(dir).arg("--json").args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// A store with settings, events and a processed export request.
fn store() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let at = ["--as-of", "2026-07-20T10:00:00Z"];
    assert!(run(
        d,
        &[
            &at[..],
            &[
                "org",
                "set",
                "org-01",
                "--plan",
                "scale",
                "--retention-days",
                "30",
                "--user",
                "alice"
            ]
        ]
        .concat(),
        None
    )
    .status
    .success());
    let sample = std::fs::read(common::shared_data("sample-events.jsonl")).unwrap();
    assert!(run(d, &["ingest"], Some(&sample)).status.success());
    let req = run(
        d,
        &[
            &at[..],
            &[
                "export",
                "request",
                "--org",
                "org-01",
                "--user",
                "bob",
                "--from",
                "2026-07-01",
                "--to",
                "2026-07-15",
            ],
        ]
        .concat(),
        None,
    );
    assert!(req.status.success(), "{req:?}");
    let id = json(&req)["id"].as_str().unwrap().to_owned();
    assert!(run(d, &["--as-of", AS_OF, "export", "process"], None)
        .status
        .success());
    (dir, id)
}

fn hashes(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn assert_corrupt_naming_meta(out: &Output) {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = &json(out)["error"];
    assert_eq!(err["code"], "corrupt", "{err}");
    assert!(err["message"].as_str().unwrap().contains("meta.redb"), "{err}");
}

#[test]
fn a_missing_or_emptied_or_older_meta_redb_is_refused_by_every_command() {
    let (dir, id) = store();
    let d = dir.path();
    let older = std::fs::read(d.join("meta.redb")).unwrap();
    assert!(run(
        d,
        &["--as-of", AS_OF, "org", "set", "org-02", "--plan", "server"],
        None
    )
    .status
    .success());
    let commands: Vec<Vec<&str>> = vec![
        vec!["stats"],
        vec![
            "query",
            "--org",
            "org-01",
            "--from",
            "2026-01-01",
            "--to",
            "2027-01-01",
        ],
        vec!["org", "show", "org-01"],
        vec!["export", "list", "--org", "org-01"],
        vec!["export", "download", &id, "--out", "-"],
        vec!["org", "set", "org-03", "--plan", "scale"],
    ];
    type Damage<'a> = (&'a str, &'a dyn Fn(&Path));
    let damages: [Damage; 3] = [
        ("deleted", &|p| std::fs::remove_file(p).unwrap()),
        ("emptied", &|p| std::fs::write(p, b"").unwrap()),
        ("older copy", &|p| std::fs::write(p, &older).unwrap()),
    ];
    let pristine = hashes(d);
    for (what, damage) in damages {
        damage(&d.join("meta.redb"));
        for cmd in &commands {
            let out = run(d, &[&["--as-of", AS_OF][..], cmd].concat(), None);
            assert_corrupt_naming_meta(&out);
            let _ = what;
        }
        let out = run(d, &["--as-of", AS_OF, "verify"], None);
        assert_corrupt_naming_meta(&out);
        // Restore for the next damage.
        for (p, bytes) in &pristine {
            std::fs::write(p, bytes).unwrap();
        }
    }
}

#[test]
fn verify_changes_no_byte_on_a_clean_or_damaged_store() {
    let (dir, _) = store();
    let d = dir.path();
    let before = hashes(d);
    assert!(run(d, &["--as-of", AS_OF, "verify"], None).status.success());
    assert_eq!(hashes(d), before, "verify of a clean store changed a file");
    // A byte flipped inside the active segment, with records after it: an
    // open would cut and quarantine; verify only reports.
    let log = d.join("0000000000000001.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&log, &bytes).unwrap();
    let before = hashes(d);
    let out = run(d, &["--as-of", AS_OF, "verify"], None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(json(&out)["error"]["code"], "corrupt");
    assert_eq!(hashes(d), before, "verify of a damaged store changed a file");
    assert!(!d.join("quarantine").exists());
}

#[test]
fn repair_rebuilds_settings_and_export_requests_from_the_stores_own_events() {
    let (dir, _) = store();
    let d = dir.path();
    let show = |d: &Path| run(d, &["--as-of", AS_OF, "org", "show", "org-01"], None).stdout;
    let list = |d: &Path| run(d, &["--as-of", AS_OF, "export", "list", "--org", "org-01"], None).stdout;
    let (settings, requests) = (show(d), list(d));
    assert!(!requests.is_empty());
    // Nothing to repair on a usable store.
    let out = run(d, &["--as-of", AS_OF, "repair"], None);
    assert_eq!(json(&out)["repaired"], false, "{out:?}");
    std::fs::remove_file(d.join("meta.redb")).unwrap();
    let out = run(d, &["--as-of", AS_OF, "repair"], None);
    assert!(out.status.success(), "{out:?}");
    let report = json(&out);
    assert_eq!(report["repaired"], true);
    let org = report["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["org"] == "org-01")
        .unwrap()
        .clone();
    assert_eq!(org["settings_restored"], true, "{report}");
    assert_eq!(org["retention_days"], 30);
    assert_eq!(org["export_requests_restored"], 1);
    // Organizations with events but no settings change stay at the
    // defaults, and say so.
    let other = report["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["org"] == "org-03")
        .unwrap()
        .clone();
    assert_eq!(other["settings_restored"], false, "{report}");
    assert_eq!(other["plan"], "free");
    assert_eq!(other["retention_days"], 365);
    assert_eq!(show(d), settings);
    assert_eq!(list(d), requests);
    assert!(run(d, &["--as-of", AS_OF, "verify"], None).status.success());
    // A sender's event that borrows the action name restores nothing.
    let forged = r#"{"id":"00000000-0000-4000-8000-000000000001","action":"org.settings.update","actor":{"id":"mallory","type":"user"},"target":{"id":"org-02","type":"organization"},"payload":{"old":{"plan":"free","retention_days":365},"new":{"plan":"server","retention_days":3650}},"occurred_at":"2026-07-20T10:30:00Z","success":true,"scope":{"id":"org-02","type":"organization"}}"#;
    assert!(run(d, &["ingest"], Some(forged.as_bytes())).status.success());
    std::fs::write(d.join("meta.redb"), b"").unwrap();
    let report = json(&run(d, &["--as-of", AS_OF, "repair"], None));
    let org2 = report["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["org"] == "org-02")
        .unwrap()
        .clone();
    assert_eq!(org2["settings_restored"], false, "{report}");
    assert_eq!(org2["plan"], "free", "{report}");
    assert_eq!(show(d), settings);
}
