//! `export` commands (being built).

use std::process::ExitCode;

use clap::Subcommand;

use crate::ctx::{CliError, CliResult, Ctx};

#[derive(Subcommand)]
pub enum ExportCommand {
    /// Run the scheduled processing.
    Process,
}

pub fn run(_ctx: &Ctx, _cmd: ExportCommand) -> CliResult<ExitCode> {
    Err(CliError::new("io", "export commands are not available in this build"))
}

/// What the demo's export produced (the export helper owns this file; the
/// demo only needs this function).
pub struct DemoExport {
    pub id: String,
    pub status: String,
    pub rows: u64,
    pub path: String,
}

pub fn demo_export(_store: &auditstore::Store, _now: auditstore::Timestamp) -> CliResult<DemoExport> {
    Err(CliError::new("io", "export not available yet"))
}
