//! The tamper-evidence tree wired into the store: proofs verify with the
//! core's RFC 9162 verifier, checkpoints with the store's key; a crash
//! keeps the tree and the checkpoints in agreement; `verify` finds
//! tampering (see `tamper.rs`).

mod cli;
#[path = "../common/mod.rs"]
mod common;
mod manifests;
mod proofs;
mod refusals;
mod retention;
mod tamper;
mod thinning;

use std::path::Path;
use std::sync::Arc;

use auditstore::integrity::{event_leaf_hash, Checkpoint, VerifierKey};
use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::{Event, FixedClock, Options, Store};

use common::ts;

/// Small segments, so that the tree spans several; a fixed clock inside
/// the sample's retention.
pub fn opts() -> Options {
    Options {
        segment_size: 64 * 1024,
        clock: Arc::new(FixedClock::new(ts("2026-06-10"))),
        ..Options::default()
    }
}

/// `n` sample events (all distinct), from `seed`.
pub fn events(n: usize, seed: u64) -> Vec<(String, Event)> {
    SampleGenerator::new(SampleConfig {
        seed,
        duplicate_per_mille: 0,
        ..SampleConfig::default()
    })
    .take(n)
    .collect()
}

/// A store in `dir` holding `n` sample events, appended in batches of 100.
pub fn fill(dir: &Path, n: usize) -> (Store, Vec<(String, Event)>) {
    let store = Store::open_with(dir, opts()).unwrap();
    let events = events(n, 42);
    for batch in events.chunks(100) {
        let r = store
            .append_batch(batch.iter().map(|(o, e)| (o.as_str(), e)))
            .unwrap();
        assert_eq!(r.appended as usize, batch.len());
    }
    (store, events)
}

/// Checks a signed checkpoint note with the store's verifier key.
pub fn open_note(store: &Store, note: &str) -> Checkpoint {
    let info = store.key_info().unwrap();
    let key = VerifierKey::parse(&info.verifier_key).unwrap();
    Checkpoint::open(note, &key, &info.origin).unwrap()
}

pub fn leaf_of(org: &str, event: &auditstore::Event) -> [u8; 32] {
    event_leaf_hash(org, event).unwrap()
}
