//! Committed damaged stores under `tests/fixtures/` (each a copy of one
//! small store, 4 KiB segments, the first 60 sample events, damaged one way).
//! Each must open or be refused exactly as docs/format.md says, and
//! `verify` must name every damaged place. The fixtures are made by the
//! ignored test `regenerate_fixtures` (`cargo test --test fixtures --
//! --ignored regenerate_fixtures`), so they can be rebuilt if the format
//! version ever changes; the checks below run on the committed bytes.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditstore::{Error, FixedClock, Options, Query, Store};
use common::*;

const EVENTS: usize = 60;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn opts() -> Options {
    Options {
        segment_size: 4096,
        clock: Arc::new(FixedClock::new(ts("2026-08-01"))),
        ..Options::default()
    }
}

/// Copy a fixture to a fresh directory (opening may repair a tail).
fn open_copy(name: &str) -> (tempfile::TempDir, Result<Store, Error>) {
    let dir = tempfile::tempdir().unwrap();
    copy_store_files(&fixtures().join(name), dir.path());
    give_metadata(dir.path());
    let store = Store::open_with(dir.path(), opts());
    (dir, store)
}

/// The fixtures hold segments only (the damage under test); the metadata
/// a store must have (`meta.redb` and its descriptor `store.id`, made
/// together) comes from a new empty store.
fn give_metadata(dir: &Path) {
    let fresh = tempfile::tempdir().unwrap();
    drop(Store::open(fresh.path()).unwrap());
    for name in ["meta.redb", "store.id"] {
        std::fs::copy(fresh.path().join(name), dir.join(name)).unwrap();
    }
}

fn segment(dir: &Path, id: u64, ext: &str) -> PathBuf {
    dir.join(format!("{id:016}.{ext}"))
}

fn unique() -> usize {
    model(&sample_events()[..EVENTS]).len()
}

fn last_log(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[test]
#[ignore = "writes tests/fixtures; run by hand to rebuild them"]
fn regenerate_fixtures() {
    let root = fixtures();
    let _ = std::fs::remove_dir_all(&root);
    let make = |name: &str, damage: &dyn Fn(&Path)| {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        {
            let store = Store::open_with(&dir, opts()).unwrap();
            let ev = sample_events();
            store
                .append_batch(ev[..EVENTS].iter().map(|(o, e)| (o.as_str(), e)))
                .unwrap();
        }
        for extra in ["LOCK", "meta.redb", "dedup.fp"] {
            let _ = std::fs::remove_file(dir.join(extra));
        }
        damage(&dir);
    };
    make("torn-tail", &|d| {
        let log = last_log(d);
        let mut b = std::fs::read(&log).unwrap();
        b.extend_from_slice(&[0x40, 0x01, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3]);
        std::fs::write(log, b).unwrap();
    });
    make("bitflip-sealed", &|d| {
        let log = segment(d, 1, "log");
        let mut b = std::fs::read(&log).unwrap();
        b[32 + 8 + 100] ^= 0x01;
        std::fs::write(log, b).unwrap();
    });
    make("truncated-index", &|d| {
        let idx = segment(d, 1, "idx");
        let b = std::fs::read(&idx).unwrap();
        std::fs::write(idx, &b[..100]).unwrap();
    });
    make("missing-segment", &|d| {
        std::fs::remove_file(segment(d, 2, "log")).unwrap()
    });
    make("wrong-magic", &|d| {
        let log = last_log(d);
        let mut b = std::fs::read(&log).unwrap();
        b[0..8].copy_from_slice(b"NOTAUDIT");
        std::fs::write(log, b).unwrap();
    });
    make("future-version", &|d| {
        let log = last_log(d);
        let mut b = std::fs::read(&log).unwrap();
        b[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32fast::hash(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(log, b).unwrap();
    });
}

#[test]
fn torn_tail_fixture_is_cut_and_keeps_every_event() {
    let (_dir, store) = open_copy("torn-tail");
    let store = store.unwrap();
    assert_eq!(store.recovery_report().truncated_bytes, 11);
    assert_eq!(count_readable(&store), unique());
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn bitflip_fixture_opens_and_verify_names_file_and_offset() {
    let (dir, store) = open_copy("bitflip-sealed");
    let store = store.unwrap();
    let problems = store.verify().unwrap().problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].file, segment(dir.path(), 1, "log"));
    assert_eq!(problems[0].offset, 32);
    // A scan that reaches the damaged record fails loudly there (and stops).
    let errors = ["org-00", "org-01", "org-02", "org-03"]
        .iter()
        .flat_map(|o| {
            store
                .scan(&Query::new(*o, ts("2026-01-01"), ts("2027-01-01")))
                .unwrap()
        })
        .filter(|e| matches!(e, Err(Error::Corrupt { offset: 32, .. })))
        .count();
    assert_eq!(errors, 1);
    assert!(count_readable(&store) < unique());
}

#[test]
fn truncated_index_fixture_is_rebuilt() {
    let (dir, store) = open_copy("truncated-index");
    let store = store.unwrap();
    assert_eq!(
        store.recovery_report().rebuilt_indexes,
        vec![segment(dir.path(), 1, "idx")]
    );
    assert_eq!(count_readable(&store), unique());
    let problems = store.verify().unwrap().problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].file, segment(dir.path(), 1, "idx"));
    drop(store);
    let again = Store::open_with(dir.path(), opts()).unwrap();
    assert!(again.verify().unwrap().problems.is_empty(), "rebuilt for good");
}

#[test]
fn missing_segment_fixture_is_refused_naming_it_and_reported() {
    let (dir, store) = open_copy("missing-segment");
    // Its events are lost: the store is refused, naming the missing file.
    match store {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, segment(dir.path(), 2, "log")),
        other => panic!("expected Corrupt naming the missing segment, got {other:?}"),
    }
    let problems = Store::verify_dir(dir.path(), opts()).unwrap().problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].file, segment(dir.path(), 2, "log"));
    // Removing its index accepts the loss explicitly.
    std::fs::remove_file(segment(dir.path(), 2, "idx")).unwrap();
    let store = Store::open_with(dir.path(), opts()).unwrap();
    assert!(count_readable(&store) < unique());
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn wrong_magic_fixture_is_refused_at_offset_0() {
    let (dir, store) = open_copy("wrong-magic");
    match store {
        Err(Error::Corrupt {
            path,
            offset: 0,
            reason,
        }) => {
            assert_eq!(path, last_log(dir.path()));
            assert!(reason.contains("magic"));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn future_version_fixture_is_refused_as_unsupported() {
    let (_dir, store) = open_copy("future-version");
    assert!(matches!(
        store,
        Err(Error::UnsupportedVersion {
            found: 2,
            supported: 1,
            ..
        })
    ));
}
