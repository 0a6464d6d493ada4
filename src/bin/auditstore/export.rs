//! `export request|list|process|download|manifest|verify|full` (contract:
//! `shared/spec/cli.md`, `shared/spec/integrity.md`).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use auditstore::export::manifest_check::check_export;
use auditstore::export::pipe::PipedFile;
use auditstore::export::{Date, ExportError, ExportRequest, Exports, Progress, ProgressFn, Role, Status};
use auditstore::integrity::VerifierKey;
use auditstore::server::replication::{Command, Outcome};
use auditstore::{FixedClock, Store, Timestamp};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::ctx::{outln, parse_org, parse_user, table, CliError, CliResult, Ctx};

#[derive(Subcommand)]
pub enum ExportCommand {
    /// Create an export request for a range of dates (UTC, inclusive).
    Request {
        #[arg(long, value_parser = parse_org)]
        org: String,
        /// Who makes the request.
        #[arg(long, value_parser = parse_user)]
        user: String,
        /// The requester's role in the organization.
        #[arg(long, default_value = "admin", value_parser = parse_role)]
        role: Role,
        /// First date (YYYY-MM-DD).
        #[arg(long, value_parser = auditstore::export::parse_date)]
        from: Date,
        /// Last date, inclusive (YYYY-MM-DD).
        #[arg(long, value_parser = auditstore::export::parse_date)]
        to: Date,
    },
    /// All requests of an organization, newest first.
    List {
        #[arg(long, value_parser = parse_org)]
        org: String,
    },
    /// Run the scheduled processing (the most recent mark) and expire old downloads.
    Process,
    /// Write a finished request's CSV to FILE or stdout.
    Download {
        /// The request id.
        id: String,
        /// Output file (default, or `-`: stdout).
        #[arg(long, value_parser = parse_out)]
        out: Option<OutFile>,
        /// Who downloads, for the store's own audit event
        /// `audit_log.download_url.generated` [default: the operating
        /// system's user name].
        #[arg(long, value_parser = parse_user)]
        user: Option<String>,
    },
    /// The signed manifest of a finished request's file (JSON).
    Manifest {
        /// The request id.
        id: String,
        /// Output file (default, or `-`: stdout).
        #[arg(long, value_parser = parse_out)]
        out: Option<OutFile>,
    },
    /// Check an export file against its manifest, offline.
    Verify {
        /// The export file.
        csv: PathBuf,
        /// Its manifest.
        manifest: PathBuf,
        /// The store's verifier key (as `key show` prints it), or a file
        /// holding it [default: the key of the store at --data-dir].
        #[arg(long)]
        key: Option<String>,
    },
    /// Server plan, admins only: the complete retained log of ORG as CSV.
    Full {
        #[arg(long, value_parser = parse_org)]
        org: String,
        #[arg(long, value_parser = parse_user)]
        user: String,
        #[arg(long, default_value = "admin", value_parser = parse_role)]
        role: Role,
        /// Output file (default, or `-`: stdout).
        #[arg(long, value_parser = parse_out)]
        out: Option<OutFile>,
    },
}

/// `--out FILE`; `-` means stdout, as for `ingest`'s input.
#[derive(Clone)]
pub struct OutFile(Option<PathBuf>);

fn parse_out(s: &str) -> Result<OutFile, String> {
    match s {
        "" => Err("an empty path".to_string()),
        "-" => Ok(OutFile(None)),
        path => Ok(OutFile(Some(PathBuf::from(path)))),
    }
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

/// The contract's error object for a refusal or failure.
pub fn refusal(e: ExportError) -> CliError {
    if let ExportError::Store(inner) = e {
        return CliError::from(inner);
    }
    let mut err = CliError::new(e.code(), e.to_string());
    for (key, value) in e.details() {
        err = err.with(key, value);
    }
    err
}

fn exports<'s>(ctx: &Ctx, store: &'s Store) -> CliResult<Exports<'s>> {
    let exports = Exports::new(store).map_err(refusal)?.with_clock(ctx.clock());
    Ok(match progress_bar(ctx) {
        Some(f) => exports.with_progress(f),
        None => exports,
    })
}

/// A row counter on stderr when it is a terminal (and output is for people):
/// one spinner per file being built, cleared when it is done.
fn progress_bar(ctx: &Ctx) -> Option<ProgressFn> {
    if ctx.json || !ctx.console.progress() {
        return None;
    }
    let current: Mutex<Option<ProgressBar>> = Mutex::new(None);
    Some(Arc::new(move |p: &Progress<'_>| {
        let mut current = current.lock().unwrap_or_else(|e| e.into_inner());
        if p.done {
            if let Some(pb) = current.take() {
                pb.finish_and_clear();
            }
            return;
        }
        let pb = current.get_or_insert_with(|| {
            let pb = ProgressBar::new_spinner();
            pb.set_style(
                ProgressStyle::with_template("{spinner} {msg}: {human_pos} rows, {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            pb.set_message(match p.request {
                Some(id) => format!("export {id}"),
                None => format!("full export of {}", p.org),
            });
            pb
        });
        pb.set_position(p.rows);
    }))
}

pub fn run(ctx: &Ctx, cmd: ExportCommand) -> CliResult<ExitCode> {
    match cmd {
        ExportCommand::Request {
            org,
            user,
            role,
            from,
            to,
        } => {
            let command = Command::RequestExport {
                org: org.clone(),
                requested_by: user.clone(),
                role,
                from,
                to,
            };
            let replicated = match crate::remote::through_cluster(ctx, command) {
                Some(answer) => match answer? {
                    Outcome::Export(req) => Some(req),
                    other => return Err(CliError::new("io", format!("the cluster answered {other:?}"))),
                },
                None => None,
            };
            let store = match replicated {
                // What the cluster did, read from the organization's store.
                Some(_) => ctx.open_org_store(&org, false)?,
                None => {
                    ctx.refuse_offline_change_on_node("`export request`")?;
                    ctx.open_store(true)?
                }
            };
            let exports = exports(ctx, &store)?;
            let req = match replicated {
                Some(req) => req,
                None => exports.request(&org, &user, role, from, to).map_err(refusal)?,
            };
            if ctx.json {
                print_value(ctx, &req)?;
            } else {
                outln!(
                    ctx,
                    "export request {} created; it is processed at the run of {}",
                    req.id,
                    exports.processed_at(req.created_at)
                )?;
                ctx.print(&requests_table(&[req]))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ExportCommand::List { org } => {
            let store = ctx.open_org_store(&org, false)?;
            let list = exports(ctx, &store)?.list(&org).map_err(refusal)?;
            if ctx.json {
                print_value(ctx, &list)?;
            } else if list.is_empty() {
                outln!(ctx, "no export requests for {org}")?;
            } else {
                ctx.print(&requests_table(&list))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ExportCommand::Process => {
            let store = ctx.open_store(false)?;
            let report = match crate::remote::through_cluster(ctx, Command::Process) {
                Some(answer) => match answer? {
                    Outcome::Processed { processed, expired } => auditstore::export::ProcessReport {
                        mark: Some(exports(ctx, &store)?.policy().schedule().last_mark(ctx.now())),
                        processed,
                        expired,
                        removed_files: Vec::new(),
                    },
                    other => return Err(CliError::new("io", format!("the cluster answered {other:?}"))),
                },
                None => {
                    ctx.refuse_offline_change_on_node("`export process`")?;
                    exports(ctx, &store)?.process().map_err(refusal)?
                }
            };
            if ctx.json {
                let ids = |v: Vec<uuid::Uuid>| v.into_iter().map(|id| id.to_string()).collect::<Vec<_>>();
                ctx.print_json(&json!({
                    "processed": ids(report.processed_ids()),
                    "expired": ids(report.expired_ids()),
                }))?;
            } else {
                let mark = report.mark.map(|m| m.to_rfc3339()).unwrap_or_default();
                outln!(
                    ctx,
                    "run of {mark}: {} request(s) processed, {} download(s) expired",
                    report.processed.len(),
                    report.expired.len()
                )?;
                if !report.processed.is_empty() {
                    ctx.print(&requests_table(&report.processed))?;
                }
                for r in &report.expired {
                    outln!(ctx, "expired: {}", r.id)?;
                }
                for f in &report.removed_files {
                    outln!(ctx, "removed leftover {}", f.display())?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ExportCommand::Download { id, out, user } => {
            let out = out.and_then(|o| o.0);
            let not_found = || CliError::new("not_found", format!("no export request {id}"));
            let uuid = uuid::Uuid::parse_str(&id).map_err(|_| not_found())?;
            let store = request_store(ctx, uuid)?;
            let user = user.unwrap_or_else(|| ctx.user());
            let mut download = exports(ctx, &store)?.download_by(uuid, &user).map_err(refusal)?;
            match out {
                Some(path) => {
                    let bytes = write_file_aside(ctx, &path, |w| {
                        std::io::copy(&mut download, w)
                            .map(|_| ())
                            .map_err(|e| CliError::new("io", e.to_string()))
                    })?;
                    let req = download.request();
                    if ctx.json {
                        ctx.print_json(&json!({
                            "id": req.id.to_string(),
                            "path": path.display().to_string(),
                            "rows": req.rows,
                            "bytes": bytes,
                        }))?;
                    } else {
                        outln!(
                            ctx,
                            "wrote {} rows ({bytes} bytes) of export {} to {}",
                            req.rows.unwrap_or(0),
                            req.id,
                            path.display()
                        )?;
                    }
                }
                None => {
                    let mut stdout = ctx.out();
                    if let Err(e) = std::io::copy(&mut download, &mut stdout).and_then(|_| stdout.flush()) {
                        if e.kind() != std::io::ErrorKind::BrokenPipe {
                            return Err(e.into());
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ExportCommand::Manifest { id, out } => {
            crate::export_manifest::manifest(ctx, &id, out.and_then(|o| o.0))
        }
        ExportCommand::Verify { csv, manifest, key } => {
            crate::export_manifest::verify(ctx, &csv, &manifest, key.as_deref())
        }
        ExportCommand::Full { org, user, role, out } => {
            let out = out.and_then(|o| o.0);
            let store = ctx.open_org_store(&org, false)?;
            let exports = exports(ctx, &store)?;
            match out {
                Some(path) => {
                    let mut rows = 0;
                    let bytes = write_file_aside(ctx, &path, |w| {
                        rows = exports.full(&org, &user, role, w).map_err(refusal)?.rows;
                        Ok(())
                    })?;
                    if ctx.json {
                        ctx.print_json(&json!({
                            "org": org,
                            "path": path.display().to_string(),
                            "rows": rows,
                            "bytes": bytes,
                        }))?;
                    } else {
                        outln!(
                            ctx,
                            "wrote {rows} rows ({bytes} bytes) of {org} to {}",
                            path.display()
                        )?;
                    }
                }
                None => {
                    let out = BufWriter::with_capacity(1 << 16, ctx.out());
                    match exports.full(&org, &user, role, out) {
                        Ok(_) => {}
                        Err(ExportError::Csv(auditstore::export::csv::CsvError::Io(e)))
                            if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                        Err(ExportError::Store(auditstore::Error::Io { source, .. }))
                            if source.kind() == std::io::ErrorKind::BrokenPipe => {}
                        Err(e) => return Err(refusal(e)),
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The store holding export request `id`: the data directory's, or on a
/// node's, whichever partition's store has it (else partition 0's, which
/// then answers `not_found`).
pub fn request_store(ctx: &Ctx, id: uuid::Uuid) -> CliResult<crate::ctx::OpenStore> {
    if ctx.partition_count()?.is_none() {
        return ctx.open_store(false);
    }
    let found = ctx.find_in_partitions(false, |store| {
        match Exports::new(store).map_err(refusal)?.get(id) {
            Ok(_) => Ok(Some(())),
            Err(ExportError::NotFound(_)) => Ok(None),
            Err(e) => Err(refusal(e)),
        }
    })?;
    match found {
        Some((store, ())) => Ok(store),
        None => ctx.open_store(false),
    }
}

/// Write FILE through `FILE.<random>.partial` (written by a helper thread,
/// straight to the disk where the filesystem allows), fsynced and renamed
/// into place only when complete, then the directory fsynced: a refusal or
/// failure leaves no FILE behind. Returns its size.
/// Messages name the files as the command line did (`path`); they are
/// written where that means for whoever ran the command (`ctx.path`).
pub fn write_file_aside(
    ctx: &Ctx,
    path: &Path,
    write: impl FnOnce(&mut PipedFile) -> CliResult<()>,
) -> CliResult<u64> {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{}.partial", uuid::Uuid::new_v4().simple()));
    let tmp = path.with_file_name(name);
    let result = (|| {
        let mut w = PipedFile::create(&ctx.path(&tmp))
            .map_err(|e| CliError::new("io", format!("create {}: {e}", tmp.display())))?;
        write(&mut w)?;
        let file = w
            .finish()
            .map_err(|e| CliError::new("io", format!("write {}: {e}", tmp.display())))?;
        file.sync_all()
            .map_err(|e| CliError::new("io", format!("fsync {}: {e}", tmp.display())))?;
        let bytes = file.metadata()?.len();
        std::fs::rename(ctx.path(&tmp), ctx.path(path))
            .map_err(|e| CliError::new("io", format!("rename to {}: {e}", path.display())))?;
        // The rename is durable once the directory is synced.
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        auditstore::log::segment::sync_dir(&ctx.path(parent))
            .map_err(|e| CliError::new("io", format!("fsync the directory of {}: {e}", path.display())))?;
        Ok(bytes)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(ctx.path(&tmp));
    }
    result
}

/// One JSON line on stdout, keys in the order of the contract.
fn print_value(ctx: &Ctx, value: &impl serde::Serialize) -> CliResult {
    let text = serde_json::to_string(value).map_err(|e| CliError::new("io", e.to_string()))?;
    outln!(ctx, "{text}")
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The readable listing: timeframe, requester, made at, expires, status,
/// whether a download is available.
fn requests_table(list: &[ExportRequest]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            let download = match r.status {
                Status::Success if r.has_data => "yes".to_owned(),
                Status::Success => "no (no data)".to_owned(),
                Status::Requested => "not yet".to_owned(),
                Status::Failed | Status::Expired => "no".to_owned(),
            };
            vec![
                r.id.to_string(),
                format!("{} to {}", r.from, r.to),
                r.requested_by.clone(),
                r.created_at.to_rfc3339(),
                r.expires_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into()),
                match (&r.status, &r.failure_reason) {
                    (Status::Failed, Some(why)) => format!("failed: {why}"),
                    (s, _) => s.to_string(),
                },
                r.rows.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
                r.bytes.map(human_size).unwrap_or_else(|| "-".into()),
                download,
            ]
        })
        .collect();
    table(
        &[
            "id",
            "timeframe",
            "requester",
            "made at",
            "expires",
            "status",
            "rows",
            "size",
            "download",
        ],
        &rows,
    )
}

/// What the demo did with its export.
pub struct DemoExport {
    pub id: String,
    pub status: String,
    pub rows: u64,
    pub path: String,
    /// Rows and tree size its signed manifest was checked at.
    pub manifest: Option<(u64, u64)>,
}

/// For `demo`: request an export of org-00's last 30 days as of `now`, run
/// the processing at the next schedule mark, and say where the CSV is.
pub fn demo_export(store: &Store, now: Timestamp) -> CliResult<DemoExport> {
    let clock = Arc::new(FixedClock::new(now));
    let exports = Exports::new(store).map_err(refusal)?.with_clock(clock.clone());
    let to = now.date();
    let from = now.saturating_sub_days(30).date();
    let req = exports
        .request("org-00", "demo-admin", Role::Admin, from, to)
        .map_err(refusal)?;
    clock.set(exports.processed_at(req.created_at));
    exports.process().map_err(refusal)?;
    let done = exports.get(req.id).map_err(refusal)?;
    let path = if done.download_available() {
        // Handing out the file's place is a download: recorded as
        // `audit_log.download_url.generated` by the requester.
        exports
            .download_by(done.id, "demo-admin")
            .map_err(refusal)?
            .path()
            .display()
            .to_string()
    } else {
        "-".to_owned()
    };
    // The file's signed manifest, checked as an organization would check
    // the file it was handed (`export verify`).
    let manifest = if done.download_available() {
        let bytes = exports.manifest(done.id).map_err(refusal)?;
        let key = VerifierKey::parse(&store.key_info()?.verifier_key)
            .map_err(|e| CliError::new("corrupt", e.to_string()))?;
        let checked = check_export(Path::new(&path), &bytes, &key)
            .map_err(|e| CliError::new("corrupt", format!("the demo export's manifest: {e}")))?;
        Some((checked.rows, checked.tree_size))
    } else {
        None
    };
    Ok(DemoExport {
        id: done.id.to_string(),
        status: done.status.to_string(),
        rows: done.rows.unwrap_or(0),
        path,
        manifest,
    })
}
