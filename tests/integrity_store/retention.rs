//! Retention keeps every retained event provable: the run records the
//! first retained leaf and the hashes the log no longer holds.

use auditstore::integrity::{verify_consistency, verify_inclusion};
use auditstore::sample::{SampleConfig, SampleGenerator};

use std::path::Path;

use auditstore::store::SignedCheckpoint as Checkpointed;

use super::tamper::{copy_dir, edited, frames, splice, tree_findings, verify};
use super::*;

/// A store in `dir` after a retention run deleted its oldest segments:
/// the store, its clock, the checkpoint before the run, the first retained
/// leaf (inside a bottom tile) and the retained sample events.
fn retained_store(dir: &Path) -> (Store, Options, Checkpointed, u64, Vec<(String, Event)>) {
    let old: Vec<(String, Event)> = events(1000, 1);
    let new: Vec<(String, Event)> = SampleGenerator::new(SampleConfig {
        seed: 2,
        duplicate_per_mille: 0,
        start: ts("2026-07-01"),
        ..SampleConfig::default()
    })
    .take(700)
    .collect();
    let clock = Options {
        clock: Arc::new(FixedClock::new(ts("2026-07-02"))),
        ..opts()
    };
    let store = Store::open_with(dir, clock.clone()).unwrap();
    for batch in old.chunks(100) {
        store
            .append_batch(batch.iter().map(|(o, e)| (o.as_str(), e)))
            .unwrap();
    }
    // (Settings after the old events: their own events are new ones.)
    for org in ["org-00", "org-01", "org-02", "org-03"] {
        store.set_org(org, None, Some(10)).unwrap();
    }
    for batch in new.chunks(100) {
        store
            .append_batch(batch.iter().map(|(o, e)| (o.as_str(), e)))
            .unwrap();
    }
    let before = store.checkpoint().unwrap();
    let report = store.apply_retention().unwrap();
    assert!(report.events_deleted > 0, "{report:?}");
    let first = report.first_retained_leaf.expect("the first retained leaf");
    assert!(report.checkpoint.is_some());
    assert!(
        first > 0 && !first.is_multiple_of(256),
        "a leaf inside a bottom tile: {first}"
    );
    (store, clock, before, first, new)
}

#[test]
fn proofs_of_retained_events_verify_after_retention_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, clock, before, _, new) = retained_store(dir.path());
    let old = events(1000, 1);
    let prove_all = |store: &Store| {
        let cp = store.checkpoint().unwrap();
        for (org, e) in new.iter().step_by(13) {
            let p = store.prove(e.id()).unwrap().expect("retained");
            assert_eq!(p.leaf_hash, leaf_of(org, e));
            verify_inclusion(
                &p.leaf_hash,
                p.leaf_index,
                p.tree_size,
                &p.inclusion,
                &cp.root_hash,
            )
            .unwrap();
        }
        let c = store.prove_consistency(before.tree_size, None).unwrap();
        verify_consistency(
            before.tree_size,
            cp.tree_size,
            &before.root_hash,
            &cp.root_hash,
            &c.consistency,
        )
        .unwrap();
        cp
    };
    let cp = prove_all(&store);
    // The integrator goes on after the deletion.
    let more = events(300, 3);
    for batch in more.chunks(100) {
        store
            .append_batch(batch.iter().map(|(o, e)| (o.as_str(), e)))
            .unwrap();
    }
    let after = store.checkpoint().unwrap();
    assert_eq!(after.tree_size, cp.tree_size + 300);
    let cp = prove_all(&store);
    drop(store);
    let store = Store::open_with(dir.path(), clock).unwrap();
    assert_eq!(prove_all(&store), cp);
    // A deleted event is gone, and so is its proof.
    assert!(store.prove(old[0].1.id()).unwrap().is_none());
}

/// After retention `verify` still rebuilds the tree, from the kept tiles
/// and the retention entry's hashes, and still finds tampering among the
/// retained events, also against a checkpoint from before the run.
#[test]
fn verify_finds_tampering_among_retained_events() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, before, first, _) = retained_store(dir.path());
    let latest = store.checkpoint().unwrap();
    drop(store);
    let clean = verify(dir.path(), Some(&before.note));
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    assert_eq!(clean.leaves, latest.tree_size);
    let f = frames(dir.path());
    assert_eq!(
        first + f.len() as u64,
        latest.tree_size,
        "leaf i is frame i - first"
    );
    // An edit with its CRC fixed, in the retained part of the first retained
    // leaf's (partly deleted) bottom tile.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let (path, offset, bytes) = &f[3];
    let path = copy.path().join(path.file_name().unwrap());
    splice(&path, *offset, bytes.len(), &edited(bytes));
    let report = verify(copy.path(), None);
    let found = tree_findings(&report);
    assert!(!found.is_empty(), "{:?}", report.problems);
    assert_eq!(found[0].leaf_index, Some(first), "{:?}", found[0]);
    assert_eq!(
        (found[0].file.file_name(), found[0].offset),
        (path.file_name(), f[0].1)
    );
    // One further on, in a later tile.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let i = f.len() - 600;
    let (path, offset, bytes) = &f[i];
    let path = copy.path().join(path.file_name().unwrap());
    splice(&path, *offset, bytes.len(), &edited(bytes));
    let leaf = first + i as u64;
    let report = verify(copy.path(), None);
    let found = tree_findings(&report);
    assert!(!found.is_empty(), "{:?}", report.problems);
    assert_eq!(found[0].leaf_index, Some(leaf - leaf % 256), "{:?}", found[0]);
    // The last record cut off: the latest checkpoint has more leaves.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let (path, offset, _) = f.last().unwrap();
    let path = copy.path().join(path.file_name().unwrap());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(*offset)
        .unwrap();
    let report = verify(copy.path(), Some(&latest.note));
    assert!(!report.problems.is_empty(), "a truncated tail must be found");
    // The tiles that stand for the deleted leaves, lost: said so.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    std::fs::remove_dir_all(copy.path().join("tree")).unwrap();
    let report = verify(copy.path(), None);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.message.contains("retention deleted")),
        "{:?}",
        report.problems
    );
}
