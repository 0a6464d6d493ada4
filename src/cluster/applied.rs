//! How far this node has applied a partition's stream, kept durably beside
//! the store (docs/cluster.md, "Applying").
//!
//! One 32-byte file per partition, `cluster/<cluster>/p<N>.applied` in the
//! data directory, with two 16-byte slots:
//!
//! ```text
//! 8 bytes  stream sequence applied up to (u64, big-endian)
//! 4 bytes  CRC-32 (IEEE) of those 8 bytes (u32, big-endian)
//! 4 bytes  "APL1"
//! ```
//!
//! A write goes to the slot that does not hold the current value, then
//! `fdatasync`: a write torn by a crash damages only that slot, and the
//! other still holds the previous position. Reading takes the larger valid
//! slot. A position behind the truth is harmless (the stream redelivers,
//! the store de-duplicates by event id); one ahead of it never happens,
//! since it is written only after the store's fsync'd append.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const SLOT: usize = 16;
const TAG: &[u8; 4] = b"APL1";

/// Why the position file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{context} {}: {source}", path.display())]
pub struct AppliedError {
    context: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// A partition's applied position, open for updates.
#[derive(Debug)]
pub struct Applied {
    file: File,
    path: PathBuf,
    seq: u64,
    /// The slot holding `seq`.
    slot: usize,
}

fn slot_value(bytes: &[u8]) -> Option<u64> {
    let seq: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    let crc: [u8; 4] = bytes.get(8..12)?.try_into().ok()?;
    (bytes.get(12..16)? == TAG && crc32fast::hash(&seq) == u32::from_be_bytes(crc))
        .then(|| u64::from_be_bytes(seq))
}

/// The larger valid slot's position and index (0 and slot 1 if none).
fn newest(buf: &[u8]) -> (u64, usize) {
    let (mut seq, mut slot) = (0, 1);
    for i in 0..2 {
        if let Some(v) = buf.get(i * SLOT..(i + 1) * SLOT).and_then(slot_value) {
            if v >= seq {
                seq = v;
                slot = i;
            }
        }
    }
    (seq, slot)
}

/// The directory of the position files, relative to a data directory.
pub const POSITIONS_DIR: &str = "cluster";

/// Where a store in `store_dir` keeps its positions in cluster `cluster`.
pub fn position_dir(store_dir: &Path, cluster: &str) -> PathBuf {
    store_dir.join(POSITIONS_DIR).join(cluster)
}

/// The name of partition `p`'s position file.
pub fn position_file(p: u32) -> String {
    format!("p{p}.applied")
}

/// Every position recorded in the data directory `data_dir`
/// (`cluster/<cluster>/p<N>.applied`), each with its path relative to
/// `data_dir`, read without changing anything. `backup` reads them before
/// it copies the store, so that the copy holds at least what they say is
/// applied (docs/cluster.md, "Seeding a node").
pub fn read_positions(data_dir: &Path) -> Result<Vec<(PathBuf, u64)>, AppliedError> {
    let root = data_dir.join(POSITIONS_DIR);
    let err = |context, path: &Path, source| AppliedError {
        context,
        path: path.to_path_buf(),
        source,
    };
    let clusters = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err("list", &root, e)),
    };
    let mut out = Vec::new();
    for cluster in clusters {
        let cluster = cluster.map_err(|e| err("list", &root, e))?.path();
        if !cluster.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&cluster).map_err(|e| err("list", &cluster, e))? {
            let path = file.map_err(|e| err("list", &cluster, e))?.path();
            let named = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.strip_prefix('p')
                    .and_then(|n| n.strip_suffix(".applied"))
                    .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            });
            if !named {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| err("read", &path, e))?;
            let relative = path.strip_prefix(data_dir).unwrap_or(&path).to_path_buf();
            out.push((relative, newest(&bytes).0));
        }
    }
    out.sort();
    Ok(out)
}

/// Writes `positions` (from [`read_positions`]) under the data directory
/// `dest`, durably.
pub fn write_positions(dest: &Path, positions: &[(PathBuf, u64)]) -> Result<(), AppliedError> {
    for (relative, seq) in positions {
        let path = dest.join(relative);
        let (dir, name) = match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
            (Some(dir), Some(name)) => (dir, name),
            _ => {
                return Err(AppliedError {
                    context: "name",
                    path: path.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a position file"),
                })
            }
        };
        Applied::open(dir, name)?.set(*seq)?;
    }
    Ok(())
}

/// The position recorded in the file `path`, creating nothing: 0 when
/// there is no such file.
pub fn peek(path: &Path) -> Result<u64, AppliedError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(newest(&bytes).0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(AppliedError {
            context: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl Applied {
    /// Open (creating it, at 0) the position file `name` in `dir`.
    pub fn open(dir: &Path, name: &str) -> Result<Applied, AppliedError> {
        let path = dir.join(name);
        let err = |context, source| AppliedError {
            context,
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| err("create the directory of", e))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| err("open", e))?;
        let len = file.metadata().map_err(|e| err("stat", e))?.len();
        if len < 2 * SLOT as u64 {
            file.set_len(2 * SLOT as u64).map_err(|e| err("size", e))?;
            file.sync_all().map_err(|e| err("sync", e))?;
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| err("sync the directory of", e))?;
        }
        let mut buf = [0u8; 2 * SLOT];
        file.read_exact_at(&mut buf, 0).map_err(|e| err("read", e))?;
        let (seq, slot) = newest(&buf);
        Ok(Applied {
            file,
            path,
            seq,
            slot,
        })
    }

    /// The stream sequence applied up to (0: nothing yet).
    pub fn get(&self) -> u64 {
        self.seq
    }

    /// Record, durably, that everything up to `seq` is applied.
    pub fn set(&mut self, seq: u64) -> Result<(), AppliedError> {
        if seq == self.seq {
            return Ok(());
        }
        let mut slot = [0u8; SLOT];
        slot[..8].copy_from_slice(&seq.to_be_bytes());
        slot[8..12].copy_from_slice(&crc32fast::hash(&seq.to_be_bytes()).to_be_bytes());
        slot[12..].copy_from_slice(TAG);
        let target = 1 - self.slot;
        let err = |context, source| AppliedError {
            context,
            path: self.path.clone(),
            source,
        };
        self.file
            .write_all_at(&slot, (target * SLOT) as u64)
            .map_err(|e| err("write", e))?;
        self.file.sync_data().map_err(|e| err("sync", e))?;
        self.seq = seq;
        self.slot = target;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_a_torn_slot() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Applied::open(dir.path(), "p0.applied").unwrap();
        assert_eq!(a.get(), 0);
        a.set(5).unwrap();
        a.set(9).unwrap();
        a.set(12).unwrap();
        drop(a);
        let a = Applied::open(dir.path(), "p0.applied").unwrap();
        assert_eq!(a.get(), 12);
        // 12 went to slot 0 (writes alternate 1, 0, 1, 0 ... from 5 in
        // slot 0): damage it, and the previous position is read.
        let path = dir.path().join("p0.applied");
        let mut bytes = std::fs::read(&path).unwrap();
        let newest = if slot_value(&bytes[..SLOT]) == Some(12) {
            0
        } else {
            SLOT
        };
        bytes[newest + 3] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let mut a = Applied::open(dir.path(), "p0.applied").unwrap();
        assert_eq!(a.get(), 9);
        // The next write replaces the damaged slot, keeping 9's.
        a.set(13).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let values: Vec<Option<u64>> = (0..2)
            .map(|i| slot_value(&bytes[i * SLOT..(i + 1) * SLOT]))
            .collect();
        assert!(
            values.contains(&Some(9)) && values.contains(&Some(13)),
            "{values:?}"
        );
    }

    #[test]
    fn positions_carry_over_to_another_data_directory() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        assert_eq!(read_positions(from.path()).unwrap(), vec![]);
        let dir = from.path().join("cluster/main");
        Applied::open(&dir, "p0.applied").unwrap().set(7).unwrap();
        Applied::open(&dir, "p12.applied").unwrap().set(40).unwrap();
        std::fs::write(dir.join("notes.txt"), b"not a position").unwrap();
        let got = read_positions(from.path()).unwrap();
        assert_eq!(
            got,
            vec![
                (PathBuf::from("cluster/main/p0.applied"), 7),
                (PathBuf::from("cluster/main/p12.applied"), 40)
            ]
        );
        write_positions(to.path(), &got).unwrap();
        assert_eq!(read_positions(to.path()).unwrap(), got);
        let copy = Applied::open(&to.path().join("cluster/main"), "p12.applied").unwrap();
        assert_eq!(copy.get(), 40);
    }

    #[test]
    fn garbage_reads_as_zero() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p1.applied"), [0xabu8; 32]).unwrap();
        assert_eq!(Applied::open(dir.path(), "p1.applied").unwrap().get(), 0);
    }
}
