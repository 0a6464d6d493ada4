//! `checkpoint`, `key show`, `prove` (shared/spec/integrity.md).

use std::process::ExitCode;

use serde_json::json;

use crate::ctx::{outln, CliError, CliResult, Ctx, OpenStore};

/// The latest signed checkpoint, after integrating every acknowledged event.
pub fn checkpoint(ctx: &Ctx) -> CliResult<ExitCode> {
    let store = open_existing(ctx)?;
    let cp = store.checkpoint()?;
    if ctx.json {
        ctx.print_json(&cp.to_json())?;
    } else {
        ctx.print(&cp.note)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `{"origin", "verifier_key"}`.
pub fn key_show(ctx: &Ctx) -> CliResult<ExitCode> {
    let store = open_existing(ctx)?;
    let info = store.key_info()?;
    if ctx.json {
        ctx.print_json(&json!({"origin": info.origin, "verifier_key": info.verifier_key}))?;
    } else {
        outln!(ctx, "origin: {}", info.origin)?;
        outln!(ctx, "verifier key: {}", info.verifier_key)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `prove ID` or `prove --consistency OLD [--to NEW]`.
pub fn prove(
    ctx: &Ctx,
    id: Option<String>,
    consistency: Option<u64>,
    to: Option<u64>,
) -> CliResult<ExitCode> {
    let text = match (id, consistency) {
        (Some(id), None) => {
            let not_found = || CliError::new("not_found", format!("no event with id {id}"));
            let uuid = uuid::Uuid::parse_str(&id).map_err(|_| not_found())?;
            // Refuses a data directory without a store; on a node's, the
            // store of whichever partition holds the event.
            refuse_missing(ctx)?;
            let (_, proof) = ctx
                .find_in_partitions(true, |store| Ok(store.prove(uuid)?))?
                .ok_or_else(not_found)?;
            to_text(ctx, &proof)?
        }
        (None, Some(old)) => {
            let store = open_existing(ctx)?;
            to_text(ctx, &store.prove_consistency(old, to)?.to_json())?
        }
        _ => {
            return Err(CliError::new(
                "invalid_argument",
                "give either an event id or --consistency OLD_SIZE",
            ))
        }
    };
    outln!(ctx, "{text}")?;
    Ok(ExitCode::SUCCESS)
}

/// JSON: one line with `--json`, indented without.
fn to_text(ctx: &Ctx, value: &impl serde::Serialize) -> CliResult<String> {
    let text = if ctx.json {
        serde_json::to_string(value)
    } else {
        serde_json::to_string_pretty(value)
    };
    text.map_err(|e| CliError::new("io", e.to_string()))
}

/// The store for writing, refusing a data directory that holds no store: a
/// mistyped `--data-dir` must not print a new store's key or checkpoint as
/// if it were the real one's.
pub fn open_existing(ctx: &Ctx) -> CliResult<OpenStore> {
    refuse_missing(ctx)?;
    ctx.open_store(true)
}

/// `not_found` for a data directory that holds no store (run locally).
pub fn refuse_missing(ctx: &Ctx) -> CliResult {
    if ctx.shared.is_none() && !auditstore::Store::exists_at(&ctx.data_dir) {
        return Err(CliError::new(
            "not_found",
            format!(
                "no store at {}: nothing has been stored there",
                ctx.data_dir.display()
            ),
        ));
    }
    Ok(())
}
