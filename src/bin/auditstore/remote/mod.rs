//! The admin socket: while `serve` holds the store, the admin tool's
//! commands on the same data directory are sent to it and carried out by
//! it, with the client's output, input, working directory and user.
//! The wire format is docs/admin-socket.md.

pub mod client;
mod listener;
mod session;
mod stdio;
mod wire;

pub use listener::Listener;

/// Set by `serve --cluster`: this process is a cluster node, whose events
/// must go through the cluster's streams; the admin socket then refuses
/// `ingest` (docs/cluster.md, "Not yet").
pub static CLUSTER_NODE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Set by `serve --cluster`: the node's hook and the runtime that drives
/// it. The admin socket's `token create|revoke` and `user add` go through
/// it (the cluster's streams) instead of the local store, so that every
/// node holds the same tokens and users.
pub static CLUSTER_HOOK: std::sync::OnceLock<(
    tokio::runtime::Handle,
    std::sync::Arc<dyn auditstore::server::replication::Replication>,
)> = std::sync::OnceLock::new();

/// Set by `serve --cluster`: the node's partition stores, which the admin
/// socket's commands about an organization read (its partition's store),
/// and `get`, `prove` and `backup` go over (docs/cluster.md, "A node's
/// data directory"). Without it, the server's one store is the data
/// directory's.
pub static PARTITION_STORES: std::sync::OnceLock<std::sync::Arc<crate::node_dir::PartitionStores>> =
    std::sync::OnceLock::new();

/// Carry out `command` through the cluster, when this is a command run
/// by a cluster node for its admin socket (`ctx.shared`); `None`: run it
/// on the store. Called on the socket's own (non-async) threads.
pub fn through_cluster(
    ctx: &crate::ctx::Ctx,
    command: auditstore::server::replication::Command,
) -> Option<Result<auditstore::server::replication::Outcome, crate::ctx::CliError>> {
    ctx.shared.as_ref()?;
    let (runtime, hook) = CLUSTER_HOOK.get()?;
    let pending = hook.command(command)?;
    Some(runtime.block_on(pending).map_err(|e| {
        let mut err = crate::ctx::CliError::new(e.code, e.message);
        // The refusal's details (`next_allowed_at`, ...), as the CLI
        // prints them without a cluster.
        err.extra = *e.extra;
        if let Some(at) = e.next_allowed_at {
            err.extra
                .entry("next_allowed_at")
                .or_insert_with(|| at.to_rfc3339().into());
        }
        err
    }))
}

/// The socket's name in the data directory.
pub const SOCKET_NAME: &str = "admin.sock";

/// What `bind` and `connect` are given for `dir/name`: that path, or where
/// it is too long for a socket address (about 100 bytes), the same file
/// through `/proc/self/fd/N/name` with the directory held open meanwhile.
pub(crate) struct SocketPath {
    pub path: std::path::PathBuf,
    _dir: Option<std::fs::File>,
}

/// The longest path used as it is (a socket address holds 107 bytes).
const SHORT_PATH: usize = 100;

pub(crate) fn socket_path(dir: &std::path::Path, name: &str) -> std::io::Result<SocketPath> {
    use std::os::fd::AsRawFd;
    let path = dir.join(name);
    if path.as_os_str().len() <= SHORT_PATH {
        return Ok(SocketPath { path, _dir: None });
    }
    let dir = std::fs::File::open(dir)?;
    Ok(SocketPath {
        path: format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()).into(),
        _dir: Some(dir),
    })
}
