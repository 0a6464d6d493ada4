//! `serve --cluster` (a node) and `cluster status` (docs/cluster.md).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use auditstore::cluster::{self, ClusterConfig, ClusterError, Node};
use auditstore::Store;
use clap::{Args, Subcommand};

use crate::ctx::{CliError, CliResult, Ctx};

/// A node's identity and the cluster's settings (`serve --cluster`).
#[derive(Args, Clone)]
pub struct NodeArgs {
    /// This node's id (A-Z, a-z, 0-9, `_`, `-`): names its consumers.
    #[arg(long, value_name = "NODE_ID")]
    node: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
    /// Partitions, when this node creates the cluster [default: the
    /// cluster's; 16 for a new one]. Fixed at creation.
    #[arg(long)]
    partitions: Option<u32>,
    /// Stream replicas when this node creates them (3; 1 only with a
    /// single NATS server, for development).
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// How long a read waits for this node to catch up before `503`, in
    /// milliseconds.
    #[arg(long, default_value_t = 5000)]
    read_wait_ms: u64,
    /// How long the streams keep a message, in seconds, when this node
    /// creates them [default: for ever]. A node down for longer, or a new
    /// one, must then be seeded from another node's `backup`.
    #[arg(long, value_name = "SECONDS")]
    stream_max_age: Option<u64>,
    /// This node's HTTP address as the other nodes reach it
    /// (`http://HOST:PORT`): they forward requests about the partitions
    /// it serves there [default: the listening address, unless that is
    /// 0.0.0.0 or [::]].
    #[arg(long, value_name = "URL")]
    advertise: Option<String>,
}

#[derive(Args, Clone)]
pub struct CommonArgs {
    /// The cluster's name: its streams are AUDIT_<NAME>_P<n>.
    #[arg(long, value_name = "NAME", default_value = "auditstore")]
    cluster_name: String,
}

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Partitions, their streams' last sequence, and each node's consumer
    /// position, as JSON.
    Status {
        /// NATS server URLs, comma-separated.
        #[arg(long, value_name = "NATS_URLS")]
        cluster: String,
        #[command(flatten)]
        common: CommonArgs,
    },
}

fn cli_error(e: ClusterError) -> CliError {
    match e {
        ClusterError::Store(e) => e.into(),
        ClusterError::Config(m) => CliError::new("invalid_request", m),
        other => CliError::new("unavailable", other.to_string()),
    }
}

impl NodeArgs {
    /// Refuse cluster options given without `--cluster`.
    pub fn refuse_without_cluster(&self) -> CliResult<()> {
        if self.node.is_some()
            || self.partitions.is_some()
            || self.stream_max_age.is_some()
            || self.advertise.is_some()
        {
            return Err(CliError::new(
                "invalid_request",
                "--node, --partitions, --stream-max-age and --advertise are for a cluster node: add \
                 --cluster NATS_URLS",
            ));
        }
        Ok(())
    }

    /// The store id partition 0's store of this node gets when `serve`
    /// makes it: the partition's, the same on every node, so that their
    /// checkpoints name one log (docs/cluster.md, "A node's data
    /// directory").
    pub fn partition0_store_id(&self) -> [u8; 16] {
        auditstore::partitions::store_id(&self.common.cluster_name, 0)
    }
}

/// The partition stores `node` holds open, for the commands its admin
/// socket carries out.
pub fn partition_stores(node: &Node) -> crate::node_dir::PartitionStores {
    let held = node.clone();
    crate::node_dir::PartitionStores {
        partitions: node.partitions(),
        store: Box::new(move |p| held.partition_store(p).map_err(cli_error)),
    }
}

/// Join the cluster at `urls` as `args.node`, applying into `store`, its
/// HTTP API listening on `listening`; web sessions last `session_ttl` (the
/// server's).
pub async fn start_node(
    urls: &str,
    args: &NodeArgs,
    store: Arc<Store>,
    listening: std::net::SocketAddr,
    session_ttl: Duration,
) -> CliResult<Node> {
    let node = args
        .node
        .clone()
        .ok_or_else(|| CliError::new("invalid_request", "--cluster needs --node NODE_ID"))?;
    let mut config = ClusterConfig::new(cluster::parse_urls(urls), node);
    config.name = args.common.cluster_name.clone();
    config.partitions = args.partitions;
    config.replicas = args.replicas;
    config.read_wait = Duration::from_millis(args.read_wait_ms);
    config.stream_max_age = args.stream_max_age.map(Duration::from_secs);
    config.advertise = Some(match &args.advertise {
        Some(url) => url.clone(),
        None => default_advertise(listening),
    });
    config.session_ttl = session_ttl;
    Node::start(config, store).await.map_err(cli_error)
}

/// Where other nodes reach a node that was given no `--advertise`: its
/// listening address; for `0.0.0.0` or `[::]`, the machine's host name
/// when it resolves (other machines usually resolve it too), else
/// loopback (nodes on this machine only).
fn default_advertise(listening: std::net::SocketAddr) -> String {
    use std::net::ToSocketAddrs;
    if !listening.ip().is_unspecified() {
        return format!("http://{listening}");
    }
    let port = listening.port();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| {
            !h.is_empty()
                && (h.as_str(), port)
                    .to_socket_addrs()
                    .is_ok_and(|mut a| a.next().is_some())
        });
    let url = match host {
        Some(h) => format!("http://{h}:{port}"),
        None => format!("http://127.0.0.1:{port}"),
    };
    eprintln!(
        "auditstore: listening on {listening}: other nodes are told to reach this one at {url} (--advertise to choose)"
    );
    url
}

pub fn run(ctx: &Ctx, command: ClusterCommand) -> CliResult<ExitCode> {
    match command {
        ClusterCommand::Status { cluster, common } => {
            let mut config = ClusterConfig::new(cluster::parse_urls(&cluster), "status");
            config.name = common.cluster_name;
            config.validate().map_err(cli_error)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| CliError::new("io", format!("start the async runtime: {e}")))?;
            let status = runtime
                .block_on(async {
                    tokio::time::timeout(Duration::from_secs(30), cluster::status::collect(&config)).await
                })
                .map_err(|_| CliError::new("unavailable", "no answer from the NATS servers within 30 s"))?
                .map_err(cli_error)?;
            let value = serde_json::to_value(&status)
                .map_err(|e| CliError::new("io", format!("the status as JSON: {e}")))?;
            ctx.print_json(&value)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
