//! `serve`: hold the store and carry out the admin tool's commands on it
//! through the admin socket (`remote`). A minimal server: it binds the
//! listening address and says so, but does not answer HTTP yet.

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;

use auditstore::Store;
use serde_json::json;

use crate::ctx::{outln, CliError, CliResult, Ctx};
use crate::remote;

pub fn run(ctx: &Ctx, listen: &str) -> CliResult<ExitCode> {
    let dir = ctx.path(&ctx.data_dir);
    let store = Arc::new(Store::open_with(&dir, ctx.options())?);
    let tcp =
        TcpListener::bind(listen).map_err(|e| CliError::new("io", format!("listen on {listen}: {e}")))?;
    let addr = tcp.local_addr()?;
    // Registered before anyone is told we listen: a signal sent as soon as
    // the line is read is not lost.
    let mut signals =
        signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])
            .map_err(|e| CliError::new("io", format!("catching SIGTERM and SIGINT: {e}")))?;
    let admin = remote::Listener::start(&dir, store.clone())
        .map_err(|e| CliError::new("io", format!("the admin socket in {}: {e}", dir.display())))?;
    let url = format!("http://{addr}");
    if ctx.json {
        ctx.print_json(&json!({ "listening": url }))?;
    } else {
        outln!(ctx, "listening on {url}")?;
    }
    // Until SIGTERM or SIGINT.
    let _ = signals.forever().next();
    admin.stop();
    drop(tcp);
    store.flush()?;
    // The last handle: dropping it releases the lock.
    drop(store);
    Ok(ExitCode::SUCCESS)
}
