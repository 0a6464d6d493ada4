//! `export manifest ID [--out FILE]` and `export verify CSV MANIFEST
//! [--key VERIFIER_KEY]` (shared/spec/integrity.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use auditstore::export::manifest_check::{check_export, CheckError};
use auditstore::export::Exports;
use auditstore::integrity::VerifierKey;
use serde_json::json;

use crate::ctx::{outln, CliError, CliResult, Ctx};
use crate::export::{refusal, write_file_aside};

/// Prints the manifest of export `id`, or writes it to `out`.
pub fn manifest(ctx: &Ctx, id: &str, out: Option<PathBuf>) -> CliResult<ExitCode> {
    let not_found = || CliError::new("not_found", format!("no export request {id}"));
    let uuid = uuid::Uuid::parse_str(id).map_err(|_| not_found())?;
    let store = crate::export::request_store(ctx, uuid)?;
    let bytes = Exports::new(&store)
        .map_err(refusal)?
        .with_clock(ctx.clock())
        .manifest(uuid)
        .map_err(refusal)?;
    match out {
        Some(path) => {
            let written = write_file_aside(ctx, &path, |w| {
                w.write_all(&bytes)
                    .map_err(|e| CliError::new("io", format!("write {}: {e}", path.display())))
            })?;
            if ctx.json {
                ctx.print_json(
                    &json!({"id": uuid.to_string(), "path": path.display().to_string(), "bytes": written}),
                )?;
            } else {
                outln!(
                    ctx,
                    "wrote the manifest of export {uuid} ({written} bytes) to {}",
                    path.display()
                )?;
            }
        }
        None => {
            let mut stdout = ctx.out();
            stdout.write_all(&bytes)?;
            stdout.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks an export file against its manifest, offline.
pub fn verify(ctx: &Ctx, csv: &Path, manifest: &Path, key: Option<&str>) -> CliResult<ExitCode> {
    let key = match key {
        Some(text) => parse_key(ctx, text)?,
        None => {
            // The store's own key (the data directory's; on a node's, the
            // store of the manifest's organization); an organization
            // checking a file it was handed gives the key it was told.
            let org = match ctx.partition_count()? {
                Some(_) => std::fs::read(ctx.path(manifest))
                    .ok()
                    .and_then(|bytes| auditstore::export::manifest::Manifest::parse(&bytes).ok())
                    .map(|m| m.org),
                None => None,
            };
            let store = match org {
                Some(org) => {
                    crate::tlog::refuse_missing(ctx)?;
                    let store = ctx.open_org_store(&org, false)?;
                    if store.is_missing() {
                        return Err(CliError::new(
                            "not_found",
                            format!("no store of {org}'s partition in {}", ctx.data_dir.display()),
                        ));
                    }
                    store
                }
                None => crate::tlog::open_existing(ctx)?,
            };
            let info = store.key_info()?;
            VerifierKey::parse(&info.verifier_key).map_err(|e| CliError::new("corrupt", e.to_string()))?
        }
    };
    let bytes = std::fs::read(ctx.path(manifest))
        .map_err(|e| CliError::new("io", format!("read {}: {e}", manifest.display())))?;
    let checked = check_export(&ctx.path(csv), &bytes, &key).map_err(|e| {
        let code = if matches!(e, CheckError::Io { .. }) {
            "io"
        } else {
            "corrupt"
        };
        CliError::new(
            code,
            format!("{} does not match {}: {e}", csv.display(), manifest.display()),
        )
    })?;
    if ctx.json {
        let mut value = serde_json::to_value(&checked).map_err(|e| CliError::new("io", e.to_string()))?;
        if let Some(map) = value.as_object_mut() {
            map.insert("ok".into(), true.into());
        }
        ctx.print_json(&value)?;
    } else {
        outln!(
            ctx,
            "OK: {} is export {} of {}: {} row(s), each an event of the signed log of {} leaves; manifest #{} (SHA-256 {})",
            csv.display(),
            checked.export_id,
            checked.org,
            checked.rows,
            checked.tree_size,
            checked.sequence,
            checked.manifest_sha256
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A verifier key given as text (`<name>+<hex id>+<base64>`) or as a file
/// holding it.
fn parse_key(ctx: &Ctx, text: &str) -> CliResult<VerifierKey> {
    match VerifierKey::parse(text.trim()) {
        Ok(key) => Ok(key),
        Err(as_text) => {
            let path = ctx.path(Path::new(text));
            match std::fs::read_to_string(&path) {
                Ok(contents) => VerifierKey::parse(contents.trim()).map_err(|e| {
                    CliError::new(
                        "invalid_argument",
                        format!("--key: {text} holds no verifier key: {e}"),
                    )
                }),
                Err(_) => Err(CliError::new(
                    "invalid_argument",
                    format!("--key: not a verifier key ({as_text}) nor a readable file"),
                )),
            }
        }
    }
}
