//! Ingest through the streams: split the events by partition, batch them
//! into messages of up to 1 MiB - 8 KiB of entries, LZ4-compressed when
//! that is smaller, publish every message, and only then wait for
//! JetStream to acknowledge each one (stored on a quorum of the stream's
//! replicas, each written with `sync_interval: always`).
//!
//! A batch whose publish failed or whose ack did not come is published
//! again, with the same `Nats-Msg-Id`, until `patience` runs out: within
//! the stream's de-duplication window JetStream stores it once; and any
//! copy stored twice is harmless, since nodes de-duplicate by event id.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture};

use super::message::{Batch, Batcher};
use super::partition::partition_of;
use super::streams::subject;
use super::ClusterError;
use crate::event::Event;

/// A publish handed to the client: the ack to wait for, or why not.
type Sent = Result<PublishAckFuture, ClusterError>;

/// Publishes event batches to the partitions' streams.
#[derive(Clone)]
pub struct Publisher {
    js: jetstream::Context,
    cluster: String,
    partitions: u32,
    /// How long to keep re-publishing unacknowledged batches.
    patience: Duration,
}

/// Where the stream put the published batches: per partition, the highest
/// sequence acknowledged.
pub type Positions = BTreeMap<u32, u64>;

impl Publisher {
    pub fn new(js: jetstream::Context, cluster: &str, partitions: u32, patience: Duration) -> Self {
        Publisher {
            js,
            cluster: cluster.to_owned(),
            partitions,
            patience,
        }
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The cluster's name (its subjects').
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The core NATS client under the JetStream context (the same
    /// connection: what it sends is sent in order with the publishes).
    pub fn client(&self) -> async_nats::Client {
        self.js.client()
    }

    /// The batches of `events`, by partition, in the events' order.
    pub fn batches<'a>(&self, events: impl IntoIterator<Item = (&'a str, &'a Event)>) -> Vec<(u32, Batch)> {
        let mut by_partition: BTreeMap<u32, Batcher> = BTreeMap::new();
        for (org, event) in events {
            by_partition
                .entry(partition_of(org, self.partitions))
                .or_insert_with(Batcher::compressing)
                .push(org, event);
        }
        by_partition
            .into_iter()
            .flat_map(|(p, b)| b.finish().into_iter().map(move |batch| (p, batch)))
            .collect()
    }

    /// Publish `events` and wait until JetStream acknowledged every batch.
    pub async fn publish<'a>(
        &self,
        events: impl IntoIterator<Item = (&'a str, &'a Event)>,
    ) -> Result<Positions, ClusterError> {
        self.publish_batches(self.batches(events)).await
    }

    /// Publish these messages (event batches or commands) and wait until
    /// JetStream acknowledged every one.
    pub async fn publish_batches(&self, batches: Vec<(u32, Batch)>) -> Result<Positions, ClusterError> {
        let deadline = tokio::time::Instant::now() + self.patience;
        let mut positions = Positions::new();
        let mut pending: Vec<&(u32, Batch)> = batches.iter().collect();
        let mut delay = Duration::from_millis(50);
        loop {
            let mut acks: Vec<(&(u32, Batch), Sent)> = Vec::new();
            for item in &pending {
                acks.push((item, self.send(item.0, &item.1).await));
            }
            let mut failed = Vec::new();
            let mut last_error = None;
            for (item, sent) in acks {
                let acked = match sent {
                    Ok(fut) => fut.await.map_err(|e| ClusterError::nats("publish ack", e)),
                    Err(e) => Err(e),
                };
                match acked {
                    Ok(ack) => {
                        let at = positions.entry(item.0).or_insert(0);
                        *at = (*at).max(ack.sequence);
                    }
                    Err(e) => {
                        failed.push(item);
                        last_error = Some(e);
                    }
                }
            }
            if failed.is_empty() {
                metrics::counter!("auditstore_cluster_published_batches_total")
                    .increment(batches.len() as u64);
                return Ok(positions);
            }
            if tokio::time::Instant::now() + delay > deadline {
                let e = last_error.map(|e| e.to_string()).unwrap_or_default();
                return Err(ClusterError::Nats(format!(
                    "{} of {} batches not acknowledged by JetStream within {:?}: {e}",
                    failed.len(),
                    batches.len(),
                    self.patience
                )));
            }
            tracing::info!(
                "re-publishing {} unacknowledged batches: {:?}",
                failed.len(),
                last_error
            );
            metrics::counter!("auditstore_cluster_republished_batches_total").increment(failed.len() as u64);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
            pending = failed;
        }
    }

    async fn send(&self, partition: u32, batch: &Batch) -> Result<PublishAckFuture, ClusterError> {
        let publish = jetstream::message::PublishMessage::build()
            .payload(batch.payload.clone().into())
            .message_id(&batch.msg_id);
        self.js
            .send_publish(subject(&self.cluster, partition), publish)
            .await
            .map_err(|e| ClusterError::nats("publish", e))
    }
}
