//! Proofs from the store verify with the core's verifier.

use auditstore::integrity::{verify_consistency, verify_inclusion};

use super::*;

#[test]
fn inclusion_proofs_of_every_event_verify_and_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = fill(dir.path(), 1500);
    let cp = store.checkpoint().unwrap();
    assert_eq!(cp.tree_size, 1500);
    let opened = open_note(&store, &cp.note);
    assert_eq!((opened.size, opened.root), (cp.tree_size, cp.root_hash));
    let mut seen = std::collections::HashSet::new();
    for (i, (org, event)) in events.iter().enumerate().step_by(7) {
        let proof = store.prove(event.id()).unwrap().expect("stored event");
        // Appended alone, in order: the leaf index is the append ordinal.
        assert_eq!(proof.leaf_index, i as u64, "event {i}");
        assert_eq!(&proof.org, org);
        assert_eq!(proof.leaf_hash, leaf_of(org, event));
        assert_eq!(proof.checkpoint, cp.note);
        verify_inclusion(
            &proof.leaf_hash,
            proof.leaf_index,
            proof.tree_size,
            &proof.inclusion,
            &cp.root_hash,
        )
        .unwrap();
        assert!(seen.insert(proof.leaf_index));
    }
    let id = events[700].1.id();
    let a = store.prove(id).unwrap().unwrap().to_json();
    let b = store.prove(id).unwrap().unwrap().to_json();
    assert_eq!(a, b, "prove twice with no new appends gives the same proof");
    assert!(store.prove(uuid::Uuid::from_u128(7)).unwrap().is_none());
}

#[test]
fn consistency_proofs_between_checkpoints_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = fill(dir.path(), 600);
    let old = store.checkpoint().unwrap();
    for batch in events(900, 7).chunks(300) {
        store
            .append_batch(batch.iter().map(|(o, e)| (o.as_str(), e)))
            .unwrap();
    }
    let new = store.checkpoint().unwrap();
    assert_eq!((old.tree_size, new.tree_size), (600, 1500));
    let p = store.prove_consistency(old.tree_size, None).unwrap();
    assert_eq!((p.from_size, p.to_size), (600, 1500));
    assert!(!p.consistency.is_empty());
    verify_consistency(600, 1500, &old.root_hash, &new.root_hash, &p.consistency).unwrap();
    // A wrong old root is refused by the same verifier.
    let mut wrong = old.root_hash;
    wrong[0] ^= 1;
    assert!(verify_consistency(600, 1500, &wrong, &new.root_hash, &p.consistency).is_err());
    assert!(store.prove_consistency(1501, None).is_err());
}

#[test]
fn checkpoints_and_proofs_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = fill(dir.path(), 800);
    let id = events[555].1.id();
    let before = store.prove(id).unwrap().unwrap();
    drop(store);
    let store = Store::open_with(dir.path(), opts()).unwrap();
    let latest = store.latest_checkpoint().unwrap().expect("kept in the store");
    assert_eq!(latest.tree_size, 800);
    let after = store.prove(id).unwrap().unwrap();
    assert_eq!(before.to_json(), after.to_json());
    let mode = std::fs::metadata(dir.path().join("signing.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
}
