//! `auditstore`: the admin tool. The contract is `shared/spec/cli.md`.

mod admin;
mod auth;
mod ctx;
mod demo;
mod export;
mod ingest;
mod query;
#[cfg(feature = "server")]
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use auditstore::Timestamp;
use clap::{Parser, Subcommand};

use ctx::{parse_org, parse_time, CliResult, Ctx};

#[derive(Parser)]
#[command(
    name = "auditstore",
    version,
    about = "Admin tool for an auditstore audit log"
)]
struct Cli {
    /// The store's directory [default: $AUDITSTORE_DATA_DIR if set and not
    /// empty, else ./auditstore-data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Evaluate time-dependent rules as of this instant (RFC 3339 or YYYY-MM-DD).
    #[arg(long, global = true, value_parser = parse_time)]
    as_of: Option<Timestamp>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Organization settings.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Append JSON Lines events from FILE or stdin.
    Ingest {
        /// Input file; `-` or absent for stdin.
        file: Option<PathBuf>,
        /// Organization for every line (default: each event's scope.id).
        #[arg(long, value_parser = parse_org)]
        org: Option<String>,
    },
    /// Events of an organization in [from, to).
    Query(query::QueryArgs),
    /// Print the event with this id.
    Get { id: String },
    /// Export requests and downloads.
    #[command(subcommand)]
    Export(export::ExportCommand),
    /// Check every record's checksum and every index against the log.
    Verify,
    /// Retention.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Store-wide counts.
    Stats,
    /// Rebuild a lost or unreadable meta.redb from the store's own audit
    /// events and the export files present.
    Repair,
    /// Write a consistent copy of the store into the new directory DEST.
    Backup {
        /// Where the copy goes: must not exist, or be an empty directory.
        dest: PathBuf,
    },
    /// Serve the HTTP API and the Audit Log web page.
    #[cfg(feature = "server")]
    Serve(serve::ServeArgs),
    /// API tokens for the server.
    #[command(subcommand)]
    Token(auth::TokenCommand),
    /// People who sign in to the server's web page.
    #[command(subcommand)]
    User(auth::UserCommand),
    /// Generate a sample, ingest, query and export it.
    Demo {
        /// Events to generate.
        #[arg(long, default_value_t = 20_000)]
        events: u64,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create or update an organization's settings.
    Set {
        #[arg(value_parser = parse_org)]
        org: String,
        #[arg(long, value_parser = ["server", "scale", "performance", "free"])]
        plan: Option<String>,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        retention_days: Option<u32>,
        /// Who makes the change, for the store's own audit event
        /// `org.settings.update` [default: the operating system's user name].
        #[arg(long, value_parser = ctx::parse_user)]
        user: Option<String>,
    },
    /// Show an organization's settings.
    Show {
        #[arg(value_parser = parse_org)]
        org: String,
    },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Delete segments whose events are all past retention.
    Apply,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // An empty variable counts as unset (as a shell's `VAR=` means).
    let from_env = std::env::var_os("AUDITSTORE_DATA_DIR").filter(|v| !v.is_empty());
    let data_dir_given = cli.data_dir.is_some() || from_env.is_some();
    let ctx = Ctx {
        data_dir: cli
            .data_dir
            .or(from_env.map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("auditstore-data")),
        data_dir_given,
        json: cli.json,
        as_of: cli.as_of,
    };
    let result: CliResult<ExitCode> = match cli.command {
        Command::Org(OrgCommand::Set {
            org,
            plan,
            retention_days,
            user,
        }) => admin::org_set(&ctx, &org, plan.as_deref(), retention_days, user),
        Command::Org(OrgCommand::Show { org }) => admin::org_show(&ctx, &org),
        Command::Ingest { file, org } => ingest::run(&ctx, file, org),
        Command::Query(args) => query::run(&ctx, args),
        Command::Get { id } => query::get(&ctx, &id),
        Command::Export(cmd) => export::run(&ctx, cmd),
        Command::Verify => admin::verify(&ctx),
        Command::Retention(RetentionCommand::Apply) => admin::retention_apply(&ctx),
        Command::Stats => admin::stats(&ctx),
        Command::Repair => admin::repair(&ctx),
        Command::Backup { dest } => admin::backup(&ctx, &dest),
        #[cfg(feature = "server")]
        Command::Serve(args) => serve::run(&ctx, args),
        Command::Token(cmd) => auth::token(&ctx, cmd),
        Command::User(cmd) => auth::user(&ctx, cmd),
        Command::Demo { events } => demo::run(&ctx, events),
    };
    match result {
        Ok(code) => code,
        Err(e) => ctx.fail(&e),
    }
}
