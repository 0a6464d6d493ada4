//! The cluster's JetStream objects: names, the partitions' stream
//! configuration, and creating them (idempotent: every node does it at
//! start, racing nodes agree).
//!
//! - stream `AUDIT_<cluster>_P<n>`, subject `auditstore.<cluster>.p<n>`;
//! - the metadata bucket `AUDIT_<cluster>_META` (key-value), key
//!   `partitions`: P, written once by whichever node creates the cluster;
//! - each node's durable consumer on each stream: `node-<node id>`.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

use super::{ClusterConfig, ClusterError};
use crate::cluster::partition::DEFAULT_PARTITIONS;

/// The stream de-duplication window: a publish retried within it with the
/// same batch (same `Nats-Msg-Id`) is stored once.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Largest message a stream takes, headers included (a batch's entries
/// stop at 1 MiB - 8 KiB before compression; one event is at most 256 KiB
/// of JSON).
pub const MAX_MESSAGE_BYTES: i32 = 1024 * 1024;
const PARTITIONS_KEY: &str = "partitions";

pub fn stream_name(cluster: &str, partition: u32) -> String {
    format!("AUDIT_{cluster}_P{partition}")
}

pub fn subject(cluster: &str, partition: u32) -> String {
    format!("auditstore.{cluster}.p{partition}")
}

pub fn consumer_name(node: &str) -> String {
    format!("node-{node}")
}

pub fn meta_bucket(cluster: &str) -> String {
    format!("AUDIT_{cluster}_META")
}

/// A partition's stream configuration (docs/cluster.md, "Streams"):
/// messages kept for ever, or for `max_age` (the de-duplication window is
/// then at most that: JetStream requires it).
pub fn stream_config(
    cluster: &str,
    partition: u32,
    replicas: usize,
    max_age: Option<Duration>,
) -> stream::Config {
    stream::Config {
        name: stream_name(cluster, partition),
        description: Some(format!(
            "auditstore cluster {cluster}: event batches of partition {partition}"
        )),
        subjects: vec![subject(cluster, partition)],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::New,
        duplicate_window: max_age.map_or(DUPLICATE_WINDOW, |age| age.min(DUPLICATE_WINDOW)),
        max_age: max_age.unwrap_or_default(),
        max_message_size: MAX_MESSAGE_BYTES,
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    }
}

/// Retry `f` while JetStream is not ready (servers starting, no meta
/// leader yet), up to `patience`.
pub async fn retrying<T, F, Fut>(what: &str, patience: Duration, mut f: F) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClusterError>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    let mut delay = Duration::from_millis(100);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e @ (ClusterError::Config(_) | ClusterError::Metadata(_))) => return Err(e),
            Err(e) if tokio::time::Instant::now() + delay > deadline => {
                return Err(ClusterError::Nats(format!(
                    "{what}: gave up after {patience:?}: {e}"
                )))
            }
            Err(e) => {
                tracing::info!("{what}: {e}; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// The cluster's partition count: the stored one, or (first node) the
/// configured one stored now. A configured count that disagrees with the
/// stored one is refused.
pub async fn partitions(js: &jetstream::Context, config: &ClusterConfig) -> Result<u32, ClusterError> {
    let bucket = match js.get_key_value(meta_bucket(&config.name)).await {
        Ok(b) => b,
        Err(_) => {
            let created = js
                .create_key_value(kv::Config {
                    bucket: meta_bucket(&config.name),
                    description: format!("auditstore cluster {}: settings fixed at creation", config.name),
                    history: 1,
                    storage: stream::StorageType::File,
                    num_replicas: config.replicas,
                    ..Default::default()
                })
                .await;
            match created {
                Ok(b) => b,
                // Another node created it meanwhile.
                Err(e) => js
                    .get_key_value(meta_bucket(&config.name))
                    .await
                    .map_err(|e2| ClusterError::nats("the metadata bucket", format!("{e}; {e2}")))?,
            }
        }
    };
    let wanted = config.partitions.unwrap_or(DEFAULT_PARTITIONS);
    if let Err(e) = bucket.create(PARTITIONS_KEY, wanted.to_string().into()).await {
        if e.kind() != kv::CreateErrorKind::AlreadyExists {
            return Err(ClusterError::nats("store the partition count", e));
        }
    }
    let stored = bucket
        .get(PARTITIONS_KEY)
        .await
        .map_err(|e| ClusterError::nats("read the partition count", e))?
        .ok_or_else(|| ClusterError::Nats("the partition count is not readable yet".into()))?;
    let stored: u32 = std::str::from_utf8(&stored)
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|p| (1..=super::partition::MAX_PARTITIONS).contains(p))
        .ok_or_else(|| ClusterError::Metadata(format!("stored partition count {stored:?} is not a count")))?;
    if let Some(p) = config.partitions {
        if p != stored {
            return Err(ClusterError::Metadata(format!(
                "cluster {} has {stored} partitions, fixed at its creation; this node was started with --partitions {p}",
                config.name
            )));
        }
    }
    Ok(stored)
}

/// The partition's stream, created if missing; an existing stream whose
/// replicas or storage differ is refused.
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: &ClusterConfig,
    partition: u32,
) -> Result<stream::Stream, ClusterError> {
    let wanted = stream_config(&config.name, partition, config.replicas, config.stream_max_age);
    let mut s = js
        .get_or_create_stream(wanted.clone())
        .await
        .map_err(|e| ClusterError::nats(&format!("stream {}", wanted.name), e))?;
    let info = s
        .info()
        .await
        .map_err(|e| ClusterError::nats(&format!("stream {} info", wanted.name), e))?;
    let have = &info.config;
    if have.num_replicas != wanted.num_replicas
        || have.storage != wanted.storage
        || have.subjects != wanted.subjects
    {
        return Err(ClusterError::Metadata(format!(
            "stream {} exists with {} replicas, {:?} storage and subjects {:?}; this node wants {}, {:?}, {:?}",
            wanted.name, have.num_replicas, have.storage, have.subjects, wanted.num_replicas, wanted.storage, wanted.subjects
        )));
    }
    Ok(s)
}

/// The stream's last sequence now (0: empty).
pub async fn last_sequence(
    js: &jetstream::Context,
    cluster: &str,
    partition: u32,
) -> Result<u64, ClusterError> {
    let name = stream_name(cluster, partition);
    let s = js
        .get_stream_no_info(&name)
        .await
        .map_err(|e| ClusterError::nats(&format!("stream {name}"), e))?;
    let info = s
        .get_info()
        .await
        .map_err(|e| ClusterError::nats(&format!("stream {name} info"), e))?;
    Ok(info.state.last_sequence)
}

/// Key-value bucket `name`, created when missing (history 1, file storage,
/// the streams' replicas, entries dropped `max_age` after their last
/// write); another node creating it meanwhile is fine.
pub async fn key_value(
    js: &jetstream::Context,
    config: &ClusterConfig,
    name: String,
    description: String,
    max_age: std::time::Duration,
) -> Result<async_nats::jetstream::kv::Store, ClusterError> {
    use async_nats::jetstream::{kv, stream};
    match js.get_key_value(&name).await {
        Ok(b) => return Ok(b),
        // Created below; no answer is not waited for twice.
        Err(e) if no_stream(&e) => {}
        Err(e) => return Err(ClusterError::nats(&format!("bucket {name}"), e)),
    }
    let created = js
        .create_key_value(kv::Config {
            bucket: name.clone(),
            description,
            history: 1,
            max_age,
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            ..Default::default()
        })
        .await;
    match created {
        Ok(b) => Ok(b),
        // Another node created it meanwhile.
        Err(e) => js
            .get_key_value(&name)
            .await
            .map_err(|e2| ClusterError::nats(&format!("bucket {name}"), format!("{e}; {e2}"))),
    }
}

/// Whether `e` says the bucket's stream does not exist (rather than that
/// JetStream did not answer).
fn no_stream(e: &jetstream::context::KeyValueError) -> bool {
    use jetstream::context::{GetStreamError, GetStreamErrorKind};
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<GetStreamError>())
        .is_some_and(|g| {
            matches!(g.kind(), GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_config() {
        assert_eq!(stream_name("main", 3), "AUDIT_main_P3");
        assert_eq!(subject("main", 3), "auditstore.main.p3");
        assert_eq!(consumer_name("n1"), "node-n1");
        assert_eq!(meta_bucket("main"), "AUDIT_main_META");
        let c = stream_config("main", 0, 3, None);
        assert_eq!(c.num_replicas, 3);
        assert_eq!(c.storage, stream::StorageType::File);
        assert_eq!(c.duplicate_window, Duration::from_secs(120));
        assert_eq!(c.max_age, Duration::ZERO);
        let kept = stream_config("main", 0, 3, Some(Duration::from_secs(30)));
        assert_eq!(
            (kept.max_age, kept.duplicate_window),
            (Duration::from_secs(30), Duration::from_secs(30))
        );
        let long = stream_config("main", 0, 3, Some(Duration::from_secs(86_400)));
        assert_eq!(long.duplicate_window, Duration::from_secs(120));
    }
}
