//! `verify` finds tampering that keeps every CRC valid, and names the leaf
//! index, file and offset; a bad checkpoint signature; and, `--against` a
//! checkpoint kept elsewhere, truncation, rollback and rewrite.

use std::path::{Path, PathBuf};

use auditstore::codec;
use auditstore::integrity::log::{self as cplog, CheckpointLog, EntryKind};
use auditstore::log::frame;
use auditstore::{Problem, VerifyReport};

use super::*;

/// Every record of the store: (segment file, offset, frame bytes), in log order.
pub(super) fn frames(dir: &Path) -> Vec<(PathBuf, u64, Vec<u8>)> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let mut out = Vec::new();
    for path in logs {
        let bytes = std::fs::read(&path).unwrap();
        let mut at = 32;
        while let Ok((_, len)) = frame::decode(&bytes[at..]) {
            out.push((path.clone(), at as u64, bytes[at..at + len].to_vec()));
            at += len;
        }
    }
    out
}

/// Replaces `len` bytes at `offset` of `path` with `with`.
pub(super) fn splice(path: &Path, offset: u64, len: usize, with: &[u8]) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = offset as usize;
    bytes.splice(at..at + len, with.iter().copied());
    std::fs::write(path, bytes).unwrap();
}

/// The frame with its event's action changed (same length), CRC recomputed.
pub(super) fn edited(frame_bytes: &[u8]) -> Vec<u8> {
    let (body, _) = frame::decode(frame_bytes).unwrap();
    let view = codec::decode(body).unwrap();
    let json = view.to_event().to_json();
    let at = json.find("\"action\":\"").unwrap() + 10;
    let mut text = json.into_bytes();
    text[at] = if text[at] == b'x' { b'y' } else { b'x' };
    let event = Event::from_json(std::str::from_utf8(&text).unwrap()).unwrap();
    let mut body = Vec::new();
    codec::encode(view.org, &event, &mut body);
    let mut out = Vec::new();
    frame::encode(&body, &mut out);
    assert_eq!(out.len(), frame_bytes.len());
    assert!(frame::decode(&out).is_ok(), "the CRC is valid again");
    out
}

pub(super) fn verify(dir: &Path, against: Option<&str>) -> VerifyReport {
    let store = Store::open_for_verify(dir, opts()).unwrap();
    store.verify_against(against).unwrap()
}

/// The tree finding: a problem carrying a leaf index.
pub(super) fn tree_findings(report: &VerifyReport) -> Vec<&Problem> {
    report
        .problems
        .iter()
        .filter(|p| p.leaf_index.is_some())
        .collect()
}

/// A closed store of 1500 events (5 complete tiles and a tail of 220).
fn closed_store(dir: &Path) -> Vec<(PathBuf, u64, Vec<u8>)> {
    let (store, _) = fill(dir, 1500);
    store.checkpoint().unwrap();
    drop(store);
    let clean = verify(dir, None);
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    assert_eq!(clean.leaves, 1500);
    assert!(clean.checkpoints >= 1);
    frames(dir)
}

fn assert_located(report: &VerifyReport, leaf: u64, frames: &[(PathBuf, u64, Vec<u8>)]) {
    let found = tree_findings(report);
    assert!(!found.is_empty(), "no tree finding in {:?}", report.problems);
    let p = found[0];
    assert_eq!(p.leaf_index, Some(leaf), "{p:?}");
    let (file, offset, _) = &frames[leaf as usize];
    assert_eq!((&p.file, p.offset), (file, *offset), "{p:?}");
}

#[test]
fn an_edited_record_with_its_crc_recomputed_is_found_with_its_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let f = closed_store(dir.path());
    let (path, offset, bytes) = &f[300];
    splice(path, *offset, bytes.len(), &edited(bytes));
    let report = verify(dir.path(), None);
    // Leaf 300 is in tile 1: leaves 256..512, located at leaf 256.
    assert_located(&report, 256, &f);
    // An open checks only what the tiles do not cover (re-hashing the whole
    // log is `verify`'s work), but a proof reads the leaves it needs back
    // and never proves a changed event.
    let store = Store::open_with(dir.path(), opts()).unwrap();
    let (_, _, frame_bytes) = &f[300];
    let (body, _) = frame::decode(frame_bytes).unwrap();
    let id = uuid::Uuid::from_bytes(codec::decode(body).unwrap().id);
    let err = store.prove(id).unwrap_err();
    assert_eq!(err.code(), "corrupt", "{err}");
}

#[test]
fn an_edit_in_the_tail_after_the_last_tile_is_found_by_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let f = closed_store(dir.path());
    let (path, offset, bytes) = &f[1400];
    splice(path, *offset, bytes.len(), &edited(bytes));
    let report = verify(dir.path(), None);
    assert_located(&report, 1280, &f);
    assert!(tree_findings(&report)[0]
        .message
        .contains("root of the signed checkpoint"));
}

#[test]
fn a_removed_record_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let f = closed_store(dir.path());
    let (path, offset, bytes) = &f[600];
    splice(path, *offset, bytes.len(), &[]);
    let report = verify(dir.path(), None);
    assert_located(&report, 512, &f);
}

#[test]
fn an_inserted_record_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let f = closed_store(dir.path());
    let (path, offset, _) = &f[900];
    let copy = f[10].2.clone();
    splice(path, *offset, 0, &copy);
    let report = verify(dir.path(), None);
    assert_located(&report, 768, &f);
}

#[test]
fn reordered_records_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let f = closed_store(dir.path());
    // Two neighbours in one segment, swapped.
    let i = (100..1200).find(|&i| f[i].0 == f[i + 1].0).unwrap();
    let (path, offset, a) = &f[i];
    let b = &f[i + 1].2;
    let swapped: Vec<u8> = b.iter().chain(a.iter()).copied().collect();
    splice(path, *offset, a.len() + b.len(), &swapped);
    let report = verify(dir.path(), None);
    assert_located(&report, (i as u64 / 256) * 256, &f);
}

/// Rewrites the checkpoints file through `change` of each entry's note.
fn rewrite_checkpoints(dir: &Path, mut change: impl FnMut(usize, &str) -> Option<String>) {
    let path = dir.join(cplog::CHECKPOINTS_FILE);
    let contents = cplog::read(&path).unwrap().unwrap();
    std::fs::remove_file(&path).unwrap();
    let mut log = CheckpointLog::create(&path).unwrap();
    for (i, e) in contents.entries.iter().enumerate() {
        if let Some(note) = change(i, &e.note) {
            log.append(&e.kind, e.at, &note).unwrap();
        }
    }
}

#[test]
fn a_bad_checkpoint_signature_is_found() {
    let dir = tempfile::tempdir().unwrap();
    closed_store(dir.path());
    rewrite_checkpoints(dir.path(), |i, note| {
        Some(match i {
            0 => {
                // A signature byte changed (the base64 text stays valid).
                let at = note.rfind(' ').unwrap() + 10;
                let mut b = note.as_bytes().to_vec();
                b[at] = if b[at] == b'A' { b'B' } else { b'A' };
                String::from_utf8(b).unwrap()
            }
            _ => note.to_owned(),
        })
    });
    let report = verify(dir.path(), None);
    let bad: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.message.contains("does not verify"))
        .collect();
    assert_eq!(bad.len(), 1, "{:?}", report.problems);
    assert!(bad[0].file.ends_with("checkpoints"));
    assert!(Store::open_with(dir.path(), opts()).is_err());
}

#[test]
fn against_a_kept_checkpoint_a_rollback_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let old = tempfile::tempdir().unwrap();
    let (store, _) = fill(dir.path(), 800);
    drop(store);
    copy_dir(dir.path(), old.path());
    let store = Store::open_with(dir.path(), opts()).unwrap();
    for batch in events(700, 9).chunks(100) {
        store
            .append_batch(batch.iter().map(|(o, e)| (o.as_str(), e)))
            .unwrap();
    }
    let kept = store.checkpoint().unwrap();
    drop(store);
    assert!(verify(dir.path(), Some(&kept.note)).problems.is_empty());
    // The older copy is consistent in itself ...
    assert!(verify(old.path(), None).problems.is_empty());
    // ... but not with the checkpoint kept elsewhere.
    let report = verify(old.path(), Some(&kept.note));
    let found = tree_findings(&report);
    assert!(
        found.iter().any(|p| p.message.contains("holds only 800")),
        "{:?}",
        report.problems
    );
}

#[test]
fn against_a_kept_checkpoint_a_truncated_tail_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let f = closed_store(dir.path());
    let kept = cplog::read(&dir.path().join(cplog::CHECKPOINTS_FILE))
        .unwrap()
        .unwrap();
    let kept = kept.entries.last().unwrap().note.clone();
    // Cut the last 100 events, and every checkpoint that covered them.
    let (path, offset, _) = &f[1400];
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(*offset).unwrap();
    for later in f[1400..].iter().map(|(p, _, _)| p).filter(|p| *p != path) {
        let _ = std::fs::remove_file(later);
        let _ = std::fs::remove_file(later.with_extension("idx"));
    }
    rewrite_checkpoints(dir.path(), |i, note| (i == 0).then(|| note.to_owned()));
    std::fs::remove_dir_all(dir.path().join("tree")).unwrap();
    let report = verify(dir.path(), Some(&kept));
    assert!(
        tree_findings(&report)
            .iter()
            .any(|p| p.message.contains("holds only 1400")),
        "{:?}",
        report.problems
    );
}

#[test]
fn against_a_kept_checkpoint_a_wholesale_rewrite_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = fill(dir.path(), 600);
    let kept = store.checkpoint().unwrap();
    drop(store);
    // Everything replaced by another store with as many (other) events.
    std::fs::remove_dir_all(dir.path()).unwrap();
    let store = Store::open_with(dir.path(), opts()).unwrap();
    for batch in events(600, 5).chunks(100) {
        store
            .append_batch(batch.iter().map(|(o, e)| (o.as_str(), e)))
            .unwrap();
    }
    drop(store);
    assert!(verify(dir.path(), None).problems.is_empty());
    let report = verify(dir.path(), Some(&kept.note));
    assert!(
        report.problems.iter().any(|p| p.file == Path::new("--against")),
        "{:?}",
        report.problems
    );
}

pub(super) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[allow(dead_code)]
fn kinds(dir: &Path) -> Vec<EntryKind> {
    let c = cplog::read(&dir.join(cplog::CHECKPOINTS_FILE)).unwrap().unwrap();
    c.entries.into_iter().map(|e| e.kind).collect()
}
