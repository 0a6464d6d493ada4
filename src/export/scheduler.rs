//! The processing run (the :30 tick): clean up after crashes, build every
//! `requested` request created at or before the most recent schedule mark,
//! and expire downloads whose time has come.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use uuid::Uuid;

use crate::export::builder;
use crate::export::error::{self, ExportError};
use crate::export::manifest::SUFFIX;
use crate::export::manifest_build::{self, ManifestRef};
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
        let doomed = if name.ends_with(".csv.tmp") || name.ends_with(".manifest.json.tmp") {
            true
        } else if let Some(stem) = name.strip_suffix(".csv").or_else(|| name.strip_suffix(SUFFIX)) {
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

/// The organization's newest manifest (the one with the highest sequence
/// number), which the next one links to.
fn latest_manifest(registry: &Registry<'_>, org: &str) -> Result<Option<ManifestRef>, ExportError> {
    Ok(registry
        .list_org(org)?
        .into_iter()
        .filter_map(|r| {
            Some(ManifestRef {
                sequence: r.manifest_seq?,
                sha256: r.manifest_sha256?,
            })
        })
        .max_by_key(|m| m.sequence))
}

/// Run the scheduled processing as of `now`.
pub(crate) fn process(
    store: &Store,
    policy: &ExportPolicy,
    now: Timestamp,
    how: builder::Formatting<'_>,
    orgs: &dyn Fn(&str) -> bool,
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
        if !orgs(&req.org) {
            continue;
        }
        let rules = policy.plan(store.org_settings(&req.org)?.plan);
        let built = builder::build(store, &dir, &req, now, how).and_then(|built| {
            let manifest = if built.rows > 0 && store.keeps_tree() {
                let previous = latest_manifest(&registry, &req.org)?;
                let file = manifest_build::BuiltFile {
                    rows: &built.leaves,
                    bytes: built.bytes,
                    sha256: built.sha256.clone(),
                };
                Some(manifest_build::write(
                    store,
                    &dir,
                    &req,
                    file,
                    now,
                    previous.as_ref(),
                )?)
            } else {
                None
            };
            Ok((built, manifest))
        });
        let outcome = match built {
            Ok((built, manifest)) => Outcome::Success {
                completed_at: now,
                expires_at: now.saturating_add_days(rules.download_days),
                rows: built.rows,
                bytes: built.bytes,
                crc32: built.crc32,
                manifest,
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
        if !orgs(&req.org) {
            continue;
        }
        let expired = registry.transition(&req.id, now, |r| r.expire(now))?;
        let file = builder::remove_if_exists(&builder::final_path(&dir, &req.id))?;
        let manifest = builder::remove_if_exists(&manifest_build::manifest_path(&dir, &req.id))?;
        if file || manifest {
            sync_dir(&dir)?;
        }
        report.expired.push(expired);
    }
    Ok(report)
}
