//! `backup DEST`: a consistent copy of the store; of a cluster node's data
//! directory, of every partition store (docs/cluster.md, "A node's data
//! directory" and "Seeding a node").

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use auditstore::partitions::{store_dir, write_count};
use auditstore::BackupReport;
use serde_json::json;

use crate::ctx::{outln, printable, CliError, CliResult, Ctx};

/// One store's copy: what was written, and whether the store was read as
/// a read-only snapshot (another process holds it).
struct Copied {
    report: BackupReport,
    read_only: bool,
}

/// `message` with the path `at` named as on the command line, `shown`.
fn named_as(message: &str, at: &Path, shown: &Path) -> String {
    if at == shown {
        return message.to_owned();
    }
    message.replace(&at.display().to_string(), &shown.display().to_string())
}

/// Partition `p`'s store copied to `to` (`shown`: `to` as named on the
/// command line), with its applied positions.
fn backup_store(ctx: &Ctx, p: u32, to: &Path, shown: &Path) -> CliResult<Copied> {
    // A cluster node's applied positions, read before the store is: the
    // copy then holds at least what they say is applied, and a node
    // seeded from it goes on from there (docs/cluster.md, "Seeding a node").
    #[cfg(feature = "cluster")]
    let positions = auditstore::cluster::applied::read_positions(&ctx.path(&ctx.partition_dir(p)))
        .map_err(|e| CliError::new("io", e.to_string()))?;
    // Opened as the read commands open it: for writing (which takes the
    // lock and recovers), or read-only while another process holds it.
    let store = ctx.open_partition(p, false)?;
    if store.is_missing() {
        return Err(CliError::new(
            "not_found",
            format!(
                "no store in {}: nothing to back up",
                ctx.partition_dir(p).display()
            ),
        ));
    }
    let report = store.backup(to).map_err(|e| {
        let mut err = match e {
            // The destination is not a new or empty directory: not a range.
            auditstore::Error::InvalidArgument { .. } => CliError::new("io", e.to_string()),
            e => e.into(),
        };
        err.message = named_as(&err.message, to, shown);
        err
    })?;
    #[cfg(feature = "cluster")]
    auditstore::cluster::applied::write_positions(to, &positions)
        .map_err(|e| CliError::new("io", e.to_string()))?;
    Ok(Copied {
        report,
        read_only: store.is_read_only(),
    })
}

/// Partition `p`'s store (p >= 1) copied into the backup `at`, with its
/// failure naming the store.
fn backup_partition(ctx: &Ctx, p: u32, at: &Path, dest: &Path) -> CliResult<Copied> {
    backup_store(ctx, p, &store_dir(at, p), &store_dir(dest, p)).map_err(|mut e| {
        e.message = format!(
            "backing up partition {p}'s store {}: {}",
            ctx.partition_dir(p).display(),
            e.message
        );
        e.with("partition", p)
    })
}

/// Undo a node's backup that failed after partition 0's store was copied
/// to `at`: the destination is left as it was found (missing, or empty).
fn remove_partial(at: &Path, existed: bool) {
    let _ = std::fs::remove_dir_all(at);
    if existed {
        let _ = std::fs::create_dir(at);
    }
}

pub fn backup(ctx: &Ctx, dest: &Path) -> CliResult<ExitCode> {
    let count = ctx.partition_count()?;
    let started = Instant::now();
    let at = ctx.path(dest);
    let existed = at.is_dir();
    let first = backup_store(ctx, 0, &at, dest)?;
    let (mut total, mut read_only) = (first.report, first.read_only);
    let mut copied = vec![0];
    if let Some(count) = count {
        let rest = (|| -> CliResult {
            for p in ctx.partitions_present()? {
                let c = backup_partition(ctx, p, &at, dest)?;
                total.events += c.report.events;
                total.bytes += c.report.bytes;
                total.segments += c.report.segments;
                total.linked_files += c.report.linked_files;
                total.copied_files += c.report.copied_files;
                read_only |= c.read_only;
                copied.push(p);
            }
            // Last: a copy with the count file holds every partition store.
            write_count(&at, count).map_err(|e| CliError::new("io", named_as(&e.to_string(), &at, dest)))
        })();
        if let Err(e) = rest {
            remove_partial(&at, existed);
            return Err(e);
        }
    }
    let millis = started.elapsed().as_millis() as u64;
    if ctx.json {
        let mut out = json!({
            "events": total.events, "bytes": total.bytes, "dest": dest.display().to_string(),
            "segments": total.segments, "linked_files": total.linked_files,
            "copied_files": total.copied_files, "read_only": read_only, "millis": millis,
        });
        if let (Some(_), Some(map)) = (count, out.as_object_mut()) {
            map.insert("partitions".into(), copied.clone().into());
        }
        ctx.print_json(&out)?;
    } else {
        let stores = match count {
            Some(_) => format!(" from {} partition stores", copied.len()),
            None => String::new(),
        };
        outln!(
            ctx,
            "backed up {} events ({} bytes, {} segments; {} files linked, {} copied){stores} to {} in {} ms",
            total.events,
            total.bytes,
            total.segments,
            total.linked_files,
            total.copied_files,
            printable(&dest.display().to_string()),
            millis
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
