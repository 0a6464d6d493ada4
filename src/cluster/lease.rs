//! Membership: each running node holds a lease on its id in the
//! key-value bucket `AUDIT_<cluster>_NODES` (docs/cluster.md, "Members").
//!
//! The lease is the key `<node id>`, created with a create-only write (so
//! two processes never both hold it) and renewed every [`RENEW_EVERY`] by
//! a compare-and-set on its last revision; the bucket's max age
//! ([`LEASE_TTL`]) drops a lease its holder stopped renewing (a killed
//! node). Why it matters: a node's id names its durable consumers, so two
//! processes started with the same `--node` id on different data
//! directories would ack each other's messages and each skip what the other
//! applied. A starting node waits for a held lease to lapse (a predecessor
//! killed a moment ago) up to [`LEASE_TTL`] and a margin, then refuses to
//! start; a node whose renewal finds another holder stops applying.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};

use super::{ClusterConfig, ClusterError};

/// How long a lease outlives its last renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(6);
/// How often a node renews its lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(2);

/// The members' bucket of cluster `cluster`.
pub fn members_bucket(cluster: &str) -> String {
    format!("AUDIT_{cluster}_NODES")
}

/// What a lease says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub node: String,
    /// Random per process start: tells one holder from another.
    pub instance: String,
    /// When the holder started (RFC 3339, its clock).
    pub started_at: String,
    /// The holder's auditstore version.
    pub version: String,
    /// Where other nodes reach its HTTP API (`--advertise`), to forward
    /// requests about a partition it serves.
    #[serde(default)]
    pub address: Option<String>,
    /// The partitions it has caught up with and serves (ascending).
    #[serde(default)]
    pub serving: Vec<u32>,
    /// The partitions it applies (ascending): those it serves, those it
    /// catches up with, and those it is leaving.
    #[serde(default)]
    pub applying: Vec<u32>,
}

/// A lease held by this process.
pub struct Lease {
    bucket: kv::Store,
    member: Member,
    revision: u64,
}

async fn bucket(js: &jetstream::Context, config: &ClusterConfig) -> Result<kv::Store, ClusterError> {
    super::streams::key_value(
        js,
        config,
        members_bucket(&config.name),
        format!("auditstore cluster {}: the running nodes' leases", config.name),
        LEASE_TTL,
    )
    .await
}

impl Lease {
    /// Takes the lease on `config.node`, waiting for one held by another
    /// process to lapse, at most [`LEASE_TTL`] and a margin.
    pub async fn acquire(js: &jetstream::Context, config: &ClusterConfig) -> Result<Lease, ClusterError> {
        let bucket = bucket(js, config).await?;
        let member = Member {
            node: config.node.clone(),
            instance: uuid::Uuid::new_v4().to_string(),
            started_at: crate::time::Timestamp::now().to_rfc3339(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            address: config.advertise.clone(),
            serving: Vec::new(),
            applying: Vec::new(),
        };
        let value = encode(&member)?;
        let deadline = tokio::time::Instant::now() + LEASE_TTL + Duration::from_secs(4);
        loop {
            match bucket.create(&config.node, value.clone().into()).await {
                Ok(revision) => {
                    return Ok(Lease {
                        bucket,
                        member,
                        revision,
                    })
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    let holder = current(&bucket, &config.node).await.ok().flatten();
                    // An earlier attempt of ours whose answer was lost?
                    if let Some((m, revision)) = &holder {
                        if m.instance == member.instance {
                            let revision = *revision;
                            return Ok(Lease {
                                bucket,
                                member,
                                revision,
                            });
                        }
                    }
                    if tokio::time::Instant::now() >= deadline {
                        let holder = holder.map(|(m, _)| m);
                        return Err(ClusterError::Config(format!(
                            "node id {:?} is in use: {} holds its lease in {} and keeps renewing it; \
                             every node needs its own --node id",
                            config.node,
                            holder.map_or("another process".to_owned(), |m| format!(
                                "a node started at {} (instance {})",
                                m.started_at, m.instance
                            )),
                            members_bucket(&config.name)
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                // NATS not answering (a server restarting): try again.
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::info!("take the node's lease: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(ClusterError::nats("take the node's lease", e)),
            }
        }
    }

    /// Renews the lease; [`ClusterError::LeaseLost`] if another process
    /// holds it now (this one stopped renewing for longer than the TTL).
    ///
    /// A renewal whose answer was lost (a NATS server killed meanwhile)
    /// leaves this process with an old revision: the next compare-and-set
    /// fails although the lease is still its own. So a failed one reads
    /// the lease: this process's instance means its own (its revision is
    /// taken); none (it lapsed) is taken again with a create-only write;
    /// only another instance means lost.
    pub async fn renew(&mut self) -> Result<(), ClusterError> {
        let value = encode(&self.member)?;
        match self
            .bucket
            .update(&self.member.node, value.clone().into(), self.revision)
            .await
        {
            Ok(revision) => {
                self.revision = revision;
                return Ok(());
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
            Err(e) => return Err(ClusterError::nats("renew the node's lease", e)),
        }
        let lost = || ClusterError::LeaseLost {
            node: self.member.node.clone(),
        };
        match current(&self.bucket, &self.member.node).await? {
            Some((m, revision)) if m.instance == self.member.instance => {
                self.revision = revision;
                Ok(())
            }
            Some(_) => Err(lost()),
            // Lapsed (or deleted): nobody holds it; take it again (a value
            // that is not a lease is found held: lost).
            None => match self.bucket.create(&self.member.node, value.into()).await {
                Ok(revision) => {
                    self.revision = revision;
                    Ok(())
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Err(lost()),
                Err(e) => Err(ClusterError::nats("take the node's lease again", e)),
            },
        }
    }

    /// What the lease says about this node.
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// The partitions to announce as served and as applied at the next
    /// renewal.
    pub fn set_partitions(&mut self, serving: Vec<u32>, applying: Vec<u32>) {
        self.member.serving = serving;
        self.member.applying = applying;
    }

    /// Gives the lease up (a clean stop): a restart need not wait for it.
    pub async fn release(self) {
        let _ = self
            .bucket
            .delete_expect_revision(&self.member.node, Some(self.revision))
            .await;
    }
}

fn encode(member: &Member) -> Result<Vec<u8>, ClusterError> {
    serde_json::to_vec(member).map_err(|e| ClusterError::Task(format!("encode the lease: {e}")))
}

/// The lease on `node` now: its holder and revision, or `None` when
/// nobody holds it (never taken, lapsed, deleted, or not a lease).
async fn current(bucket: &kv::Store, node: &str) -> Result<Option<(Member, u64)>, ClusterError> {
    let entry = bucket
        .entry(node)
        .await
        .map_err(|e| ClusterError::nats("read the node's lease", e))?;
    Ok(entry
        .filter(|e| e.operation == kv::Operation::Put)
        .and_then(|e| Some((serde_json::from_slice(&e.value).ok()?, e.revision))))
}

/// The members holding a lease now, by node id.
pub async fn members(js: &jetstream::Context, cluster: &str) -> Result<Vec<Member>, ClusterError> {
    use futures_util::TryStreamExt;
    let Ok(bucket) = js.get_key_value(members_bucket(cluster)).await else {
        return Ok(Vec::new());
    };
    let keys: Vec<String> = bucket
        .keys()
        .await
        .map_err(|e| ClusterError::nats("list the members", e))?
        .try_collect()
        .await
        .map_err(|e| ClusterError::nats("list the members", e))?;
    let mut out = Vec::new();
    for key in keys {
        if let Some((m, _)) = current(&bucket, &key).await.ok().flatten() {
            out.push(m);
        }
    }
    out.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(out)
}
