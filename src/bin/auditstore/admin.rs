//! `org`, `retention apply`, `stats`, `repair` (`verify` and `backup`:
//! their own modules).

use std::process::ExitCode;

use auditstore::server::replication::{Command, Outcome};
use auditstore::{OrgSettings, Plan, RetentionReport, Stats};
use serde_json::{json, Value};

use crate::ctx::{outln, table, CliError, CliResult, Ctx};

fn org_json(s: &OrgSettings) -> Value {
    json!({"org": s.org, "plan": s.plan.as_str(), "retention_days": s.retention_days})
}

fn print_org(ctx: &Ctx, s: &OrgSettings) -> CliResult {
    if ctx.json {
        ctx.print_json(&org_json(s))
    } else {
        ctx.print(&table(
            &["org", "plan", "retention_days"],
            &[vec![
                s.org.clone(),
                s.plan.to_string(),
                s.retention_days.to_string(),
            ]],
        ))?;
        Ok(())
    }
}

pub fn org_set(
    ctx: &Ctx,
    org: &str,
    plan: Option<&str>,
    retention_days: Option<u32>,
    user: Option<String>,
) -> CliResult<ExitCode> {
    let plan: Option<Plan> = plan.map(str::parse).transpose()?;
    let user = user.unwrap_or_else(|| ctx.user());
    let command = Command::SetOrg {
        org: org.to_owned(),
        by: user.clone(),
        plan,
        retention_days,
    };
    // A cluster node's admin socket: through the streams, to every node.
    if let Some(answer) = crate::remote::through_cluster(ctx, command) {
        return match answer? {
            Outcome::Settings(settings) => {
                print_org(ctx, &settings)?;
                Ok(ExitCode::SUCCESS)
            }
            other => Err(CliError::new("io", format!("the cluster answered {other:?}"))),
        };
    }
    ctx.refuse_offline_change_on_node("`org set`")?;
    let store = ctx.open_store(true)?;
    let settings = store.set_org_as_at(&user, org, plan, retention_days, ctx.now())?;
    print_org(ctx, &settings)?;
    Ok(ExitCode::SUCCESS)
}

pub fn org_show(ctx: &Ctx, org: &str) -> CliResult<ExitCode> {
    let store = ctx.open_org_store(org, false)?;
    print_org(ctx, &store.org_settings(org)?)?;
    Ok(ExitCode::SUCCESS)
}

pub fn retention_apply(ctx: &Ctx) -> CliResult<ExitCode> {
    // Nothing to delete in a missing directory, and nothing to create.
    let store = ctx.open_store(false)?;
    let r = match store.is_missing() {
        true => RetentionReport::default(),
        false => store.apply_retention_at(ctx.now())?,
    };
    if ctx.json {
        ctx.print_json(&json!({
            "segments_deleted": r.segments_deleted,
            "events_deleted": r.events_deleted,
            "bytes_freed": r.bytes_freed,
            "files": r.files.iter().map(|p| ctx.shown(p, store.dir()).display().to_string()).collect::<Vec<_>>(),
            // (The run's signed checkpoint is kept in the store's
            // `checkpoints` file, with the first retained leaf.)
            "first_retained_leaf": r.first_retained_leaf,
        }))?;
    } else {
        outln!(
            ctx,
            "deleted {} segments ({} events, {} bytes freed)",
            r.segments_deleted,
            r.events_deleted,
            r.bytes_freed
        )?;
        for f in &r.files {
            outln!(ctx, "  {}", ctx.shown(f, store.dir()).display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stats(ctx: &Ctx) -> CliResult<ExitCode> {
    let store = ctx.open_store(false)?;
    let s = match store.is_missing() {
        true => Stats::default(),
        false => store.stats()?,
    };
    let oldest = s.oldest.map(|t| t.to_rfc3339());
    let newest = s.newest.map(|t| t.to_rfc3339());
    if ctx.json {
        ctx.print_json(&json!({
            "events": s.events, "organizations": s.organizations, "segments": s.segments,
            "bytes": s.bytes, "oldest": oldest, "newest": newest,
            "index_memory_bytes": s.index_memory_bytes,
        }))?;
    } else {
        let rows = vec![
            vec!["events".into(), s.events.to_string()],
            vec!["organizations".into(), s.organizations.to_string()],
            vec!["segments".into(), s.segments.to_string()],
            vec!["bytes on disk".into(), s.bytes.to_string()],
            vec!["oldest event".into(), oldest.unwrap_or_else(|| "-".into())],
            vec!["newest event".into(), newest.unwrap_or_else(|| "-".into())],
        ];
        ctx.print(&table(&["stat", "value"], &rows))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn repair(ctx: &Ctx) -> CliResult<ExitCode> {
    if !auditstore::Store::exists_at(&ctx.data_dir) {
        return Err(CliError::new(
            "not_found",
            format!("{} holds no store to repair", ctx.data_dir.display()),
        ));
    }
    let report = auditstore::repair::repair(&ctx.data_dir, ctx.options()).map_err(crate::export::refusal)?;
    if ctx.json {
        ctx.print_json(&serde_json::to_value(&report).map_err(|e| CliError::new("io", e.to_string()))?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !report.repaired {
        outln!(ctx, "the metadata is usable: nothing to repair")?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(kept) = &report.kept_damaged {
        outln!(ctx, "kept the unusable metadata as {}", kept.display())?;
    }
    outln!(ctx, "read {} of the store's own events", report.events_read)?;
    let rows: Vec<Vec<String>> = report
        .orgs
        .iter()
        .map(|o| {
            vec![
                o.org.clone(),
                o.plan.to_string(),
                o.retention_days.to_string(),
                match o.settings_from {
                    Some(t) => format!("restored (from {})", t.to_rfc3339()),
                    None => "default (no settings event stored)".into(),
                },
                o.export_requests_restored.to_string(),
            ]
        })
        .collect();
    ctx.print(&table(
        &["org", "plan", "retention_days", "settings", "export_requests"],
        &rows,
    ))?;
    for f in &report.files_without_request {
        outln!(
            ctx,
            "export file without a restorable request, left in place: {}",
            f.display()
        )?;
    }
    for id in &report.requests_without_file {
        outln!(
            ctx,
            "restored request {id} succeeded with data but its file is missing"
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
