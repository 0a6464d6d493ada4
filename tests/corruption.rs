//! Damaged files on purpose: torn tails, bit flips, truncated or missing
//! indexes, missing segments, wrong magic, future versions. Each either opens
//! (cutting only a torn active tail) or is refused or reported with the file
//! and byte offset.
//!
//! The stores here keep no tamper-evidence tree (`integrity: false`): these
//! tests are about the log's own recovery, which treats such damage as a
//! crash would leave it. With the tree on, damage to records that a signed
//! checkpoint covers is refused at open and reported by `verify` with its
//! leaf index (tests/integrity_store).

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditstore::{Error, Event, FixedClock, Options, Query, Store};
use common::*;

fn opts() -> Options {
    Options {
        segment_size: 64 * 1024,
        clock: Arc::new(FixedClock::new(ts("2026-08-01"))),
        integrity: false,
        ..Options::default()
    }
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().map(|e| e == ext).unwrap_or(false))
        .collect();
    v.sort();
    v
}

/// A store with several sealed segments and a non-empty active one.
fn build(dir: &Path) -> Vec<(String, Event)> {
    let events = sample_events();
    let store = Store::open_with(dir, opts()).unwrap();
    for c in events.chunks(50) {
        store
            .append_batch(c.iter().map(|(o, e)| (o.as_str(), e)))
            .unwrap();
    }
    events
}

#[test]
fn torn_tail_of_active_segment_is_cut_and_everything_before_survives() {
    let dir = tempfile::tempdir().unwrap();
    let events = build(dir.path());
    let unique = model(&events).len();
    let active = files(dir.path(), "log").pop().unwrap();
    let len = std::fs::metadata(&active).unwrap().len();
    // A torn write: half a frame of garbage after the last record.
    let mut f = OpenOptions::new().append(true).open(&active).unwrap();
    f.write_all(&[0x40, 0x01, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3])
        .unwrap();
    drop(f);
    let store = Store::open_with(dir.path(), opts()).unwrap();
    assert_eq!(store.recovery_report().truncated_bytes, 11);
    assert_eq!(std::fs::metadata(&active).unwrap().len(), len);
    assert_eq!(count_readable(&store), unique);
    assert!(store.verify().unwrap().problems.is_empty());
}

/// A built store whose active segment file was resized from `len` to
/// `resize(len)` after a clean close: (dir, unique events, active segment
/// path, its length before).
fn built_with_active_resized(resize: impl Fn(u64) -> u64) -> (tempfile::TempDir, usize, PathBuf, u64) {
    let dir = tempfile::tempdir().unwrap();
    let events = build(dir.path());
    let unique = model(&events).len();
    let active = files(dir.path(), "log").pop().unwrap();
    let len = std::fs::metadata(&active).unwrap().len();
    let f = OpenOptions::new().write(true).open(&active).unwrap();
    f.set_len(resize(len)).unwrap();
    (dir, unique, active, len)
}

/// What a `kill -9` leaves when the active segment had space allocated
/// ahead: zeros after the last record. They are free space, not a torn
/// write: nothing is reported cut, the zeros are trimmed, and appending
/// goes on right after the last record.
#[test]
fn zeros_after_the_last_record_are_free_space_not_a_torn_tail() {
    let (dir, unique, active, len) = built_with_active_resized(|len| len + 1_000_000);
    let store = Store::open_with(dir.path(), opts()).unwrap();
    assert_eq!(store.recovery_report().truncated_bytes, 0);
    assert!(store.recovery_report().truncation.is_none());
    assert_eq!(std::fs::metadata(&active).unwrap().len(), len);
    assert_eq!(count_readable(&store), unique);
    let more: Vec<(String, auditstore::Event)> =
        auditstore::sample::SampleGenerator::new(auditstore::sample::SampleConfig {
            seed: 7,
            ..Default::default()
        })
        .take(5)
        .collect();
    let r = store
        .append_batch(more.iter().map(|(o, e)| (o.as_str(), e)))
        .unwrap();
    assert_eq!(r.appended, 5);
    drop(store);
    let store = Store::open_with(dir.path(), opts()).unwrap();
    assert_eq!(count_readable(&store), unique + 5);
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn a_record_cut_in_half_at_the_tail_is_removed_whole() {
    let (dir, unique, _, _) = built_with_active_resized(|len| len - 5);
    let store = Store::open_with(dir.path(), opts()).unwrap();
    assert!(store.recovery_report().truncated_bytes > 0);
    assert_eq!(
        count_readable(&store),
        unique - 1,
        "exactly the torn record is gone"
    );
    assert!(store.verify().unwrap().problems.is_empty());
}

/// A built store with one byte flipped a third of the way into its active
/// segment (records before and after it).
struct Damaged {
    dir: tempfile::TempDir,
    unique: usize,
    active: PathBuf,
    /// The active segment's bytes, flip included.
    bytes: Vec<u8>,
    flip: usize,
}

fn built_with_a_byte_flipped_in_the_active_segment() -> Damaged {
    let dir = tempfile::tempdir().unwrap();
    let events = build(dir.path());
    let unique = model(&events).len();
    let active = files(dir.path(), "log").pop().unwrap();
    let mut bytes = std::fs::read(&active).unwrap();
    let flip = bytes.len() / 3;
    bytes[flip] ^= 0x5a;
    std::fs::write(&active, &bytes).unwrap();
    Damaged {
        dir,
        unique,
        active,
        bytes,
        flip,
    }
}

/// A flipped byte inside the active segment with records after it is not a
/// torn tail: only the damaged record is lost. The bytes from it on are cut
/// but kept under quarantine/, the intact records after it are appended
/// again, and `verify` reports the damage (file and offset) until the
/// quarantine file is removed. Opening again appends nothing twice, also
/// when a crash left the salvage unfinished.
#[test]
fn damage_inside_the_active_segment_loses_only_the_damaged_record() {
    let Damaged {
        dir,
        unique,
        active,
        bytes,
        flip,
    } = built_with_a_byte_flipped_in_the_active_segment();

    let store = Store::open_with(dir.path(), opts()).unwrap();
    let report = store.recovery_report().clone();
    assert_eq!(report.problems.len(), 1, "{report:?}");
    let problem = &report.problems[0];
    assert_eq!(problem.file, active);
    assert!(
        problem.offset <= flip as u64 && flip as u64 - problem.offset < 2048,
        "{problem:?}"
    );
    assert_eq!(report.quarantined.len(), 1);
    let kept = report.quarantined[0].clone();
    assert!(kept.exists() && kept.starts_with(dir.path().join(auditstore::QUARANTINE_DIR)));
    let cut = problem.offset as usize..(problem.offset + report.truncated_bytes) as usize;
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        bytes[cut],
        "every cut byte is kept"
    );
    assert!(report.salvaged_records > 0);
    assert_eq!(
        count_readable(&store),
        unique - 1,
        "exactly the damaged record is gone"
    );
    let verify = store.verify().unwrap();
    assert_eq!(verify.problems, vec![problem.clone()]);
    drop(store);

    // Again: nothing appended twice; the damage is still reported.
    let store = Store::open_with(dir.path(), opts()).unwrap();
    assert_eq!(store.recovery_report().salvaged_records, 0);
    assert!(store.recovery_report().problems.is_empty());
    assert_eq!(count_readable(&store), unique - 1);
    let again = store.verify().unwrap().problems;
    assert_eq!(again.len(), 1);
    assert_eq!((&again[0].file, again[0].offset), (&problem.file, problem.offset));
    assert!(
        again[0].message.contains("remove that file"),
        "{}",
        again[0].message
    );
    drop(store);

    // A crash after the bytes were kept, before the salvage was done.
    let pending = kept.with_extension("pending");
    std::fs::rename(&kept, &pending).unwrap();
    let store = Store::open_with(dir.path(), opts()).unwrap();
    assert_eq!(
        store.recovery_report().salvaged_records,
        0,
        "all were stored already"
    );
    assert!(kept.exists() && !pending.exists());
    assert_eq!(count_readable(&store), unique - 1);
    drop(store);

    // Damage again at the same place (the records appended again start
    // there): a second file, the first kept.
    let mut bytes = std::fs::read(&active).unwrap();
    bytes[problem.offset as usize + 5] ^= 0x01;
    std::fs::write(&active, &bytes).unwrap();
    let store = Store::open_with(dir.path(), opts()).unwrap();
    let second = store.recovery_report().quarantined.clone();
    assert_eq!(second.len(), 1);
    assert_ne!(second[0], kept);
    assert!(kept.exists() && second[0].exists());
    let problems = store.verify().unwrap().problems;
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems
        .iter()
        .all(|p| (&p.file, p.offset) == (&problem.file, problem.offset)));
    assert_eq!(count_readable(&store), unique - 2);
    drop(store);

    std::fs::remove_dir_all(dir.path().join(auditstore::QUARANTINE_DIR)).unwrap();
    let store = Store::open_with(dir.path(), opts()).unwrap();
    assert!(store.verify().unwrap().problems.is_empty());
    assert_eq!(count_readable(&store), unique - 2);
}

#[test]
fn bit_flip_in_sealed_segment_is_reported_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let sealed = files(dir.path(), "log")[1].clone();
    let mut bytes = std::fs::read(&sealed).unwrap();
    let at = 32 + 8 + 100; // inside the first record's body
    bytes[at] ^= 0x01;
    std::fs::write(&sealed, &bytes).unwrap();
    let store = Store::open_with(dir.path(), opts()).unwrap();
    let report = store.verify().unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].file, sealed);
    assert_eq!(report.problems[0].offset, 32, "offset of the damaged frame");
    assert!(report.problems[0].message.contains("checksum"));
    // Reads that reach the damaged record fail loudly instead of skipping it.
    let mut saw_error = false;
    for org in ["org-00", "org-01", "org-02", "org-03"] {
        for e in store
            .scan(&Query::new(org, ts("2026-01-01"), ts("2027-01-01")))
            .unwrap()
        {
            if let Err(Error::Corrupt { path, offset, .. }) = e {
                assert_eq!((path, offset), (sealed.clone(), 32));
                saw_error = true;
            }
        }
    }
    assert!(saw_error);
    // The file was not "repaired".
    assert_eq!(std::fs::read(&sealed).unwrap(), bytes);
}

/// Frame offsets of a segment file, following each frame's length.
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut at = 32;
    let mut offsets = Vec::new();
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        offsets.push(at);
        at += 8 + len;
    }
    offsets
}

/// `verify` carries on past a damaged record: every damaged record of every
/// sealed segment is a problem of its own, every other record is checked
/// and counted, and the indexes (intact) are not blamed for the damage.
#[test]
fn verify_reports_every_damaged_record_not_only_the_first_of_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let clean = Store::open_with(dir.path(), opts()).unwrap().verify().unwrap();
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    let logs = files(dir.path(), "log");
    let mut expected = Vec::new();
    for (seg, records) in [(0usize, [3usize, 17].as_slice()), (1, [40].as_slice())] {
        let mut bytes = std::fs::read(&logs[seg]).unwrap();
        let offsets = frame_offsets(&bytes);
        assert!(
            offsets.len() > 41,
            "segment {seg} holds {} records",
            offsets.len()
        );
        for &r in records {
            bytes[offsets[r] + 8 + 30] ^= 0x04; // inside the record's body
            expected.push((logs[seg].clone(), offsets[r] as u64));
        }
        std::fs::write(&logs[seg], &bytes).unwrap();
    }
    let store = Store::open_with(dir.path(), opts()).unwrap();
    let report = store.verify().unwrap();
    let found: Vec<(PathBuf, u64)> = report
        .problems
        .iter()
        .map(|p| (p.file.clone(), p.offset))
        .collect();
    assert_eq!(found, expected, "{:#?}", report.problems);
    for p in &report.problems {
        assert!(p.message.contains("checksum"), "{}", p.message);
        assert!(p.message.contains("up to offset"), "{}", p.message);
    }
    assert_eq!(report.records, clean.records - 3);
    assert_eq!((report.segments, report.indexes), (clean.segments, clean.indexes));
}

#[test]
fn truncated_or_missing_index_is_rebuilt_from_an_intact_log() {
    let dir = tempfile::tempdir().unwrap();
    let events = build(dir.path());
    let unique = model(&events).len();
    let idx = files(dir.path(), "idx");
    let f = OpenOptions::new().write(true).open(&idx[0]).unwrap();
    f.set_len(100).unwrap();
    drop(f);
    std::fs::remove_file(&idx[1]).unwrap();
    let store = Store::open_with(dir.path(), opts()).unwrap();
    assert_eq!(
        store.recovery_report().rebuilt_indexes,
        vec![idx[0].clone(), idx[1].clone()]
    );
    assert_eq!(count_readable(&store), unique);
    // The damaged index is reported by the open that rebuilt it (a missing
    // one is what a crash leaves, and is not); after that all is well.
    let problems = store.verify().unwrap().problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].file, idx[0]);
    assert!(problems[0].message.contains("rebuilt"), "{}", problems[0].message);
    drop(store);
    let store = Store::open_with(dir.path(), opts()).unwrap();
    assert!(store.recovery_report().rebuilt_indexes.is_empty());
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn sealed_segment_damaged_and_without_index_refuses_to_open_naming_the_place() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let log = files(dir.path(), "log")[0].clone();
    let idx = files(dir.path(), "idx")[0].clone();
    std::fs::remove_file(&idx).unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[32 + 8 + 3] ^= 0x80;
    std::fs::write(&log, &bytes).unwrap();
    match Store::open_with(dir.path(), opts()) {
        Err(Error::Corrupt { path, offset, .. }) => assert_eq!((path, offset), (log, 32)),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_missing_sealed_segment_is_refused_naming_it_and_reported_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let log = files(dir.path(), "log")[1].clone();
    std::fs::remove_file(&log).unwrap();
    // Its events are lost: every open refuses, naming the missing file,
    // rather than answering without them.
    match Store::open_with(dir.path(), opts()) {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, log),
        other => panic!("expected Corrupt naming {}, got {other:?}", log.display()),
    }
    match Store::open_read_only(dir.path(), opts()) {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, log),
        other => panic!("expected Corrupt naming {}, got {other:?}", log.display()),
    }
    let report = Store::verify_dir(dir.path(), opts()).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].file, log);
    assert!(report.problems[0].message.contains("missing"));
    // Removing the index is the explicit way to accept the loss.
    std::fs::remove_file(log.with_extension("idx")).unwrap();
    let store = Store::open_with(dir.path(), opts()).unwrap();
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn an_index_left_by_interrupted_retention_is_removed_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    // Retention renames the index aside, then the log; a crash between
    // the log's rename and the unlinks leaves both `.deleted`, but a crash
    // can also leave the log renamed while the index rename was lost.
    let log = files(dir.path(), "log")[0].clone();
    let mut aside = log.clone().into_os_string();
    aside.push(".deleted");
    std::fs::rename(&log, &aside).unwrap();
    let store = Store::open_with(dir.path(), opts()).unwrap();
    assert!(!log.with_extension("idx").exists());
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn wrong_magic_and_future_version_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let log = files(dir.path(), "log").pop().unwrap();
    let good = std::fs::read(&log).unwrap();
    let mut bad = good.clone();
    bad[0..8].copy_from_slice(b"NOTAUDIT");
    std::fs::write(&log, &bad).unwrap();
    match Store::open_with(dir.path(), opts()) {
        Err(Error::Corrupt {
            path,
            offset: 0,
            reason,
        }) => {
            assert_eq!(path, log);
            assert!(reason.contains("magic"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Future version, with a valid header checksum.
    let mut future = good.clone();
    future[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32fast::hash(&future[0..28]);
    future[28..32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&log, &future).unwrap();
    match Store::open_with(dir.path(), opts()) {
        Err(Error::UnsupportedVersion { found: 2, .. }) => {}
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    // Nothing was destroyed: restoring the header makes it open again.
    std::fs::write(&log, &good).unwrap();
    assert!(Store::open_with(dir.path(), opts()).is_ok());
}

#[test]
fn damaged_or_stale_dedup_checkpoint_never_lets_a_duplicate_in() {
    let dir = tempfile::tempdir().unwrap();
    let events = build(dir.path());
    let unique = model(&events).len() as u64;
    let cp = dir.path().join("dedup.fp");
    assert!(cp.exists(), "clean shutdown writes the checkpoint");
    {
        let store = Store::open_with(dir.path(), opts()).unwrap();
        assert!(store.verify().unwrap().problems.is_empty());
    }
    let mut bytes = std::fs::read(&cp).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&cp, &bytes).unwrap();
    let store = Store::open_with(dir.path(), opts()).unwrap();
    let r = store
        .append_batch(events.iter().map(|(o, e)| (o.as_str(), e)))
        .unwrap();
    assert_eq!(
        r.appended, 0,
        "every re-send is a duplicate despite the damaged checkpoint"
    );
    assert_eq!(store.stats().unwrap().events, unique);
    let v = store.verify().unwrap();
    assert_eq!(
        v.problems.len(),
        1,
        "verify names the damaged checkpoint: {:?}",
        v.problems
    );
    assert_eq!(v.problems[0].file, cp);
    drop(store);
    // Rewritten on clean shutdown, and correct again.
    let store = Store::open_with(dir.path(), opts()).unwrap();
    assert!(store.verify().unwrap().problems.is_empty());
    let r = store
        .append_batch(events.iter().map(|(o, e)| (o.as_str(), e)))
        .unwrap();
    assert_eq!(r.appended, 0);
}

/// A metadata database whose header is damaged is refused as `Corrupt`,
/// naming the file, and nothing else in the store is touched.
#[test]
fn damaged_metadata_database_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let logs_before: Vec<Vec<u8>> = files(dir.path(), "log")
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let meta = dir.path().join("meta.redb");
    let mut bytes = std::fs::read(&meta).unwrap();
    bytes[..8].copy_from_slice(b"garbage!");
    std::fs::write(&meta, &bytes).unwrap();
    match Store::open_with(dir.path(), opts()) {
        Err(Error::Corrupt { path, offset, .. }) => assert_eq!((path, offset), (meta, 0)),
        other => panic!("expected Corrupt, got {:?}", other.map(|_| "a store")),
    }
    let logs_after: Vec<Vec<u8>> = files(dir.path(), "log")
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(logs_before == logs_after, "segments untouched");
}

/// A salvage that fails part way (here the rename marking it done) does not
/// refuse the store: the records are safe in the quarantine file, which
/// stays pending, the open reports it, and the next open finishes the job
/// without storing anything twice.
#[test]
fn a_salvage_that_fails_leaves_its_file_pending_for_the_next_open() {
    use auditstore::io::{Fault, FaultKind, FaultOp, FaultyIo};
    let Damaged { dir, unique, .. } = built_with_a_byte_flipped_in_the_active_segment();

    // Rename 0 puts the quarantine file in place; rename 1 would mark it done.
    let io = Arc::new(FaultyIo::new(vec![Fault {
        op: FaultOp::Rename,
        nth: 1,
        kind: FaultKind::Error,
        sticky: false,
    }]));
    let store = Store::open_with(dir.path(), Options { io, ..opts() })
        .expect("a failed salvage does not refuse the store");
    let report = store.recovery_report().clone();
    let pending = report.quarantined[0].with_extension("pending");
    assert!(pending.exists(), "{report:?}");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.message.contains("the next open retries")),
        "{report:?}"
    );
    assert_eq!(count_readable(&store), unique - 1);
    drop(store);

    let store = Store::open_with(dir.path(), opts()).unwrap();
    assert_eq!(store.recovery_report().salvaged_records, 0, "stored already");
    assert!(!pending.exists() && pending.with_extension("cut").exists());
    assert_eq!(count_readable(&store), unique - 1);
    assert_eq!(store.verify().unwrap().problems.len(), 1);
}
