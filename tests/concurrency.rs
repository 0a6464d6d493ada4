//! Many threads appending overlapping and conflicting ids while others
//! scan: each id stored once, every outcome consistent with what was stored,
//! scans always sorted, duplicate-free and never shrinking, no deadlock.
//! `CONCURRENCY_ROUNDS` scales it (CI runs the default; the long run is
//! `CONCURRENCY_ROUNDS=200 cargo test --release --test concurrency`).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::{AppendOutcome, Event, FixedClock, Options, Query, Store};
use common::{env_u64, ts};

const THREADS: usize = 6;

fn round(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::open_with(
            dir.path(),
            Options {
                segment_size: 32 * 1024,
                clock: Arc::new(FixedClock::new(ts("2027-01-01"))),
                ..Options::default()
            },
        )
        .unwrap(),
    );
    let base: Vec<Event> = SampleGenerator::new(SampleConfig {
        seed,
        orgs: 1,
        duplicate_per_mille: 0,
        ..SampleConfig::default()
    })
    .take(400)
    .map(|(_, e)| e)
    .collect();
    // Variant B of each event differs in `success`: a conflicting re-send.
    let variants: Arc<Vec<[Event; 2]>> = Arc::new(
        base.iter()
            .map(|e| {
                let json = e.to_json();
                let flipped = if e.success() {
                    json.replacen("\"success\":true", "\"success\":false", 1)
                } else {
                    json.replacen("\"success\":false", "\"success\":true", 1)
                };
                [e.clone(), Event::from_json(&flipped).unwrap()]
            })
            .collect(),
    );
    let outcomes: Arc<Mutex<Vec<(usize, usize, AppendOutcome)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, done) = (store.clone(), done.clone());
            std::thread::spawn(move || {
                let mut previous: HashSet<uuid::Uuid> = HashSet::new();
                let mut scans = 0;
                while !done.load(Ordering::SeqCst) || scans < 3 {
                    let events: Vec<Event> = store
                        .scan(&Query::new("org-00", ts("2000-01-01"), ts("2100-01-01")))
                        .unwrap()
                        .collect::<Result<_, _>>()
                        .unwrap();
                    let keys: Vec<_> = events
                        .iter()
                        .map(|e| (e.occurred_at(), *e.id().as_bytes()))
                        .collect();
                    assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted and duplicate-free");
                    let ids: HashSet<uuid::Uuid> = events.iter().map(|e| e.id()).collect();
                    assert!(ids.is_superset(&previous), "what was visible stays visible");
                    previous = ids;
                    scans += 1;
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, variants, outcomes) = (store.clone(), variants.clone(), outcomes.clone());
            std::thread::spawn(move || {
                let n = variants.len();
                let mut k = 0;
                while k < n {
                    // Batches of varying size, each thread in its own order.
                    let size = 1 + (k * 7 + t * 3) % 25;
                    let picks: Vec<(usize, usize)> = (k..(k + size).min(n))
                        .map(|i| ((i * (2 * t + 1) + t * 37) % n, usize::from((i + t) % 3 == 0)))
                        .collect();
                    let r = store
                        .append_batch(picks.iter().map(|&(i, v)| ("org-00", &variants[i][v])))
                        .unwrap();
                    let mut o = outcomes.lock().unwrap();
                    for (j, &(i, v)) in picks.iter().enumerate() {
                        o.push((i, v, r.outcomes[j]));
                    }
                    k += size;
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    for r in readers {
        r.join().unwrap();
    }
    let stored: HashMap<uuid::Uuid, Event> = store
        .scan(&Query::new("org-00", ts("2000-01-01"), ts("2100-01-01")))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.id(), e)
        })
        .collect();
    let outcomes = outcomes.lock().unwrap();
    let attempted: HashSet<usize> = outcomes.iter().map(|(i, _, _)| *i).collect();
    assert_eq!(
        stored.len(),
        attempted.len(),
        "each attempted id stored exactly once"
    );
    let mut appended_per_id: HashMap<usize, u32> = HashMap::new();
    for &(i, v, outcome) in outcomes.iter() {
        let winner = &stored[&variants[i][0].id()];
        let same = winner == &variants[i][v];
        match outcome {
            AppendOutcome::Appended => {
                *appended_per_id.entry(i).or_default() += 1;
                assert!(same, "the appended variant is the stored one");
            }
            AppendOutcome::Duplicate => assert!(same, "duplicate means same content"),
            AppendOutcome::Conflict => assert!(!same, "conflict means different content"),
        }
    }
    assert!(appended_per_id.values().all(|c| *c == 1));
    assert_eq!(appended_per_id.len(), attempted.len());
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn concurrent_appends_with_overlapping_and_conflicting_ids_while_scanning() {
    let rounds: u64 = env_u64("CONCURRENCY_ROUNDS", 3);
    for seed in 0..rounds {
        round(seed + 1);
    }
}

/// Real I/O whose `fdatasync` waits, once armed, until released: an append
/// caught between its write and its sync.
#[derive(Debug, Default)]
struct HeldSync {
    armed: AtomicBool,
    held: Mutex<bool>,
    cond: std::sync::Condvar,
    entered: std::sync::atomic::AtomicU64,
}

impl HeldSync {
    fn release(&self) {
        self.armed.store(false, Ordering::SeqCst);
        *self.held.lock().unwrap() = false;
        self.cond.notify_all();
    }
}

impl auditstore::io::Io for HeldSync {
    fn write_at(&self, f: &std::fs::File, buf: &[u8], off: u64) -> std::io::Result<()> {
        auditstore::io::RealIo.write_at(f, buf, off)
    }
    fn sync_data(&self, f: &std::fs::File) -> std::io::Result<()> {
        if self.armed.load(Ordering::SeqCst) {
            let mut held = self.held.lock().unwrap();
            *held = true;
            self.entered.fetch_add(1, Ordering::SeqCst);
            while *held {
                held = self.cond.wait(held).unwrap();
            }
        }
        auditstore::io::RealIo.sync_data(f)
    }
    fn sync_all(&self, f: &std::fs::File) -> std::io::Result<()> {
        auditstore::io::RealIo.sync_all(f)
    }
    fn set_len(&self, f: &std::fs::File, len: u64) -> std::io::Result<()> {
        auditstore::io::RealIo.set_len(f, len)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        auditstore::io::RealIo.rename(from, to)
    }
    fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        auditstore::io::RealIo.sync_dir(dir)
    }
}

/// `stats()` counts what readers can see: not an append still waiting for
/// its sync (which could yet fail).
#[test]
fn stats_do_not_count_appends_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let io = Arc::new(HeldSync::default());
    let store = Store::open_with(
        dir.path(),
        Options {
            io: io.clone(),
            ..Options::default()
        },
    )
    .unwrap();
    let mut gen = SampleGenerator::new(SampleConfig::default());
    let (org, first) = gen.next().unwrap();
    store.append(&org, &first).unwrap();
    let (org2, second) = gen.next().unwrap();
    io.armed.store(true, Ordering::SeqCst);
    std::thread::scope(|s| {
        let appender = s.spawn(|| store.append(&org2, &second));
        while io.entered.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let during = store.stats().map(|s| s.events);
        io.release();
        assert_eq!(appender.join().unwrap().unwrap(), AppendOutcome::Appended);
        assert_eq!(during.unwrap(), 1, "the held append is in flight");
    });
    assert_eq!(store.stats().unwrap().events, 2);
}
