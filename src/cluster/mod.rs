//! `auditstore serve --cluster`: nodes on NATS JetStream (contract:
//! `shared/spec/cluster.md`; how it works: docs/cluster.md).
//!
//! Behind the `cluster` cargo feature. The cluster uses the server and the
//! store; neither knows of it (the server offers a hook,
//! [`crate::server::replication::Replication`], which [`node::Node`]
//! implements).
//!
//! - [`partition`]: organization → partition (a documented hash).
//! - [`message`]: the batch message, byte for byte.
//! - [`command`]: the command message (settings, exports, processing,
//!   tokens, users), byte for byte.
//! - [`apply_cmd`]: applying a command with its id and instant.
//! - [`outcomes`]: the outcomes this node waits for.
//! - [`answers`]: a command's outcome on the wire, published by whichever
//!   node applies it, for the node that issued it.
//! - [`commander`]: a node's commands: publish, wait until applied here.
//! - [`streams`]: names, the stream configuration, creating them.
//! - [`publisher`]: ingest: batch, publish, await every JetStream ack.
//! - [`applied`]: the stream position each partition is applied up to,
//!   durable beside the store.
//! - [`applier`]: one durable pull consumer per partition: apply, fsync,
//!   record the position, then ack.
//! - [`lease`]: membership: each running node's lease on its id, which
//!   also announces its address and the partitions it serves.
//! - [`assign`]: which nodes apply which partition (rendezvous hashing).
//! - [`membership`]: a node's loop: renew, read the members, start and
//!   stop appliers.
//! - [`forward`]: a request about a partition this node does not serve,
//!   sent to one that does.
//! - [`own_events`]: the store's own events (downloads, sign-ins) through
//!   the streams.
//! - [`node`]: a node: the hook's ingest, bounded read wait and routing.
//! - [`sessions`]: web sessions every node knows (a key-value bucket).
//! - [`status`]: `auditstore cluster status`.
//!
//! Invariants:
//! - An ingest is answered `200` only after JetStream acknowledged every
//!   batch of it (three replicas, `sync_interval: always` on the servers).
//! - A message is acked only after its events are appended to the local
//!   store (fsync'd) and the applied position is written (fsync'd).
//! - The event id is the de-duplication key end to end: a redelivered or
//!   republished batch stores nothing twice.
//! - Partition 0 (every token and user) is applied by every node, every
//!   other partition by two; a node stops applying a partition only once
//!   the nodes chosen for it serve it (make before break).
//! - Every other change of state (settings, export requests and their
//!   processing, tokens, users) is a command in the partition's stream,
//!   applied on every node applying it in stream order with the command's id and
//!   instant, never the node's clock or a fresh id: every replica decides
//!   it alike. The node that published it answers from the first outcome
//!   it has: its own applier's, or the answer another node that applied it
//!   published ([`answers`]).

pub mod answers;
pub mod applied;
pub mod applier;
pub mod apply_cmd;
pub mod assign;
pub mod command;
pub mod commander;
pub mod forward;
pub mod lease;
pub mod membership;
pub mod message;
pub mod node;
pub mod outcomes;
pub mod own_events;
pub mod partition;
pub mod publisher;
pub mod sessions;
pub mod status;
mod stores;
pub mod streams;

use std::time::Duration;

pub use node::Node;

/// How a node joins its cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://host:port`), any of the cluster's.
    pub urls: Vec<String>,
    /// The cluster's name: names its streams, consumers' bucket and
    /// subjects (`[A-Za-z0-9_-]`, 1 to 32 characters).
    pub name: String,
    /// This node's id (`[A-Za-z0-9_-]`, 1 to 64): names its consumers.
    pub node: String,
    /// Partitions, when this node creates the cluster (`None`: the
    /// existing cluster's, else [`partition::DEFAULT_PARTITIONS`]).
    pub partitions: Option<u32>,
    /// Stream replicas (3; 1 only for a single NATS server in development).
    pub replicas: usize,
    /// How long a read waits for this node to catch up before `503`.
    pub read_wait: Duration,
    /// How long a JetStream request (publish ack, stream info) may take.
    pub request_timeout: Duration,
    /// How long the streams keep a message, when this node creates them
    /// (`None`: for ever). A node down for longer, or a new one, must be
    /// seeded from another node's `backup` (docs/cluster.md, "Seeding a
    /// node").
    pub stream_max_age: Option<Duration>,
    /// This node's HTTP API as other nodes reach it (`http://host:port`):
    /// where they forward requests about the partitions it serves.
    pub advertise: Option<String>,
    /// How long a web session lasts: the max age of the sessions' bucket
    /// when this node creates it (the server's session TTL).
    pub session_ttl: Duration,
}

impl ClusterConfig {
    /// A configuration with the defaults of docs/cluster.md.
    pub fn new(urls: Vec<String>, node: impl Into<String>) -> Self {
        ClusterConfig {
            urls,
            name: "auditstore".to_owned(),
            node: node.into(),
            partitions: None,
            replicas: 3,
            read_wait: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            stream_max_age: None,
            advertise: None,
            session_ttl: Duration::from_secs(8 * 3600),
        }
    }

    /// Check the names and numbers.
    pub fn validate(&self) -> Result<(), ClusterError> {
        check_name("cluster name", &self.name, 32)?;
        check_name("node id", &self.node, 64)?;
        if self.urls.is_empty() {
            return Err(ClusterError::Config("no NATS URL given".into()));
        }
        if let Some(p) = self.partitions {
            if !(1..=partition::MAX_PARTITIONS).contains(&p) {
                return Err(ClusterError::Config(format!(
                    "partitions: {p} is outside 1..={}",
                    partition::MAX_PARTITIONS
                )));
            }
        }
        if self
            .stream_max_age
            .is_some_and(|age| age < Duration::from_secs(1))
        {
            return Err(ClusterError::Config("stream max age: at least 1 second".into()));
        }
        if let Some(a) = &self.advertise {
            let ok = a.strip_prefix("http://").is_some_and(|rest| {
                let host = rest.trim_end_matches('/');
                !host.is_empty() && !host.contains('/')
            });
            if !ok {
                return Err(ClusterError::Config(format!(
                    "advertise {a:?}: give this node's HTTP address as other nodes reach it, \
                     `http://HOST:PORT`"
                )));
            }
        }
        if self.session_ttl < Duration::from_secs(1) {
            return Err(ClusterError::Config("session TTL: at least 1 second".into()));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(ClusterError::Config(format!(
                "replicas: {} is outside 1..=5",
                self.replicas
            )));
        }
        Ok(())
    }
}

/// Split `a,b,c` into URLs (blank items dropped).
pub fn parse_urls(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn check_name(what: &str, name: &str, max: usize) -> Result<(), ClusterError> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ClusterError::Config(format!(
            "{what} {name:?}: use 1 to {max} of A-Z, a-z, 0-9, `_` and `-`"
        )))
    }
}

/// Every way the cluster's machinery fails.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster configuration: {0}")]
    Config(String),
    /// NATS or JetStream refused or did not answer in time.
    #[error("NATS: {0}")]
    Nats(String),
    /// The cluster's stored settings disagree with this node's.
    #[error("cluster metadata: {0}")]
    Metadata(String),
    /// The stream no longer holds messages this node has not applied
    /// (they outlived the stream's max age): only a backup of another
    /// node can bring the partition up to date.
    #[error(
        "partition {partition}: this node applied up to sequence {applied}, but the stream now starts at \
         {first}: the messages between expired (the streams' max age). Seed this node's data directory \
         from another node's `backup` (docs/cluster.md, \"Seeding a node\")"
    )]
    Expired {
        partition: u32,
        applied: u64,
        first: u64,
    },
    /// A sound message this build cannot read (a newer node wrote it): the
    /// partition stops before it until this node is upgraded.
    #[error(
        "partition {partition}: sequence {seq} was written by a newer auditstore ({reason}); \
         upgrade this node: it stopped applying this partition rather than skip the message"
    )]
    Unsupported {
        partition: u32,
        seq: u64,
        reason: String,
    },
    /// Another process took this node's lease (this one stopped renewing
    /// it for longer than its TTL): it must stop applying.
    #[error(
        "node {node}: another process holds this node id's lease now (this one could not renew it in \
         time); it stopped applying: restart it, and give every node its own --node id"
    )]
    LeaseLost { node: String },
    #[error(transparent)]
    Message(#[from] message::MessageError),
    #[error(transparent)]
    Command(#[from] command::CommandError),
    /// A command could not be applied for a reason of this node (I/O, a
    /// damaged store), not of the command: applying it is retried.
    #[error("applying a command: {0}")]
    Apply(String),
    #[error(transparent)]
    Applied(#[from] applied::AppliedError),
    #[error(transparent)]
    Store(#[from] crate::Error),
    /// A background task panicked or was cancelled.
    #[error("a cluster task failed: {0}")]
    Task(String),
}

impl ClusterError {
    /// A decoding error that means a newer writer, not damage (the
    /// checksum held).
    pub fn from_newer_build(&self) -> bool {
        matches!(
            self,
            ClusterError::Message(
                message::MessageError::UnknownVersion(_) | message::MessageError::UnknownFlags(_)
            ) | ClusterError::Command(
                command::CommandError::UnknownVersion(_)
                    | command::CommandError::UnknownFlags(_)
                    | command::CommandError::UnknownKind(_)
            )
        )
    }

    pub(crate) fn nats(what: &str, e: impl std::fmt::Display) -> Self {
        ClusterError::Nats(format!("{what}: {e}"))
    }
}

/// Connect to the NATS servers: retrying the first connection, reconnecting
/// for ever.
pub async fn connect(config: &ClusterConfig) -> Result<async_nats::Client, ClusterError> {
    async_nats::ConnectOptions::new()
        .name(format!("auditstore-{}", config.node))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(config.request_timeout))
        .reconnect_delay_callback(|attempts| Duration::from_millis((100 * attempts as u64).min(1000)))
        .connect(config.urls.as_slice())
        .await
        .map_err(|e| ClusterError::nats("connect", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        let mut c = ClusterConfig::new(parse_urls(" nats://a:1, ,nats://b:2"), "n1");
        assert_eq!(c.urls, ["nats://a:1", "nats://b:2"]);
        assert!(c.validate().is_ok());
        c.node = "n.1".into();
        assert!(c.validate().is_err());
        c.node = "n-1_x".into();
        c.partitions = Some(0);
        assert!(c.validate().is_err());
        c.partitions = Some(16);
        c.name = "a b".into();
        assert!(c.validate().is_err());
        c.name = "x".repeat(33);
        assert!(c.validate().is_err());
        assert!(ClusterConfig::new(vec![], "n").validate().is_err());
    }
}
