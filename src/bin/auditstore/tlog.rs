//! `checkpoint`, `key show`, `prove` (shared/spec/integrity.md).

use std::process::ExitCode;

use serde_json::json;

use crate::ctx::{outln, CliError, CliResult, Ctx};

/// The latest signed checkpoint, after integrating every acknowledged event.
pub fn checkpoint(ctx: &Ctx) -> CliResult<ExitCode> {
    let store = ctx.open_store(true)?;
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
    let store = ctx.open_store(true)?;
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
    let value = match (id, consistency) {
        (Some(id), None) => {
            let not_found = || CliError::new("not_found", format!("no event with id {id}"));
            let uuid = uuid::Uuid::parse_str(&id).map_err(|_| not_found())?;
            let store = ctx.open_store(true)?;
            store.prove(uuid)?.ok_or_else(not_found)?.to_json()
        }
        (None, Some(old)) => {
            let store = ctx.open_store(true)?;
            store.prove_consistency(old, to)?.to_json()
        }
        _ => {
            return Err(CliError::new(
                "invalid_argument",
                "give either an event id or --consistency OLD_SIZE",
            ))
        }
    };
    if ctx.json {
        ctx.print_json(&value)?;
    } else {
        outln!(
            ctx,
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
