//! The node's membership loop: every [`RENEW_EVERY`] it renews its lease
//! (announcing the partitions it serves), reads the members, and starts or
//! stops appliers as [`super::assign`] decides (docs/cluster.md,
//! "Assignment").

use std::sync::atomic::Ordering;

use tokio::sync::watch;

use super::assign::{self, View};
use super::lease::{self, Lease, RENEW_EVERY};
use super::node::Node;
use super::ClusterError;

/// Rounds a node keeps applying a partition it no longer announces before
/// it stops: long enough for every node's view of the members (read each
/// round) to stop sending it requests about the partition.
pub const LEAVE_ROUNDS: u32 = 3;

/// Renew, read, reassign until the node stops (then give the lease up).
/// A lease another process took stops every applier and makes every read
/// `503`: two processes with one id would ack each other's messages.
pub async fn run(node: Node, mut lease: Lease, mut stop: watch::Receiver<bool>) {
    let announce = node.inner().announce.clone();
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(RENEW_EVERY) => false,
            // A partition caught up: announce it now (at most every
            // 100 ms), not at the next renewal.
            _ = announce.notified() => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                false
            }
            changed = stop.changed() => changed.is_err() || *stop.borrow(),
        };
        if stopping {
            lease.release().await;
            return;
        }
        lease.set_partitions(node.announced(), node.applying());
        match lease.renew().await {
            Ok(()) => {}
            Err(e @ ClusterError::LeaseLost { .. }) => {
                tracing::error!("{e}");
                for slot in &node.inner().slots {
                    slot.set_fault(e.to_string());
                }
                node.stop_appliers().await;
                return;
            }
            // Unreachable NATS: try again; a lease that lapses meanwhile is
            // found taken, or free, at the next renewal.
            Err(e) => tracing::warn!("{e}"),
        }
        node.refresh_members().await;
        for p in node.reassign() {
            node.stop_applier(p).await;
        }
    }
}

/// How long a starting node waits for the partitions assigned to it to
/// catch up before it announces them (those still catching up are
/// announced as they do).
const FIRST_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a starting node waits for partition 0 (tokens and users).
const CREDENTIALS_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(120);

impl Node {
    /// The first round, before the node answers requests: read the
    /// members, start the appliers, give them a moment to catch up, and
    /// announce what they serve.
    pub(super) async fn join(&self, lease: &mut Lease) {
        self.refresh_members().await;
        self.reassign();
        // Partition 0 holds every token and user: until it caught up, this
        // node would refuse callers that other nodes accept.
        let credentials = &self.inner().slots[assign::EVERY_NODE as usize];
        let deadline = tokio::time::Instant::now() + CREDENTIALS_CATCH_UP;
        while !credentials.serving() && !credentials.faulted() {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    "partition 0 (tokens and users) has not caught up within {CREDENTIALS_CATCH_UP:?}: \
                     callers made since may be refused here until it has"
                );
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let deadline = tokio::time::Instant::now() + FIRST_CATCH_UP;
        while tokio::time::Instant::now() < deadline && self.announced() != self.applying() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        lease.set_partitions(self.announced(), self.applying());
        if let Err(e) = lease.renew().await {
            tracing::warn!("announce the partitions served: {e}");
        }
        self.refresh_members().await;
    }

    /// Read the members; on failure keep the last list read.
    pub(super) async fn refresh_members(&self) {
        let inner = self.inner();
        match lease::members(&inner.js, &inner.config.name).await {
            Ok(members) => *inner.members.write().unwrap_or_else(|p| p.into_inner()) = members,
            Err(e) => tracing::warn!("read the members: {e}"),
        }
    }

    /// The partitions to announce: served, and not being left.
    pub(super) fn announced(&self) -> Vec<u32> {
        let slots = &self.inner().slots;
        (0..self.partitions())
            .filter(|p| {
                let s = &slots[*p as usize];
                s.serving() && s.leaving.load(Ordering::Relaxed) == 0
            })
            .collect()
    }

    /// The partitions this node applies.
    pub(super) fn applying(&self) -> Vec<u32> {
        let slots = &self.inner().slots;
        (0..self.partitions())
            .filter(|p| slots[*p as usize].applying())
            .collect()
    }

    /// Start the appliers this node should run now; count the rounds of
    /// those it should not, and return those to stop (after
    /// [`LEAVE_ROUNDS`]).
    pub(super) fn reassign(&self) -> Vec<u32> {
        let inner = self.inner();
        let me = inner.config.node.as_str();
        let members = inner.members.read().unwrap_or_else(|p| p.into_inner()).clone();
        let ids: Vec<&str> = members.iter().map(|m| m.node.as_str()).collect();
        let mut to_stop = Vec::new();
        for p in 0..self.partitions() {
            let slot = &inner.slots[p as usize];
            let serves = |n: &str| n != me && members.iter().any(|m| m.node == n && m.serving.contains(&p));
            let view = View {
                me,
                members: &ids,
                serves: &serves,
            };
            let applying = slot.applying();
            if assign::should_apply(p, &view, applying) {
                slot.leaving.store(0, Ordering::Relaxed);
                if !applying && !slot.faulted() {
                    self.start_applier(p);
                }
            } else if applying && slot.leaving.fetch_add(1, Ordering::Relaxed) + 1 > LEAVE_ROUNDS {
                to_stop.push(p);
            }
        }
        to_stop
    }

    /// Where to forward a request about partition `p`: (node id, address)
    /// of the other members announcing that they serve it, starting at a
    /// rotating one; then, as a fallback while announcements are a moment
    /// old, those announcing that they apply it, and those chosen for it.
    pub(super) fn servers_of(&self, p: u32) -> Vec<(String, String)> {
        let inner = self.inner();
        let me = inner.config.node.as_str();
        let members = inner.members.read().unwrap_or_else(|e| e.into_inner());
        let others: Vec<&lease::Member> = members.iter().filter(|m| m.node != me).collect();
        let with_address = |m: &&lease::Member| Some((m.node.clone(), m.address.clone()?));
        let mut out: Vec<(String, String)> = others
            .iter()
            .filter(|m| m.serving.contains(&p))
            .filter_map(with_address)
            .collect();
        if !out.is_empty() {
            let k = self.next_rotation() % out.len();
            out.rotate_left(k);
        }
        let ids: Vec<&str> = members.iter().map(|m| m.node.as_str()).collect();
        let chosen = assign::chosen(p, &ids);
        let fallback = others
            .iter()
            .filter(|m| m.applying.contains(&p))
            .chain(others.iter().filter(|m| chosen.contains(&m.node.as_str())))
            .filter_map(with_address);
        for candidate in fallback {
            if !out.iter().any(|(n, _)| *n == candidate.0) {
                out.push(candidate);
            }
        }
        out
    }
}
