//! Retention keeps every retained event provable: the run records the
//! first retained leaf and the hashes the log no longer holds.

use auditstore::integrity::{verify_consistency, verify_inclusion};
use auditstore::sample::{SampleConfig, SampleGenerator};

use super::*;

#[test]
fn proofs_of_retained_events_verify_after_retention_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
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
    let store = Store::open_with(dir.path(), clock.clone()).unwrap();
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
