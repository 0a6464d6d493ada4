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
        let (mut seq, mut slot) = (0, 1);
        for i in 0..2 {
            if let Some(v) = slot_value(&buf[i * SLOT..(i + 1) * SLOT]) {
                if v >= seq {
                    seq = v;
                    slot = i;
                }
            }
        }
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
    fn garbage_reads_as_zero() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p1.applied"), [0xabu8; 32]).unwrap();
        assert_eq!(Applied::open(dir.path(), "p1.applied").unwrap().get(), 0);
    }
}
