//! A node of the cluster: starts the appliers, and is the server's
//! [`Replication`] hook (ingest through the streams; reads wait, for a
//! bounded time, until this node has applied what the stream holds).
//!
//! Every node applies every partition (this milestone's assignment: "at
//! least two" holds with two or more nodes, and any node answers any query
//! from its own store). Leases that spread partitions over nodes come next
//! (docs/cluster.md, "Not yet").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_nats::jetstream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::applied::Applied;
use super::applier::Applier;
use super::lease::{Lease, RENEW_EVERY};
use super::outcomes::Outcomes;
use super::partition::partition_of;
use super::publisher::Publisher;
use super::streams::{self, ensure_stream, retrying};
use super::{ClusterConfig, ClusterError};
use crate::event::Event;
use crate::server::error::{ApiError, ApiResult};
use crate::server::replication::{BoxFuture, Command, Outcome, Replication};
use crate::store::{AppendOutcome, BatchReport, Store};

/// How long a starting node waits for JetStream (servers electing their
/// leaders) before giving up.
const STARTUP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// A running node; cheap to clone.
#[derive(Clone)]
pub struct Node(Arc<Inner>);

struct Inner {
    js: jetstream::Context,
    config: ClusterConfig,
    store: Arc<Store>,
    publisher: Publisher,
    /// The outcomes of this node's commands, handed over by the appliers.
    outcomes: Arc<Outcomes>,
    watermarks: Vec<watch::Receiver<u64>>,
    /// Per partition, why its applier stopped for good.
    faults: Vec<Arc<Mutex<Option<String>>>>,
    stop: watch::Sender<bool>,
    appliers: Mutex<Vec<JoinHandle<()>>>,
}

impl Node {
    /// Join the cluster: connect, learn (or fix) the partition count,
    /// create the streams that are missing, and start applying every
    /// partition to `store` from this node's recorded positions.
    pub async fn start(config: ClusterConfig, store: Arc<Store>) -> Result<Node, ClusterError> {
        config.validate()?;
        let client = super::connect(&config).await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .build(client);
        let partitions = retrying("the partition count", STARTUP_PATIENCE, || {
            streams::partitions(&js, &config)
        })
        .await?;
        for p in 0..partitions {
            retrying(&streams::stream_name(&config.name, p), STARTUP_PATIENCE, || {
                ensure_stream(&js, &config, p)
            })
            .await?;
        }
        // Before applying anything: the consumers are named by the node id.
        let lease = Lease::acquire(&js, &config).await?;
        let dir = store.dir().join("cluster").join(&config.name);
        let (stop, stop_rx) = watch::channel(false);
        let outcomes = Arc::new(Outcomes::default());
        let mut watermarks = Vec::with_capacity(partitions as usize);
        let mut faults = Vec::with_capacity(partitions as usize);
        let mut appliers = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let applied = {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || Applied::open(&dir, &format!("p{p}.applied")))
                    .await
                    .map_err(|e| ClusterError::Task(e.to_string()))??
            };
            let position = applied.get();
            let (tx, rx) = watch::channel(position);
            watermarks.push(rx);
            let fault = Arc::new(Mutex::new(None));
            faults.push(fault.clone());
            let applier = Applier {
                js: js.clone(),
                config: config.clone(),
                partition: p,
                partitions,
                store: store.clone(),
                outcomes: outcomes.clone(),
                applied: Arc::new(Mutex::new(applied)),
                position,
                watermark: tx,
                fault,
                stop: stop_rx.clone(),
            };
            appliers.push(tokio::spawn(applier.run()));
        }
        appliers.push(tokio::spawn(keep_lease(
            lease,
            faults.clone(),
            stop.clone(),
            stop_rx.clone(),
        )));
        let publisher = Publisher::new(js.clone(), &config.name, partitions, config.request_timeout * 2);
        Ok(Node(Arc::new(Inner {
            js,
            config,
            store,
            publisher,
            outcomes,
            watermarks,
            faults,
            stop,
            appliers: Mutex::new(appliers),
        })))
    }

    pub fn partitions(&self) -> u32 {
        self.0.publisher.partitions()
    }

    pub(super) fn store(&self) -> &Arc<Store> {
        &self.0.store
    }

    pub(super) fn publisher(&self) -> &Publisher {
        &self.0.publisher
    }

    pub(super) fn outcomes(&self) -> &Outcomes {
        &self.0.outcomes
    }

    /// How long a read, or a command's answer, waits for this node.
    pub(super) fn read_wait(&self) -> std::time::Duration {
        self.0.config.read_wait
    }

    /// How far this node has applied each partition.
    pub fn positions(&self) -> Vec<u64> {
        self.0.watermarks.iter().map(|w| *w.borrow()).collect()
    }

    /// Stop applying (between two local appends) and wait for the appliers.
    pub async fn stop(&self) {
        let _ = self.0.stop.send(true);
        let handles: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.0.appliers.lock().unwrap_or_else(|p| p.into_inner()));
        for h in handles {
            let _ = h.await;
        }
    }

    /// Wait until partition `p` is applied up to the stream's last
    /// sequence as of now, at most the configured read wait.
    pub async fn caught_up(&self, p: u32) -> ApiResult<()> {
        let inner = &self.0;
        self.fault(p)?;
        let deadline = tokio::time::Instant::now() + inner.config.read_wait;
        let last =
            tokio::time::timeout_at(deadline, streams::last_sequence(&inner.js, &inner.config.name, p))
                .await
                .map_err(|_| "no answer in time".to_owned())
                .and_then(|r| r.map_err(|e| e.to_string()))
                .map_err(|e| {
                    ApiError::unavailable(format!(
                        "cannot read partition {p}'s position from JetStream ({e}); try again"
                    ))
                    .with("partition", p)
                })?;
        let mut rx = inner.watermarks[p as usize].clone();
        let reached = matches!(
            tokio::time::timeout_at(deadline, rx.wait_for(|v| *v >= last)).await,
            Ok(Ok(_))
        );
        match reached {
            true => Ok(()),
            false => {
                // The applier may have stopped for good while we waited.
                self.fault(p)?;
                metrics::counter!("auditstore_cluster_reads_not_caught_up_total").increment(1);
                let applied = *rx.borrow();
                Err(ApiError::unavailable(format!(
                    "this node has applied partition {p} up to sequence {applied} of {last} and did not \
                     catch up within {:?}; try again, or another node",
                    inner.config.read_wait
                ))
                .with("partition", p)
                .with("applied", applied)
                .with("stream_last_seq", last))
            }
        }
    }

    /// `503` naming why partition `p`'s applier stopped for good, if it did.
    fn fault(&self, p: u32) -> ApiResult<()> {
        let fault = self
            .0
            .faults
            .get(p as usize)
            .and_then(|f| f.lock().unwrap_or_else(|e| e.into_inner()).clone());
        match fault {
            Some(fault) => Err(ApiError::unavailable(format!(
                "this node cannot serve partition {p}: {fault}"
            ))
            .with("partition", p)),
            None => Ok(()),
        }
    }

    /// Ingest: the outcome of each event, publishing those this node does
    /// not hold yet.
    pub async fn ingest(&self, org: String, events: Vec<Event>) -> ApiResult<BatchReport> {
        let store = self.0.store.clone();
        let now = store.clock().now();
        let (events, outcomes) = tokio::task::spawn_blocking(move || {
            let outcomes = classify(&store, &org, &events, now)?;
            Ok::<_, ApiError>(((org, events), outcomes))
        })
        .await
        .map_err(|e| ApiError::internal(format!("an ingest task failed: {e}")))??;
        let (org, events) = events;
        let new = events
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o == AppendOutcome::Appended)
            .map(|(e, _)| (org.as_str(), e));
        self.0.publisher.publish(new).await.map_err(|e| {
            ApiError::unavailable(format!(
                "the events were not all acknowledged by JetStream ({e}); retry the same request: \
                 events are stored once by id"
            ))
        })?;
        let mut report = BatchReport::default();
        for o in outcomes {
            report.record(o);
        }
        Ok(report)
    }
}

/// Each event's outcome as far as this node knows: a duplicate or conflict
/// of an event in its store or earlier in the request, else `Appended`
/// (to publish). An event it has not applied yet is published again and
/// stored once all the same.
fn classify(
    store: &Store,
    org: &str,
    events: &[Event],
    now: crate::Timestamp,
) -> ApiResult<Vec<AppendOutcome>> {
    let mut first: HashMap<uuid::Uuid, usize> = HashMap::new();
    let mut out = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let outcome = if let Some(&j) = first.get(&e.id()) {
            match events[j].same_content(e) {
                true => AppendOutcome::Duplicate,
                false => AppendOutcome::Conflict,
            }
        } else {
            first.insert(e.id(), i);
            match store.get_with_org(e.id(), now)? {
                Some((o, stored)) if o == org && stored.same_content(e) => AppendOutcome::Duplicate,
                Some(_) => AppendOutcome::Conflict,
                None => AppendOutcome::Appended,
            }
        };
        out.push(outcome);
    }
    Ok(out)
}

impl Replication for Node {
    fn ingest(&self, org: String, events: Vec<Event>) -> BoxFuture<'static, ApiResult<BatchReport>> {
        let node = self.clone();
        Box::pin(async move { Node::ingest(&node, org, events).await })
    }

    fn before_read(&self, org: String) -> BoxFuture<'static, ApiResult<()>> {
        let node = self.clone();
        Box::pin(async move { node.caught_up(partition_of(&org, node.partitions())).await })
    }

    fn command(&self, command: Command) -> Option<BoxFuture<'static, ApiResult<Outcome>>> {
        let node = self.clone();
        Some(Box::pin(async move { node.command(command).await }))
    }

    fn session_started(
        &self,
        id: &str,
        user: &crate::auth::User,
        expires_at: i64,
    ) -> BoxFuture<'static, ApiResult<()>> {
        let (node, id, user) = (self.clone(), id.to_owned(), user.clone());
        Box::pin(async move {
            let inner = &node.0;
            super::sessions::put(&inner.js, &inner.config, &id, &user, expires_at)
                .await
                .map_err(|e| session_unavailable("record the session for the other nodes", e))
        })
    }

    fn find_session(&self, id: &str) -> Option<crate::server::replication::FoundSession> {
        let (node, id) = (self.clone(), id.to_owned());
        Some(Box::pin(async move {
            let inner = &node.0;
            super::sessions::find(&inner.js, &inner.config, &id)
                .await
                .map(|found| found.map(|s| (s.user, s.expires_at)))
                .map_err(|e| session_unavailable("look the session up", e))
        }))
    }

    fn session_ended(&self, id: &str) -> BoxFuture<'static, ApiResult<()>> {
        let (node, id) = (self.clone(), id.to_owned());
        Box::pin(async move {
            let inner = &node.0;
            super::sessions::delete(&inner.js, &inner.config, &id)
                .await
                .map_err(|e| session_unavailable("end the session on every node", e))
        })
    }
}

/// `503` for the sessions' bucket (the error names no session id).
fn session_unavailable(what: &str, e: ClusterError) -> ApiError {
    ApiError::unavailable(format!("cannot {what} ({e}); try again"))
}

/// Renews the node's lease until the node stops (then gives it up). A
/// lease another process took stops the appliers and makes every read
/// `503`: two processes with one id would ack each other's messages.
async fn keep_lease(
    mut lease: Lease,
    faults: Vec<Arc<Mutex<Option<String>>>>,
    stop_all: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(RENEW_EVERY) => false,
            changed = stop.changed() => changed.is_err() || *stop.borrow(),
        };
        if stopping {
            lease.release().await;
            return;
        }
        match lease.renew().await {
            Ok(()) => {}
            Err(e @ ClusterError::LeaseLost { .. }) => {
                tracing::error!("{e}");
                for f in &faults {
                    *f.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                }
                let _ = stop_all.send(true);
                return;
            }
            // Unreachable NATS: try again; a lease that lapses meanwhile is
            // found taken, or free, at the next renewal.
            Err(e) => tracing::warn!("{e}"),
        }
    }
}
