//! Injected I/O faults: failed and short writes, a full disk, failed
//! fsyncs, renames and directory syncs. For each: the failing call returns
//! an error, nothing acknowledged earlier is lost, the store stays openable,
//! later appends either succeed durably or fail cleanly, and a failed fsync
//! makes the store refuse writes until it is reopened.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use auditstore::io::{Fault, FaultKind, FaultOp, FaultyIo};
use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::{Error, Event, FixedClock, Options, Query, Store};
use common::ts;

/// Sealing on the appending thread: every injected fault then hits the
/// same operation in every run, and index-write faults surface as append
/// errors. Background sealing under faults has its own test below.
fn opts(io: Option<Arc<FaultyIo>>) -> Options {
    let mut o = Options {
        segment_size: 8 * 1024,
        clock: Arc::new(FixedClock::new(ts("2027-01-01"))),
        background_sealing: false,
        ..Options::default()
    };
    if let Some(io) = io {
        o.io = io;
    }
    o
}

fn stored_ids(store: &Store) -> Vec<uuid::Uuid> {
    let mut ids = Vec::new();
    for org in ["org-00", "org-01", "org-02", "org-03"] {
        for e in store
            .scan(&Query::new(org, ts("2000-01-01"), ts("2100-01-01")))
            .unwrap()
        {
            ids.push(e.unwrap().id());
        }
    }
    ids
}

struct Outcome {
    errors: u64,
    poisoned_after_sync_failure: bool,
    acked_after_first_error: u64,
}

/// Append 30 batches through a faulty store, then reopen on the real file
/// system and check every acknowledged event is there exactly once.
fn exercise(faults: Vec<Fault>, heal_after_error: bool) -> Outcome {
    exercise_with(faults, heal_after_error, false)
}

fn exercise_with(faults: Vec<Fault>, heal_after_error: bool, background_sealing: bool) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let io = Arc::new(FaultyIo::new(faults.clone()));
    let events: Vec<(String, Event)> = SampleGenerator::new(SampleConfig {
        duplicate_per_mille: 0,
        ..SampleConfig::default()
    })
    .take(300)
    .collect();
    let attempted: HashSet<uuid::Uuid> = events.iter().map(|(_, e)| e.id()).collect();
    let mut acked: HashSet<uuid::Uuid> = HashSet::new();
    let mut out = Outcome {
        errors: 0,
        poisoned_after_sync_failure: false,
        acked_after_first_error: 0,
    };
    let faulty = Options {
        background_sealing,
        ..opts(Some(io.clone()))
    };
    let store = match Store::open_with(dir.path(), faulty) {
        Ok(s) => Some(s),
        Err(_) => {
            out.errors += 1;
            None
        }
    };
    if let Some(store) = store {
        let mut sync_failed = false;
        for batch in events.chunks(10) {
            match store.append_batch(batch.iter().map(|(o, e)| (o.as_str(), e))) {
                Ok(r) => {
                    assert!(!sync_failed, "writes must be refused after a failed fsync");
                    if out.errors > 0 {
                        out.acked_after_first_error += r.appended;
                    }
                    for (i, (_, e)) in batch.iter().enumerate() {
                        if r.outcomes[i] == auditstore::AppendOutcome::Appended {
                            acked.insert(e.id());
                        }
                    }
                }
                Err(e) => {
                    if std::env::var("FAULT_DEBUG").is_ok() {
                        eprintln!("{faults:?}: {e}");
                    }
                    out.errors += 1;
                    if sync_failed {
                        assert!(matches!(e, Error::Poisoned(_)), "after a failed fsync: {e}");
                        out.poisoned_after_sync_failure = true;
                    }
                    // A failed fsync of segment data, or a failed write that
                    // could not be cut back, poisons the store.
                    if matches!(&e, Error::Io { context, .. }
                        if (context.contains("fdatasync") && context.ends_with(".log"))
                            || context.contains("cutting the partial write failed"))
                    {
                        sync_failed = true;
                    }
                    if heal_after_error {
                        io.heal();
                    }
                }
            }
        }
        // Closing settles background sealing: the sealer's renames and
        // syncs have all been tried by then, whatever the timing.
        drop(store);
        assert!(io.injected() > 0, "the fault was reached: {faults:?}");
    }
    // Reopen on the real file system: recovery from whatever is on disk.
    let store = Store::open_with(dir.path(), opts(None)).unwrap();
    let ids = stored_ids(&store);
    let mut counts: HashMap<uuid::Uuid, u32> = HashMap::new();
    for id in &ids {
        *counts.entry(*id).or_default() += 1;
    }
    assert!(counts.values().all(|c| *c == 1), "no event stored twice");
    for id in &acked {
        assert!(counts.contains_key(id), "acknowledged {id} lost under {faults:?}");
    }
    assert!(ids.iter().all(|id| attempted.contains(id)));
    let v = store.verify().unwrap();
    assert!(v.problems.is_empty(), "{faults:?}: {:?}", v.problems);
    // And the recovered store takes writes again.
    let more: Vec<(String, Event)> = SampleGenerator::new(SampleConfig {
        seed: 99,
        ..SampleConfig::default()
    })
    .take(20)
    .collect();
    store
        .append_batch(more.iter().map(|(o, e)| (o.as_str(), e)))
        .unwrap();
    out
}

fn fault(op: FaultOp, nth: u64, kind: FaultKind) -> Fault {
    Fault {
        op,
        nth,
        kind,
        sticky: false,
    }
}

#[test]
fn failed_writes_lose_nothing_acknowledged_and_later_appends_succeed() {
    for nth in [0, 1, 2, 5, 9, 17] {
        let o = exercise(vec![fault(FaultOp::Write, nth, FaultKind::Error)], false);
        assert!(o.errors >= 1, "write fault {nth} surfaced as an error");
        if nth > 1 {
            assert!(
                o.acked_after_first_error > 0,
                "appends resume after a clean write failure"
            );
        }
    }
}

#[test]
fn short_writes_are_cut_back_so_no_partial_frame_precedes_later_ones() {
    for nth in [1, 3, 8, 20] {
        let o = exercise(vec![fault(FaultOp::Write, nth, FaultKind::ShortWrite)], false);
        assert!(o.errors >= 1);
        assert!(o.acked_after_first_error > 0);
    }
}

#[test]
fn a_full_disk_fails_cleanly_until_space_returns() {
    let full = Fault {
        op: FaultOp::Write,
        nth: 4,
        kind: FaultKind::NoSpace,
        sticky: true,
    };
    // Stays full: every later append fails, nothing acknowledged is lost.
    let o = exercise(vec![full], false);
    assert!(o.errors > 1);
    assert_eq!(o.acked_after_first_error, 0);
    // Space comes back: appends resume in the same process.
    let o = exercise(vec![full], true);
    assert!(o.acked_after_first_error > 0);
}

#[test]
fn a_failed_fsync_poisons_the_store_until_reopen() {
    // Some syncs are of files that are not yet published (a new segment, an
    // index being written aside): those fail cleanly without poisoning.
    // Every one that poisons must refuse all later writes (checked inside
    // `exercise`); most must poison.
    let mut poisoned = 0;
    for nth in 1..12 {
        let o = exercise(vec![fault(FaultOp::Sync, nth, FaultKind::Error)], false);
        assert!(o.errors >= 1, "fsync fault {nth} surfaced");
        if o.poisoned_after_sync_failure {
            poisoned += 1;
            assert_eq!(o.acked_after_first_error, 0);
        }
    }
    assert!(poisoned >= 4, "only {poisoned} fsync faults hit segment data");
}

#[test]
fn a_failed_write_whose_cut_back_also_fails_poisons_the_store() {
    let mut poisoned = 0;
    for nth in 1..8 {
        let o = exercise(
            vec![
                fault(FaultOp::Write, nth, FaultKind::ShortWrite),
                fault(FaultOp::SetLen, 0, FaultKind::Error),
                // No space allocated or zeroed ahead, so the first
                // `set_len` is the cut-back of the short write (not a trim
                // at a roll).
                Fault {
                    sticky: true,
                    ..fault(FaultOp::Allocate, 0, FaultKind::NoSpace)
                },
                Fault {
                    sticky: true,
                    ..fault(FaultOp::WriteZeros, 0, FaultKind::NoSpace)
                },
            ],
            false,
        );
        if o.poisoned_after_sync_failure {
            poisoned += 1;
            assert_eq!(
                o.acked_after_first_error, 0,
                "no write after an uncut partial frame"
            );
        }
    }
    assert!(poisoned >= 3, "only {poisoned} short writes hit segment data");
}

#[test]
fn when_space_cannot_be_allocated_ahead_appends_go_on_unchanged() {
    for nth in [0, 1, 3] {
        let o = exercise(
            vec![Fault {
                sticky: true,
                ..fault(FaultOp::Allocate, nth, FaultKind::NoSpace)
            }],
            false,
        );
        assert_eq!(o.errors, 0, "allocation is best effort (from call {nth} on)");
    }
}

#[test]
fn when_zeros_cannot_be_written_ahead_appends_go_on_unchanged() {
    for f in [
        Fault {
            sticky: true,
            ..fault(FaultOp::WriteZeros, 0, FaultKind::NoSpace)
        },
        fault(FaultOp::WriteZeros, 1, FaultKind::ShortWrite),
        fault(FaultOp::WriteZeros, 2, FaultKind::Error),
    ] {
        let o = exercise(vec![f], false);
        assert_eq!(o.errors, 0, "zeros ahead are best effort ({f:?})");
    }
}

#[test]
fn failed_renames_and_directory_syncs_at_segment_roll() {
    for f in [
        fault(FaultOp::Rename, 0, FaultKind::Error),
        fault(FaultOp::Rename, 2, FaultKind::Error),
        fault(FaultOp::SyncDir, 1, FaultKind::Error),
        fault(FaultOp::SyncDir, 3, FaultKind::Error),
    ] {
        let o = exercise(vec![f], false);
        assert!(o.errors >= 1, "{f:?}");
    }
}

#[test]
fn background_sealing_under_the_same_faults_loses_nothing() {
    // Which operation a fault hits now depends on timing (the sealer writes
    // indexes concurrently with appends), so only what must hold in every
    // interleaving is checked, inside `exercise_with`: nothing acknowledged
    // lost, nothing stored twice, the store reopens clean and takes writes.
    let mut faults = Vec::new();
    for nth in [0, 1, 2, 5, 9, 17] {
        faults.push(vec![fault(FaultOp::Write, nth, FaultKind::Error)]);
    }
    for nth in 1..12 {
        faults.push(vec![fault(FaultOp::Sync, nth, FaultKind::Error)]);
    }
    for f in [
        fault(FaultOp::Rename, 0, FaultKind::Error),
        fault(FaultOp::Rename, 2, FaultKind::Error),
        fault(FaultOp::SyncDir, 1, FaultKind::Error),
        fault(FaultOp::SyncDir, 3, FaultKind::Error),
        fault(FaultOp::Write, 3, FaultKind::ShortWrite),
    ] {
        faults.push(vec![f]);
    }
    for f in faults {
        exercise_with(f, false, true);
    }
}

#[test]
fn a_rolled_segment_whose_index_cannot_be_written_is_served_from_memory_and_indexed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    // Every rename fails: no index (and no checkpoint) is ever published.
    let io = Arc::new(FaultyIo::new(vec![Fault {
        sticky: true,
        ..fault(FaultOp::Rename, 0, FaultKind::Error)
    }]));
    let events: Vec<(String, Event)> = SampleGenerator::new(SampleConfig {
        duplicate_per_mille: 0,
        ..SampleConfig::default()
    })
    .take(300)
    .collect();
    {
        let faulty = Options {
            background_sealing: true,
            ..opts(Some(io.clone()))
        };
        let store = Store::open_with(dir.path(), faulty).unwrap();
        for batch in events.chunks(10) {
            let r = store
                .append_batch(batch.iter().map(|(o, e)| (o.as_str(), e)))
                .unwrap();
            assert_eq!(
                r.appended, 10,
                "appends do not wait for, nor fail with, index writes"
            );
        }
        // Re-sends of events in unsealed segments are still duplicates.
        let r = store
            .append_batch(events[..50].iter().map(|(o, e)| (o.as_str(), e)))
            .unwrap();
        assert_eq!(r.duplicates, 50);
        let stats = store.stats().unwrap();
        assert!(stats.segments > 3, "several rolls: {}", stats.segments);
        assert_eq!(stats.events, 300);
        let mut ids = stored_ids(&store);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 300, "scans see every event, indexed or not");
        assert_eq!(store.get(events[0].1.id()).unwrap().as_ref(), Some(&events[0].1));
        let v = store.verify().unwrap();
        let unsealed = v
            .problems
            .iter()
            .filter(|p| p.message.contains("rolled segment without an index"))
            .count() as u64;
        assert_eq!(unsealed, stats.segments - 1, "{:?}", v.problems);
        assert!(io.injected() > 0);
    }
    let store = Store::open_with(dir.path(), opts(None)).unwrap();
    assert!(!store.recovery_report().rebuilt_indexes.is_empty());
    assert!(store.verify().unwrap().problems.is_empty());
    assert_eq!(store.stats().unwrap().events, 300);
    assert_eq!(stored_ids(&store).len(), 300);
}

#[test]
fn a_failed_batch_retried_stores_every_event_exactly_once() {
    // A batch that fails part-way (a write at a roll inside it, or the
    // final group write) must not leave its unwritten events indexed: the
    // retry would call them duplicates of records that do not exist.
    let events: Vec<(String, Event)> = SampleGenerator::new(SampleConfig {
        duplicate_per_mille: 0,
        ..SampleConfig::default()
    })
    .take(120)
    .collect();
    for background_sealing in [true, false] {
        for nth in 0..8 {
            for kind in [FaultKind::Error, FaultKind::ShortWrite] {
                let dir = tempfile::tempdir().unwrap();
                let io = Arc::new(FaultyIo::new(vec![fault(FaultOp::Write, nth, kind)]));
                let options = Options {
                    background_sealing,
                    ..opts(Some(io.clone()))
                };
                let Ok(store) = Store::open_with(dir.path(), options) else {
                    continue;
                };
                let mut failed = 0;
                for batch in events.chunks(40) {
                    let items = || batch.iter().map(|(o, e)| (o.as_str(), e));
                    if store.append_batch(items()).is_err() {
                        failed += 1;
                        io.heal();
                        // Retried until it goes through: everything lands once.
                        let r = store.append_batch(items()).unwrap();
                        assert_eq!(r.appended + r.duplicates, 40);
                    }
                }
                assert!(failed <= 1, "one fault, at most one failed batch");
                let case = format!("write {nth} {kind:?}, background sealing {background_sealing}");
                assert_eq!(store.stats().unwrap().events, 120, "{case}");
                for (_, e) in &events {
                    assert_eq!(store.get(e.id()).unwrap().as_ref(), Some(e), "{case}");
                }
                let mut ids = stored_ids(&store);
                ids.sort();
                ids.dedup();
                assert_eq!(ids.len(), 120, "{case}");
            }
        }
    }
}

#[test]
fn failures_while_opening_are_errors_and_leave_the_store_openable() {
    for f in [
        fault(FaultOp::Write, 0, FaultKind::Error),
        fault(FaultOp::Sync, 0, FaultKind::Error),
        fault(FaultOp::SyncDir, 0, FaultKind::Error),
    ] {
        exercise(vec![f], false);
    }
}

/// [`FaultyIo`] whose data syncs take 2 ms.
#[derive(Debug)]
struct SlowSync(Arc<FaultyIo>);

impl auditstore::io::Io for SlowSync {
    fn write_at(&self, file: &std::fs::File, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.0.write_at(file, buf, offset)
    }
    fn sync_data(&self, file: &std::fs::File) -> std::io::Result<()> {
        std::thread::sleep(std::time::Duration::from_millis(2));
        self.0.sync_data(file)
    }
    fn sync_all(&self, file: &std::fs::File) -> std::io::Result<()> {
        self.0.sync_all(file)
    }
    fn set_len(&self, file: &std::fs::File, len: u64) -> std::io::Result<()> {
        self.0.set_len(file, len)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        self.0.rename(from, to)
    }
    fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        self.0.sync_dir(dir)
    }
    fn allocate(&self, file: &std::fs::File, len: u64) -> std::io::Result<()> {
        self.0.allocate(file, len)
    }
    fn write_zeros(&self, file: &std::fs::File, offset: u64, len: u64) -> std::io::Result<()> {
        self.0.write_zeros(file, offset, len)
    }
}

/// Group commit writes the frames of many appenders with one write: when
/// that write fails, every appender whose frames it carried gets the error,
/// and an appender that found its event among those frames (a concurrent
/// re-send) is not told "duplicate" for an event that was never stored.
/// Every acknowledged event (appended or duplicate) is on disk afterwards.
#[test]
fn a_failed_group_write_fails_every_batch_it_carried_and_loses_nothing_acknowledged() {
    for nth in [2u64, 5, 9] {
        let dir = tempfile::tempdir().unwrap();
        let io = Arc::new(FaultyIo::new(vec![fault(
            FaultOp::Write,
            nth,
            FaultKind::NoSpace,
        )]));
        let mut o = opts(None);
        // Slow syncs, so that each round's write carries several batches.
        o.io = Arc::new(SlowSync(io.clone()));
        let store = Store::open_with(dir.path(), o).unwrap();
        let events: Vec<(String, Event)> = SampleGenerator::new(SampleConfig {
            duplicate_per_mille: 0,
            ..SampleConfig::default()
        })
        .take(120)
        .collect();
        let acked = std::sync::Mutex::new(HashSet::new());
        let errors = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..6usize {
                let (store, events, acked, errors) = (&store, &events, &acked, &errors);
                s.spawn(move || {
                    // Threads 2i and 2i+1 send the same 40 events at the same
                    // time (and nothing sends them later), so one often finds
                    // the other's queued, unwritten record: a "duplicate"
                    // that must not be acknowledged if that write fails.
                    for k in 0..40 {
                        let (org, e) = &events[(t / 2) * 40 + k];
                        match store.append(org, e) {
                            Ok(auditstore::AppendOutcome::Conflict) => panic!("no conflicts here"),
                            Ok(_) => {
                                acked.lock().unwrap().insert(e.id());
                            }
                            Err(_) => {
                                errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
        });
        assert!(io.injected() > 0, "write fault {nth} reached");
        assert!(errors.into_inner() >= 1, "the failed write surfaced");
        drop(store);
        let store = Store::open_with(dir.path(), opts(None)).unwrap();
        let ids = stored_ids(&store);
        let unique: HashSet<_> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "no event stored twice");
        for id in acked.into_inner().unwrap() {
            assert!(unique.contains(&id), "acknowledged {id} lost (write fault {nth})");
        }
        assert!(store.verify().unwrap().problems.is_empty());
    }
}
