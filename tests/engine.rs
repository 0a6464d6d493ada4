//! The storage engine end to end on real files: append, dedup, scans
//! against a brute-force model, retention, isolation, reopen, locking.

mod common;

use std::sync::Arc;

use auditstore::org::settings_update_event;
use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::store::own_events::Actor;
use auditstore::{AppendOutcome, Durability, Error, Event, FixedClock, Options, Plan, Query, Store};
use common::*;

fn small_segments(clock: Arc<FixedClock>) -> Options {
    Options {
        segment_size: 64 * 1024,
        clock,
        ..Options::default()
    }
}

#[test]
fn sample_data_ingests_with_exact_duplicate_counts() {
    let dir = tempfile::tempdir().unwrap();
    let events = sample_events();
    assert_eq!(events.len(), 2000);
    let unique = model(&events).len() as u64;
    let store = Store::open(dir.path()).unwrap();
    let r = store
        .append_batch(events.iter().map(|(o, e)| (o.as_str(), e)))
        .unwrap();
    assert_eq!(r.appended, unique);
    assert_eq!(r.duplicates, 2000 - unique);
    assert!(r.duplicates > 0, "the sample has re-sends");
    assert_eq!(r.conflicts, 0);
    // Everything again: all duplicates, nothing stored twice.
    let again = store
        .append_batch(events.iter().map(|(o, e)| (o.as_str(), e)))
        .unwrap();
    assert_eq!((again.appended, again.duplicates), (0, 2000));
    assert_eq!(store.stats().unwrap().events, unique);
}

#[test]
fn range_scans_match_brute_force_across_segments_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(ts("2026-08-01T00:00:00Z")));
    let events = sample_events();
    let m = model(&events);
    {
        let store = Store::open_with(dir.path(), small_segments(clock.clone())).unwrap();
        for chunk in events.chunks(97) {
            store
                .append_batch(chunk.iter().map(|(o, e)| (o.as_str(), e)))
                .unwrap();
        }
        assert!(store.stats().unwrap().segments > 5, "test needs several segments");
        check_ranges(&store, &m);
    }
    let store = Store::open_with(dir.path(), small_segments(clock)).unwrap();
    check_ranges(&store, &m);
    assert!(store.verify().unwrap().problems.is_empty());
}

fn check_ranges(store: &Store, m: &std::collections::HashMap<uuid::Uuid, (String, Event)>) {
    let ranges = [
        ("2026-06-01", "2026-08-01"),
        ("2026-06-03T05:00:00Z", "2026-06-04T17:30:00Z"),
        ("2026-06-10", "2026-06-11"),
        ("2026-07-15T00:00:00.5Z", "2026-07-31"),
        ("2026-05-01", "2026-05-02"),
    ];
    for org in ["org-00", "org-01", "org-02", "org-03", "org-99"] {
        for (f, t) in ranges {
            let (from, to) = (ts(f), ts(t));
            let want = brute_force(m, org, from, to);
            let got: Vec<Event> = store
                .scan(&Query::new(org, from, to))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(got, want, "org {org} range {f}..{t}");
        }
    }
    // Filters and limit, against the same model.
    let (from, to) = (ts("2026-06-01"), ts("2026-08-01"));
    let all = brute_force(m, "org-01", from, to);
    let wf: Vec<Event> = all
        .iter()
        .filter(|e| e.action().starts_with("workflow."))
        .cloned()
        .collect();
    let got: Vec<Event> = store
        .scan(&Query::new("org-01", from, to).action("workflow.*"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, wf);
    assert!(!wf.is_empty());
    let exact: Vec<Event> = all
        .iter()
        .filter(|e| e.action() == "user.logged_in")
        .cloned()
        .collect();
    let got: Vec<Event> = store
        .scan(&Query::new("org-01", from, to).action("user.logged_in"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, exact);
    let actor = all[3].actor_id();
    let by_actor: Vec<Event> = all.iter().filter(|e| e.actor_id() == actor).cloned().collect();
    let got: Vec<Event> = store
        .scan(&Query::new("org-01", from, to).actor(actor.clone()))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, by_actor);
    let target = all[5].target_id();
    let got: Vec<Event> = store
        .scan(&Query::new("org-01", from, to).target(target.clone()))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        got,
        all.iter()
            .filter(|e| e.target_id() == target)
            .cloned()
            .collect::<Vec<_>>()
    );
    let got: Vec<Event> = store
        .scan(&Query::new("org-01", from, to).limit(7))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, all[..7].to_vec());
}

#[test]
fn retention_clamps_every_read() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(ts("2026-07-20T00:00:00Z")));
    let store = Store::open_with(dir.path(), small_segments(clock.clone())).unwrap();
    let events = sample_events();
    let m = model(&events);
    store
        .append_batch(events.iter().map(|(o, e)| (o.as_str(), e)))
        .unwrap();
    store.set_org("org-02", None, Some(30)).unwrap();
    // The change is recorded as the store's own event of org-02, at the
    // clock's now (2026-07-20), inside the window: it is part of the log.
    let mut m = m;
    let update = settings_update_event(
        "org-02",
        (Plan::Free, 365),
        (Plan::Free, 30),
        Actor::SYSTEM,
        ts("2026-07-20T00:00:00Z"),
    )
    .unwrap();
    let update_id = update.id();
    m.insert(update_id, ("org-02".to_owned(), update));
    let (from, to) = (ts("2026-06-01"), ts("2026-08-01"));
    let cutoff = ts("2026-06-20T00:00:00Z");
    let want = brute_force(&m, "org-02", cutoff, to);
    assert!(want.iter().any(|e| e.id() == update_id));
    let got: Vec<Event> = store
        .scan(&Query::new("org-02", from, to))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, want);
    assert!(got.len() < brute_force(&m, "org-02", from, to).len());
    // Other organizations keep the default 365 days.
    assert_eq!(
        store.scan(&Query::new("org-01", from, to)).unwrap().count(),
        brute_force(&m, "org-01", from, to).len()
    );
    // get() is clamped too.
    let old = brute_force(&m, "org-02", from, cutoff)[0].clone();
    assert_eq!(store.get(old.id()).unwrap(), None);
    let young = want[0].clone();
    assert_eq!(store.get(young.id()).unwrap(), Some(young));
}

#[test]
fn retention_apply_deletes_only_fully_expired_segments() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(ts("2026-07-20T00:00:00Z")));
    let events = sample_events();
    let m = model(&events);
    let store = Store::open_with(dir.path(), small_segments(clock.clone())).unwrap();
    store
        .append_batch(events.iter().map(|(o, e)| (o.as_str(), e)))
        .unwrap();
    for org in ["org-00", "org-01", "org-02", "org-03"] {
        store.set_org(org, None, Some(30)).unwrap();
    }
    let before = store.stats().unwrap();
    let scan_all = |store: &Store, org: &str| -> Vec<Event> {
        store
            .scan(&Query::new(org, ts("2026-01-01"), ts("2027-01-01")))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let visible_before: Vec<Vec<Event>> = ["org-00", "org-01"].iter().map(|o| scan_all(&store, o)).collect();
    // A reader holding a scan across the deletion keeps working.
    let mut held = store
        .scan(&Query::new("org-00", ts("2026-01-01"), ts("2027-01-01")))
        .unwrap();
    let first = held.next().unwrap().unwrap();
    let r = store.apply_retention().unwrap();
    assert!(r.segments_deleted > 0, "some segments are fully expired");
    assert!(r.bytes_freed > 0);
    for f in &r.files {
        assert!(!f.exists(), "{} should be deleted", f.display());
    }
    let rest: Vec<Event> = held.collect::<Result<_, _>>().unwrap();
    assert_eq!(1 + rest.len(), visible_before[0].len());
    assert_eq!(first, visible_before[0][0]);
    let after = store.stats().unwrap();
    assert_eq!(after.events, before.events - r.events_deleted);
    // Retained events are all still there.
    for (i, org) in ["org-00", "org-01"].iter().enumerate() {
        assert_eq!(scan_all(&store, org), visible_before[i]);
    }
    drop(store);
    let store = Store::open_with(dir.path(), small_segments(clock)).unwrap();
    assert_eq!(scan_all(&store, "org-01"), visible_before[1]);
    assert_eq!(store.stats().unwrap().events, after.events);
    assert!(store.verify().unwrap().problems.is_empty());
    let _ = m;
}

/// A store that never filled a segment: once every event in the active
/// segment is past retention, `apply_retention` rolls it and deletes it;
/// while one event is retained, nothing goes.
#[test]
fn retention_apply_deletes_a_fully_expired_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(ts("2026-07-20T00:00:00Z")));
    let open = || {
        let options = Options {
            clock: clock.clone(),
            ..Options::default()
        };
        Store::open_with(dir.path(), options).unwrap()
    };
    let store = open();
    let events = sample_events();
    let unique = model(&events).len() as u64;
    store
        .append_batch(events.iter().map(|(o, e)| (o.as_str(), e)))
        .unwrap();
    assert_eq!(store.stats().unwrap().segments, 1, "all in the active segment");
    for org in ["org-00", "org-01", "org-02", "org-03"] {
        store.set_org(org, None, Some(30)).unwrap();
    }
    // Each change is recorded as one org.settings.update (2026-07-20), in
    // the same active segment.
    let own = 4;
    assert_eq!(store.stats().unwrap().segments, 1);
    // The newest event (2026-07-30) is still within 30 days.
    let r = store.apply_retention().unwrap();
    assert_eq!(r.segments_deleted, 0);
    assert_eq!(store.stats().unwrap().events, unique + own);

    // By 2026-09-15 the sample and the settings events are all past 30 days.
    clock.set(ts("2026-09-15T00:00:00Z"));
    let r = store.apply_retention().unwrap();
    assert_eq!((r.segments_deleted, r.events_deleted), (1, unique + own));
    for f in &r.files {
        assert!(!f.exists(), "{} should be deleted", f.display());
    }
    assert_eq!(store.stats().unwrap().events, 0);
    // Appending goes on, and a re-send of an expired event is new again.
    let (org, e) = &events[0];
    assert_eq!(store.append(org, e).unwrap(), AppendOutcome::Appended);
    drop(store);
    let store = open();
    assert_eq!(store.stats().unwrap().events, 1);
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn organizations_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let events = sample_events();
    store
        .append_batch(events.iter().map(|(o, e)| (o.as_str(), e)))
        .unwrap();
    for org in ["org-00", "org-01", "org-02", "org-03"] {
        let q = Query::new(org, ts("2026-01-01"), ts("2027-01-01")).as_of(ts("2026-08-01"));
        for e in store.scan(&q).unwrap() {
            assert_eq!(e.unwrap().scope_id().as_deref(), Some(org));
        }
    }
    // An event re-sent under another org is a conflict, not a leak.
    let (_, e) = &events[0];
    assert_eq!(store.append("org-evil", e).unwrap(), AppendOutcome::Conflict);
    let q = Query::new("org-evil", ts("2026-01-01"), ts("2027-01-01")).as_of(ts("2026-08-01"));
    assert_eq!(store.scan(&q).unwrap().count(), 0);
}

#[test]
fn duplicates_and_conflicts_across_sealed_segments_reopen_and_within_batches() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(ts("2026-08-01")));
    let mut gen = SampleGenerator::new(SampleConfig {
        duplicate_per_mille: 0,
        ..SampleConfig::default()
    });
    let events: Vec<(String, Event)> = (&mut gen).take(3000).collect();
    {
        let store = Store::open_with(dir.path(), small_segments(clock.clone())).unwrap();
        let r = store
            .append_batch(events.iter().map(|(o, e)| (o.as_str(), e)))
            .unwrap();
        assert_eq!(r.appended, 3000);
    }
    let store = Store::open_with(dir.path(), small_segments(clock.clone())).unwrap();
    assert!(store.stats().unwrap().segments > 3);
    // Old (sealed), recent (active) and in-batch duplicates.
    let batch = [
        (events[0].0.as_str(), &events[0].1),
        (events[2999].0.as_str(), &events[2999].1),
        (events[1500].0.as_str(), &events[1500].1),
    ];
    let r = store.append_batch(batch).unwrap();
    assert_eq!((r.appended, r.duplicates, r.conflicts), (0, 3, 0));
    let original = &events[10].1;
    let json = original.to_json();
    let flipped = if original.success() {
        json.replacen("\"success\":true", "\"success\":false", 1)
    } else {
        json.replacen("\"success\":false", "\"success\":true", 1)
    };
    let conflicting = Event::from_json(&flipped).unwrap();
    assert_ne!(&conflicting, original);
    assert_eq!(
        store.append(&events[10].0, &conflicting).unwrap(),
        AppendOutcome::Conflict
    );
    let (fresh_org, fresh) = gen.next_event();
    let r = store
        .append_batch([(fresh_org.as_str(), &fresh), (fresh_org.as_str(), &fresh)])
        .unwrap();
    assert_eq!(
        r.outcomes,
        vec![AppendOutcome::Appended, AppendOutcome::Duplicate]
    );
    assert_eq!(store.stats().unwrap().events, 3001);
    // Reordered nested keys are the same content: a duplicate.
    let json = fresh.to_json();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let reordered = Event::from_json(&serde_json::to_string_pretty(&v).unwrap()).unwrap();
    assert_eq!(
        store.append(&fresh_org, &reordered).unwrap(),
        AppendOutcome::Duplicate
    );
}

#[test]
fn a_resend_of_an_event_sealed_by_a_roll_inside_the_same_batch_is_a_duplicate() {
    // The batch's sealed-set lookups are done up front; a roll part-way
    // through moves earlier events of the active segment into the sealing
    // or (sealing on this thread) the sealed set, and the rest of the batch
    // must still find them there.
    let clock = Arc::new(FixedClock::new(ts("2026-08-01")));
    let mut gen = SampleGenerator::new(SampleConfig {
        duplicate_per_mille: 0,
        ..SampleConfig::default()
    });
    let events: Vec<(String, Event)> = (&mut gen).take(400).collect();
    for background_sealing in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            background_sealing,
            ..small_segments(clock.clone())
        };
        let store = Store::open_with(dir.path(), options).unwrap();
        store.append(&events[0].0, &events[0].1).unwrap();
        assert_eq!(store.stats().unwrap().segments, 1);
        let batch: Vec<(&str, &Event)> = events[1..]
            .iter()
            .chain([&events[0]])
            .map(|(o, e)| (o.as_str(), e))
            .collect();
        let r = store.append_batch(batch).unwrap();
        assert!(store.stats().unwrap().segments > 1, "the batch must span a roll");
        assert_eq!(
            (r.appended, r.duplicates),
            (399, 1),
            "background sealing {background_sealing}"
        );
        assert_eq!(r.outcomes.last(), Some(&AppendOutcome::Duplicate));
        assert_eq!(store.stats().unwrap().events, 400);
    }
}

#[test]
fn a_second_writer_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _store = Store::open(dir.path()).unwrap();
    match Store::open(dir.path()) {
        Err(Error::Locked { .. }) => {}
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn concurrent_appenders_store_each_id_once_and_readers_see_consistent_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(ts("2027-01-01")));
    let store = Arc::new(Store::open_with(dir.path(), small_segments(clock)).unwrap());
    let events: Arc<Vec<(String, Event)>> = Arc::new(
        SampleGenerator::new(SampleConfig {
            duplicate_per_mille: 0,
            orgs: 1,
            ..SampleConfig::default()
        })
        .take(2000)
        .collect(),
    );
    let mut handles = Vec::new();
    for t in 0..4usize {
        let (store, events) = (store.clone(), events.clone());
        // Threads overlap: each appends half of all events, in its own order.
        handles.push(std::thread::spawn(move || {
            let mut appended = 0;
            for i in 0..1000usize {
                let k = (t * 500 + i * 7) % 2000;
                let (o, e) = &events[k];
                if store.append(o, e).unwrap() == AppendOutcome::Appended {
                    appended += 1;
                }
            }
            appended
        }));
    }
    let reader = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut last = 0;
            for _ in 0..50 {
                let n = store
                    .scan(&Query::new("org-00", ts("2026-01-01"), ts("2027-01-01")))
                    .unwrap()
                    .count();
                assert!(n >= last, "visible events never disappear");
                last = n;
            }
        })
    };
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    reader.join().unwrap();
    let distinct: std::collections::HashSet<usize> = (0..4usize)
        .flat_map(|t| (0..1000usize).map(move |i| (t * 500 + i * 7) % 2000))
        .collect();
    assert_eq!(total, distinct.len() as u64);
    let all: Vec<Event> = store
        .scan(&Query::new("org-00", ts("2026-01-01"), ts("2027-01-01")))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(all.len(), distinct.len());
    let ids: std::collections::HashSet<_> = all.iter().map(|e| e.id()).collect();
    assert_eq!(ids.len(), all.len());
}

#[test]
fn buffered_durability_survives_reopen_after_flush() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        durability: Durability::Buffered,
        ..Options::default()
    };
    let events = sample_events();
    {
        let store = Store::open_with(dir.path(), opts.clone()).unwrap();
        store
            .append_batch(events.iter().map(|(o, e)| (o.as_str(), e)))
            .unwrap();
        store.flush().unwrap();
    }
    let store = Store::open_with(dir.path(), opts).unwrap();
    assert_eq!(store.stats().unwrap().events, model(&events).len() as u64);
}

/// `Scan::split`: time slices that, read one after another (here on
/// threads of their own), give exactly the unsplit scan; a tie of many
/// events at one instant stays in one slice; a limited scan stays whole.
#[test]
fn a_split_scan_reads_the_same_events_in_the_same_order() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(ts("2026-08-01T00:00:00Z")));
    let store = Store::open_with(dir.path(), small_segments(clock)).unwrap();
    let events = sample_events();
    for chunk in events.chunks(97) {
        store
            .append_batch(chunk.iter().map(|(o, e)| (o.as_str(), e)))
            .unwrap();
    }
    // 300 events of org-01 at one instant, in the middle of its range.
    let tie = ts("2026-06-20T12:00:00Z");
    let tied: Vec<Event> = (0..300u32)
        .map(|i| {
            Event::builder(
                uuid::Uuid::from_u128(0xabc0_0000 + u128::from(i)),
                "user.tied",
                tie,
                true,
            )
            .actor("u-1", "user", None)
            .target("t-1", "project", None)
            .build()
            .unwrap()
        })
        .collect();
    store.append_batch(tied.iter().map(|e| ("org-01", e))).unwrap();
    assert!(store.stats().unwrap().segments > 5, "test needs several segments");
    let (from, to) = (ts("2026-06-01"), ts("2026-08-01"));
    let q = Query::new("org-01", from, to);
    let whole: Vec<Event> = store.scan(&q).unwrap().collect::<Result<_, _>>().unwrap();
    assert!(whole.len() > 600, "{} events", whole.len());
    assert_eq!(store.scan(&q).unwrap().index_entries(), whole.len());
    for parts in [2, 3, 8, 64] {
        let slices = store.scan(&q).unwrap().split(parts);
        assert!(
            slices.len() > 1 && slices.len() <= parts,
            "split({parts}) made {} slices",
            slices.len()
        );
        let sizes: Vec<usize> = slices.iter().map(|s| s.index_entries()).collect();
        let read: Vec<Vec<Event>> = std::thread::scope(|s| {
            let handles: Vec<_> = slices
                .into_iter()
                .map(|slice| s.spawn(move || slice.collect::<Result<Vec<Event>, _>>().unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let holding_tie = read
            .iter()
            .filter(|r| r.iter().any(|e| e.occurred_at() == tie))
            .count();
        assert_eq!(holding_tie, 1, "split({parts}): the tie is cut");
        for (r, n) in read.iter().zip(&sizes) {
            assert_eq!(r.len(), *n);
        }
        if parts <= 8 {
            // Balanced apart from the tie: no slice far above its share.
            let share = whole.len() / parts;
            assert!(
                sizes.iter().all(|&n| n <= share * 2 + 300),
                "split({parts}) sizes {sizes:?}"
            );
        }
        let joined: Vec<Event> = read.into_iter().flatten().collect();
        assert_eq!(joined, whole, "split({parts})");
    }
    // A filter applies in every slice.
    let wf = Query::new("org-01", from, to).action("workflow.*");
    let want: Vec<Event> = store.scan(&wf).unwrap().collect::<Result<_, _>>().unwrap();
    assert!(!want.is_empty());
    let joined: Vec<Event> = store
        .scan(&wf)
        .unwrap()
        .split(5)
        .into_iter()
        .flat_map(|s| s.map(|e| e.unwrap()))
        .collect();
    assert_eq!(joined, want);
    // A limit, or a scan already started, is not split.
    assert_eq!(store.scan(&q.clone().limit(10)).unwrap().split(4).len(), 1);
    let mut started = store.scan(&q).unwrap();
    let first = started.next().unwrap().unwrap();
    assert_eq!(first, whole[0]);
    let rest = started.split(4);
    assert_eq!(rest.len(), 1);
    let rest: Vec<Event> = rest.into_iter().flatten().map(|e| e.unwrap()).collect();
    assert_eq!(rest, whole[1..].to_vec());
}
