//! The processing run (the :30 tick): clean up after crashes, build every
//! `requested` request created at or before the most recent schedule mark,
//! and expire downloads whose time has come.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use uuid::Uuid;

use crate::export::builder;
use crate::export::error::{self, ExportError};
use crate::export::policy::ExportPolicy;
use crate::export::request::{ExportRequest, Outcome, Registry};
use crate::log::segment::sync_dir;
use crate::store::Store;
use crate::time::Timestamp;

/// One processing run at a time in this process (another process cannot
/// hold the store: it is locked for writing).
static RUN: Mutex<()> = Mutex::new(());

/// What a processing run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessReport {
    /// The schedule mark the run used: requests created at or before it
    /// were processed.
    pub mark: Option<Timestamp>,
    /// Requests handled by this run (now `success` or `failed`), oldest first.
    pub processed: Vec<ExportRequest>,
    /// Requests whose download expired (their files are deleted).
    pub expired: Vec<ExportRequest>,
    /// Leftover files removed (temporary files of interrupted builds, files
    /// of requests that no longer have a download).
    pub removed_files: Vec<PathBuf>,
}

impl ProcessReport {
    pub fn processed_ids(&self) -> Vec<Uuid> {
        self.processed.iter().map(|r| r.id).collect()
    }
    pub fn expired_ids(&self) -> Vec<Uuid> {
        self.expired.iter().map(|r| r.id).collect()
    }
}

/// Remove every `*.csv.tmp` (an interrupted build) and every `<id>.csv`
/// whose request has no download (an interrupted expiry, or a build whose
/// outcome was never recorded: it is built again).
fn sweep(dir: &Path, registry: &Registry<'_>, now: Timestamp) -> Result<Vec<PathBuf>, ExportError> {
    let mut removed = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| error::io(format!("list {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| error::io(format!("list {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let doomed = if name.ends_with(".csv.tmp") {
            true
        } else if let Some(stem) = name.strip_suffix(".csv") {
            match Uuid::parse_str(stem) {
                Ok(id) => match registry.get(&id)? {
                    Some(r) => !r.downloadable_at(now),
                    None => true,
                },
                Err(_) => false,
            }
        } else {
            false
        };
        if doomed && builder::remove_if_exists(&entry.path())? {
            removed.push(entry.path());
        }
    }
    if !removed.is_empty() {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Run the scheduled processing as of `now`.
pub(crate) fn process(
    store: &Store,
    policy: &ExportPolicy,
    now: Timestamp,
    how: builder::Formatting<'_>,
) -> Result<ProcessReport, ExportError> {
    let _run = RUN.lock().unwrap_or_else(|p| p.into_inner());
    let dir = store.dir().join(builder::EXPORTS_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| error::io(format!("create {}", dir.display()), e))?;
    let registry = Registry::new(store.meta());
    let mut report = ProcessReport {
        removed_files: sweep(&dir, &registry, now)?,
        ..Default::default()
    };

    let mark = policy.schedule().last_mark(now);
    report.mark = Some(mark);
    for req in registry.pending_until(mark)? {
        let rules = policy.plan(store.org_settings(&req.org)?.plan);
        let outcome = match builder::build(store, &dir, &req, now, how) {
            Ok(built) => Outcome::Success {
                completed_at: now,
                expires_at: now.saturating_add_days(rules.download_days),
                rows: built.rows,
                bytes: built.bytes,
                crc32: built.crc32,
            },
            Err(e) => Outcome::Failed {
                completed_at: now,
                reason: e.to_string(),
            },
        };
        report
            .processed
            .push(registry.transition(&req.id, now, |r| r.complete(outcome))?);
    }

    for req in registry.expiring_until(now)? {
        let expired = registry.transition(&req.id, now, |r| r.expire(now))?;
        if builder::remove_if_exists(&builder::final_path(&dir, &req.id))? {
            sync_dir(&dir)?;
        }
        report.expired.push(expired);
    }
    Ok(report)
}
