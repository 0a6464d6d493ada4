//! Byte layout of `dedup.fp`, the de-duplication checkpoint: the sorted
//! dedup keys (`fingerprint >> 16`) of every event in a set of sealed
//! segments, written on clean
//! shutdown so that the next open does not rebuild them from every index.
//! It is a cache: when missing, damaged, or naming a segment that no longer
//! exists, it is ignored and the set is rebuilt from the `.idx` files.
//!
//! ```text
//! header (32 bytes)
//!      0    8 magic           b"AUDITFPS"
//!      8    4 format_version  u32 = 1
//!     12    4 header_len      u32 = 32
//!     16    8 count           u64, number of keys
//!     24    4 segment_count   u32
//!     28    4 reserved        0
//! segment ids: segment_count x u64, ascending (the segments covered)
//! keys: count x u64 (fingerprint >> 16), ascending
//! footer (16 bytes): u32 CRC-32 of every preceding byte, u32 0, b"AUDITEND"
//! ```

pub const CHECKPOINT_MAGIC: [u8; 8] = *b"AUDITFPS";
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 32;
const FOOTER_MAGIC: [u8; 8] = *b"AUDITEND";

/// Serialize a checkpoint.
pub fn encode(segments: &[u64], fingerprints: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 8 * (segments.len() + fingerprints.len()) + 16);
    out.extend_from_slice(&CHECKPOINT_MAGIC);
    out.extend_from_slice(&CHECKPOINT_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    out.extend_from_slice(&(fingerprints.len() as u64).to_le_bytes());
    out.extend_from_slice(&(segments.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for s in segments {
        out.extend_from_slice(&s.to_le_bytes());
    }
    for f in fingerprints {
        out.extend_from_slice(&f.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&FOOTER_MAGIC);
    out
}

fn u64s(b: &[u8]) -> impl Iterator<Item = u64> + '_ {
    b.chunks_exact(8).map(|c| {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        u64::from_le_bytes(a)
    })
}

/// Parse and verify a checkpoint: (segments covered, fingerprints).
pub fn decode(buf: &[u8]) -> Result<(Vec<u64>, Vec<u64>), String> {
    if buf.len() < HEADER_LEN + 16 {
        return Err(format!("checkpoint is {} bytes, too short", buf.len()));
    }
    if buf[..8] != CHECKPOINT_MAGIC {
        return Err("wrong magic number".into());
    }
    let word = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    if word(8) != CHECKPOINT_FORMAT_VERSION {
        return Err(format!("unsupported checkpoint version {}", word(8)));
    }
    let foot = buf.len() - 16;
    if buf[foot + 8..] != FOOTER_MAGIC || word(foot + 4) != 0 {
        return Err("missing footer (truncated?)".into());
    }
    if word(foot) != crc32fast::hash(&buf[..foot]) {
        return Err("checksum mismatch".into());
    }
    let count = u64s(&buf[16..24]).next().unwrap_or(0) as usize;
    let segments = word(24) as usize;
    let expected = segments
        .checked_add(count)
        .and_then(|n| n.checked_mul(8))
        .and_then(|n| n.checked_add(HEADER_LEN + 16));
    if expected != Some(buf.len()) {
        return Err("section lengths do not match the file length".into());
    }
    let seg_end = HEADER_LEN + 8 * segments;
    let segs: Vec<u64> = u64s(&buf[HEADER_LEN..seg_end]).collect();
    let fps: Vec<u64> = u64s(&buf[seg_end..foot]).collect();
    if !segs.windows(2).all(|w| w[0] < w[1]) || !fps.windows(2).all(|w| w[0] <= w[1]) {
        return Err("not sorted".into());
    }
    Ok((segs, fps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let bytes = encode(&[1, 2, 5], &[3, 9, 9, 200]);
        assert_eq!(decode(&bytes), Ok((vec![1, 2, 5], vec![3, 9, 9, 200])));
        for cut in [0, 20, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err());
        }
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            assert!(decode(&bad).is_err(), "flip at {at}");
        }
    }
}
