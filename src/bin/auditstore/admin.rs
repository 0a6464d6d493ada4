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
    // Every store of a node's directory; nothing to delete in a missing
    // directory, and nothing to create.
    let mut total = RetentionReport::default();
    let mut files = Vec::new();
    let mut runs = Vec::new();
    for p in ctx.all_partitions()? {
        let store = ctx.open_partition(p, false)?;
        if store.is_missing() {
            continue;
        }
        let r = store.apply_retention_at(ctx.now())?;
        total.segments_deleted += r.segments_deleted;
        total.events_deleted += r.events_deleted;
        total.bytes_freed += r.bytes_freed;
        files.extend(r.files.iter().map(|f| ctx.shown_in(p, f, store.dir())));
        if p == 0 {
            total.first_retained_leaf = r.first_retained_leaf;
        }
        runs.push(json!({"partition": p, "events_deleted": r.events_deleted,
                         "first_retained_leaf": r.first_retained_leaf}));
    }
    if ctx.json {
        let mut out = json!({
            "segments_deleted": total.segments_deleted,
            "events_deleted": total.events_deleted,
            "bytes_freed": total.bytes_freed,
            "files": files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            // (The run's signed checkpoint is kept in the store's
            // `checkpoints` file, with the first retained leaf; on a
            // node's directory, partition 0's, each partition's below.)
            "first_retained_leaf": total.first_retained_leaf,
        });
        if ctx.partition_count()?.is_some() {
            out["partitions"] = Value::from(runs);
        }
        ctx.print_json(&out)?;
    } else {
        outln!(
            ctx,
            "deleted {} segments ({} events, {} bytes freed)",
            total.segments_deleted,
            total.events_deleted,
            total.bytes_freed
        )?;
        for f in &files {
            outln!(ctx, "  {}", f.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stats(ctx: &Ctx) -> CliResult<ExitCode> {
    // Summed over every store of a node's directory (an organization is in
    // one partition only).
    let mut s = Stats::default();
    for p in ctx.all_partitions()? {
        let store = ctx.open_partition(p, false)?;
        if store.is_missing() {
            continue;
        }
        let one = store.stats()?;
        s.events += one.events;
        s.organizations += one.organizations;
        s.segments += one.segments;
        s.bytes += one.bytes;
        s.index_memory_bytes += one.index_memory_bytes;
        s.oldest = s.oldest.into_iter().chain(one.oldest).min();
        s.newest = s.newest.into_iter().chain(one.newest).max();
    }
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
