//! Crash safety, proven by killing real writer processes: a child appends
//! batches and prints the ids of every acknowledged batch; the parent
//! SIGKILLs it at a random moment, reopens the store, and checks that every
//! acknowledged event is present exactly once and `verify` is clean, the
//! tamper-evidence tree agrees with the last signed checkpoint (the open
//! checks it) and every acknowledged event proves into a new one.
//!
//! The child is this same test binary re-run with `CRASH_CHILD_DIR` set.
//! `CRASH_LOOPS` sets the number of kill/reopen rounds (default 12).

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditstore::org::settings_update_event;
use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::store::own_events::Actor;
use auditstore::{Event, FixedClock, Options, Plan, Query, Store};
use common::{copy_store_files, env_u64, ts};

const SEGMENT: u64 = 256 * 1024;

fn options() -> Options {
    Options {
        segment_size: SEGMENT,
        clock: Arc::new(FixedClock::new(ts("2027-01-01"))),
        ..Options::default()
    }
}

/// For the retention crash test: with the tamper-evidence tree, retention
/// deletes only the oldest segments (a prefix of the log), and this test
/// needs a gap (a kept segment before deleted ones) to see deletions.
fn options_without_tree() -> Options {
    Options {
        integrity: false,
        ..options()
    }
}

/// The child: append forever, printing `ACK id id ...` after each batch.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var("CRASH_CHILD_DIR") else {
        return; // Not a child run.
    };
    let seed: u64 = env_u64("CRASH_CHILD_SEED", 1);
    let store = Store::open_with(&dir, options()).expect("child opens the store");
    let mut gen = SampleGenerator::new(SampleConfig {
        seed,
        duplicate_per_mille: 50,
        ..SampleConfig::default()
    });
    let mut size = 1usize;
    loop {
        let batch: Vec<(String, Event)> = (&mut gen).take(size).collect();
        size = size % 300 + 7;
        let r = store
            .append_batch(batch.iter().map(|(o, e)| (o.as_str(), e)))
            .expect("append");
        print_acks(batch.iter().map(|(_, e)| e), &r);
    }
}

/// Child side: print `ACK id id ...` for the appended events of a batch
/// and flush, so the parent learns exactly what was acknowledged.
fn print_acks<'a>(batch: impl Iterator<Item = &'a Event>, report: &auditstore::BatchReport) {
    let mut line = String::from("ACK");
    for (e, outcome) in batch.zip(&report.outcomes) {
        if *outcome == auditstore::AppendOutcome::Appended {
            line.push(' ');
            line.push_str(&e.id().to_string());
        }
    }
    line.push('\n');
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes()).expect("stdout");
    out.flush().expect("flush");
}

/// Run the child test `name` with `env`, wait until it has acknowledged
/// `min_acks` batches, let it run a random 0..`max_delay_ms` more, SIGKILL
/// it, and return the ids it acknowledged (complete `ACK` lines only).
fn run_and_kill(
    exe: &std::path::Path,
    name: &str,
    env: &[(&str, &str)],
    min_acks: u64,
    max_delay_ms: u64,
    rng: &mut u64,
) -> Vec<uuid::Uuid> {
    let mut child = Command::new(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let seen: Arc<Mutex<Vec<uuid::Uuid>>> = Arc::default();
    let lines = Arc::new(Mutex::new(0u64));
    let reader = {
        let (seen, lines) = (seen.clone(), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // A line cut by the kill fails to parse and is not counted.
                let Some(rest) = line.strip_prefix("ACK") else {
                    continue;
                };
                let parsed: Result<Vec<uuid::Uuid>, _> =
                    rest.split_whitespace().map(uuid::Uuid::parse_str).collect();
                if let Ok(ids) = parsed {
                    seen.lock().unwrap().extend(ids);
                    *lines.lock().unwrap() += 1;
                }
            }
        })
    };
    let start = Instant::now();
    while *lines.lock().unwrap() < min_acks && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(2));
    }
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    std::thread::sleep(Duration::from_millis(*rng % max_delay_ms));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    let ids = seen.lock().unwrap().clone();
    ids
}

fn all_ids(store: &Store) -> Vec<uuid::Uuid> {
    let mut ids = Vec::new();
    for org in ["org-00", "org-01", "org-02", "org-03"] {
        for e in store
            .scan(&Query::new(org, ts("2000-01-01"), ts("2100-01-01")))
            .unwrap()
        {
            ids.push(e.expect("readable event").id());
        }
    }
    ids
}

#[test]
fn kill_dash_nine_loses_no_acknowledged_event() {
    if std::env::var("CRASH_CHILD_DIR").is_ok() {
        return;
    }
    let loops: u64 = env_u64("CRASH_LOOPS", 12);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: HashSet<uuid::Uuid> = HashSet::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut truncations = 0;
    for round in 0..loops {
        let seed = (round % 3 + 1).to_string();
        let env = [
            ("CRASH_CHILD_DIR", dir.path().to_str().unwrap()),
            ("CRASH_CHILD_SEED", seed.as_str()),
        ];
        acked.extend(run_and_kill(&exe, "crash_child_writer", &env, 2, 300, &mut rng));

        let store = Store::open_with(dir.path(), options()).unwrap();
        if store.recovery_report().truncated_bytes > 0 {
            truncations += 1;
        }
        let ids = all_ids(&store);
        let mut counts: HashMap<uuid::Uuid, u32> = HashMap::new();
        for id in &ids {
            *counts.entry(*id).or_default() += 1;
        }
        assert!(
            counts.values().all(|c| *c == 1),
            "round {round}: an event is stored twice"
        );
        for id in &acked {
            assert!(
                counts.contains_key(id),
                "round {round}: acknowledged event {id} lost"
            );
        }
        let v = store.verify().unwrap();
        assert!(
            v.problems.is_empty(),
            "round {round}: verify found {:?}",
            v.problems
        );
        // The open checked the log against the last signed checkpoint (it
        // refuses a store that disagrees); every acknowledged event is in
        // the tree and proves into a checkpoint with the core's verifier.
        let cp = store.checkpoint().unwrap();
        assert_eq!(cp.tree_size, ids.len() as u64, "round {round}");
        assert_eq!(v.leaves, ids.len() as u64, "round {round}");
        for id in acked.iter().step_by(97) {
            let p = store.prove(*id).unwrap().expect("acknowledged");
            auditstore::integrity::verify_inclusion(
                &p.leaf_hash,
                p.leaf_index,
                p.tree_size,
                &p.inclusion,
                &cp.root_hash,
            )
            .unwrap_or_else(|e| panic!("round {round}: {id}: {e}"));
        }
    }
    assert!(
        acked.len() > 100,
        "the children acknowledged events ({})",
        acked.len()
    );
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert!(
        store.stats().unwrap().segments > 2,
        "rounds crossed segment rolls"
    );
    eprintln!(
        "crash loops: {loops}, acknowledged: {}, torn tails cut: {truncations}",
        acked.len()
    );
}

/// Child for the retention crash test: alternates runs of batches that are
/// all past retention (org-old) with retained ones (org-new), applying
/// retention after every batch, and prints the retained acknowledged ids.
#[test]
fn crash_child_retention_writer() {
    let Ok(dir) = std::env::var("CRASH_RETENTION_DIR") else {
        return;
    };
    let store = Store::open_with(&dir, options_without_tree()).expect("child opens the store");
    store.set_org("org-old", None, Some(1)).expect("set retention");
    let seed: u64 = env_u64("CRASH_CHILD_SEED", 1);
    let mut old = SampleGenerator::new(SampleConfig {
        seed: seed * 1000 + 1,
        duplicate_per_mille: 0,
        start: ts("2020-01-01"),
        ..SampleConfig::default()
    });
    let mut new = SampleGenerator::new(SampleConfig {
        seed: seed * 1000 + 2,
        duplicate_per_mille: 0,
        start: ts("2026-12-01"),
        step_nanos: 1_000_000_000,
        ..SampleConfig::default()
    });
    for i in 0u64.. {
        let retained = i % 12 >= 8;
        let org = if retained { "org-new" } else { "org-old" };
        let gen = if retained { &mut new } else { &mut old };
        let batch: Vec<Event> = gen.take(120).map(|(_, e)| e).collect();
        let r = store
            .append_batch(batch.iter().map(|e| (org, e)))
            .expect("append");
        if retained {
            print_acks(batch.iter(), &r);
        }
        store.apply_retention().expect("retention");
    }
}

#[test]
fn kill_dash_nine_during_retention_deletion_keeps_the_store_consistent() {
    if std::env::var("CRASH_RETENTION_DIR").is_ok() || std::env::var("CRASH_CHILD_DIR").is_ok() {
        return;
    }
    let loops: u64 = env_u64("CRASH_LOOPS", 8);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: HashSet<uuid::Uuid> = HashSet::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut deleted_any = false;
    let settings_update = settings_update_event(
        "org-old",
        (Plan::Free, 365),
        (Plan::Free, 1),
        Actor::SYSTEM,
        ts("2027-01-01"),
    )
    .unwrap();
    let mut settings_seen = false;
    for round in 0..loops {
        let seed = (round + 1).to_string();
        let env = [
            ("CRASH_RETENTION_DIR", dir.path().to_str().unwrap()),
            ("CRASH_CHILD_SEED", seed.as_str()),
        ];
        acked.extend(run_and_kill(
            &exe,
            "crash_child_retention_writer",
            &env,
            5,
            400,
            &mut rng,
        ));

        let store = Store::open_with(dir.path(), options_without_tree()).unwrap();
        let leftovers = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".deleted")
            })
            .count();
        assert_eq!(leftovers, 0, "round {round}: open removes half-deleted files");
        let v = store.verify().unwrap();
        assert!(
            v.problems.is_empty(),
            "round {round}: verify found {:?}",
            v.problems
        );
        let mut counts: HashMap<uuid::Uuid, u32> = HashMap::new();
        for e in store
            .scan(&Query::new("org-new", ts("2000-01-01"), ts("2100-01-01")))
            .unwrap()
        {
            *counts.entry(e.unwrap().id()).or_default() += 1;
        }
        assert!(counts.values().all(|c| *c == 1), "round {round}: stored twice");
        for id in &acked {
            assert!(
                counts.contains_key(id),
                "round {round}: retained acknowledged {id} lost"
            );
        }
        // Of org-old, only the store's own record of its retention change
        // (org.settings.update at the clock's now, 2027-01-01, so within its
        // 1 day) is retained; once recorded it stays, exactly once.
        let old_visible: Vec<uuid::Uuid> = store
            .scan(&Query::new("org-old", ts("2000-01-01"), ts("2100-01-01")))
            .unwrap()
            .map(|e| e.unwrap().id())
            .collect();
        let want: Vec<uuid::Uuid> = if settings_seen || !old_visible.is_empty() {
            vec![settings_update.id()]
        } else {
            Vec::new()
        };
        assert_eq!(
            old_visible, want,
            "round {round}: expired events are never returned"
        );
        settings_seen = !old_visible.is_empty();
        let stats = store.stats().unwrap();
        // Segment ids are 1, 2, ...: a missing one was deleted. (The segment
        // holding org-old's retained org.settings.update is never deleted,
        // so a deletion may leave a gap rather than move the first id.)
        let mut logs: Vec<u64> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".log").and_then(|n| n.parse().ok()))
            })
            .collect();
        logs.sort_unstable();
        if let Some(&last) = logs.last() {
            if (logs.len() as u64) < last {
                deleted_any = true;
            }
        }
        assert!(stats.events >= counts.len() as u64);
    }
    assert!(acked.len() > 100);
    assert!(settings_seen, "a child that appended had set org-old's retention");
    assert!(deleted_any, "retention deleted segments during the rounds");
}

/// An open that finds damage inside the active segment cuts it, keeps the
/// cut bytes and appends the intact records after it again. Killed at any
/// moment of that (a real process: the admin tool's `stats`, killed after a
/// random delay), the next open finishes the job: only the damaged record is
/// lost, none is stored twice, and `verify` names the one damaged place.
#[test]
fn kill_dash_nine_while_an_open_salvages_damage_loses_and_doubles_nothing() {
    let work = tempfile::tempdir().unwrap();
    let damaged = work.path().join("damaged");
    let mut gen = SampleGenerator::new(SampleConfig::default());
    let events: Vec<(String, Event)> = (&mut gen).take(6_000).collect();
    let unique = {
        // Without the tree: a checkpoint would cover the record damaged
        // below, and an open would refuse it instead of salvaging.
        let options = Options {
            integrity: false,
            ..Options::default()
        };
        let store = Store::open_with(&damaged, options).unwrap();
        let mut n = 0;
        for batch in events.chunks(500) {
            n += store
                .append_batch(batch.iter().map(|(o, e)| (o.as_str(), e)))
                .unwrap()
                .appended;
        }
        n as usize
    };
    let log = damaged.join("0000000000000001.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let flip = bytes.len() / 3;
    bytes[flip] ^= 0x5a;
    std::fs::write(&log, &bytes).unwrap();

    let exe = env!("CARGO_BIN_EXE_auditstore");
    let stats = |dir: &std::path::Path| {
        Command::new(exe)
            .arg("--data-dir")
            .arg(dir)
            .args(["--json", "stats"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // How long an uninterrupted open takes, to spread the kills over it.
    let full = work.path().join("full");
    copy_store_files(&damaged, &full);
    let t = Instant::now();
    assert!(stats(&full).wait().unwrap().success());
    let span_us = (t.elapsed().as_micros() as u64).max(1_000);

    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ span_us;
    let rounds = env_u64("SALVAGE_KILL_ROUNDS", 12);
    let mut place = None;
    for round in 0..rounds {
        let dir = work.path().join(format!("round-{round}"));
        copy_store_files(&damaged, &dir);
        let mut child = stats(&dir);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_micros(rng % span_us));
        let _ = child.kill();
        child.wait().unwrap();

        let store = Store::open_with(&dir, Options::default()).unwrap();
        let mut ids = Vec::new();
        for org in ["org-00", "org-01", "org-02", "org-03"] {
            let q = Query::new(org, ts("2000-01-01"), ts("2100-01-01")).as_of(ts("2026-08-01"));
            for e in store.scan(&q).unwrap() {
                ids.push(e.unwrap().id());
            }
        }
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "round {round}: an event stored twice");
        assert_eq!(
            ids.len(),
            unique - 1,
            "round {round}: only the damaged record is lost"
        );
        let problems = store.verify().unwrap().problems;
        assert!(!problems.is_empty(), "round {round}: the damage is reported");
        for p in &problems {
            assert_eq!(p.file, dir.join("0000000000000001.log"), "round {round}: {p:?}");
            let at = *place.get_or_insert(p.offset);
            assert_eq!(p.offset, at, "round {round}: one damaged place");
        }
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The instant the thinning test's template starts at, and its length: 200
/// checkpoints 20 minutes apart.
const THIN_FROM: &str = "2026-06-01";
const THIN_STEPS: i64 = 200;
const THIN_STEP_SECS: i64 = 20 * 60;

fn thin_options(at: auditstore::Timestamp) -> Options {
    Options {
        segment_size: SEGMENT,
        clock: Arc::new(FixedClock::new(at)),
        ..Options::default()
    }
}

/// Two hours after the template's last checkpoint: its first 42 hours are
/// due for thinning.
fn after_template() -> auditstore::Timestamp {
    ts(THIN_FROM)
        .checked_add_secs(THIN_STEPS * THIN_STEP_SECS + 7200)
        .unwrap()
}

/// Child for the thinning crash test: opens a store whose old checkpoints
/// are due for thinning (the integrator thins soon after the open), then
/// appends, checkpoints and prints `ACK ids` for each batch.
#[test]
fn crash_child_checkpointing_writer() {
    let Ok(dir) = std::env::var("THIN_CHILD_DIR") else {
        return; // Not a child run.
    };
    let store = Store::open_with(&dir, thin_options(after_template())).expect("child opens the store");
    let mut gen = SampleGenerator::new(SampleConfig {
        seed: env_u64("THIN_CHILD_SEED", 1),
        duplicate_per_mille: 0,
        ..SampleConfig::default()
    });
    loop {
        let batch: Vec<(String, Event)> = (&mut gen).take(5).collect();
        let r = store
            .append_batch(batch.iter().map(|(o, e)| (o.as_str(), e)))
            .expect("append");
        store.checkpoint().expect("checkpoint");
        print_acks(batch.iter().map(|(_, e)| e), &r);
    }
}

#[test]
fn kill_dash_nine_while_old_checkpoints_are_thinned_loses_no_checkpoint() {
    if std::env::var("THIN_CHILD_DIR").is_ok() {
        return;
    }
    use auditstore::integrity::log::{read, CHECKPOINTS_FILE};
    let template = tempfile::tempdir().unwrap();
    {
        let clock = Arc::new(FixedClock::new(ts(THIN_FROM)));
        let store = Store::open_with(
            template.path(),
            Options {
                clock: clock.clone(),
                ..thin_options(ts(THIN_FROM))
            },
        )
        .unwrap();
        let events: Vec<(String, Event)> = SampleGenerator::new(SampleConfig {
            seed: 99,
            duplicate_per_mille: 0,
            ..SampleConfig::default()
        })
        .take(2 * THIN_STEPS as usize)
        .collect();
        for pair in events.chunks(2) {
            store
                .append_batch(pair.iter().map(|(o, e)| (o.as_str(), e)))
                .unwrap();
            store.checkpoint().unwrap();
            clock.advance_secs(THIN_STEP_SECS);
        }
    }
    // Checkpoints more than a day old: 3 an hour before thinning, 1 after.
    let day_old = |dir: &std::path::Path| {
        let cutoff = after_template().as_nanos() - 86_400 * 1_000_000_000;
        let file = read(&dir.join(CHECKPOINTS_FILE)).unwrap().unwrap();
        file.entries.iter().filter(|e| e.at < cutoff).count()
    };
    let unthinned = day_old(template.path());
    assert!(unthinned > 100, "{unthinned}");
    let loops = env_u64("CRASH_LOOPS", 12);
    let exe = std::env::current_exe().unwrap();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut thinned_before_reopen = 0;
    for round in 0..loops {
        let dir = tempfile::tempdir().unwrap();
        copy_store_files(template.path(), dir.path());
        let seed = (round + 1000).to_string();
        let env = [
            ("THIN_CHILD_DIR", dir.path().to_str().unwrap()),
            ("THIN_CHILD_SEED", seed.as_str()),
        ];
        let acked = run_and_kill(&exe, "crash_child_checkpointing_writer", &env, 1, 150, &mut rng);
        if day_old(dir.path()) < unthinned {
            thinned_before_reopen += 1;
        }
        // Whatever the kill interrupted, the file is the old one or the
        // new one (a torn last entry aside), and it holds a checkpoint of
        // every acknowledged batch: the reopen checks the log against it.
        let store = Store::open_with(dir.path(), thin_options(after_template())).unwrap();
        let latest = store.latest_checkpoint().unwrap().unwrap();
        assert!(
            latest.tree_size >= (2 * THIN_STEPS) as u64 + acked.len() as u64,
            "round {round}: the latest checkpoint covers {} events; {} were acknowledged after the template's {}",
            latest.tree_size,
            acked.len(),
            2 * THIN_STEPS
        );
        let v = store.verify().unwrap();
        assert!(v.problems.is_empty(), "round {round}: {:?}", v.problems);
        // The reopened store thins too, if the child did not get to.
        let deadline = Instant::now() + Duration::from_secs(20);
        while day_old(dir.path()) > unthinned / 2 {
            assert!(Instant::now() < deadline, "round {round}: never thinned");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    eprintln!("thinning crash loops: {loops}, thinned before the kill in {thinned_before_reopen}");
}
