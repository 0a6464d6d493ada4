//! Byte layout of `dedup.fp`, the de-duplication checkpoint: the
//! [`FingerprintSet`] of a set of sealed segments in its in-memory layout
//! (a bucket directory and 32-bit entries), written on clean shutdown so
//! that the next open maps it and checks its checksum instead of rebuilding
//! the set from every index. It is a cache: when missing, damaged, of
//! another version, or naming a segment that no longer exists, it is
//! ignored and the set is rebuilt from the `.idx` files.
//!
//! ```text
//! header (32 bytes)
//!      0    8 magic           b"AUDITFPS"
//!      8    4 format_version  u32 = 2
//!     12    4 header_len      u32 = 32
//!     16    8 count           u64, number of entries (keys)
//!     24    4 segment_count   u32
//!     28    4 bucket_bits     u32 = 16
//! segment ids: segment_count x u64, strictly ascending (the segments covered)
//! directory: (2^16 + 1) x u32; starts[b] = first entry of bucket b,
//!            starts[0] = 0, non-decreasing, starts[2^16] = count
//! entries: count x u32, ascending within each bucket
//! footer (16 bytes): u32 CRC-32 of every preceding byte, u32 0, b"AUDITEND"
//! ```
//! Entry `i` of bucket `b` stands for the dedup key (`fingerprint >> 16`)
//! `b << 32 | entry`.

use super::id::{FingerprintSet, SharedBytes, FINGERPRINT_BUCKETS, FINGERPRINT_BUCKET_BITS as BUCKET_BITS};

pub const CHECKPOINT_MAGIC: [u8; 8] = *b"AUDITFPS";
pub const CHECKPOINT_FORMAT_VERSION: u32 = 2;
const HEADER_LEN: usize = 32;
const FOOTER_MAGIC: [u8; 8] = *b"AUDITEND";

/// Serialize a checkpoint of `set`, covering `segments`.
pub fn encode(segments: &[u64], set: &FingerprintSet) -> Vec<u8> {
    let starts = set.bucket_starts();
    let mut out = Vec::with_capacity(HEADER_LEN + 8 * segments.len() + 4 * (starts.len() + set.len()) + 16);
    out.extend_from_slice(&CHECKPOINT_MAGIC);
    out.extend_from_slice(&CHECKPOINT_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    out.extend_from_slice(&(set.len() as u64).to_le_bytes());
    out.extend_from_slice(&(segments.len() as u32).to_le_bytes());
    out.extend_from_slice(&BUCKET_BITS.to_le_bytes());
    for s in segments {
        out.extend_from_slice(&s.to_le_bytes());
    }
    for s in starts {
        out.extend_from_slice(&s.to_le_bytes());
    }
    for e in set.entries() {
        out.extend_from_slice(&e.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&FOOTER_MAGIC);
    out
}

fn word(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn dword(buf: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Parse and verify a checkpoint held in `bytes`: (segments covered, the
/// set). The set keeps reading its entries from `bytes` (no copy).
pub fn decode(bytes: SharedBytes) -> Result<(Vec<u64>, FingerprintSet), String> {
    let buf: &[u8] = (*bytes).as_ref();
    if buf.len() < HEADER_LEN + 16 {
        return Err(format!("checkpoint is {} bytes, too short", buf.len()));
    }
    if buf[..8] != CHECKPOINT_MAGIC {
        return Err("wrong magic number".into());
    }
    if word(buf, 8) != CHECKPOINT_FORMAT_VERSION {
        return Err(format!("unsupported checkpoint version {}", word(buf, 8)));
    }
    let foot = buf.len() - 16;
    if buf[foot + 8..] != FOOTER_MAGIC || word(buf, foot + 4) != 0 {
        return Err("missing footer (truncated?)".into());
    }
    if word(buf, foot) != crc32fast::hash(&buf[..foot]) {
        return Err("checksum mismatch".into());
    }
    if word(buf, 12) as usize != HEADER_LEN || word(buf, 28) != BUCKET_BITS {
        return Err("unexpected header length or bucket count".into());
    }
    let count = dword(buf, 16);
    let segments = word(buf, 24) as usize;
    let expected = (count as usize)
        .checked_add(FINGERPRINT_BUCKETS + 1)
        .and_then(|n| n.checked_mul(4))
        .and_then(|n| n.checked_add(8 * segments + HEADER_LEN + 16));
    if count > u32::MAX as u64 || expected != Some(buf.len()) {
        return Err("section lengths do not match the file length".into());
    }
    let count = count as usize;
    let seg_end = HEADER_LEN + 8 * segments;
    let segs: Vec<u64> = (HEADER_LEN..seg_end)
        .step_by(8)
        .map(|at| dword(buf, at))
        .collect();
    let dir_end = seg_end + 4 * (FINGERPRINT_BUCKETS + 1);
    let starts: Vec<u32> = (seg_end..dir_end).step_by(4).map(|at| word(buf, at)).collect();
    if !segs.windows(2).all(|w| w[0] < w[1]) {
        return Err("segment ids not ascending".into());
    }
    if starts.first() != Some(&0)
        || starts.last() != Some(&(count as u32))
        || !starts.windows(2).all(|w| w[0] <= w[1])
    {
        return Err("bucket directory is not monotonic from 0 to the entry count".into());
    }
    // Binary search needs sorted buckets: a cheap pass, and the checksum
    // cannot vouch for a writer's bug.
    for b in 0..FINGERPRINT_BUCKETS {
        let (lo, hi) = (starts[b] as usize, starts[b + 1] as usize);
        let mut prev = None;
        for i in lo..hi {
            let e = word(buf, dir_end + 4 * i);
            if prev.is_some_and(|p| p > e) {
                return Err(format!("bucket {b} is not sorted"));
            }
            prev = Some(e);
        }
    }
    Ok((segs, FingerprintSet::from_shared(starts, bytes, dir_end, count)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn shared(v: Vec<u8>) -> SharedBytes {
        Arc::new(v)
    }

    #[test]
    fn round_trip_and_damage() {
        let keys = vec![3, 9, 9, 200, 7 << 32, (7 << 32) + 1, u64::MAX >> 16];
        let set = FingerprintSet::from_sorted_keys(keys.clone());
        let bytes = encode(&[1, 2, 5], &set);
        let (segs, back) = decode(shared(bytes.clone())).expect("decode");
        assert_eq!(segs, vec![1, 2, 5]);
        assert_eq!(back.keys(), keys);
        for k in &keys {
            assert!(back.contains(k << 16), "key {k}");
        }
        assert!(!back.contains(4 << 16));
        // The shared set behaves like an owned one when merged into.
        let mut merged = back.clone();
        merged.merge_keys([5u64, 8 << 32].into_iter());
        assert_eq!(merged.len(), keys.len() + 2);
        assert!(merged.contains(5 << 16) && merged.contains(3 << 16));
        for cut in [0, 20, bytes.len() - 1] {
            assert!(decode(shared(bytes[..cut].to_vec())).is_err());
        }
        // Every byte of the head and the foot, and a spread of the buckets
        // between (a decode checksums the whole file: every 7th byte of a
        // large file took a minute in a debug build).
        let spread = (0..bytes.len()).step_by(bytes.len() / 509 + 1);
        let ends = (0..64.min(bytes.len())).chain(bytes.len().saturating_sub(64)..bytes.len());
        for at in spread.chain(ends) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            assert!(decode(shared(bad)).is_err(), "flip at {at}");
        }
    }

    #[test]
    fn a_well_checksummed_but_unsorted_checkpoint_is_refused() {
        let set = FingerprintSet::from_sorted_keys(vec![1, 2]);
        let mut bytes = encode(&[1], &set);
        let foot = bytes.len() - 16;
        // Swap the two entries of bucket 0 and fix the checksum.
        let (a, b) = (foot - 8, foot - 4);
        let (x, y) = (bytes[a], bytes[b]);
        bytes[a] = y;
        bytes[b] = x;
        let crc = crc32fast::hash(&bytes[..foot]);
        bytes[foot..foot + 4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(shared(bytes)).err(), Some("bucket 0 is not sorted".into()));
    }
}
