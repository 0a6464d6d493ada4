//! The store's own audit events (events.md, "The store's own actions") are
//! never separated from the change they record and never recorded twice:
//! a failed append leaves the event staged for the next open, and a
//! `kill -9` at any moment of `org set` leaves the settings and the last
//! `org.settings.update` event in agreement.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use auditstore::io::{Fault, FaultKind, FaultOp, FaultyIo};
use auditstore::{Event, FixedClock, Options, Plan, Query, Store};
use common::{tool_json, ts};

fn settings_events(store: &Store, org: &str) -> Vec<Event> {
    store
        .scan(&Query::new(org, ts("2000-01-01"), ts("2100-01-01")))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.action() == "org.settings.update")
        .collect()
}

#[test]
fn an_event_whose_append_failed_is_appended_by_the_next_open_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(ts("2026-07-20T10:00:00Z")));
    drop(Store::open(dir.path()).unwrap());
    let faulty = Arc::new(FaultyIo::new(vec![Fault {
        op: FaultOp::Write,
        nth: 0,
        kind: FaultKind::Error,
        sticky: true,
    }]));
    {
        let store = Store::open_with(
            dir.path(),
            Options {
                io: faulty.clone(),
                clock: clock.clone(),
                ..Options::default()
            },
        )
        .unwrap();
        // The change commits; its event cannot be written yet: the caller
        // is told, and the event waits in the outbox.
        assert!(store
            .set_org_as("alice", "org-01", Some(Plan::Scale), Some(30))
            .is_err());
        assert!(faulty.injected() > 0);
        assert_eq!(store.org_settings("org-01").unwrap().retention_days, 30);
        assert!(settings_events(&store, "org-01").is_empty());
    }
    let opts = || Options {
        clock: clock.clone(),
        ..Options::default()
    };
    for _ in 0..2 {
        let store = Store::open_with(dir.path(), opts()).unwrap();
        let events = settings_events(&store, "org-01");
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].actor_json().contains("\"alice\""));
        assert!(events[0].payload_json().contains("\"retention_days\":30"));
        assert!(store.verify().unwrap().problems.is_empty());
    }
    // Setting what is already set records nothing.
    let store = Store::open_with(dir.path(), opts()).unwrap();
    store
        .set_org_as("bob", "org-01", Some(Plan::Scale), Some(30))
        .unwrap();
    assert_eq!(settings_events(&store, "org-01").len(), 1);
}

/// `org set` processes killed at random moments: after each, the
/// settings and the newest `org.settings.update` event agree, and no event
/// is stored twice.
#[test]
fn kill_9_during_org_set_never_separates_a_change_from_its_event() {
    let rounds: u64 = std::env::var("OWN_EVENT_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(tool_json(d, &["org", "set", "org-01", "--plan", "scale"])
        .status
        .success());
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let (mut killed, mut killed_after_commit) = (0, 0);
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let days = (2 + round % 50).to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_auditstore"))
            .arg("--data-dir")
            .arg(d)
            .args([
                "--json",
                "org",
                "set",
                "org-01",
                "--retention-days",
                &days,
                "--user",
                "ops",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(seed % 120_000));
        let was_killed = child.try_wait().unwrap().is_none();
        if was_killed {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        let shown = tool_json(d, &["org", "show", "org-01"]);
        assert!(shown.status.success(), "round {round}: {shown:?}");
        let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
        let store = Store::open(d).unwrap();
        let events = settings_events(&store, "org-01");
        let mut ids: Vec<_> = events.iter().map(|e| e.id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), events.len(), "round {round}: an event stored twice");
        let newest = events.iter().max_by_key(|e| e.occurred_at()).unwrap();
        let payload: serde_json::Value = serde_json::from_str(newest.payload_json()).unwrap();
        assert_eq!(
            payload["new"]["retention_days"], shown["retention_days"],
            "round {round}: settings and their newest event disagree"
        );
        assert!(store.verify().unwrap().problems.is_empty(), "round {round}");
        if was_killed && shown["retention_days"] == days.parse::<u64>().unwrap_or(0) {
            killed_after_commit += 1;
        }
    }
    eprintln!("{rounds} rounds: {killed} processes killed mid-run, {killed_after_commit} of them after their change committed");
}
