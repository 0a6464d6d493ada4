//! Applying a partition's stream to this node's store (docs/cluster.md,
//! "Applying").
//!
//! One durable pull consumer per node and partition (`node-<id>`, acks
//! sent explicitly with the ack policy `all`: an ack of sequence N
//! acknowledges every sequence up to N, so a lost ack is covered by the
//! next one). The rule: a message is acknowledged only after its events
//! are appended to the local store (fsync'd, the store's default
//! durability) and the partition's applied position ([`super::applied`])
//! is written (fsync'd). The local position is the truth: at every (re)start of the
//! loop the consumer is reset to deliver from the position + 1, so nothing
//! delivered but unapplied is skipped, and a redelivery of what was
//! applied is acknowledged without being applied again (the store would
//! count its events as duplicates anyway: the event id is the
//! de-duplication key).
//!
//! Commands ([`super::command`]) are applied in their place in the
//! stream: the events before one are appended and the position written up
//! to it, then the command is applied ([`super::apply_cmd`]) and the
//! position written past it, so a crash re-applies at most that command
//! (idempotent). Their outcomes go to this node's waiting requests
//! ([`super::outcomes`]) once the position is durable, before the ack, and
//! are published for the node that issued them, whichever it is
//! ([`super::answers`], core NATS, fire and forget).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use futures_util::StreamExt;
use tokio::sync::watch;

use super::applied::{position_dir, position_file, Applied};
use super::command::{self, Command};
use super::outcomes::{Answer, Outcomes};
use super::stores::Stores;
use super::streams::{consumer_name, ensure_stream};
use super::{apply_cmd, message, ClusterConfig, ClusterError};
use crate::event::Event;
use crate::store::Store;

/// Messages taken from the stream at most per local append (one fsync).
const MAX_CHUNK: usize = 256;
/// How long the stream has to redeliver a message the node did not ack.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// Everything one partition's applier needs.
pub struct Applier {
    pub js: jetstream::Context,
    pub config: ClusterConfig,
    pub partition: u32,
    /// The cluster's partition count (a processing command handles the
    /// organizations of this partition only).
    pub partitions: u32,
    /// The node's stores: the partition's is opened (or made) by the
    /// first run.
    pub stores: Arc<Stores>,
    /// The partition's store and durable position (locked by the blocking
    /// apply task), once open.
    pub local: Option<(Arc<Store>, Arc<Mutex<Applied>>)>,
    /// Where this node's own commands wait for their outcomes.
    pub outcomes: Arc<Outcomes>,
    /// The durable position's value, as last written.
    pub position: u64,
    /// Tells readers how far this partition is applied.
    pub watermark: Arc<watch::Sender<u64>>,
    /// Set once this run has caught up with the stream's last sequence as
    /// of its start: the node may announce that it serves the partition.
    pub serving: Arc<AtomicBool>,
    /// Woken when `serving` turns true: the node announces it at once.
    pub announce: Arc<tokio::sync::Notify>,
    /// Why this partition's applier stopped for good, for reads to say.
    pub fault: Arc<Mutex<Option<String>>>,
    pub stop: watch::Receiver<bool>,
    /// The stream's last sequence when the current run started.
    pub catch_up_to: u64,
}

/// Why one run of the loop ended.
enum Ended {
    Stopped,
    /// Restart from the local position (a gap, a lost pull, a failure).
    Restart(ClusterError),
}

impl Applier {
    /// Apply until `stop` turns true. Failures (NATS unreachable, a store
    /// error) restart the loop from the local position after a pause; a
    /// stream that is behind this node's position (recreated?) stops it.
    pub async fn run(mut self) {
        let mut pause = Duration::from_millis(100);
        loop {
            if *self.stop.borrow() {
                return;
            }
            match self.run_once().await {
                Ended::Stopped => return,
                Ended::Restart(
                    e @ (ClusterError::Metadata(_)
                    | ClusterError::Store(crate::Error::Corrupt { .. })
                    | ClusterError::Expired { .. }
                    | ClusterError::Unsupported { .. }),
                ) => {
                    tracing::error!("partition {}: applier stopped: {e}", self.partition);
                    self.serving.store(false, Ordering::Release);
                    *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    return;
                }
                Ended::Restart(e) => {
                    tracing::warn!("partition {}: applier restarts: {e}", self.partition);
                    metrics::counter!("auditstore_cluster_applier_restarts_total", "partition" => self.partition.to_string())
                        .increment(1);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.stop.changed() => {}
            }
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// The partition's store and position file, opened (or made) on the
    /// first run.
    async fn open_local(&mut self) -> Result<(Arc<Store>, Arc<Mutex<Applied>>), ClusterError> {
        if let Some(local) = &self.local {
            return Ok(local.clone());
        }
        let (stores, p, cluster) = (self.stores.clone(), self.partition, self.config.name.clone());
        let (store, applied) = tokio::task::spawn_blocking(move || {
            let store = stores.open(p)?;
            let applied = Applied::open(&position_dir(store.dir(), &cluster), &position_file(p))?;
            Ok::<_, ClusterError>((store, Arc::new(Mutex::new(applied))))
        })
        .await
        .map_err(|e| ClusterError::Task(e.to_string()))??;
        self.position = applied.lock().unwrap_or_else(|e| e.into_inner()).get();
        let _ = self.watermark.send(self.position);
        tracing::info!("partition {p}: applying from sequence {}", self.position + 1);
        self.local = Some((store.clone(), applied.clone()));
        Ok((store, applied))
    }

    fn caught_up(&self) {
        if !self.serving.swap(true, Ordering::AcqRel) {
            self.announce.notify_one();
        }
    }

    /// One run, abandoned as soon as `stop` turns true (also while waiting
    /// on NATS). Abandoning it mid-apply is safe: the local append and the
    /// position write go on in their blocking task; only the ack is left
    /// out, and the stream redelivers.
    async fn run_once(&mut self) -> Ended {
        let mut stop = self.stop.clone();
        tokio::select! {
            r = self.consume() => match r {
                Ok(()) => Ended::Stopped,
                Err(e) => Ended::Restart(e),
            },
            _ = stop.wait_for(|s| *s) => Ended::Stopped,
        }
    }

    /// Position the consumer after the local position, then apply chunks
    /// of messages until stopped or something fails.
    async fn consume(&mut self) -> Result<(), ClusterError> {
        let p = self.partition;
        self.open_local().await?;
        let mut s = ensure_stream(&self.js, &self.config, p).await?;
        let state = s
            .info()
            .await
            .map_err(|e| ClusterError::nats("stream info", e))?
            .state
            .clone();
        let (first, last) = (state.first_sequence, state.last_sequence);
        self.catch_up_to = last;
        if self.position >= last {
            self.caught_up();
        }
        if first > self.position + 1 {
            // Sequences position + 1 .. first - 1 existed and are gone.
            return Err(ClusterError::Expired {
                partition: p,
                applied: self.position,
                first,
            });
        }
        if self.position > last {
            return Err(ClusterError::Metadata(format!(
                "partition {p}: this node applied up to sequence {} but the stream ends at {last} \
                 (was the stream recreated?); the node's store does not belong to this stream",
                self.position
            )));
        }
        let name = consumer_name(&self.config.node);
        let consumer: jetstream::consumer::Consumer<pull::Config> = s
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    description: Some(format!(
                        "auditstore node {} applies partition {p}",
                        self.config.node
                    )),
                    ack_policy: jetstream::consumer::AckPolicy::All,
                    deliver_policy: jetstream::consumer::DeliverPolicy::All,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: 4 * MAX_CHUNK as i64,
                    // The consumer's state (delivered, ack floor) lives in
                    // memory on its replicas: the node's own position file
                    // is the truth (the consumer is reset to it at every
                    // start), and writing that state to disk on every ack
                    // of every node and partition cost a third of NATS's
                    // CPU (docs/performance.md, "Cluster ingest").
                    memory_storage: true,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| ClusterError::nats("consumer", e))?;
        s.reset_consumer(&name, Some(self.position + 1))
            .await
            .map_err(|e| ClusterError::nats("reset the consumer to the local position", e))?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(MAX_CHUNK)
            .max_bytes_per_batch(8 << 20)
            .heartbeat(Duration::from_secs(2))
            .expires(Duration::from_secs(10))
            .messages()
            .await
            .map_err(|e| ClusterError::nats("pull", e))?;
        let mut chunks = messages.ready_chunks(MAX_CHUNK);
        loop {
            let chunk = tokio::select! {
                chunk = chunks.next() => chunk,
                _ = self.stop.changed() => return Ok(()),
            };
            let Some(chunk) = chunk else {
                return Err(ClusterError::Nats("the pull subscription ended".into()));
            };
            self.apply_chunk(chunk).await?;
        }
    }

    /// Apply the messages that continue the local position, in order; then
    /// ack the highest sequence taken (applied, or a redelivery of one
    /// applied before), which acknowledges everything up to it. A message
    /// after a gap ends the run: the restart resets the consumer.
    async fn apply_chunk(
        &mut self,
        chunk: Vec<Result<jetstream::Message, pull::MessagesError>>,
    ) -> Result<(), ClusterError> {
        let mut next = self.position + 1;
        let mut take: Vec<Item> = Vec::new();
        let mut to_ack: Option<(u64, jetstream::Message)> = None;
        let mut keep = |seq: u64, msg: jetstream::Message| {
            if to_ack.as_ref().is_none_or(|(s, _)| *s < seq) {
                to_ack = Some((seq, msg));
            }
        };
        let mut problem = None;
        for item in chunk {
            let msg = match item {
                Ok(m) => m,
                Err(e) => {
                    problem = Some(ClusterError::nats("pull", e));
                    break;
                }
            };
            let seq = match msg.info() {
                Ok(info) => info.stream_sequence,
                Err(e) => {
                    problem = Some(ClusterError::nats("message metadata", e));
                    break;
                }
            };
            if seq < next {
                keep(seq, msg);
                continue;
            }
            if seq > next {
                problem = Some(ClusterError::Nats(format!(
                    "partition {}: got sequence {seq} while expecting {next}",
                    self.partition
                )));
                break;
            }
            let decoded = if command::is_command(&msg.payload) {
                Command::decode(&msg.payload)
                    .map(|c| Item::Command(seq, c))
                    .map_err(ClusterError::from)
            } else {
                message::decode(&msg.payload)
                    .map(Item::Events)
                    .map_err(ClusterError::from)
            };
            match decoded {
                Ok(item) => take.push(item),
                // A sound message of a newer build: skipping it would lose
                // what it carries on this node only. Stop before it (what
                // came before is applied below).
                Err(e) if e.from_newer_build() => {
                    problem = Some(ClusterError::Unsupported {
                        partition: self.partition,
                        seq,
                        reason: e.to_string(),
                    });
                    break;
                }
                // Not a message of ours (damaged, or no auditstore node
                // wrote it): skipped, loudly, rather than blocking the
                // partition for ever.
                Err(e) => tracing::error!("partition {}: sequence {seq} skipped: {e}", self.partition),
            }
            next = seq + 1;
            keep(seq, msg);
        }
        let upto = next - 1;
        if upto > self.position {
            let (store, applied) = self.open_local().await?;
            let (partitions, partition) = (self.partitions, self.partition);
            let run = tokio::task::spawn_blocking(move || {
                apply_items(&store, &applied, (partitions, partition), take, upto)
            })
            .await
            .map_err(|e| ClusterError::Task(e.to_string()))?;
            // What was applied before a failure is durable, its position
            // written: tell readers and waiters, then restart.
            let Run {
                reached,
                answers,
                failure,
                ..
            } = run;
            self.position = reached;
            let _ = self.watermark.send(reached);
            if reached >= self.catch_up_to {
                self.caught_up();
            }
            metrics::gauge!("auditstore_cluster_applied_sequence", "partition" => self.partition.to_string())
                .set(reached as f64);
            // Also for the node that issued a command, if another: on core
            // NATS, never waited for.
            if !answers.is_empty() {
                super::answers::publish(self.js.client(), &self.config.name, &answers);
            }
            for (id, answer) in answers {
                self.outcomes.deliver(&id, answer);
            }
            if let Some(e) = failure {
                return Err(e);
            }
        }
        if let Some((_, msg)) = to_ack {
            // A lost ack is harmless: the next one covers it, or the
            // messages come again, are seen to be applied, and are acked.
            if let Err(e) = msg.ack().await {
                tracing::debug!("partition {}: ack: {e}", self.partition);
            }
        }
        match problem {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// A message of the stream, decoded.
enum Item {
    Events(Vec<(String, Event)>),
    Command(u64, Command),
}

/// Events of the stream this node did not store because it holds another
/// event with the same id: the first write wins, as on one node, but an id
/// taken by an organization of another partition can make nodes differ
/// (docs/cluster.md, "Not yet"). Said loudly, and counted.
fn report_conflicts(partition: u32, events: &[(String, Event)], outcomes: &[crate::store::AppendOutcome]) {
    let conflicts = events
        .iter()
        .zip(outcomes)
        .filter(|(_, o)| **o == crate::store::AppendOutcome::Conflict);
    let mut n = 0u64;
    for ((org, e), _) in conflicts {
        n += 1;
        tracing::warn!(
            partition,
            org = org.as_str(),
            id = %e.id(),
            "an event of the stream was not stored: the partition's store already holds an event with its id \
             and other content (two requests raced with one id; every node applying the partition keeps the \
             same one)"
        );
    }
    metrics::counter!("auditstore_cluster_apply_conflicts_total", "partition" => partition.to_string())
        .increment(n);
}

/// What one blocking apply reached.
struct Run {
    /// The partition applied.
    partition: u32,
    /// The position written.
    reached: u64,
    /// The outcomes of the commands applied.
    answers: Vec<(uuid::Uuid, Answer)>,
    /// What stopped it before the end.
    failure: Option<ClusterError>,
}

/// Append `events` (if any), then write the position `to` (if past it).
fn step(
    store: &Store,
    applied: &Mutex<Applied>,
    run: &mut Run,
    events: &mut Vec<(String, Event)>,
    to: u64,
) -> Result<(), ClusterError> {
    if !events.is_empty() {
        let report = store.append_batch(events.iter().map(|(org, e)| (org.as_str(), e)))?;
        if report.conflicts > 0 {
            report_conflicts(run.partition, events, &report.outcomes);
        }
        events.clear();
    }
    if to > run.reached {
        applied.lock().unwrap_or_else(|p| p.into_inner()).set(to)?;
        run.reached = to;
    }
    Ok(())
}

/// Apply `items` in stream order: events are gathered and appended in one
/// batch (one fsync) until a command comes; then they are appended, the
/// position written up to the command's predecessor, the command applied,
/// and the position written past it (so that a crash re-applies at most
/// that one command, which is idempotent: `apply_cmd`). Last, the events
/// after the last command, and the position `upto`.
fn apply_items(
    store: &Store,
    applied: &Mutex<Applied>,
    (partitions, partition): (u32, u32),
    items: Vec<Item>,
    upto: u64,
) -> Run {
    let mut run = Run {
        partition,
        reached: applied.lock().unwrap_or_else(|p| p.into_inner()).get(),
        answers: Vec::new(),
        failure: None,
    };
    let mut events: Vec<(String, Event)> = Vec::new();
    for item in items {
        let (seq, cmd) = match item {
            Item::Events(batch) => {
                events.extend(batch);
                continue;
            }
            Item::Command(seq, cmd) => (seq, cmd),
        };
        let result = step(store, applied, &mut run, &mut events, seq - 1).and_then(|()| {
            let answer = apply_cmd::apply(store, partitions, partition, &cmd)?;
            step(store, applied, &mut run, &mut Vec::new(), seq)?;
            run.answers.push((cmd.id, answer));
            Ok(())
        });
        if let Err(e) = result {
            run.failure = Some(e);
            return run;
        }
    }
    if let Err(e) = step(store, applied, &mut run, &mut events, upto) {
        run.failure = Some(e);
    }
    run
}
