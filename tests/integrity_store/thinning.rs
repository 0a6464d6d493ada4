//! Old checkpoints are thinned out (integrity::log_thin: every one of the
//! last hour, one a minute for a day, one an hour before), soon after an
//! open and hourly: the `checkpoints` file stays small, the store still
//! verifies, and every checkpoint it ever gave out, kept or not, is still
//! shown consistent with its tree.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auditstore::integrity::log::{read, CHECKPOINTS_FILE};
use auditstore::integrity::verify_consistency;
use auditstore::{FixedClock, Options, Store};

use super::common::ts;
use super::{events, open_note, opts};

#[test]
fn old_checkpoints_are_thinned_and_every_one_given_out_still_proves_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(ts("2026-06-10")));
    let options = || Options {
        clock: clock.clone(),
        ..opts()
    };
    let store = Store::open_with(dir.path(), options()).unwrap();
    // 150 checkpoints 20 minutes apart: 50 hours.
    let mut given = Vec::new();
    for pair in events(300, 11).chunks(2) {
        store
            .append_batch(pair.iter().map(|(o, e)| (o.as_str(), e)))
            .unwrap();
        given.push(store.checkpoint().unwrap());
        clock.advance_secs(20 * 60);
    }
    drop(store);
    let path = dir.path().join(CHECKPOINTS_FILE);
    let before = read(&path).unwrap().unwrap().entries.len();
    assert!(before >= 150, "{before}");

    // An hour later, the integrator thins soon after the open.
    clock.advance_secs(3600);
    let store = Store::open_with(dir.path(), options()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let n = read(&path).unwrap().unwrap().entries.len();
        if n < before {
            break n;
        }
        assert!(Instant::now() < deadline, "still {n} checkpoints");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Those older than a day (about 26 hours of them, 3 an hour) are down
    // to one an hour; the last day's, 20 minutes apart, all stay.
    assert!(after <= before - 40, "{before} -> {after}");
    assert!(after >= before - 60, "{before} -> {after}");

    let latest = store.latest_checkpoint().unwrap().unwrap();
    assert_eq!(latest.tree_size, 300);
    for cp in &given {
        let old = open_note(&store, &cp.note);
        let p = store.prove_consistency(old.size, None).unwrap();
        verify_consistency(old.size, p.to_size, &old.root, &latest.root_hash, &p.consistency).unwrap();
    }
    let report = store.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.checkpoints as usize, after);
    drop(store);
    // Reopened again: the last checkpoint is the one the open checks.
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.latest_checkpoint().unwrap().unwrap(), latest);
}
