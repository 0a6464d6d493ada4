//! The admin tool while `serve` holds the store: every command is carried
//! out by the server through `<data-dir>/admin.sock`, with the same
//! stdout, stderr and exit status as on an identical store with no server.

mod common;
mod remote_common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use remote_common::*;

#[test]
fn served_commands_answer_as_local_ones() {
    let mut p = Pair::new();
    let sample = shared_data("sample-events.jsonl");
    let sample = sample.to_str().unwrap();
    let sample_text = std::fs::read_to_string(shared_data("sample-events.jsonl")).unwrap();
    let lines: Vec<&str> = sample_text.lines().collect();

    // Ingest: a file (all duplicates now), stdin with a rejected line, and
    // a file named relative to the client's working directory.
    let o = p.same(&["--json", "ingest", sample], None, &[]);
    assert!(text(&o).contains("\"duplicates\":2000"), "{}", text(&o));
    let input = format!(
        "{}\n{{\"bad\": 1}}\n\n{}\n",
        fresh(lines[0], 1),
        fresh(lines[1], 2)
    );
    let o = p.same(&["ingest", "--org", "org-09"], Some(input.as_bytes()), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).starts_with("line 2: "),
        "{o:?}"
    );
    assert!(text(&o).starts_with("appended 2,"), "{}", text(&o));
    std::fs::write(p.cwd.join("rel.jsonl"), format!("{}\n", fresh(lines[2], 3))).unwrap();
    let o = p.same(&["--json", "ingest", "rel.jsonl", "--org", "org-07"], None, &[]);
    assert!(text(&o).contains("\"appended\":1"), "{}", text(&o));
    p.same(&["ingest", "missing.jsonl"], None, &[]);

    // Queries in every format, get, and refusals.
    for format in ["jsonl", "csv", "table"] {
        let args = [
            "--as-of",
            T,
            "query",
            "--org",
            "org-01",
            "--from",
            "2026-06-01",
            "--to",
            "2026-09-01",
            "--format",
            format,
        ];
        let o = p.same(&args, None, &[]);
        assert!(text(&o).lines().count() > 100, "{format}");
    }
    let id = serde_json::from_str::<serde_json::Value>(lines[5]).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let o = p.same(&["--as-of", T, "get", &id], None, &[]);
    assert!(text(&o).contains(&id));
    let o = p.same(
        &["--json", "get", "00000000-0000-0000-0000-000000000000"],
        None,
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).starts_with("{\"error\":{\"code\":\"not_found\""),
        "{}",
        text(&o)
    );
    p.same(
        &[
            "query",
            "--org",
            "org-01",
            "--from",
            "2026-07-01",
            "--to",
            "2026-06-01",
        ],
        None,
        &[],
    );
    let o = p.same(&["query", "--org"], None, &[]);
    assert_eq!(o.status.code(), Some(2));
    let o = p.same(&["--json", "frobnicate"], None, &[]);
    assert_eq!(o.status.code(), Some(2));

    // Organizations: the user defaults to the client's $USER.
    p.same(
        &[
            "--as-of",
            T,
            "org",
            "set",
            "org-01",
            "--plan",
            "scale",
            "--retention-days",
            "400",
        ],
        None,
        &[],
    );
    let o = p.same(&["--json", "org", "show", "org-01"], None, &[]);
    assert_eq!(
        text(&o),
        "{\"org\":\"org-01\",\"plan\":\"scale\",\"retention_days\":400}\n"
    );
    let o = p.same(
        &[
            "--as-of",
            T,
            "--json",
            "query",
            "--org",
            "org-01",
            "--from",
            "2026-08-01",
            "--to",
            "2026-08-02",
        ],
        None,
        &[],
    );
    assert!(
        text(&o).contains("org.settings.update") && text(&o).contains("carol"),
        "{}",
        text(&o)
    );

    // Exports: request, list, process, download to stdout and to a file
    // named relative to the client's working directory.
    let req = |dir: &Path| {
        let out = run_in(
            &p.cwd,
            dir,
            &[
                "--json",
                "--as-of",
                T,
                "export",
                "request",
                "--org",
                "org-01",
                "--user",
                "ann",
                "--from",
                "2026-07-20",
                "--to",
                "2026-07-25",
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        first_json(&out)["id"].as_str().unwrap().to_owned()
    };
    let (a, b) = (req(&p.served), req(&p.local));
    let ids = [(a.as_str(), b.as_str())];
    p.same(&["--as-of", T, "export", "list", "--org", "org-01"], None, &ids);
    p.same(
        &["--json", "--as-of", T, "export", "download", "IGNORED"],
        None,
        &ids,
    );
    let o = p.same(&["--json", "--as-of", T_RUN, "export", "process"], None, &ids);
    assert!(text(&o).contains("NAMED"), "{}", text(&o));
    p.same(
        &["--as-of", T_RUN, "--json", "export", "list", "--org", "org-01"],
        None,
        &ids,
    );
    let served_csv = run_in(
        &p.cwd,
        &p.served,
        &["--as-of", T_RUN, "export", "download", &a],
        None,
    );
    let local_csv = run_in(
        &p.cwd,
        &p.local,
        &["--as-of", T_RUN, "export", "download", &b],
        None,
    );
    assert_eq!(served_csv.status.code(), Some(0), "{served_csv:?}");
    assert_eq!(served_csv.stdout, local_csv.stdout);
    assert!(served_csv.stdout.iter().filter(|b| **b == b'\n').count() > 10);
    let to_file = |dir: &Path, id: &str, name: &str| {
        let o = run_in(
            &p.cwd,
            dir,
            &["--as-of", T_RUN, "export", "download", id, "--out", name],
            None,
        );
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        text(&o).replace(id, "ID").replace(name, "FILE")
    };
    let said = to_file(&p.served, &a, "served.csv");
    assert!(said.ends_with(" of export ID to FILE\n"), "{said}");
    assert_eq!(said, to_file(&p.local, &b, "local.csv"));
    assert_eq!(
        std::fs::read(p.cwd.join("served.csv")).unwrap(),
        served_csv.stdout
    );
    assert_eq!(std::fs::read(p.cwd.join("local.csv")).unwrap(), served_csv.stdout);

    // Tamper evidence through the socket: the server's key, checkpoint,
    // proofs and manifests (the server signs more checkpoints than separate
    // commands do: compared by shape, and checked with the key).
    let served_json = |args: &[&str]| {
        let o = run_in(&p.cwd, &p.served, args, None);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {o:?}");
        first_json(&o)
    };
    let key_text = served_json(&["--json", "key", "show"])["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = auditstore::integrity::VerifierKey::parse(&key_text).unwrap();
    let cp = served_json(&["--json", "checkpoint"]);
    let origin = key.name().to_owned();
    let opened =
        auditstore::integrity::Checkpoint::open(cp["note"].as_str().unwrap(), &key, &origin).unwrap();
    assert_eq!(cp["tree_size"].as_u64(), Some(opened.size));
    let proof = served_json(&["--json", "prove", &id]);
    assert_eq!(proof["event"]["id"].as_str(), Some(id.as_str()));
    assert!(proof["tree_size"].as_u64().unwrap() >= opened.size);
    let shape = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let local_proof = first_json(&run_in(&p.cwd, &p.local, &["--json", "prove", &id], None));
    assert_eq!(shape(&proof), shape(&local_proof));
    let o = run_in(
        &p.cwd,
        &p.served,
        &[
            "--as-of",
            T_RUN,
            "export",
            "manifest",
            &a,
            "--out",
            "served.manifest.json",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let checked = served_json(&["--json", "export", "verify", "served.csv", "served.manifest.json"]);
    assert_eq!(checked["export_id"].as_str(), Some(a.as_str()));
    // (The local store is a copy of the same store: the same key.)
    let o = run_in(
        &p.cwd,
        &p.local,
        &[
            "export",
            "verify",
            "served.csv",
            "served.manifest.json",
            "--key",
            &key_text,
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");

    // Stats, verify, backup (to a directory named relative to the client),
    // retention.
    p.same(&["stats"], None, &[]);
    p.same(&["--json", "stats"], None, &[]);
    let o = p.same(&["verify"], None, &[]);
    assert!(text(&o).ends_with("no problems\n"), "{}", text(&o));
    p.same(&["--json", "verify"], None, &[]);
    let backup = |dir: &Path, dest: &str| {
        let o = run_in(&p.cwd, dir, &["--json", "backup", dest], None);
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        let mut v = first_json(&o);
        v["millis"] = 0.into();
        v["dest"] = "DEST".into();
        // The `checkpoints` file differs: a server signs once a second and
        // at close, a run of separate commands at each close.
        v["bytes"] = 0.into();
        v
    };
    assert_eq!(backup(&p.served, "bk-served"), backup(&p.local, "bk-local"));
    let check = run_in(&p.cwd, &p.cwd.join("bk-served"), &["--json", "stats"], None);
    assert_eq!(
        first_json(&check)["events"],
        first_json(&p.same(&["--json", "stats"], None, &[]))["events"]
    );
    p.same(&["backup", "bk-served"], None, &[]);
    let o = p.same(&["--as-of", "2029-01-01", "retention", "apply"], None, &[]);
    assert!(text(&o).starts_with("deleted 1 segments"), "{}", text(&o));
    assert!(text(&o).contains("DIR/"), "{}", text(&o));
    p.same(
        &["--json", "--as-of", "2029-01-01", "retention", "apply"],
        None,
        &[],
    );

    // It was the server that did all this, holding the store throughout.
    assert!(p.served.join("admin.sock").exists());
    let o = run_in(&p.cwd, &p.served, &["--json", "repair"], None);
    assert_eq!(first_json(&o)["error"]["code"], "locked");
    let server = p.server.take().unwrap();
    assert!(server.url.starts_with("listening on http://"));
    assert_eq!(server.stop(), Some(0));
}

#[test]
fn socket_is_owner_only_and_outlives_no_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let server = Server::start(&dir);
    let sock = dir.join("admin.sock");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    // Served: a write succeeds although the server holds the lock.
    let set = |expect: i32| {
        let o = run_in(
            tmp.path(),
            &dir,
            &["org", "set", "org-01", "--plan", "scale"],
            None,
        );
        assert_eq!(o.status.code(), Some(expect), "{o:?}");
    };
    set(0);
    // A command that does not read stdin does not wait for it to end.
    let mut held = bin()
        .arg("--data-dir")
        .arg(&dir)
        .arg("stats")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while held.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "stats waited for its stdin"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(held.wait().unwrap().success());
    // repair is never forwarded: refused while the server holds the store.
    let o = run_in(tmp.path(), &dir, &["--json", "repair"], None);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(first_json(&o)["error"]["code"], "locked");

    // SIGTERM: exit 0, socket gone, and the store is free for a local writer.
    assert_eq!(server.stop(), Some(0));
    assert!(!sock.exists());
    assert_eq!(
        std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains("sock"))
            .count(),
        0
    );
    set(0);

    // kill -9: the stale socket is ignored by local commands and replaced
    // by the next server.
    let server = Server::start(&dir);
    server.kill9();
    assert!(sock.exists());
    set(0);
    let o = run_in(tmp.path(), &dir, &["--json", "org", "show", "org-01"], None);
    assert_eq!(first_json(&o)["plan"], "scale");
    let server = Server::start(&dir);
    set(0);
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(server.stop(), Some(0));
    assert!(!sock.exists());
}

#[test]
fn large_input_and_output_stream_through_the_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let n = env_u64("AUDITSTORE_REMOTE_ROWS", 200_000) as usize;
    let mut gen = auditstore::sample::SampleGenerator::new(auditstore::sample::SampleConfig {
        orgs: 1,
        duplicate_per_mille: 0,
        step_nanos: 1_000_000_000,
        ..Default::default()
    });
    let mut input = String::with_capacity(n * 600);
    for _ in 0..n {
        input.push_str(&gen.next_line().1);
        input.push('\n');
    }
    let server = Server::start(&dir);
    let o = run_in(tmp.path(), &dir, &["--json", "ingest"], Some(input.as_bytes()));
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(first_json(&o)["appended"], n as u64);
    let args = [
        "--as-of",
        T,
        "query",
        "--org",
        "org-00",
        "--from",
        "2026-01-01",
        "--to",
        "2027-01-01",
        "--format",
        "jsonl",
    ];
    let served = run_in(tmp.path(), &dir, &args, None);
    assert_eq!(served.status.code(), Some(0));
    assert_eq!(served.stdout.iter().filter(|b| **b == b'\n').count(), n);

    // A reader that stops early: the command ends (as locally, exit 0).
    let mut child = bin()
        .arg("--data-dir")
        .arg(&dir)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 4096];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(child.stdout.take());
    assert_eq!(child.wait().unwrap().code(), Some(0));

    assert_eq!(server.stop(), Some(0));
    let local = run_in(tmp.path(), &dir, &args, None);
    assert_eq!(local.status.code(), Some(0));
    assert!(
        served.stdout == local.stdout,
        "served and local query output differ"
    );
}

#[test]
fn long_and_relative_data_dir_paths() {
    let tmp = tempfile::tempdir().unwrap();
    // Longer than a socket address holds.
    let rel = format!("{}/{}/data", "x".repeat(60), "y".repeat(60));
    let dir = tmp.path().join(&rel);
    let server = Server::start(&dir);
    let sample = std::fs::read_to_string(shared_data("sample-events.jsonl")).unwrap();
    let three: String = sample.lines().take(3).map(|l| format!("{l}\n")).collect();
    let o = run_in(
        tmp.path(),
        Path::new(&rel),
        &["--json", "ingest"],
        Some(three.as_bytes()),
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(first_json(&o)["appended"], 3);
    // Served (a local writer would be locked out), and the store's files
    // named as this command line named the data directory.
    let o = run_in(
        tmp.path(),
        Path::new(&rel),
        &["--as-of", "2030-01-01", "retention", "apply"],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = text(&o);
    let files: Vec<&str> = out.lines().skip(1).collect();
    assert!(out.starts_with("deleted 1 segments (3 events"), "{out}");
    assert_eq!(files.len(), 2, "{out}");
    assert!(files.iter().all(|f| f.starts_with(&format!("  {rel}/"))), "{out}");
    assert_eq!(server.stop(), Some(0));
    assert!(!dir.join("admin.sock").exists());
}

#[test]
fn a_stop_breaks_off_a_command_waiting_for_its_input() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let server = Server::start(&dir);
    let sample = std::fs::read_to_string(shared_data("sample-events.jsonl")).unwrap();
    let mut ingest = bin()
        .arg("--data-dir")
        .arg(&dir)
        .args(["--json", "ingest"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = ingest.stdin.take().unwrap();
    std::io::Write::write_all(
        &mut stdin,
        format!("{}\n", sample.lines().next().unwrap()).as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(server.stop(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(20));
    let out = ingest.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(first_json(&out)["error"]["code"], "io");
    // The store was released: a local command writes.
    let o = run_in(
        tmp.path(),
        &dir,
        &["org", "set", "org-01", "--plan", "scale"],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
}
