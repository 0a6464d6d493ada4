//! A cluster node's data directory: one store per partition
//! (docs/cluster.md, "A node's data directory").
//!
//! ```text
//! <data>/                 partition 0's store (also every token and user)
//! <data>/partitions/count the cluster's partition count P: ASCII decimal, "\n"
//! <data>/partitions/p<N>/ partition N's store (1 <= N < P), made when the
//!                         node first applies N
//! ```
//!
//! Each is a complete store (its own log, indexes, tree, checkpoints and
//! metadata), so `verify`, `prove` or `backup` work on it alone. An
//! organization's events, settings and exports live in the store of its
//! partition, [`partition_of`]; a partition's stores on different nodes get
//! the same store id ([`store_id`]), so that their checkpoints name the same
//! log, and having applied the same stream they hold the same tree.
//!
//! Only the layout lives here (the library without the `cluster` feature
//! reads it: the admin tool on a node's directory); the node that fills
//! it is `crate::cluster`.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};

/// The directory of the partition stores other than partition 0's.
pub const PARTITIONS_DIR: &str = "partitions";
/// The file in [`PARTITIONS_DIR`] that records the partition count.
pub const COUNT_FILE: &str = "count";

/// The partition of `org` among `partitions` (treated as 1 when 0):
/// `u64::from_be_bytes(SHA-256(org as UTF-8)[0..8]) mod partitions`.
pub fn partition_of(org: &str, partitions: u32) -> u32 {
    let digest = Sha256::digest(org.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(partitions.max(1))) as u32
}

/// The directory of partition `p`'s store in the node directory `data`.
pub fn store_dir(data: &Path, p: u32) -> PathBuf {
    match p {
        0 => data.to_path_buf(),
        p => data.join(PARTITIONS_DIR).join(format!("p{p}")),
    }
}

/// The store id of partition `p` of cluster `cluster` on every node: the
/// first 16 bytes of `SHA-256("auditstore partition store v1" || 0x00 ||
/// cluster || 0x00 || p as u32 big-endian)`, with the UUID version 8 and
/// variant bits set.
pub fn store_id(cluster: &str, p: u32) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"auditstore partition store v1\0");
    h.update(cluster.as_bytes());
    h.update([0]);
    h.update(p.to_be_bytes());
    let digest = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id[6] = (id[6] & 0x0f) | 0x80;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

/// The partition count recorded in the node directory `data`, if any.
/// A file that is not one decimal number in 1..=65535 and a newline is
/// `Corrupt`.
pub fn read_count(data: &Path) -> Result<Option<u32>> {
    let path = data.join(PARTITIONS_DIR).join(COUNT_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
    };
    let bad = || {
        Error::corrupt(
            &path,
            0,
            "the partition count file is not one decimal number and a newline",
        )
    };
    let digits = text.strip_suffix(b"\n").ok_or_else(bad)?;
    let n: u32 = std::str::from_utf8(digits)
        .ok()
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse().ok())
        .ok_or_else(bad)?;
    if !(1..=65535).contains(&n) {
        return Err(bad());
    }
    Ok(Some(n))
}

/// Record the partition count in the node directory `data` (written to a
/// temporary file, synced, renamed, the directories synced).
pub fn write_count(data: &Path, partitions: u32) -> Result<()> {
    let dir = data.join(PARTITIONS_DIR);
    std::fs::create_dir_all(&dir).ctx(|| format!("create {}", dir.display()))?;
    crate::log::segment::write_atomically(&dir.join(COUNT_FILE), format!("{partitions}\n").as_bytes())?;
    crate::log::segment::sync_dir(data)
}

/// The partition stores other than partition 0's in the node directory
/// `data`, by partition number.
pub fn partition_dirs(data: &Path) -> Result<Vec<(u32, PathBuf)>> {
    let dir = data.join(PARTITIONS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.ctx(|| format!("list {}", dir.display()))?;
        let name = entry.file_name();
        let Some(p) = name
            .to_str()
            .and_then(|n| n.strip_prefix('p'))
            .filter(|d| !d.starts_with('0') && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u32>().ok())
        else {
            continue;
        };
        if entry.path().is_dir() {
            found.push((p, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let d = Path::new("/n");
        assert_eq!(store_dir(d, 0), PathBuf::from("/n"));
        assert_eq!(store_dir(d, 7), PathBuf::from("/n/partitions/p7"));
    }

    #[test]
    fn store_ids_differ_by_cluster_and_partition_only() {
        assert_eq!(store_id("a", 1), store_id("a", 1));
        assert_ne!(store_id("a", 1), store_id("a", 2));
        assert_ne!(store_id("a", 1), store_id("b", 1));
        let id = store_id("a", 1);
        assert_eq!(id[6] >> 4, 8);
        assert_eq!(id[8] >> 6, 2);
    }

    #[test]
    fn count_file_round_trips_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_count(dir.path()).unwrap(), None);
        write_count(dir.path(), 16).unwrap();
        assert_eq!(read_count(dir.path()).unwrap(), Some(16));
        let path = dir.path().join(PARTITIONS_DIR).join(COUNT_FILE);
        for bad in [
            &b"16"[..],
            b"",
            b"\n",
            b"0\n",
            b"x\n",
            b"-1\n",
            b"99999999999\n",
            b" 16\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            let e = read_count(dir.path()).unwrap_err();
            assert_eq!(e.code(), "corrupt", "{bad:?}");
            assert!(e.to_string().contains("count"), "{e}");
        }
    }

    #[test]
    fn partition_dirs_lists_only_partition_stores() {
        let dir = tempfile::tempdir().unwrap();
        assert!(partition_dirs(dir.path()).unwrap().is_empty());
        let root = dir.path().join(PARTITIONS_DIR);
        for d in ["p3", "p12", "p01", "px", "q1"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("p4"), b"").unwrap();
        let found: Vec<u32> = partition_dirs(dir.path())
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(found, vec![3, 12]);
    }
}
