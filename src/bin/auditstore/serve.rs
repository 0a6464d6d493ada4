//! `serve`: the HTTP API and the web page (contract: `shared/spec/http.md`),
//! and the admin tool's commands on the same data directory, carried out
//! through the admin socket (`remote`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use auditstore::server::{self, ServerConfig};
use auditstore::{Clock, OffsetClock, Options, Store, SystemClock};
use clap::Args;
use serde_json::json;
use tokio::signal::unix::{signal, SignalKind};

use crate::ctx::{outln, CliError, CliResult, Ctx};
use crate::remote;

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
    /// Run as a node of a cluster on these NATS servers (comma-separated
    /// URLs): ingest goes through the cluster's JetStream streams, reads
    /// wait until this node has applied them (docs/cluster.md).
    #[cfg(feature = "cluster")]
    #[arg(long, value_name = "NATS_URLS")]
    cluster: Option<String>,
    #[cfg(feature = "cluster")]
    #[command(flatten)]
    node: crate::cluster::NodeArgs,
}

fn io(what: &str) -> impl Fn(std::io::Error) -> CliError + '_ {
    move |e| CliError::new("io", format!("{what}: {e}"))
}

pub fn run(ctx: &Ctx, args: ServeArgs) -> CliResult<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AUDITSTORE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let dir = ctx.path(&ctx.data_dir);
    // `--as-of T`: the clock reads T now and runs forward in real time.
    let clock: Arc<dyn Clock> = match ctx.as_of {
        Some(t) => Arc::new(OffsetClock::new(t)),
        None => Arc::new(SystemClock),
    };
    #[cfg(feature = "cluster")]
    let store_id = args.cluster.as_ref().map(|_| args.node.partition0_store_id());
    #[cfg(not(feature = "cluster"))]
    let store_id = None;
    let options = Options {
        clock,
        store_id,
        ..Options::default()
    };
    let store = Arc::new(Store::open_with(&dir, options)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io("start the async runtime"))?;
    let config = ServerConfig {
        secure_cookies: args.secure_cookies,
        body_limit: args.body_limit,
        ..ServerConfig::default()
    };
    let served: CliResult = runtime.block_on(async {
        // Before a cluster node starts applying: what it records at once
        // (an applied position) is not lost to a recorder installed later.
        let _ = server::metrics_handle();
        // Bound before a cluster node starts: it announces the address.
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| CliError::new("io", format!("listen on {}: {e}", args.listen)))?;
        #[cfg(feature = "cluster")]
        let node = match &args.cluster {
            Some(urls) => {
                let session_ttl = std::time::Duration::from_secs(config.session_ttl_secs);
                let listening = listener.local_addr()?;
                let node =
                    crate::cluster::start_node(urls, &args.node, store.clone(), listening, session_ttl)
                        .await?;
                remote::CLUSTER_NODE.store(true, std::sync::atomic::Ordering::Relaxed);
                let hook: Arc<dyn server::replication::Replication> = Arc::new(node.clone());
                let _ = remote::CLUSTER_HOOK.set((tokio::runtime::Handle::current(), hook));
                // The admin socket's reads of an organization use the
                // partition stores the node holds open.
                let _ = remote::PARTITION_STORES.set(Arc::new(crate::cluster::partition_stores(&node)));
                Some(node)
            }
            None => {
                args.node.refuse_without_cluster()?;
                None
            }
        };
        // Registered before anyone is told we listen: a signal sent as soon
        // as the line is read is not lost.
        let mut term = signal(SignalKind::terminate()).map_err(io("catch SIGTERM"))?;
        let mut int = signal(SignalKind::interrupt()).map_err(io("catch SIGINT"))?;
        let admin = remote::Listener::start(&dir, store.clone())
            .map_err(|e| CliError::new("io", format!("the admin socket in {}: {e}", dir.display())))?;
        let url = format!("http://{}", listener.local_addr()?);
        if ctx.json {
            ctx.print_json(&json!({ "listening": url }))?;
        } else {
            outln!(ctx, "listening on {url}")?;
        }
        let stop = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        #[cfg(feature = "cluster")]
        let replication = node
            .clone()
            .map(|n| Arc::new(n) as Arc<dyn server::replication::Replication>);
        #[cfg(not(feature = "cluster"))]
        let replication = None;
        let served = server::serve_with(store.clone(), listener, config, replication, stop).await;
        #[cfg(feature = "cluster")]
        if let Some(node) = node {
            node.stop().await;
        }
        // The admin socket's commands in flight finish (stop waits for them).
        let _ = tokio::task::spawn_blocking(move || admin.stop()).await;
        served.map_err(io("serve"))
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    served?;
    // Everything acknowledged is already durable; a flush makes what the
    // schedule wrote durable too, then the last handle releases the lock.
    store.flush()?;
    drop(store);
    Ok(ExitCode::SUCCESS)
}
