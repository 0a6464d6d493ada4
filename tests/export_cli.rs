//! The admin tool's `export` commands, run as a real process: JSON shapes,
//! exit statuses and error codes of `shared/spec/cli.md`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_auditstore");

struct Tool {
    dir: tempfile::TempDir,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {:?}", self.stdout))
    }

    /// Exit 1 with `{"error": {"code": code, "message": ...}}` on stdout.
    fn refused(&self, code: &str) -> Value {
        assert_eq!(self.code, 1, "stdout {:?} stderr {:?}", self.stdout, self.stderr);
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(
            v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        assert_eq!(self.stdout.trim().lines().count(), 1);
        v["error"].clone()
    }
}

impl Tool {
    fn new() -> Tool {
        Tool {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn run_with(&self, as_of: &str, args: &[&str], stdin: &str) -> Run {
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(["--as-of", as_of])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().unwrap();
        Run {
            code: status.code().unwrap(),
            stdout: String::from_utf8(stdout).unwrap(),
            stderr: String::from_utf8(stderr).unwrap(),
        }
    }

    fn run(&self, as_of: &str, args: &[&str]) -> Run {
        self.run_with(as_of, args, "")
    }

    /// Run and expect success.
    fn ok(&self, as_of: &str, args: &[&str]) -> Run {
        let r = self.run(as_of, args);
        assert_eq!(r.code, 0, "{args:?}: stdout {:?} stderr {:?}", r.stdout, r.stderr);
        r
    }

    fn org(&self, org: &str, plan: &str) {
        self.ok("2026-08-10T00:00:00Z", &["org", "set", org, "--plan", plan]);
    }

    fn ingest(&self, org: &str, instants: &[&str]) {
        let lines: String = instants
            .iter()
            .map(|at| {
                json!({"id": uuid::Uuid::new_v4().to_string(), "action": "user.logged_in",
                    "actor": {"id": "u1", "type": "user"}, "target": {"id": "t1", "type": "user"},
                    "occurred_at": at, "success": true})
                .to_string()
                    + "\n"
            })
            .collect();
        let r = self.run_with(
            "2026-08-10T00:00:00Z",
            &["--json", "ingest", "--org", org],
            &lines,
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.json()["appended"], instants.len());
    }

    fn request(&self, as_of: &str, org: &str, from: &str, to: &str) -> Run {
        self.run(
            as_of,
            &[
                "--json", "export", "request", "--org", org, "--user", "ann", "--from", from, "--to", to,
            ],
        )
    }
}

const KEYS: [&str; 13] = [
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
];

fn assert_shape(v: &Value) {
    let obj = v.as_object().unwrap_or_else(|| panic!("not an object: {v}"));
    for k in KEYS {
        assert!(obj.contains_key(k), "missing {k} in {v}");
    }
    for k in obj.keys() {
        assert!(
            KEYS.contains(&k.as_str()) || k == "completed_at" || k == "failure_reason",
            "unexpected key {k}"
        );
    }
}

#[test]
fn request_list_process_download_round_trip() {
    let tool = Tool::new();
    tool.org("org-01", "scale");
    tool.ingest(
        "org-01",
        &[
            "2026-08-01T10:00:00Z",
            "2026-08-03T10:00:00Z",
            "2026-08-07T00:00:00Z",
        ],
    );

    let r = tool.request("2026-08-10T09:31:00Z", "org-01", "2026-08-02", "2026-08-05");
    assert_eq!(r.code, 0, "{}", r.stdout);
    let req = r.json();
    assert_shape(&req);
    assert_eq!(req["org"], "org-01");
    assert_eq!(req["requested_by"], "ann");
    assert_eq!(req["from"], "2026-08-02");
    assert_eq!(req["to"], "2026-08-05");
    assert_eq!(req["window_start"], "2026-08-01T00:00:00Z");
    assert_eq!(req["window_end"], "2026-08-07T00:00:00Z");
    assert_eq!(req["created_at"], "2026-08-10T09:31:00Z");
    assert_eq!(req["status"], "requested");
    assert_eq!(req["expires_at"], Value::Null);
    assert_eq!(req["has_data"], false);
    assert_eq!(req["rows"], Value::Null);
    assert_eq!(req["bytes"], Value::Null);
    let id = req["id"].as_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);

    // A second request, later: list is newest first.
    let second = tool
        .request("2026-08-10T09:40:00Z", "org-01", "2026-07-01", "2026-07-02")
        .json();
    let list = tool
        .ok(
            "2026-08-10T09:41:00Z",
            &["--json", "export", "list", "--org", "org-01"],
        )
        .json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], second["id"]);
    assert_eq!(list[1]["id"], id.as_str());
    list.iter().for_each(assert_shape);

    // Not processed before the next :30 mark.
    let dl = tool.run("2026-08-10T09:45:00Z", &["--json", "export", "download", &id]);
    dl.refused("not_ready");
    let p = tool
        .ok("2026-08-10T09:45:00Z", &["--json", "export", "process"])
        .json();
    assert_eq!(p, json!({"processed": [], "expired": []}));

    let p = tool
        .ok("2026-08-10T10:30:00Z", &["--json", "export", "process"])
        .json();
    assert_eq!(p["expired"], json!([]));
    let mut processed: Vec<String> = p["processed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    processed.sort();
    let mut want = vec![id.clone(), second["id"].as_str().unwrap().to_owned()];
    want.sort();
    assert_eq!(processed, want);
    assert_eq!(p.as_object().unwrap().len(), 2);

    let list = tool
        .ok(
            "2026-08-10T10:31:00Z",
            &["--json", "export", "list", "--org", "org-01"],
        )
        .json();
    let done = &list[1];
    assert_eq!(done["status"], "success");
    assert_eq!(done["has_data"], true);
    assert_eq!(done["rows"], 2);
    assert_eq!(done["expires_at"], "2026-08-20T10:30:00Z");
    assert_eq!(list[0]["status"], "success");
    assert_eq!(list[0]["has_data"], false);

    // Download to stdout and to a file.
    let csv = tool
        .ok("2026-08-10T10:31:00Z", &["export", "download", &id])
        .stdout;
    assert!(csv
        .starts_with("id,action,actor,target,payload,occurred_at,metadata,version,scope,success,request\n"));
    assert_eq!(csv.lines().count(), 3);
    assert_eq!(done["bytes"], csv.len());
    let out = tool.dir.path().join("out.csv");
    let out_s = out.to_str().unwrap();
    tool.ok(
        "2026-08-10T10:31:00Z",
        &["export", "download", &id, "--out", out_s],
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), csv);

    // The empty one has nothing to download.
    let sid = second["id"].as_str().unwrap();
    tool.run("2026-08-10T10:31:00Z", &["--json", "export", "download", sid])
        .refused("no_data");

    // Expired at exactly 10 days; process reports and deletes it.
    let e = tool
        .run("2026-08-20T10:30:00Z", &["--json", "export", "download", &id])
        .refused("expired");
    assert_eq!(e["expires_at"], "2026-08-20T10:30:00Z");
    let p = tool
        .ok("2026-08-20T10:30:00Z", &["--json", "export", "process"])
        .json();
    assert_eq!(p["processed"], json!([]));
    assert_eq!(p["expired"].as_array().unwrap().len(), 2);
    assert!(!tool.dir.path().join("exports").join(format!("{id}.csv")).exists());
    let list = tool
        .ok(
            "2026-08-20T10:31:00Z",
            &["--json", "export", "list", "--org", "org-01"],
        )
        .json();
    assert!(list.as_array().unwrap().iter().all(|r| r["status"] == "expired"));
}

/// `export manifest` and `export verify` as a process: the manifest checks
/// the file with the store's key and with the key given as text or file;
/// an altered cell, a dropped row or another key exits 1 with `corrupt`.
#[test]
fn manifests_are_printed_written_and_verified_by_the_tool() {
    let tool = Tool::new();
    tool.org("org-01", "scale");
    let instants: Vec<String> = (0..40)
        .map(|i| format!("2026-08-0{}T10:{:02}:00Z", 1 + i % 5, i))
        .collect();
    tool.ingest("org-01", &instants.iter().map(String::as_str).collect::<Vec<_>>());
    let at = "2026-08-10T10:31:00Z";
    let id = tool
        .request("2026-08-10T09:31:00Z", "org-01", "2026-08-01", "2026-08-06")
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    tool.run("2026-08-10T09:32:00Z", &["--json", "export", "manifest", &id])
        .refused("not_ready");
    tool.ok(at, &["--json", "export", "process"]);
    let d = tool.dir.path();
    let (csv, manifest) = (d.join("x.csv"), d.join("x.manifest.json"));
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    tool.ok(at, &["export", "download", &id, "--out", &s(&csv)]);
    let printed = tool.ok(at, &["export", "manifest", &id]).stdout;
    let wrote = tool
        .ok(at, &["--json", "export", "manifest", &id, "--out", &s(&manifest)])
        .json();
    assert_eq!(wrote["bytes"], printed.len());
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), printed);
    let m: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(m["format"], "auditstore-export-manifest/1");
    assert_eq!(
        (m["export_id"].as_str(), m["org"].as_str()),
        (Some(id.as_str()), Some("org-01"))
    );
    assert_eq!(m["file"]["rows"], 40);
    assert_eq!(m["leaf_indexes"].as_array().unwrap().len(), 40);

    let ok = tool
        .ok(at, &["--json", "export", "verify", &s(&csv), &s(&manifest)])
        .json();
    assert_eq!(
        (ok["rows"].as_u64(), ok["org"].as_str()),
        (Some(40), Some("org-01")),
        "{ok}"
    );
    let key = tool.ok(at, &["--json", "key", "show"]).json()["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();
    tool.ok(at, &["export", "verify", &s(&csv), &s(&manifest), "--key", &key]);
    let key_file = d.join("key.pub");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    tool.ok(
        at,
        &[
            "export",
            "verify",
            &s(&csv),
            &s(&manifest),
            "--key",
            &s(&key_file),
        ],
    );

    // One altered cell (an actor name), one dropped row: both refused.
    let text = std::fs::read_to_string(&csv).unwrap();
    let altered = d.join("altered.csv");
    std::fs::write(&altered, text.replacen("\"\"u1\"\"", "\"\"u2\"\"", 1)).unwrap();
    assert_ne!(std::fs::read_to_string(&altered).unwrap(), text);
    tool.run(at, &["--json", "export", "verify", &s(&altered), &s(&manifest)])
        .refused("corrupt");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(7);
    let dropped = d.join("dropped.csv");
    std::fs::write(&dropped, lines.join("\n") + "\n").unwrap();
    tool.run(at, &["--json", "export", "verify", &s(&dropped), &s(&manifest)])
        .refused("corrupt");
    // Another store's key does not check this store's manifest.
    let other = Tool::new();
    other.ingest("org-01", &["2026-08-01T10:00:00Z"]);
    let other_key = other.ok(at, &["--json", "key", "show"]).json()["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();
    tool.run(
        at,
        &[
            "--json",
            "export",
            "verify",
            &s(&csv),
            &s(&manifest),
            "--key",
            &other_key,
        ],
    )
    .refused("corrupt");
}

#[test]
fn refusals_have_codes_and_exit_1() {
    let tool = Tool::new();
    tool.org("perf", "performance");
    tool.org("free", "free");
    let now = "2026-08-10T12:00:00Z";
    let member = tool.run(
        now,
        &[
            "--json",
            "export",
            "request",
            "--org",
            "perf",
            "--user",
            "mo",
            "--role",
            "member",
            "--from",
            "2026-08-01",
            "--to",
            "2026-08-02",
        ],
    );
    member.refused("forbidden");
    let free = tool
        .request(now, "free", "2026-08-01", "2026-08-02")
        .refused("plan_not_eligible");
    assert!(free["message"].as_str().unwrap().contains("contact support"));
    tool.request(now, "perf", "2025-08-09", "2026-08-02")
        .refused("range_too_old");
    tool.request(now, "perf", "2026-08-01", "2026-08-11")
        .refused("range_in_future");
    tool.request(now, "perf", "2026-08-03", "2026-08-02")
        .refused("invalid_range");
    // Dates past the store's representable years are range refusals too,
    // not usage errors.
    tool.request(now, "perf", "0000-01-01", "2026-08-02")
        .refused("range_too_old");
    let far = tool
        .request(now, "perf", "2026-08-01", "9999-12-31")
        .refused("range_in_future");
    assert!(far["message"].as_str().unwrap().contains("9999-12-31"), "{far}");
    tool.request(now, "perf", "2026-08-01", "9999-12-31T23:00:00-05:00")
        .refused("range_in_future");
    assert_eq!(tool.request(now, "perf", "2025-08-10", "2026-08-10").code, 0);
    let limited = tool
        .request("2026-08-11T00:00:00Z", "perf", "2026-08-01", "2026-08-02")
        .refused("rate_limited");
    assert_eq!(limited["next_allowed_at"], "2026-09-09T12:00:00Z");

    let missing = uuid::Uuid::new_v4().to_string();
    tool.run(now, &["--json", "export", "download", &missing])
        .refused("not_found");
    tool.run(now, &["--json", "export", "download", "not-a-uuid"])
        .refused("not_found");
    tool.run(
        now,
        &["--json", "export", "full", "--org", "perf", "--user", "ann"],
    )
    .refused("plan_not_eligible");

    // Without --json: one line on stderr, nothing on stdout.
    let plain = tool.run(
        now,
        &[
            "export",
            "request",
            "--org",
            "free",
            "--user",
            "ann",
            "--from",
            "2026-08-01",
            "--to",
            "2026-08-02",
        ],
    );
    assert_eq!(plain.code, 1);
    assert_eq!(plain.stdout, "");
    assert_eq!(plain.stderr.trim().lines().count(), 1);
    assert!(plain.stderr.contains("plan_not_eligible"));
}

#[test]
fn usage_errors_exit_2() {
    let tool = Tool::new();
    let now = "2026-08-10T12:00:00Z";
    let base = [
        "export",
        "request",
        "--org",
        "o",
        "--user",
        "ann",
        "--from",
        "2026-08-01",
    ];
    assert_eq!(tool.run(now, &base).code, 2, "missing --to");
    let mut bad_role = base.to_vec();
    bad_role.extend(["--to", "2026-08-02", "--role", "owner"]);
    assert_eq!(tool.run(now, &bad_role).code, 2);
    let mut bad_date = base.to_vec();
    bad_date.extend(["--to", "2026-02-30"]);
    assert_eq!(tool.run(now, &bad_date).code, 2);
    assert_eq!(tool.run(now, &["export", "list"]).code, 2, "missing --org");
    assert_eq!(tool.run(now, &["export", "frobnicate"]).code, 2);
}

#[test]
fn full_export_and_human_readable_tables() {
    let tool = Tool::new();
    tool.org("srv", "server");
    tool.ingest("srv", &["2026-08-01T10:00:00Z", "2026-08-02T10:00:00Z"]);
    let now = "2026-08-10T12:00:00Z";
    let first = tool
        .ok(now, &["export", "full", "--org", "srv", "--user", "ann"])
        .stdout;
    // Header, the store's own org.settings.update of `org set` (at
    // 2026-08-10T00:00:00Z), the 2 ingested events; not its own hand-out.
    let actions = |csv: &str| -> Vec<String> {
        csv.lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap().to_owned())
            .collect()
    };
    assert_eq!(first.lines().count(), 4, "{first}");
    assert_eq!(
        actions(&first),
        ["user.logged_in", "user.logged_in", "org.settings.update"],
        "{first}"
    );
    // Each later full export also holds the first one's hand-out
    // (audit_log.download_url.generated by ann at `now`); theirs, by the
    // same user at the same instant, is the same event, not a second one.
    let out = tool.dir.path().join("full.csv");
    let r = tool.ok(
        now,
        &[
            "--json",
            "export",
            "full",
            "--org",
            "srv",
            "--user",
            "ann",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(r.json()["rows"], 4);
    let csv = std::fs::read_to_string(&out).unwrap();
    assert!(csv.starts_with(&first), "{csv}");
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(
        csv.lines()
            .last()
            .unwrap()
            .contains(r#"audit_log.download_url.generated,"{""id"":""ann"",""type"":""user""}""#),
        "{csv}"
    );
    // `--out -` is stdout, not a file named "-".
    let dash = tool.ok(
        now,
        &["export", "full", "--org", "srv", "--user", "ann", "--out", "-"],
    );
    assert_eq!(dash.stdout, csv);
    assert!(!tool.dir.path().join("-").exists());
    assert!(!std::env::current_dir().unwrap().join("-").exists());
    let refused = tool.run(
        now,
        &[
            "--json",
            "export",
            "full",
            "--org",
            "srv",
            "--user",
            "mo",
            "--role",
            "member",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    refused.refused("forbidden");
    assert_no_partial_files(tool.dir.path());

    let created = tool.ok(
        now,
        &[
            "export",
            "request",
            "--org",
            "srv",
            "--user",
            "ann",
            "--from",
            "2026-08-01",
            "--to",
            "2026-08-02",
        ],
    );
    assert!(
        created.stdout.contains("2026-08-10T12:30:00Z"),
        "says when it is processed: {}",
        created.stdout
    );
    tool.ok("2026-08-10T12:30:00Z", &["export", "process"]);
    let table = tool
        .ok("2026-08-10T12:31:00Z", &["export", "list", "--org", "srv"])
        .stdout;
    for h in [
        "timeframe",
        "requester",
        "made at",
        "expires",
        "status",
        "download",
    ] {
        assert!(table.contains(h), "missing column {h}: {table}");
    }
    assert!(table.contains("2026-08-01 to 2026-08-02"));
    assert!(table.contains("ann"));
    assert!(table.contains("success"));
    assert!(table.contains("2026-08-20T12:30:00Z"));
    assert!(table.contains("yes"));
}

fn assert_no_partial_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".partial"), "left {name}");
    }
}
