//! `auditstore`: the admin tool. The contract is `shared/spec/cli.md`.
//! While `auditstore serve` holds the data directory, commands on it are
//! carried out by that server through its admin socket (`remote`).

mod admin;
mod auth;
mod backup;
mod cli;
#[cfg(feature = "cluster")]
mod cluster;
mod console;
mod ctx;
mod demo;
mod export;
mod export_manifest;
mod ingest;
mod node_dir;
mod query;
mod remote;
#[cfg(feature = "server")]
mod serve;
mod tlog;
mod verify;

use std::process::ExitCode;

use clap::Parser;

use cli::Cli;
use console::Console;
use ctx::Ctx;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Usage errors are this process's to report (exit 2), server or not.
    let cli = Cli::parse_from(&args);
    let (data_dir, data_dir_given) = cli::data_dir(cli.data_dir);
    let ctx = Ctx {
        data_dir,
        data_dir_given,
        json: cli.json,
        as_of: cli.as_of,
        console: Console::local(),
        shared: None,
        partitions: None,
    };
    if cli.command.forwarded() {
        match remote::client::forward(&ctx, args.get(1..).unwrap_or_default()) {
            Ok(Some(status)) => return ExitCode::from(status),
            Ok(None) => {} // no server: run it here
            Err(e) => return ctx.fail(&e),
        }
    }
    ExitCode::from(cli::run(&ctx, cli.command))
}
