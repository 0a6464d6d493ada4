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

    /// A path inside partition `p`'s store (as the store names it, in
    /// `store_dir`) shown as the data directory was named.
    pub fn shown_in(&self, p: u32, path: &std::path::Path, store_dir: &std::path::Path) -> PathBuf {
        match path.strip_prefix(store_dir) {
            Ok(rest) => self.partition_dir(p).join(rest),
            Err(_) => path.to_path_buf(),
        }
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

    /// Refuse `what`, a change of organizations' data, run without a server
    /// on a node's data directory: it would change this node's copy only
    /// (and, for an organization of another partition than 0, a store its
    /// reads do not use). Through the node's admin socket it goes through
    /// the streams instead.
    pub fn refuse_offline_change_on_node(&self, what: &str) -> CliResult<()> {
        if self.shared.is_some() || self.partition_count()?.is_none() {
            return Ok(());
        }
        Err(CliError::new(
            "unavailable",
            format!(
                "{} is a cluster node's data directory: {what} run on it without its server would change \
                 this node's copy only; run it while the node serves (through its admin socket it goes \
                 through the streams to every node) or through the HTTP API",
                self.data_dir.display()
            ),
        ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use auditstore::{Event, Options, Timestamp};

    const P: u32 = 3;

    /// The first `org-<n>` of partition `p`.
    fn org_of(p: u32) -> String {
        (0..)
            .map(|n| format!("org-{n:02}"))
            .find(|o| partition_of(o, P) == p)
            .unwrap_or_default()
    }

    fn event() -> Event {
        Event::builder(
            uuid::Uuid::new_v4(),
            "user.logged_in",
            Timestamp::parse_instant_or_date("2026-06-01").unwrap(),
            true,
        )
        .actor("u1", "user", None)
        .target("t1", "user", None)
        .build()
        .unwrap()
    }

    /// The admin socket's commands on a node: partition 0's store is the
    /// server's, partition 1's the one the node holds open, partition 2's
    /// (held by none) read from its directory read-only.
    #[test]
    fn a_node_server_s_commands_read_the_partition_stores_it_holds() {
        let data = tempfile::tempdir().unwrap();
        let open = |p| Arc::new(Store::open_with(store_dir(data.path(), p), Options::default()).unwrap());
        let (zero, one) = (open(0), open(1));
        let two_event = event();
        {
            let two = open(2);
            two.append_batch([(org_of(2).as_str(), &two_event)]).unwrap();
        }
        auditstore::partitions::write_count(data.path(), P).unwrap();
        let held = one.clone();
        let ctx = Ctx {
            data_dir: data.path().to_path_buf(),
            data_dir_given: true,
            json: true,
            as_of: None,
            console: crate::console::Console::local(),
            shared: Some(zero.clone()),
            partitions: Some(Arc::new(PartitionStores {
                partitions: P,
                store: Box::new(move |p| Ok((p == 1).then(|| held.clone()))),
            })),
        };
        assert_eq!(ctx.partition_count().unwrap(), Some(P));
        assert_eq!(ctx.partitions_present().unwrap(), vec![1, 2]);
        let s0 = ctx.open_org_store(&org_of(0), false).unwrap();
        assert_eq!(s0.dir(), zero.dir());
        let s1 = ctx.open_org_store(&org_of(1), false).unwrap();
        assert_eq!(s1.dir(), one.dir());
        assert!(!s1.is_read_only(), "the node's own open store");
        let s2 = ctx.open_org_store(&org_of(2), false).unwrap();
        assert_eq!(s2.dir(), store_dir(data.path(), 2));
        assert!(s2.is_read_only(), "never locked under a node");
        let found = ctx
            .find_in_partitions(false, |s| Ok(s.get(two_event.id())?))
            .unwrap()
            .map(|(s, e)| (s.dir().to_path_buf(), e.id()));
        assert_eq!(found, Some((store_dir(data.path(), 2), two_event.id())));

        // A server that is no node: its one store, whatever the directory holds.
        let plain = Ctx {
            partitions: None,
            ..ctx
        };
        assert_eq!(plain.partition_count().unwrap(), None);
        assert_eq!(plain.open_org_store(&org_of(1), false).unwrap().dir(), zero.dir());
    }
}
