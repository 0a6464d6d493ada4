//! A node's stores: one per partition (docs/cluster.md, "A node's data
//! directory"; the layout is [`crate::partitions`]).
//!
//! Partition 0's store is the one the server opened (the data directory
//! itself); partition N's is opened, or made, in `partitions/p<N>` when
//! the node first applies N, and stays open. A partition store is made
//! with the partition's store id (the same on every node) and, when the
//! node keeps its key in its directory, a copy of that key, so that each
//! partition's checkpoints on a node are signed with the node's key and
//! every store can be checked on its own (`verify`, `prove`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::ClusterError;
use crate::error::IoContext;
use crate::integrity::key::{self, KEY_FILE};
use crate::partitions;
use crate::store::own_events::OwnEventSink;
use crate::store::{key_err, Options, SigningKey, Store};

pub struct Stores {
    main: Arc<Store>,
    cluster: String,
    sink: Arc<dyn OwnEventSink>,
    /// Partition p's store once open: one lock per partition, so that
    /// opening one (a recovery can take seconds) holds up no other.
    open: Vec<Mutex<Option<Arc<Store>>>>,
}

impl Stores {
    /// The stores of a node whose partition 0 store is `main`, in cluster
    /// `cluster` of `partitions` partitions: records the count in the
    /// directory, or refuses a directory made for another count.
    pub(super) fn new(
        main: Arc<Store>,
        cluster: &str,
        partitions: u32,
        sink: Arc<dyn OwnEventSink>,
    ) -> Result<Stores, ClusterError> {
        let dir = main.dir().to_path_buf();
        match partitions::read_count(&dir)? {
            Some(n) if n != partitions => {
                return Err(ClusterError::Metadata(format!(
                    "{} records {n} partitions but cluster {cluster:?} has {partitions}: this data directory \
                     belongs to another cluster",
                    dir.join(partitions::PARTITIONS_DIR).join(partitions::COUNT_FILE).display()
                )))
            }
            Some(_) => {}
            None => partitions::write_count(&dir, partitions)?,
        }
        main.send_own_events_to(sink.clone());
        let open = (0..partitions)
            .map(|p| Mutex::new((p == 0).then(|| main.clone())))
            .collect();
        Ok(Stores {
            main,
            cluster: cluster.to_owned(),
            sink,
            open,
        })
    }

    /// Partition 0's store (also every token and user).
    pub(super) fn main(&self) -> &Arc<Store> {
        &self.main
    }

    /// The directory of partition `p`'s store.
    pub(super) fn dir(&self, p: u32) -> PathBuf {
        partitions::store_dir(self.main.dir(), p)
    }

    fn slot(&self, p: u32) -> Result<std::sync::MutexGuard<'_, Option<Arc<Store>>>, ClusterError> {
        let slot = self.open.get(p as usize).ok_or_else(|| {
            ClusterError::Config(format!(
                "partition {p} is not one of the cluster's {}",
                self.open.len()
            ))
        })?;
        Ok(slot.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn opened(&self, p: u32) -> Option<Arc<Store>> {
        self.slot(p).ok().and_then(|s| s.clone())
    }

    /// Partition `p`'s store, opened (or made) now if it is not open.
    /// Blocking; holds up only other callers for the same partition.
    pub(super) fn open(&self, p: u32) -> Result<Arc<Store>, ClusterError> {
        let mut slot = self.slot(p)?;
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let dir = self.dir(p);
        let store = Arc::new(Store::open_with(&dir, self.options_for(&dir, p)?)?);
        store.send_own_events_to(self.sink.clone());
        *slot = Some(store.clone());
        Ok(store)
    }

    /// Partition `p`'s store if this node has one (open, or in its
    /// directory), without making one. Blocking.
    pub(super) fn existing(&self, p: u32) -> Result<Option<Arc<Store>>, ClusterError> {
        if let Some(s) = self.opened(p) {
            return Ok(Some(s));
        }
        if !self.dir(p).join(crate::meta::DESCRIPTOR_FILE).exists() {
            return Ok(None);
        }
        self.open(p).map(Some)
    }

    /// Every store open now, by partition.
    pub(super) fn all(&self) -> Vec<(u32, Arc<Store>)> {
        (0..self.open.len() as u32)
            .filter_map(|p| self.opened(p).map(|s| (p, s)))
            .collect()
    }

    /// Flush every partition store (partition 0's is the server's to close).
    pub(super) fn flush(&self) {
        for (p, s) in self.all() {
            if p == 0 {
                continue;
            }
            if let Err(e) = s.flush() {
                tracing::error!("partition {p}: flushing its store at shutdown failed: {e}");
            }
        }
    }

    /// The node's options for partition `p`'s store in `dir`: the
    /// partition's store id, and the node's key (copied into `dir` when
    /// the node keeps its own in its directory).
    fn options_for(&self, dir: &Path, p: u32) -> Result<Options, ClusterError> {
        let node = self.main.options();
        let mut signing_key = node.signing_key.clone();
        if matches!(node.signing_key, SigningKey::InStore) && node.integrity {
            // Named as a file: a new store with a key in its directory and
            // no checkpoints yet would otherwise look like one that lost
            // them.
            signing_key = SigningKey::File(copy_key(&self.main.dir().join(KEY_FILE), dir)?);
        }
        Ok(Options {
            store_id: Some(partitions::store_id(&self.cluster, p)),
            policy_dir: Some(self.main.policy_dir().to_path_buf()),
            signing_key,
            ..node.clone()
        })
    }
}

/// Copy the node's key file `from` into the store directory `dir` (a new
/// key file is never seen half written: `key::write`), unless `dir` has a
/// key already; the path of the copy.
fn copy_key(from: &Path, dir: &Path) -> Result<PathBuf, ClusterError> {
    let to = dir.join(KEY_FILE);
    if to.exists() {
        return Ok(to);
    }
    let signer = key::load(from).map_err(key_err)?;
    std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
    key::write(&to, &signer).map_err(key_err)?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_node_key_is_copied_private_and_whole_once() {
        let node = tempfile::tempdir().unwrap();
        let from = node.path().join(KEY_FILE);
        let signer = key::create(&from, "auditstore/node").unwrap();
        let dir = node.path().join("partitions").join("p1");
        let to = copy_key(&from, &dir).unwrap();
        assert_eq!(to, dir.join(KEY_FILE));
        let mode = std::fs::metadata(&to).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            key::load(&to).unwrap().to_private_text(),
            signer.to_private_text()
        );
        assert!(!dir.join(format!("{KEY_FILE}.tmp")).exists());
        // A key already there is the store's: kept as it is.
        std::fs::remove_file(&from).unwrap();
        key::create(&from, "auditstore/other").unwrap();
        copy_key(&from, &dir).unwrap();
        assert_eq!(
            key::load(&to).unwrap().to_private_text(),
            signer.to_private_text()
        );
    }
}
