//! `query` and `get`.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use auditstore::export::csv::CsvSink;
use auditstore::{Query, Timestamp};
use clap::{Args, ValueEnum};

use crate::ctx::{outln, parse_org, parse_range_end, table, CliError, CliResult, Ctx};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Format {
    Jsonl,
    Csv,
    Table,
}

#[derive(Args)]
pub struct QueryArgs {
    #[arg(long, value_parser = parse_org)]
    org: String,
    /// Inclusive start (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_parser = parse_range_end)]
    from: Timestamp,
    /// Exclusive end (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_parser = parse_range_end)]
    to: Timestamp,
    /// Exact action, or a prefix ending in `*`.
    #[arg(long)]
    action: Option<String>,
    /// Actor id.
    #[arg(long)]
    actor: Option<String>,
    /// Target id.
    #[arg(long)]
    target: Option<String>,
    #[arg(long)]
    limit: Option<usize>,
    /// Output format (default: jsonl with --json, table otherwise).
    #[arg(long, value_enum)]
    format: Option<Format>,
}

fn pipe_ok(e: std::io::Error) -> CliResult {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(e.into())
    }
}

pub fn run(ctx: &Ctx, args: QueryArgs) -> CliResult<ExitCode> {
    if args.from > args.to {
        return Err(CliError::new(
            "invalid_range",
            format!("--from {} is after --to {}", args.from, args.to),
        ));
    }
    let store = ctx.open_org_store(&args.org, false)?;
    let mut q = Query::new(&args.org, args.from, args.to).as_of(ctx.now());
    q.action = args.action;
    q.actor_id = args.actor;
    q.target_id = args.target;
    q.limit = args.limit;
    let format = args
        .format
        .unwrap_or(if ctx.json { Format::Jsonl } else { Format::Table });
    let mut scan = store.scan(&q)?;
    let mut out = BufWriter::with_capacity(1 << 16, ctx.out());
    match format {
        Format::Jsonl => {
            let mut line = String::with_capacity(1024);
            for event in scan.by_ref() {
                let event = event?;
                line.clear();
                event.write_json(&mut line);
                line.push('\n');
                if let Err(e) = out.write_all(line.as_bytes()) {
                    return pipe_ok(e).map(|_| ExitCode::SUCCESS);
                }
            }
        }
        Format::Csv => {
            let mut sink = CsvSink::new(&mut out).map_err(|e| CliError::new("io", e.to_string()))?;
            while let Some(r) = scan.next_with(|v| sink.write_record(v)) {
                if let Err(e) = r? {
                    return match e {
                        auditstore::export::csv::CsvError::Io(io) => pipe_ok(io).map(|_| ExitCode::SUCCESS),
                        other => Err(CliError::new("io", other.to_string())),
                    };
                }
            }
            sink.finish().map_err(|e| CliError::new("io", e.to_string()))?;
        }
        Format::Table => {
            let mut rows = Vec::new();
            for event in scan {
                let e = event?;
                rows.push(vec![
                    e.occurred_at().to_rfc3339(),
                    e.id().to_string(),
                    e.action().to_owned(),
                    e.actor_id(),
                    e.target_id(),
                    e.success().to_string(),
                ]);
            }
            let text = table(
                &["occurred_at", "id", "action", "actor", "target", "success"],
                &rows,
            );
            if let Err(e) = out.write_all(text.as_bytes()) {
                return pipe_ok(e).map(|_| ExitCode::SUCCESS);
            }
            if let Err(e) = writeln!(out, "({} events)", rows.len()) {
                return pipe_ok(e).map(|_| ExitCode::SUCCESS);
            }
        }
    }
    if let Err(e) = out.flush() {
        pipe_ok(e)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn get(ctx: &Ctx, id: &str) -> CliResult<ExitCode> {
    let not_found = || CliError::new("not_found", format!("no event with id {id}"));
    let Ok(uuid) = uuid::Uuid::parse_str(id) else {
        return Err(not_found());
    };
    // On a node's data directory, the store of whichever partition holds it.
    let now = ctx.now();
    match ctx.find_in_partitions(false, |store| Ok(store.get_as_of(uuid, now)?))? {
        Some((_, event)) => {
            outln!(ctx, "{}", event.to_json())?;
            Ok(ExitCode::SUCCESS)
        }
        None => Err(not_found()),
    }
}
