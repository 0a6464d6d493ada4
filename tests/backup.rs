//! Backups (`Store::backup`, `auditstore backup DEST`): taken while appends
//! go on, from a read-only open of a store another process holds, and
//! never over an existing directory.

mod export_common;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditstore::export::{Exports, Role, Status};
use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::{Durability, Error, Event, FixedClock, Options, Plan, Query, Store, Timestamp};
use export_common::{append_at, d, json, ok, t, tool, AS_OF, BIN};
use uuid::Uuid;

const ORGS: [&str; 3] = ["org-00", "org-01", "org-02"];

fn options(clock: &Arc<FixedClock>) -> Options {
    Options {
        clock: clock.clone(),
        ..Options::default()
    }
}

/// A store in `dir` with `segment_size` and `durability`.
fn open(dir: &Path, clock: &Arc<FixedClock>, segment_size: u64, durability: Durability) -> Store {
    let o = Options {
        segment_size,
        durability,
        ..options(clock)
    };
    Store::open_with(dir, o).unwrap()
}

/// Every event id of `store` over all time, in scan order, per organization.
fn all_ids(store: &Store, orgs: &[&str]) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for org in orgs {
        for e in store
            .scan(&Query::new(*org, Timestamp::MIN, Timestamp::MAX))
            .unwrap()
        {
            ids.push(e.unwrap().id());
        }
    }
    ids
}

/// Ids of the store's own audit events (events.md, "The store's own
/// actions"): settings changes and export requests recorded by the store.
fn own_event_ids(store: &Store, orgs: &[&str]) -> HashSet<Uuid> {
    let mut ids = HashSet::new();
    for org in orgs {
        for e in store
            .scan(&Query::new(*org, Timestamp::MIN, Timestamp::MAX))
            .unwrap()
        {
            let e = e.unwrap();
            if e.action() == "org.settings.update" || e.action().starts_with("audit_log.") {
                ids.insert(e.id());
            }
        }
    }
    ids
}

fn assert_verifies(dir: &Path, clock: &Arc<FixedClock>) {
    let report = Store::verify_dir(dir, options(clock)).unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
}

/// An event of this thread's `n`th batch, somewhere in the first days of June.
fn thread_event(thread: u64, n: u64, i: u64) -> Event {
    let at =
        t("2026-06-01").as_nanos() + ((thread * 1_000_003 + n * 101 + i) % 700_000) as i64 * 1_000_000_000;
    Event::builder(
        Uuid::new_v4(),
        "workflow.job.finished",
        Timestamp::from_nanos(at),
        !i.is_multiple_of(7),
    )
    .actor(&format!("user-{thread}"), "user", Some("ann"))
    .target(
        &format!("job-{n}-{i}"),
        "job",
        Some("nightly build of the main branch"),
    )
    .build()
    .unwrap()
}

/// A backup while 4 threads append batches (sync durability, 64 KiB
/// segments, so that segments roll and are sealed while it runs) holds
/// every event acknowledged before it began, exactly once, and no event
/// that was never appended; it verifies, and it has the source's
/// organization settings and export requests (and files).
#[test]
fn a_backup_during_a_concurrent_ingest_holds_every_acknowledged_event_once() {
    let src = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let dest = backups.path().join("nightly");
    let clock = Arc::new(FixedClock::new(t("2026-06-10T09:31:00Z")));
    let store = Arc::new(open(src.path(), &clock, 64 << 10, Durability::Sync));
    store.set_org("org-00", Some(Plan::Server), Some(400)).unwrap();
    store.set_org("org-01", Some(Plan::Scale), None).unwrap();
    store.set_org("org-02", Some(Plan::Free), Some(30)).unwrap();
    // One finished export (with its file) and one still requested.
    let setup: Vec<Uuid> = append_at(
        &store,
        "org-00",
        &["2026-06-03T10:00:00Z", "2026-06-03T11:00:00Z"],
    )
    .iter()
    .map(Event::id)
    .collect();
    let exports = Exports::new(&store).unwrap();
    let done = exports
        .request("org-00", "ann", Role::Admin, d("2026-06-02"), d("2026-06-04"))
        .unwrap();
    clock.set(t("2026-06-10T10:30:00Z"));
    exports.process().unwrap();
    assert_eq!(exports.get(done.id).unwrap().status, Status::Success);
    let pending = exports
        .request("org-01", "bob", Role::Admin, d("2026-06-05"), d("2026-06-06"))
        .unwrap();

    let attempted = Arc::new(Mutex::new(HashSet::<Uuid>::new()));
    let acked = Arc::new(Mutex::new(Vec::<Uuid>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4u64)
        .map(|thread| {
            let (store, attempted, acked, stop) =
                (store.clone(), attempted.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let batch: Vec<(&str, Event)> = (0..16)
                        .map(|i| (ORGS[((n + i) % 3) as usize], thread_event(thread, n, i)))
                        .collect();
                    attempted
                        .lock()
                        .unwrap()
                        .extend(batch.iter().map(|(_, e)| e.id()));
                    let report = store.append_batch(batch.iter().map(|(o, e)| (*o, e))).unwrap();
                    assert_eq!(report.appended, batch.len() as u64);
                    acked.lock().unwrap().extend(batch.iter().map(|(_, e)| e.id()));
                    n += 1;
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.lock().unwrap().len() < 6_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let before: Vec<Uuid> = acked.lock().unwrap().clone();
    let started = Instant::now();
    let report = store.backup(&dest).unwrap();
    let took = started.elapsed();
    let acked_after_backup = acked.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    for th in threads {
        th.join().unwrap();
    }
    let attempted = attempted.lock().unwrap().clone();
    eprintln!(
        "acknowledged before the backup: {}; in the backup: {}; acknowledged when it returned: {}; took {:?}; \
         {} segments, {} files linked, {} copied, {} bytes",
        before.len(),
        report.events,
        acked_after_backup,
        took,
        report.segments,
        report.linked_files,
        report.copied_files,
        report.bytes
    );
    assert_eq!(report.dest, dest);
    assert!(report.segments > 10, "segments rolled: {}", report.segments);
    assert!(report.linked_files > 0, "sealed segments are hard-linked");
    let leftovers: Vec<_> = std::fs::read_dir(backups.path()).unwrap().collect();
    assert_eq!(
        leftovers.len(),
        1,
        "only the backup itself, no temporary directory"
    );

    assert_verifies(&dest, &clock);
    let copy = Store::open_with(&dest, options(&clock)).unwrap();
    assert!(
        copy.recovery_report().truncation.is_none(),
        "the copy ends at a frame boundary"
    );
    assert!(copy.recovery_report().problems.is_empty());
    assert_eq!(copy.stats().unwrap().events, report.events);
    let ids = all_ids(&copy, &ORGS);
    let unique: HashSet<Uuid> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no event twice");
    assert_eq!(ids.len() as u64, report.events);
    let missing: Vec<_> = before.iter().filter(|id| !unique.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events missing",
        missing.len()
    );
    for id in before.iter().step_by(97) {
        assert!(copy.get(*id).unwrap().is_some(), "get {id}");
    }
    // Besides the appended events, only the store's own (its settings
    // changes and export requests, recorded in the source too).
    let own = own_event_ids(&copy, &ORGS);
    assert_eq!(own, own_event_ids(&store, &ORGS));
    let strangers = unique
        .iter()
        .filter(|id| !attempted.contains(id) && !setup.contains(id) && !own.contains(id))
        .count();
    assert_eq!(strangers, 0, "events in the backup that were never appended");

    // The metadata: organization settings and export requests, with files.
    assert_eq!(copy.orgs().unwrap(), store.orgs().unwrap());
    let copied = Exports::new(&copy).unwrap();
    for org in ORGS {
        assert_eq!(copied.list(org).unwrap(), exports.list(org).unwrap(), "{org}");
    }
    assert_eq!(copied.get(pending.id).unwrap().status, Status::Requested);
    let original = std::fs::read(exports.download(done.id).unwrap().path()).unwrap();
    let backed_up = std::fs::read(copied.download(done.id).unwrap().path()).unwrap();
    assert_eq!(backed_up, original);
    assert!(copied.check_files().unwrap().is_empty());
    // The copy is a store of its own: it takes appends.
    append_at(&copy, "org-01", &["2026-06-09T12:00:00Z"]);
}

/// A read-only open (how a second process sees a store another holds)
/// backs up the snapshot it took: sealed segments, segments whose index
/// the writer had not written yet, and the active segment as read.
#[test]
fn a_read_only_store_backs_up_what_its_open_saw() {
    let src = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(t("2026-06-10T00:00:00Z")));
    let writer = open(src.path(), &clock, 64 << 10, Durability::Buffered);
    writer.set_org("org-01", Some(Plan::Scale), Some(90)).unwrap();
    let mut gen = SampleGenerator::new(SampleConfig {
        duplicate_per_mille: 0,
        ..SampleConfig::default()
    });
    gen.append_to(&writer, 3_000, 100).unwrap();
    let reader = Store::open_read_only(src.path(), options(&clock)).unwrap();
    gen.append_to(&writer, 500, 100).unwrap();
    // The 3,000 appended and the store's own `org.settings.update`.
    let seen = reader.stats().unwrap().events;
    assert_eq!(seen, 3_001);
    let report = reader.backup(backups.path().join("b")).unwrap();
    assert_eq!(report.events, 3_001);
    assert_verifies(&report.dest, &clock);
    let copy = Store::open_with(&report.dest, options(&clock)).unwrap();
    assert_eq!(copy.stats().unwrap().events, 3_001);
    assert_eq!(
        copy.org_settings("org-01").unwrap(),
        writer.org_settings("org-01").unwrap()
    );
    let orgs = ["org-00", "org-01", "org-02", "org-03"];
    assert_eq!(all_ids(&copy, &orgs), all_ids(&reader, &orgs));
}

/// Rolled segments whose index is not written yet (here never: every
/// rename fails) are copied, not linked, and get their index in the copy
/// from the store's in-memory one: the copy opens without rebuilding.
#[test]
fn segments_still_being_sealed_are_copied_with_their_index() {
    use auditstore::io::{Fault, FaultKind, FaultOp, FaultyIo};
    let src = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(t("2026-06-10T00:00:00Z")));
    let io = Arc::new(FaultyIo::new(vec![Fault {
        op: FaultOp::Rename,
        nth: 0,
        kind: FaultKind::Error,
        sticky: true,
    }]));
    let store = Store::open_with(
        src.path(),
        Options {
            segment_size: 4096,
            io: io.clone(),
            ..options(&clock)
        },
    )
    .unwrap();
    let events: Vec<Event> = (0..300).map(|i| thread_event(1, i, 0)).collect();
    for batch in events.chunks(10) {
        store.append_batch(batch.iter().map(|e| ("org-00", e))).unwrap();
    }
    assert!(io.injected() > 0);
    let indexes = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "idx"))
            .count()
    };
    assert_eq!(indexes(src.path()), 0, "no index was published");
    let report = store.backup(backups.path().join("b")).unwrap();
    assert_eq!(report.events, 300);
    assert_eq!(report.linked_files, 0);
    assert!(report.segments > 5, "{report:?}");
    assert_eq!(
        indexes(&report.dest) as u64,
        report.segments - 1,
        "an index for every rolled segment"
    );
    assert_verifies(&report.dest, &clock);
    let copy = Store::open_with(&report.dest, options(&clock)).unwrap();
    assert!(copy.recovery_report().rebuilt_indexes.is_empty());
    let ids: Vec<Uuid> = all_ids(&copy, &["org-00"]);
    let expected: HashSet<Uuid> = events.iter().map(Event::id).collect();
    assert_eq!(ids.len(), 300);
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), expected);
}

/// Under buffered durability what was acknowledged may not be synced yet:
/// the backup flushes first, so it still holds all of it.
#[test]
fn a_buffered_store_is_flushed_before_its_backup() {
    let src = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(t("2026-06-10T00:00:00Z")));
    let store = open(src.path(), &clock, 64 << 20, Durability::Buffered);
    let events: Vec<Event> = (0..200).map(|i| thread_event(0, i, 0)).collect();
    store.append_batch(events.iter().map(|e| ("org-00", e))).unwrap();
    let report = store.backup(backups.path().join("b")).unwrap();
    assert_eq!(report.events, 200);
    let copy = Store::open_with(&report.dest, options(&clock)).unwrap();
    assert_eq!(all_ids(&copy, &["org-00"]).len(), 200);
}

/// A destination that exists and is not an empty directory (or lies in
/// the store) is refused and left as it was; an empty directory is used.
#[test]
fn a_backup_never_overwrites() {
    let src = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(t("2026-06-10T00:00:00Z")));
    let store = Store::open_with(src.path(), options(&clock)).unwrap();
    append_at(&store, "org-00", &["2026-06-03T10:00:00Z"]);
    let full = backups.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), "mine").unwrap();
    let file = backups.path().join("file");
    std::fs::write(&file, "mine too").unwrap();
    for dest in [
        &full,
        &file,
        &src.path().join("inside"),
        &src.path().to_path_buf(),
    ] {
        match store.backup(dest) {
            Err(Error::InvalidArgument { .. }) => {}
            other => panic!("{}: {other:?}", dest.display()),
        }
    }
    assert_eq!(std::fs::read_to_string(full.join("keep.txt")).unwrap(), "mine");
    assert_eq!(std::fs::read_dir(&full).unwrap().count(), 1);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine too");
    assert!(!src.path().join("inside").exists());
    let empty = backups.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(store.backup(&empty).unwrap().events, 1);
    let deeper = backups.path().join("a/b/c");
    assert_eq!(store.backup(&deeper).unwrap().events, 1);
    let mut names: Vec<String> = std::fs::read_dir(backups.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["a", "empty", "file", "full"],
        "no temporary directory left"
    );
    assert_verifies(&empty, &clock);
}

// ---- the admin tool ----

/// `n` generated JSON lines (no re-sends), from the generator's state on.
fn lines(gen: &mut SampleGenerator, n: usize) -> String {
    (0..n).map(|_| gen.next_line().1 + "\n").collect()
}

fn no_resends() -> SampleGenerator {
    SampleGenerator::new(SampleConfig {
        duplicate_per_mille: 0,
        ..SampleConfig::default()
    })
}

fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap_or_default();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

/// `auditstore --json backup DEST` of a store made with the tool: DEST
/// answers `stats`, `query`, `org show`, `export list` and `export
/// download` exactly as the source, and verifies; an existing, non-empty
/// DEST is refused and left alone; a missing store is `not_found`.
#[test]
fn the_admin_tool_backs_up_a_store_that_answers_like_its_source() {
    let src = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let dest = backups.path().join("copy");
    let s = src.path();
    let input = s.join("events.jsonl");
    std::fs::write(&input, lines(&mut no_resends(), 5_000)).unwrap();
    ok(s, &["ingest", input.to_str().unwrap()]);
    std::fs::remove_file(&input).unwrap();
    ok(
        s,
        &[
            "org",
            "set",
            "org-00",
            "--plan",
            "server",
            "--retention-days",
            "400",
        ],
    );
    ok(s, &["org", "set", "org-01", "--plan", "scale"]);
    let policy = r#"{"format_version": 1, "plans": {"free": {"eligible": true, "limit": 1}}}"#;
    std::fs::write(s.join("export-policy.json"), policy).unwrap();
    let request = |org: &str, as_of: &str| -> String {
        let out = Command::new(BIN)
            .arg("--data-dir")
            .arg(s)
            .args(["--json", "--as-of", as_of, "export", "request", "--org", org])
            .args(["--user", "ann", "--from", "2026-06-01", "--to", "2026-06-01"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        json(&out)["id"].as_str().unwrap().to_owned()
    };
    let built = request("org-00", "2026-06-10T09:31:00Z");
    ok(s, &["export", "process"]);
    let _pending = request("org-02", AS_OF);

    let out = ok(s, &["--json", "backup", dest.to_str().unwrap()]);
    let report = json(&out);
    // 5,000 ingested, and the store's own events: two `org.settings.update`,
    // two `audit_log.requested` and one `audit_log.processed`.
    assert_eq!(report["events"], 5_005, "{report}");
    assert_eq!(report["dest"], dest.to_str().unwrap());
    assert_eq!(report["read_only"], false);
    assert!(report["bytes"].as_u64().unwrap() > 0);

    let same = |args: &[&str]| {
        let a = ok(s, args);
        let b = ok(&dest, args);
        assert_eq!(
            String::from_utf8_lossy(&a.stdout),
            String::from_utf8_lossy(&b.stdout),
            "{args:?}"
        );
        assert!(!a.stdout.is_empty(), "{args:?}");
    };
    // `stats` alike but for `bytes`, which counts meta.redb: every open for
    // writing runs redb's integrity check, a commit that may grow the file.
    let without_bytes = |dir: &Path| {
        let mut v = json(&ok(dir, &["--json", "stats"]));
        v.as_object_mut().unwrap().remove("bytes");
        v
    };
    assert_eq!(without_bytes(s), without_bytes(&dest));
    for org in ["org-00", "org-01", "org-02", "org-03"] {
        same(&[
            "query",
            "--org",
            org,
            "--from",
            "2026-05-01",
            "--to",
            "2026-07-01",
        ]);
        same(&["--json", "org", "show", org]);
        same(&["--json", "export", "list", "--org", org]);
    }
    same(&["export", "download", &built]);
    assert_eq!(
        std::fs::read(dest.join("export-policy.json")).unwrap(),
        policy.as_bytes()
    );
    ok(&dest, &["verify"]);

    // An existing, non-empty destination: refused, untouched.
    let taken = backups.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("notes.txt"), "keep me").unwrap();
    let before = tree(&taken);
    let out = tool(s, &["--json", "backup", taken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["error"]["code"], "io");
    assert_eq!(tree(&taken), before);
    // The backup too is never overwritten.
    let copy_before = tree(&dest);
    assert_eq!(
        tool(s, &["backup", dest.to_str().unwrap()]).status.code(),
        Some(1)
    );
    assert_eq!(tree(&dest), copy_before);
    // No store, nothing to back up (and nothing created).
    let nowhere = backups.path().join("no-store");
    let elsewhere = backups.path().join("never");
    let out = tool(&nowhere, &["--json", "backup", elsewhere.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["error"]["code"], "not_found");
    assert!(!nowhere.exists() && !elsewhere.exists());
}

/// Kills the child on drop (a failed assertion must not leave it running).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// While one `auditstore ingest` holds the store (paused: its stdin stays
/// open), `auditstore backup` from a second process takes the read-only
/// path and writes a backup that verifies and holds what the ingest had
/// appended by then.
#[test]
fn a_second_process_backs_up_a_store_another_process_holds() {
    let src = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let dest = backups.path().join("while-ingesting");
    let s = src.path();
    let mut gen = no_resends();
    // Sealed segments first (small segments, through the library).
    {
        let clock = Arc::new(FixedClock::new(t(AS_OF)));
        let store = open(s, &clock, 64 << 10, Durability::Sync);
        gen.append_to(&store, 3_000, 250).unwrap();
    }
    let mut child = Reaped(
        Command::new(BIN)
            .arg("--data-dir")
            .arg(s)
            .args(["--json", "ingest", "-", "--org", "org-01"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    // Two whole chunks of the ingest (8,192 lines each, short ones: a chunk
    // also ends at 4 MiB) are appended; the child then waits for more input.
    let short_lines = |from: u64, n: u64| -> String {
        (from..from + n)
            .map(|i| thread_event(9, i, 0).to_json() + "\n")
            .collect()
    };
    stdin.write_all(short_lines(0, 2 * 8_192).as_bytes()).unwrap();
    stdin.flush().unwrap();
    let expected = 3_000 + 2 * 8_192;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = tool(s, &["--json", "stats"]);
        if out.status.success() && json(&out)["events"] == expected {
            break;
        }
        assert!(Instant::now() < deadline, "the ingest did not get there: {out:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let locked = tool(s, &["org", "set", "org-00", "--plan", "server"]);
    assert_eq!(locked.status.code(), Some(1), "the ingest still holds the store");

    let started = Instant::now();
    let out = ok(s, &["--json", "backup", dest.to_str().unwrap()]);
    let took = started.elapsed();
    let report = json(&out);
    eprintln!("backup of a store held by another process: {report} in {took:?}");
    assert_eq!(report["read_only"], true, "{report}");
    assert_eq!(report["events"], expected, "{report}");

    // Let the ingest finish: more lines, then end of input.
    stdin.write_all(short_lines(2 * 8_192, 1_000).as_bytes()).unwrap();
    drop(stdin);
    let mut reaped = child;
    let status = reaped.0.wait().unwrap();
    assert!(status.success(), "ingest failed");

    ok(&dest, &["verify"]);
    let copy = json(&ok(&dest, &["--json", "stats"]));
    assert_eq!(copy["events"], expected);
    let source = json(&ok(s, &["--json", "stats"]));
    assert_eq!(source["events"], expected + 1_000);
    ok(s, &["verify"]);
}
