//! `auditstore cluster status`: the partitions, their streams' last
//! sequence and replicas, and each node's consumer position on each.

use async_nats::jetstream;
use futures_util::TryStreamExt;
use serde::Serialize;

use super::streams::{meta_bucket, stream_name};
use super::{ClusterConfig, ClusterError};

/// The whole cluster as JetStream sees it.
#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    pub cluster: String,
    pub partitions: u32,
    /// The running nodes: those holding a lease on their id.
    pub members: Vec<super::lease::Member>,
    pub streams: Vec<PartitionStatus>,
}

/// One partition's stream.
#[derive(Debug, Serialize)]
pub struct PartitionStatus {
    pub partition: u32,
    pub stream: String,
    /// The last sequence stored (0: none).
    pub last_seq: u64,
    pub messages: u64,
    pub bytes: u64,
    /// The NATS server leading the stream's Raft group.
    pub leader: Option<String>,
    pub replicas: Vec<ReplicaStatus>,
    /// The nodes chosen to apply it among the members now
    /// (docs/cluster.md, "Assignment").
    pub assigned: Vec<String>,
    /// The members announcing that they apply it and have caught up:
    /// where requests about its organizations are answered.
    pub serving: Vec<String>,
    /// Each node's durable consumer (also of a node that applied it
    /// once and no longer does).
    pub nodes: Vec<NodePosition>,
}

/// A follower replica of a stream.
#[derive(Debug, Serialize)]
pub struct ReplicaStatus {
    pub server: String,
    pub current: bool,
    pub offline: bool,
    pub lag: Option<u64>,
}

/// How far a node's consumer is on a stream.
#[derive(Debug, Serialize)]
pub struct NodePosition {
    /// The node id (the consumer is `node-<id>`).
    pub node: String,
    pub consumer: String,
    /// Every sequence up to here is acknowledged: applied and durable on
    /// that node.
    pub ack_floor: u64,
    /// The last sequence delivered to the node.
    pub delivered: u64,
    /// Messages not yet delivered to it.
    pub num_pending: u64,
    /// Delivered, not yet acknowledged.
    pub num_ack_pending: usize,
}

/// Read the cluster's status (creates nothing).
pub async fn collect(config: &ClusterConfig) -> Result<ClusterStatus, ClusterError> {
    let client = super::connect(config).await?;
    let js = jetstream::ContextBuilder::new()
        .timeout(config.request_timeout)
        .build(client);
    let bucket = js.get_key_value(meta_bucket(&config.name)).await.map_err(|e| {
        ClusterError::Metadata(format!(
            "no cluster named {:?} on these servers (bucket {}: {e})",
            config.name,
            meta_bucket(&config.name)
        ))
    })?;
    let partitions: u32 = bucket
        .get("partitions")
        .await
        .map_err(|e| ClusterError::nats("read the partition count", e))?
        .and_then(|b| std::str::from_utf8(&b).ok().and_then(|s| s.parse().ok()))
        .ok_or_else(|| ClusterError::Metadata("the cluster has no partition count".into()))?;
    let members = super::lease::members(&js, &config.name).await?;
    let ids: Vec<&str> = members.iter().map(|m| m.node.as_str()).collect();
    let mut streams = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        let name = stream_name(&config.name, p);
        let mut s = js
            .get_stream(&name)
            .await
            .map_err(|e| ClusterError::nats(&format!("stream {name}"), e))?;
        let info = s
            .info()
            .await
            .map_err(|e| ClusterError::nats(&format!("stream {name} info"), e))?
            .clone();
        let mut nodes: Vec<NodePosition> = s
            .consumers()
            .map_err(|e| ClusterError::nats(&format!("consumers of {name}"), e))
            .try_filter_map(|c| async move {
                Ok(c.name.strip_prefix("node-").map(|node| NodePosition {
                    node: node.to_owned(),
                    consumer: c.name.clone(),
                    ack_floor: c.ack_floor.stream_sequence,
                    delivered: c.delivered.stream_sequence,
                    num_pending: c.num_pending,
                    num_ack_pending: c.num_ack_pending,
                }))
            })
            .try_collect()
            .await?;
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        let cluster = info.cluster.as_ref();
        streams.push(PartitionStatus {
            partition: p,
            stream: name,
            last_seq: info.state.last_sequence,
            messages: info.state.messages,
            bytes: info.state.bytes,
            leader: cluster.and_then(|c| c.leader.clone()),
            replicas: cluster
                .map(|c| {
                    c.replicas
                        .iter()
                        .map(|r| ReplicaStatus {
                            server: r.name.clone(),
                            current: r.current,
                            offline: r.offline,
                            lag: r.lag,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            assigned: super::assign::chosen(p, &ids)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            serving: members
                .iter()
                .filter(|m| m.serving.contains(&p))
                .map(|m| m.node.clone())
                .collect(),
            nodes,
        });
    }
    Ok(ClusterStatus {
        cluster: config.name.clone(),
        partitions,
        members,
        streams,
    })
}
