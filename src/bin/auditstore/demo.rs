//! `demo`: the quick start. Into a fresh temporary store (or --data-dir),
//! generate a realistic sample, ingest it, run a range query, request and
//! process an export, check it against its signed manifest, and say what
//! happened and where the CSV is.

use std::process::ExitCode;
use std::time::Instant;

use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::{Event, Plan, Query, Timestamp};
use serde_json::json;

use crate::ctx::{outln, CliError, CliResult, Ctx};

pub fn run(ctx: &Ctx, events: u64) -> CliResult<ExitCode> {
    let dir = if ctx.data_dir_given {
        ctx.data_dir.clone()
    } else {
        std::env::temp_dir().join(format!("auditstore-demo-{}", uuid::Uuid::new_v4()))
    };
    let now = ctx.now();
    let day = 86_400_000_000_000i64;
    let start = Timestamp::from_nanos(now.as_nanos() - 30 * day);
    let step = (29 * day / events.max(1) as i64).max(1);
    let demo_ctx = Ctx {
        data_dir: dir.clone(),
        data_dir_given: true,
        json: ctx.json,
        as_of: Some(now),
        console: crate::console::Console::local(),
        shared: None,
        partitions: None,
    };
    let store = demo_ctx.open_store(true)?;
    let say = |s: String| {
        if !ctx.json {
            let _ = outln!(ctx, "{s}");
        }
    };
    say(format!("store: {}", dir.display()));
    // The demo's organization is org-00 on the self-hosted plan (exports
    // without a rate limit, so the demo can run again on the same store).
    // A store where org-00 was configured keeps its settings: the demo
    // never changes what an operator set.
    match store.orgs()?.into_iter().find(|o| o.org == "org-00") {
        Some(kept) => say(format!(
            "org-00 keeps its settings: plan {}, retention {} days",
            kept.plan, kept.retention_days
        )),
        None => {
            store.set_org("org-00", Some(Plan::Server), Some(365))?;
            say("org-00: plan server, retention 365 days".into());
        }
    }
    let mut gen = SampleGenerator::new(SampleConfig {
        start,
        step_nanos: step,
        ..SampleConfig::default()
    });
    let generated: Vec<(String, Event)> = (&mut gen).take(events as usize).collect();
    let t = Instant::now();
    let mut appended = 0;
    let mut duplicates = 0;
    let mut conflicts = 0;
    for chunk in generated.chunks(4096) {
        let r = store.append_batch(chunk.iter().map(|(o, e)| (o.as_str(), e)))?;
        appended += r.appended;
        duplicates += r.duplicates;
        conflicts += r.conflicts;
    }
    let ingest_secs = t.elapsed().as_secs_f64();
    say(format!(
        "ingested {} generated events in {:.3}s ({:.0} events/s, fsynced): {appended} appended, {duplicates} duplicates, {conflicts} conflicts",
        generated.len(),
        ingest_secs,
        generated.len() as f64 / ingest_secs.max(1e-9)
    ));
    let from = Timestamp::from_nanos(now.as_nanos() - 8 * day);
    let from = Timestamp::start_of_day(from.date()).unwrap_or(from);
    let to = Timestamp::from_nanos(from.as_nanos() + day);
    let t = Instant::now();
    let found: Vec<Event> = store
        .scan(&Query::new("org-00", from, to))?
        .collect::<Result<_, _>>()?;
    say(format!(
        "query org-00 [{from}, {to}): {} events in {:.2} ms; first: {}",
        found.len(),
        t.elapsed().as_secs_f64() * 1e3,
        found
            .first()
            .map(|e| e.action().to_owned())
            .unwrap_or_else(|| "-".into())
    ));
    let export = crate::export::demo_export(&store, now)?;
    say(format!(
        "export request {}: status {}, {} rows, CSV at {}",
        export.id, export.status, export.rows, export.path
    ));
    if let Some((rows, tree_size)) = export.manifest {
        say(format!(
            "signed manifest checked (auditstore export verify): {rows} rows, each an event of the signed log of {tree_size} leaves"
        ));
    }
    let stats = store.stats()?;
    say(format!(
        "stats: {} events, {} organizations, {} segments, {} bytes on disk",
        stats.events, stats.organizations, stats.segments, stats.bytes
    ));
    if ctx.json {
        ctx.print_json(&json!({
            "data_dir": dir.display().to_string(),
            "appended": appended, "duplicates": duplicates, "conflicts": conflicts,
            "query_events": found.len(),
            "export": {"id": export.id, "status": export.status, "rows": export.rows, "path": export.path},
            "events": stats.events,
        }))?;
    }
    if export.status != "success" {
        return Err(CliError::new(
            "failed",
            format!("demo export ended {}", export.status),
        ));
    }
    Ok(ExitCode::SUCCESS)
}
