//! `serve`: the HTTP API and the web page (contract: `shared/spec/http.md`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use auditstore::server::{self, ServerConfig};
use auditstore::{Clock, OffsetClock, Options, Store, SystemClock};
use clap::Args;
use serde_json::json;

use crate::ctx::{CliError, CliResult, Ctx};

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Mark the session cookie `Secure` (when a TLS proxy is in front).
    #[arg(long)]
    secure_cookies: bool,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    body_limit: usize,
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

pub fn run(ctx: &Ctx, args: ServeArgs) -> CliResult<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AUDITSTORE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    // `--as-of T`: the clock reads T now and runs forward in real time.
    let clock: Arc<dyn Clock> = match ctx.as_of {
        Some(t) => Arc::new(OffsetClock::new(t)),
        None => Arc::new(SystemClock),
    };
    let options = Options {
        clock,
        ..Options::default()
    };
    let store = Arc::new(Store::open_with(&ctx.data_dir, options)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new("io", format!("start the async runtime: {e}")))?;
    let config = ServerConfig {
        secure_cookies: args.secure_cookies,
        body_limit: args.body_limit,
        ..ServerConfig::default()
    };
    let served: CliResult = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| CliError::new("io", format!("listen on {}: {e}", args.listen)))?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        if ctx.json {
            ctx.print_json(&json!({ "listening": url }))?;
        } else {
            println!("listening on {url}");
        }
        server::serve(store.clone(), listener, config, stop_signal()).await?;
        Ok(())
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    served?;
    // Everything acknowledged is already durable; a flush makes what the
    // schedule or a buffered path wrote durable too, then the lock goes.
    store.flush()?;
    drop(store);
    Ok(ExitCode::SUCCESS)
}
