//! The command line: its options and commands (shared/spec/cli.md), and
//! running a parsed command against a [`Ctx`], locally or in a server.

use std::path::PathBuf;
use std::process::ExitCode;

use auditstore::Timestamp;
use clap::{Parser, Subcommand};

use crate::ctx::{self, parse_org, parse_time, CliResult, Ctx};
#[cfg(feature = "server")]
use crate::serve;
use crate::{admin, auth, demo, export, ingest, query, tlog};

#[derive(Parser)]
#[command(
    name = "auditstore",
    version,
    about = "Admin tool for an auditstore audit log"
)]
pub struct Cli {
    /// The store's directory [default: $AUDITSTORE_DATA_DIR if set and not
    /// empty, else ./auditstore-data].
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Evaluate time-dependent rules as of this instant (RFC 3339 or YYYY-MM-DD).
    #[arg(long, global = true, value_parser = parse_time)]
    pub as_of: Option<Timestamp>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Check every record's checksum and every index against the log, and
    /// the log against the tamper-evidence tree and its signed checkpoints.
    Verify {
        /// Also check that the store is consistent with the signed
        /// checkpoint in FILE (a copy kept elsewhere): a store rolled back,
        /// truncated or rewritten since is `corrupt`.
        #[arg(long)]
        against: Option<PathBuf>,
    },
    /// Print the latest signed checkpoint (after integrating every
    /// acknowledged event).
    Checkpoint,
    /// The store's signing key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// The inclusion proof of event ID in the latest checkpoint, or with
    /// --consistency a consistency proof between two tree sizes.
    Prove {
        /// The event's id.
        #[arg(required_unless_present = "consistency", conflicts_with = "consistency")]
        id: Option<String>,
        /// The older tree size.
        #[arg(long, value_name = "OLD_SIZE")]
        consistency: Option<u64>,
        /// The newer tree size [default: the latest checkpoint's].
        #[arg(long, value_name = "NEW_SIZE", requires = "consistency")]
        to: Option<u64>,
    },
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
    /// Generate a sample, ingest, query and export it.
    Demo {
        /// Events to generate.
        #[arg(long, default_value_t = 20_000)]
        events: u64,
    },
    /// API tokens for the server.
    #[command(subcommand)]
    Token(auth::TokenCommand),
    /// People who sign in to the server's web page.
    #[command(subcommand)]
    User(auth::UserCommand),
    /// Serve the HTTP API and the Audit Log web page; the admin tool's
    /// commands on the same data directory are carried out by this server
    /// meanwhile.
    #[cfg(feature = "server")]
    Serve(serve::ServeArgs),
    /// The cluster on NATS JetStream (docs/cluster.md).
    #[cfg(feature = "cluster")]
    #[command(subcommand)]
    Cluster(crate::cluster::ClusterCommand),
}

impl Command {
    /// Whether a running server carries this command out: every command
    /// on the data directory but `serve` itself, `repair` (which needs the
    /// store unheld: refused with `locked` while a server runs) and `demo`
    /// (its own fresh store, or one it opens itself).
    pub fn forwarded(&self) -> bool {
        !matches!(self, Command::Repair | Command::Demo { .. }) && !self.is_serve()
    }

    fn is_serve(&self) -> bool {
        #[cfg(feature = "server")]
        if let Command::Serve(_) = self {
            return true;
        }
        // Not about the data directory at all.
        #[cfg(feature = "cluster")]
        if let Command::Cluster(_) = self {
            return true;
        }
        false
    }
}

#[derive(Subcommand)]
pub enum OrgCommand {
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
pub enum KeyCommand {
    /// Print the origin and the public key as a note verifier key.
    Show,
}

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Delete segments whose events are all past retention.
    Apply,
}

/// The data directory: `--data-dir`, else `$AUDITSTORE_DATA_DIR` (an empty
/// variable counts as unset, as a shell's `VAR=` means), else
/// `./auditstore-data`; and whether it was named (not the default).
pub fn data_dir(given: Option<PathBuf>) -> (PathBuf, bool) {
    let from_env = std::env::var_os("AUDITSTORE_DATA_DIR").filter(|v| !v.is_empty());
    let named = given.is_some() || from_env.is_some();
    let dir = given
        .or(from_env.map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("auditstore-data"));
    (dir, named)
}

/// Run a parsed command; its exit status.
pub fn run(ctx: &Ctx, command: Command) -> u8 {
    let result: CliResult<ExitCode> = match command {
        Command::Org(OrgCommand::Set {
            org,
            plan,
            retention_days,
            user,
        }) => admin::org_set(ctx, &org, plan.as_deref(), retention_days, user),
        Command::Org(OrgCommand::Show { org }) => admin::org_show(ctx, &org),
        Command::Ingest { file, org } => ingest::run(ctx, file, org),
        Command::Query(args) => query::run(ctx, args),
        Command::Get { id } => query::get(ctx, &id),
        Command::Export(cmd) => export::run(ctx, cmd),
        Command::Verify { against } => crate::verify::verify(ctx, against.as_deref()),
        Command::Checkpoint => tlog::checkpoint(ctx),
        Command::Key(KeyCommand::Show) => tlog::key_show(ctx),
        Command::Prove { id, consistency, to } => tlog::prove(ctx, id, consistency, to),
        Command::Retention(RetentionCommand::Apply) => admin::retention_apply(ctx),
        Command::Stats => admin::stats(ctx),
        Command::Repair => admin::repair(ctx),
        Command::Backup { dest } => crate::backup::backup(ctx, &dest),
        Command::Demo { events } => demo::run(ctx, events),
        Command::Token(cmd) => auth::token(ctx, cmd),
        Command::User(cmd) => auth::user(ctx, cmd),
        #[cfg(feature = "server")]
        Command::Serve(args) => serve::run(ctx, args),
        #[cfg(feature = "cluster")]
        Command::Cluster(cmd) => crate::cluster::run(ctx, cmd),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => ctx.fail(&e),
    };
    // Commands end with success or 1 (`ExitCode` cannot be read back).
    if code == ExitCode::SUCCESS {
        0
    } else {
        1
    }
}
