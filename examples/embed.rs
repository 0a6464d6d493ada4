//! How a service embeds auditstore: one shared store, many request threads
//! appending single events (group commit makes them share fsyncs), and a
//! reader answering "what happened in org X yesterday".
//!
//! `cargo run --example embed`

use std::sync::Arc;

use auditstore::{AppendOutcome, Event, Query, Store, Timestamp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(Store::open(dir.path())?);
    let start = Timestamp::parse_rfc3339("2026-06-01T09:00:00Z")?;

    // Eight "request handler" threads, each recording what its users do.
    let handlers: Vec<_> = (0..8)
        .map(|worker| {
            let store = store.clone();
            std::thread::spawn(move || -> Result<u64, auditstore::Error> {
                let mut stored = 0;
                for n in 0..50u64 {
                    let id = uuid::Uuid::new_v4();
                    let at =
                        Timestamp::from_nanos(start.as_nanos() + (n * 8 + worker) as i64 * 1_000_000_000);
                    let event = Event::builder(id, "project.settings.update", at, true)
                        .actor(&format!("user-{worker}"), "user", Some("a user"))
                        .target("project-7", "project", None)
                        .payload(serde_json::json!({"setting": "branch_protection", "value": n % 2 == 0}))
                        .scope("org-01", "account", Some("Org 01"))
                        .build()?;
                    if store.append("org-01", &event)? == AppendOutcome::Appended {
                        stored += 1;
                    }
                    // Upstream retries re-send the same event: stored once.
                    if n % 10 == 0 {
                        assert_eq!(store.append("org-01", &event)?, AppendOutcome::Duplicate);
                    }
                }
                Ok(stored)
            })
        })
        .collect();
    let mut total = 0;
    for h in handlers {
        total += h.join().map_err(|_| "handler panicked")??;
    }
    println!("stored {total} events durably from 8 threads");

    let q = Query::new(
        "org-01",
        start,
        Timestamp::from_nanos(start.as_nanos() + 3_600_000_000_000),
    )
    .actor("user-3")
    .as_of(Timestamp::parse_rfc3339("2026-06-02T00:00:00Z")?);
    let mine: Vec<Event> = store.scan(&q)?.collect::<Result<_, _>>()?;
    println!("user-3 did {} things; first: {}", mine.len(), mine[0].to_json());
    Ok(())
}
