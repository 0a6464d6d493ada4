//! The export schedule inside the server: a processing run at start (a
//! mark missed while the server was down, downloads that expired
//! meanwhile), then one at every schedule mark, by the server's clock.
//!
//! A node of a replicated deployment does not process on its own clock:
//! it hands the mark to the deployment ([`Command::ScheduleMark`]), which
//! processes it once, at the same point of its log, on every replica.

use std::time::Duration;

use tokio::sync::watch;

use super::replication::Command;
use super::state::AppState;
use crate::export::Exports;
use crate::time::Timestamp;

/// Longest sleep between looks at the clock: a run is at most this late.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Run processing at every mark until `stop` changes.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut last_run: Option<Timestamp> = None;
    loop {
        let now = state.now();
        let due = match last_run {
            None => true,
            Some(last) => match next_mark(&state, last) {
                Some(mark) => now >= mark,
                None => false,
            },
        };
        if due && state.replication.is_some() {
            publish_mark(&state, now).await;
            last_run = Some(now);
        } else if due {
            let store = state.store.clone();
            let outcome = tokio::task::spawn_blocking(move || Exports::new(&store)?.process()).await;
            match outcome {
                Ok(Ok(report)) => {
                    metrics::counter!("auditstore_exports_processed_total")
                        .increment(report.processed.len() as u64);
                    metrics::counter!("auditstore_exports_expired_total")
                        .increment(report.expired.len() as u64);
                    tracing::info!(
                        processed = report.processed.len(),
                        expired = report.expired.len(),
                        "export processing run"
                    );
                }
                Ok(Err(e)) => tracing::error!(error = %e, "export processing run failed"),
                Err(e) => tracing::error!(error = %e, "export processing task failed"),
            }
            last_run = Some(now);
        }
        tokio::select! {
            _ = tokio::time::sleep(MAX_SLEEP) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Hand the most recent mark as of `now` to the deployment; a failure is
/// logged (the next node's, or this node's next mark, processes what is
/// due, and `POST /api/v1/exports/process` does at once).
async fn publish_mark(state: &AppState, now: Timestamp) {
    let Ok(policy) = crate::export::ExportPolicy::load(state.store.dir()) else {
        tracing::error!("export schedule: the export policy cannot be read");
        return;
    };
    let mark = policy.schedule().last_mark(now);
    let command = Command::ScheduleMark { mark };
    if let Some(published) = state.replication.as_ref().and_then(|r| r.command(command)) {
        if let Err(e) = published.await {
            tracing::error!(error = %e.message, %mark, "export schedule: the mark was not published");
        }
    }
}

/// The first mark after `last` (a run at `last` handled every mark up to it).
fn next_mark(state: &AppState, last: Timestamp) -> Option<Timestamp> {
    let policy = crate::export::ExportPolicy::load(state.store.dir()).ok()?;
    let after = Timestamp::from_nanos(last.as_nanos().saturating_add(1));
    Some(policy.schedule().next_mark(after))
}
