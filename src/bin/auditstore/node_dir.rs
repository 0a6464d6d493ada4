//! A cluster node's data directory (docs/cluster.md, "A node's data
//! directory"): partition 0's store at the top, partition N's in
//! `partitions/p<N>/`, the partition count in `partitions/count`
//! (`auditstore::partitions`). Commands about an organization open the
//! store of its partition; `get`, `prove`, `backup` and `verify` go over
//! every store.

use std::path::PathBuf;
use std::sync::Arc;

use auditstore::partitions::{partition_dirs, partition_of, read_count, store_dir};
use auditstore::Store;

use crate::ctx::{CliError, CliResult, Ctx, OpenStore};

/// A cluster node's partition stores as the node holds them open, for the
/// commands its admin socket carries out (`remote::PARTITION_STORES`, set
/// by `serve --cluster`).
pub struct PartitionStores {
    /// The cluster's partition count P.
    pub partitions: u32,
    /// Partition `p`'s store (`1 <= p < P`) as the node holds it open;
    /// `Ok(None)` where the node holds none: the command then reads the
    /// partition's directory as it finds it, read-only (an empty store
    /// where there is none). An error is the command's (`unavailable`, ...).
    #[allow(clippy::type_complexity)]
    pub store: Box<dyn Fn(u32) -> Result<Option<Arc<Store>>, CliError> + Send + Sync>,
}

impl Ctx {
    /// The partition count when the data directory is a node's (it has
    /// `partitions/count`, or the server carrying the command out is a
    /// node); `None` for an ordinary store.
    pub fn partition_count(&self) -> CliResult<Option<u32>> {
        if let Some(stores) = &self.partitions {
            return Ok(Some(stores.partitions));
        }
        if self.shared.is_some() {
            // A server that is not a cluster node: its store is the data
            // directory, whatever the directory holds besides.
            return Ok(None);
        }
        Ok(read_count(&self.path(&self.data_dir))?)
    }

    /// The partitions other than 0 whose store this command can read, in
    /// order: every `partitions/p<N>` directory holding a store, and under
    /// a node's server also every partition it holds open.
    pub fn partitions_present(&self) -> CliResult<Vec<u32>> {
        let data = self.path(&self.data_dir);
        let mut found: Vec<u32> = partition_dirs(&data)?
            .into_iter()
            .filter(|(_, dir)| Store::exists_at(dir))
            .map(|(p, _)| p)
            .collect();
        if let Some(stores) = &self.partitions {
            for p in 1..stores.partitions {
                if !found.contains(&p) && (stores.store)(p)?.is_some() {
                    found.push(p);
                }
            }
            found.sort_unstable();
        }
        Ok(found)
    }

    /// Partition `p`'s directory as the data directory was named.
    pub fn partition_dir(&self, p: u32) -> PathBuf {
        store_dir(&self.data_dir, p)
    }

    /// Partition `p`'s store, opened as [`Ctx::open_store`] opens the data
    /// directory's (0 is the data directory's own).
    pub fn open_partition(&self, p: u32, writes: bool) -> CliResult<OpenStore> {
        if p == 0 {
            return self.open_store(writes);
        }
        let dir = self.path(&self.partition_dir(p));
        if let Some(stores) = &self.partitions {
            if let Some(store) = (stores.store)(p)? {
                return Ok(OpenStore::shared(store));
            }
            // Not held by the node: as found on disk, never taking the
            // lock (the node may open it any moment).
            return self.open_dir(&dir, false, true, auditstore::Durability::Sync);
        }
        if self.shared.is_some() {
            return Err(CliError::new(
                "io",
                format!(
                    "{} is a partition store, but the server carrying out this command is no cluster node",
                    dir.display()
                ),
            ));
        }
        self.open_dir(&dir, writes, false, auditstore::Durability::Sync)
    }

    /// The store holding `org`'s events, settings and exports: on a node's
    /// data directory, the store of its partition; else the data
    /// directory's.
    pub fn open_org_store(&self, org: &str, writes: bool) -> CliResult<OpenStore> {
        match self.partition_count()? {
            None => self.open_store(writes),
            Some(count) => self.open_partition(partition_of(org, count), writes),
        }
    }

    /// Every store of the data directory, partition 0's first: just the
    /// data directory's for an ordinary store.
    pub fn all_partitions(&self) -> CliResult<Vec<u32>> {
        let mut all = vec![0];
        if self.partition_count()?.is_some() {
            all.extend(self.partitions_present()?);
        }
        Ok(all)
    }

    /// The first store (partition 0's first) for which `find` answers
    /// `Some`, with its answer.
    pub fn find_in_partitions<T>(
        &self,
        writes: bool,
        mut find: impl FnMut(&OpenStore) -> CliResult<Option<T>>,
    ) -> CliResult<Option<(OpenStore, T)>> {
        for p in self.all_partitions()? {
            let store = self.open_partition(p, writes)?;
            if store.is_missing() {
                continue;
            }
            if let Some(found) = find(&store)? {
                return Ok(Some((store, found)));
            }
        }
        Ok(None)
    }
}
