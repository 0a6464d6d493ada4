//! `store.id`: the store's identity and the generation of its metadata.
//!
//! The file exists so that the store knows it has metadata: a `meta.redb`
//! that is missing, emptied, of another store, or older than the last
//! metadata write this store acknowledged is detected at open instead of
//! being replaced by defaults.
//!
//! ```text
//! offset size field
//!      0    8 magic               b"AUDITSID"
//!      8    4 format_version      u32 = 1
//!     12    4 len                 u32 = 48
//!     16   16 store_id            random at creation (UUID v4 bytes)
//!     32    8 metadata_generation u64: the generation of the last metadata
//!                                 write transaction committed, as recorded
//!                                 inside meta.redb (table `store`)
//!     40    4 reserved            0
//!     44    4 crc                 CRC-32 of bytes 0..44
//! ```

use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::io::Io;
use crate::log::segment;

/// File name in the store directory.
pub const DESCRIPTOR_FILE: &str = "store.id";
const MAGIC: [u8; 8] = *b"AUDITSID";
const FORMAT_VERSION: u32 = 1;
const LEN: usize = 48;

/// The decoded descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    pub store_id: [u8; 16],
    pub generation: u64,
}

impl Descriptor {
    /// What a store without metadata (an empty snapshot) is identified by.
    pub const NONE: Descriptor = Descriptor {
        store_id: [0; 16],
        generation: 0,
    };

    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(LEN as u32).to_le_bytes());
        b[16..32].copy_from_slice(&self.store_id);
        b[32..40].copy_from_slice(&self.generation.to_le_bytes());
        let crc = crc32fast::hash(&b[0..44]);
        b[44..48].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decode `bytes` read from `path`; any damage is `Corrupt` naming it.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Descriptor> {
        let bad = |offset: u64, reason: String| Error::corrupt(path, offset, reason);
        if bytes.len() != LEN {
            return Err(bad(
                0,
                format!("store descriptor is {} bytes, expected {LEN}", bytes.len()),
            ));
        }
        if bytes[0..8] != MAGIC {
            return Err(bad(0, "wrong magic number (not a store descriptor)".into()));
        }
        let u32_at = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        if u32_at(44) != crc32fast::hash(&bytes[0..44]) {
            return Err(bad(44, "store descriptor checksum mismatch".into()));
        }
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if u32_at(12) as usize != LEN {
            return Err(bad(
                12,
                format!("store descriptor length field {} (expected {LEN})", u32_at(12)),
            ));
        }
        let mut store_id = [0u8; 16];
        store_id.copy_from_slice(&bytes[16..32]);
        let mut generation = [0u8; 8];
        generation.copy_from_slice(&bytes[32..40]);
        Ok(Descriptor {
            store_id,
            generation: u64::from_le_bytes(generation),
        })
    }

    /// The descriptor in `dir`: `None` if the file does not exist.
    pub fn read(dir: &Path) -> Result<Option<Descriptor>> {
        let path = dir.join(DESCRIPTOR_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Descriptor::decode(&bytes, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).ctx(|| format!("read {}", path.display())),
        }
    }

    /// Replace the descriptor in `dir` atomically and durably.
    pub fn write(&self, io: &dyn Io, dir: &Path) -> Result<()> {
        segment::write_atomically_via(io, &dir.join(DESCRIPTOR_FILE), &self.encode())
    }

    /// The store id as a UUID string, for messages.
    pub fn id_text(&self) -> String {
        uuid::Uuid::from_bytes(self.store_id).hyphenated().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_every_damaged_byte_is_refused() {
        let d = Descriptor {
            store_id: *uuid::Uuid::new_v4().as_bytes(),
            generation: 42,
        };
        let bytes = d.encode();
        let path = Path::new("store.id");
        assert_eq!(Descriptor::decode(&bytes, path).ok(), Some(d));
        for i in 0..LEN {
            let mut damaged = bytes;
            damaged[i] ^= 0x10;
            assert!(
                Descriptor::decode(&damaged, path).is_err(),
                "byte {i} flipped was accepted"
            );
        }
        assert!(Descriptor::decode(&bytes[..LEN - 1], path).is_err());
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(Descriptor::decode(&longer, path).is_err());
    }
}
