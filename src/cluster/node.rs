//! A node of the cluster: applies the partitions assigned to it
//! ([`super::assign`], kept up to date by [`super::membership`]), and is
//! the server's [`Replication`] hook: ingest through the streams, reads
//! wait (bounded) until this node has applied what the stream holds, and
//! requests about a partition this node does not serve are forwarded to
//! one that does ([`super::forward`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use async_nats::jetstream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::applied::{position_dir, position_file};
use super::applier::Applier;
use super::forward::{self, Forwarder};
use super::lease::{Lease, Member};
use super::outcomes::Outcomes;
use super::partition::partition_of;
use super::publisher::Publisher;
use super::stores::Stores;
use super::streams::{self, ensure_stream, retrying};
use super::{ClusterConfig, ClusterError};
use crate::event::Event;
use crate::server::error::{ApiError, ApiResult};
use crate::server::replication::{BoxFuture, Command, ForwardLimits, Outcome, Replication};
use crate::store::{AppendOutcome, BatchReport, Store};

/// How long a starting node waits for JetStream (servers electing their
/// leaders) before giving up.
const STARTUP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// A running node; cheap to clone.
#[derive(Clone)]
pub struct Node(Arc<Inner>);

pub(super) struct Inner {
    pub(super) js: jetstream::Context,
    pub(super) config: ClusterConfig,
    stores: Arc<Stores>,
    publisher: Publisher,
    /// The outcomes of this node's commands, handed over by the appliers.
    outcomes: Arc<Outcomes>,
    pub(super) slots: Vec<Slot>,
    /// The members as last read (this node's lease included).
    pub(super) members: RwLock<Vec<Member>>,
    forwarder: Forwarder,
    /// Spreads forwarded requests over the nodes serving a partition.
    rotate: AtomicUsize,
    /// Woken when an applier catches up: the lease announces it at once.
    pub(super) announce: Arc<tokio::sync::Notify>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// One partition on this node: how far it is applied and, while this node
/// applies it, its applier.
pub(super) struct Slot {
    watermark_tx: Arc<watch::Sender<u64>>,
    watermark: watch::Receiver<u64>,
    /// Why its applier stopped for good.
    fault: Arc<Mutex<Option<String>>>,
    /// Its applier caught up with the stream since it started.
    serving: Arc<AtomicBool>,
    running: Mutex<Option<Running>>,
    /// Rounds of the membership loop this node has not been needed for it
    /// (announced as not served meanwhile, stopped after a few).
    pub(super) leaving: AtomicU32,
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Slot {
    pub(super) fn applying(&self) -> bool {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Caught up, and applying.
    pub(super) fn serving(&self) -> bool {
        self.applying() && self.serving.load(Ordering::Acquire)
    }

    pub(super) fn faulted(&self) -> bool {
        self.fault.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    pub(super) fn set_fault(&self, why: String) {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        self.serving.store(false, Ordering::Release);
    }
}

impl Node {
    /// Join the cluster: connect, learn (or fix) the partition count,
    /// create the streams that are missing, take this node's lease, and
    /// start applying the partitions assigned to it from this node's
    /// recorded positions.
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
        // Retried like the streams: a node restarted while a NATS server
        // is down (its key-value bucket electing a leader) waits for it.
        let lease = retrying("the node's lease", STARTUP_PATIENCE, || {
            Lease::acquire(&js, &config)
        })
        .await?;
        let publisher = Publisher::new(js.clone(), &config.name, partitions, config.request_timeout * 2);
        // Downloads, full exports and sign-ins served here are recorded
        // through the streams, on every node applying the partition.
        let sink = Arc::new(super::own_events::StreamSink {
            publisher: publisher.clone(),
            runtime: tokio::runtime::Handle::current(),
            patience: config.request_timeout * 2,
        });
        let (stores, positions) = {
            let name = config.name.clone();
            tokio::task::spawn_blocking(move || open_stores(store, &name, partitions, sink))
                .await
                .map_err(|e| ClusterError::Task(e.to_string()))??
        };
        let mut slots = Vec::with_capacity(partitions as usize);
        for position in positions {
            let (tx, rx) = watch::channel(position);
            slots.push(Slot {
                watermark_tx: Arc::new(tx),
                watermark: rx,
                fault: Arc::new(Mutex::new(None)),
                serving: Arc::new(AtomicBool::new(false)),
                running: Mutex::new(None),
                leaving: AtomicU32::new(0),
            });
        }
        let (stop, stop_rx) = watch::channel(false);
        let forwarder = Forwarder::new(&config.node);
        let node = Node(Arc::new(Inner {
            js,
            members: RwLock::new(vec![lease.member().clone()]),
            config,
            stores: Arc::new(stores),
            publisher,
            outcomes: Arc::new(Outcomes::default()),
            slots,
            forwarder,
            rotate: AtomicUsize::new(0),
            announce: Arc::new(tokio::sync::Notify::new()),
            stop,
            tasks: Mutex::new(Vec::new()),
        }));
        let mut lease = lease;
        node.join(&mut lease).await;
        let task = tokio::spawn(super::membership::run(node.clone(), lease, stop_rx));
        node.0.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task);
        Ok(node)
    }

    pub(super) fn inner(&self) -> &Inner {
        &self.0
    }

    pub(super) fn next_rotation(&self) -> usize {
        self.0.rotate.fetch_add(1, Ordering::Relaxed)
    }

    /// Start applying partition `p` from its recorded position.
    pub(super) fn start_applier(&self, p: u32) {
        let inner = &self.0;
        let slot = &inner.slots[p as usize];
        let mut running = slot.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.is_some() {
            return;
        }
        let (stop, stop_rx) = watch::channel(false);
        slot.serving.store(false, Ordering::Release);
        slot.leaving.store(0, Ordering::Relaxed);
        let applier = Applier {
            js: inner.js.clone(),
            config: inner.config.clone(),
            partition: p,
            partitions: self.partitions(),
            stores: inner.stores.clone(),
            local: None,
            outcomes: inner.outcomes.clone(),
            position: 0,
            watermark: slot.watermark_tx.clone(),
            serving: slot.serving.clone(),
            announce: inner.announce.clone(),
            fault: slot.fault.clone(),
            stop: stop_rx,
            catch_up_to: u64::MAX,
        };
        *running = Some(Running {
            stop,
            task: tokio::spawn(applier.run()),
        });
    }

    /// Stop applying partition `p` (between two local appends) and wait.
    pub(super) async fn stop_applier(&self, p: u32) {
        let slot = &self.0.slots[p as usize];
        let taken = slot.running.lock().unwrap_or_else(|e| e.into_inner()).take();
        slot.serving.store(false, Ordering::Release);
        if let Some(r) = taken {
            let _ = r.stop.send(true);
            let _ = r.task.await;
            tracing::info!("partition {p}: no longer applied here");
        }
    }

    pub fn partitions(&self) -> u32 {
        self.0.publisher.partitions()
    }

    /// Partition 0's store (also every token and user).
    pub(super) fn store(&self) -> &Arc<Store> {
        self.0.stores.main()
    }

    /// Partition `p`'s store if this node has one (opening it if it is in
    /// the data directory but not open), without making one. Blocking.
    pub fn partition_store(&self, p: u32) -> Result<Option<Arc<Store>>, ClusterError> {
        self.0.stores.existing(p)
    }

    pub(super) fn stores(&self) -> &Arc<Stores> {
        &self.0.stores
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
        self.0.slots.iter().map(|s| *s.watermark.borrow()).collect()
    }

    /// Stop applying (between two local appends), give the lease up, and
    /// wait.
    pub async fn stop(&self) {
        let _ = self.0.stop.send(true);
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.0.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        self.stop_appliers().await;
        let stores = self.0.stores.clone();
        let _ = tokio::task::spawn_blocking(move || stores.flush()).await;
    }

    pub(super) async fn stop_appliers(&self) {
        for p in 0..self.partitions() {
            self.stop_applier(p).await;
        }
    }

    /// Wait until partition `p` is applied up to the stream's last
    /// sequence as of now, at most the configured read wait.
    pub async fn caught_up(&self, p: u32) -> ApiResult<()> {
        let inner = &self.0;
        self.fault(p)?;
        let slot = &inner.slots[p as usize];
        if !slot.applying() {
            return Err(ApiError::unavailable(format!(
                "this node does not apply partition {p} now; ask a node that does (`cluster status`)"
            ))
            .with("partition", p));
        }
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
        let mut rx = slot.watermark.clone();
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
            .slots
            .get(p as usize)
            .and_then(|s| s.fault.lock().unwrap_or_else(|e| e.into_inner()).clone());
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
        let stores = self.0.stores.clone();
        let p = partition_of(&org, self.partitions());
        let now = self.store().clock().now();
        let (events, outcomes) = tokio::task::spawn_blocking(move || {
            let store = stores
                .existing(p)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let outcomes = classify(store.as_deref(), &org, &events, now)?;
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
/// of an event in the partition's store (if this node has one) or earlier
/// in the request, else `Appended` (to publish). An event it has not
/// applied yet is published again and stored once all the same.
fn classify(
    store: Option<&Store>,
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
            let stored = match store {
                Some(store) => store.get_with_org(e.id(), now)?,
                None => None,
            };
            match stored {
                Some((o, stored)) if o == org && stored.same_content(e) => AppendOutcome::Duplicate,
                Some(_) => AppendOutcome::Conflict,
                None => AppendOutcome::Appended,
            }
        };
        out.push(outcome);
    }
    Ok(out)
}

/// The node's stores (partition 0's is `main`, the others opened if this
/// node has them) and the position each partition is applied up to.
/// Blocking.
fn open_stores(
    main: Arc<Store>,
    cluster: &str,
    partitions: u32,
    sink: Arc<super::own_events::StreamSink>,
) -> Result<(Stores, Vec<u64>), ClusterError> {
    refuse_shared_layout(main.dir(), cluster, partitions)?;
    let stores = Stores::new(main, cluster, partitions, sink)?;
    let mut positions = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        let dir = stores.dir(p);
        positions.push(super::applied::peek(
            &position_dir(&dir, cluster).join(position_file(p)),
        )?);
    }
    Ok((stores, positions))
}

/// A directory written by a node of the layout before one store per
/// partition (every partition's position beside partition 0's store) is
/// refused rather than re-applied into empty partition stores.
fn refuse_shared_layout(dir: &std::path::Path, cluster: &str, partitions: u32) -> Result<(), ClusterError> {
    let positions = position_dir(dir, cluster);
    for p in 1..partitions {
        let old = positions.join(position_file(p));
        if super::applied::peek(&old)? > 0 {
            return Err(ClusterError::Metadata(format!(
                "{} records partition {p} applied beside partition 0's store: this data directory was made by \
                 an older auditstore that kept every partition in one store; start this node on an empty \
                 directory (it catches up from the streams) or one seeded from a current node's backup",
                old.display()
            )));
        }
    }
    Ok(())
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

    fn store_of(&self, org: &str) -> ApiResult<Option<Arc<Store>>> {
        let p = partition_of(org, self.partitions());
        match self.stores().existing(p) {
            Ok(Some(store)) => Ok(Some(store)),
            Ok(None) => Err(ApiError::unavailable(format!(
                "this node holds no store of partition {p}; ask a node that applies it (`cluster status`)"
            ))
            .with("partition", p)),
            Err(e) => Err(ApiError::internal(format!("partition {p}'s store: {e}")).with("partition", p)),
        }
    }

    fn other_stores(&self) -> Vec<Arc<Store>> {
        self.stores()
            .all()
            .into_iter()
            .filter(|(p, _)| *p != 0)
            .map(|(_, s)| s)
            .collect()
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

    /// Here when this node serves the organization's partition (or
    /// applies it and nobody serves it yet: reads wait, bounded); else to
    /// a node that serves it. A forwarded request is not forwarded again.
    fn forward(
        &self,
        org: &str,
        request: axum::extract::Request,
        limits: ForwardLimits,
    ) -> Result<BoxFuture<'static, axum::response::Response>, Box<axum::extract::Request>> {
        let p = partition_of(org, self.partitions());
        let slot = &self.0.slots[p as usize];
        if slot.serving() {
            return Err(Box::new(request));
        }
        let forwarded = request.headers().contains_key(forward::FORWARDED_BY);
        let targets = if forwarded { Vec::new() } else { self.servers_of(p) };
        if targets.is_empty() {
            if slot.applying() {
                return Err(Box::new(request));
            }
            let answer = forward::not_serving(p, forwarded);
            return Ok(Box::pin(async move { answer }));
        }
        let node = self.clone();
        Ok(Box::pin(async move {
            node.0.forwarder.send(p, targets, request, limits).await
        }))
    }
}

/// `503` for the sessions' bucket (the error names no session id).
fn session_unavailable(what: &str, e: ClusterError) -> ApiError {
    ApiError::unavailable(format!("cannot {what} ({e}); try again"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::applied::Applied;

    #[test]
    fn a_directory_of_the_shared_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        refuse_shared_layout(dir.path(), "c", 4).unwrap();
        let positions = position_dir(dir.path(), "c");
        // Partition 0's own position is where it always was.
        Applied::open(&positions, &position_file(0))
            .unwrap()
            .set(7)
            .unwrap();
        refuse_shared_layout(dir.path(), "c", 4).unwrap();
        Applied::open(&positions, &position_file(2))
            .unwrap()
            .set(5)
            .unwrap();
        let e = refuse_shared_layout(dir.path(), "c", 4).unwrap_err().to_string();
        assert!(e.contains("p2.applied") && e.contains("partition 2"), "{e}");
        assert!(!e.contains("  "), "one space between words: {e}");
        // Another cluster's positions are not this one's.
        refuse_shared_layout(dir.path(), "other", 4).unwrap();
    }
}
