//! Record frames: `u32 body_len | u32 crc | body`, little endian.
//!
//! `crc` is CRC-32 (Castagnoli is not used; this is the IEEE polynomial that
//! `crc32fast` computes) over the 4 length bytes followed by the body, so a
//! damaged length is caught as surely as a damaged body.

/// Bytes before the body.
pub const FRAME_HEADER_LEN: usize = 8;
/// Largest body a frame may carry (an event is at most 256 KiB of JSON).
pub const MAX_BODY_LEN: usize = 1 << 20;

/// Why the bytes at some position are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes remain than the frame needs: a torn write at the tail.
    Truncated { needed: usize, available: usize },
    /// The length field is zero or larger than [`MAX_BODY_LEN`].
    BadLength(u32),
    /// The checksum does not match.
    BadChecksum { stored: u32, computed: u32 },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Truncated { needed, available } => {
                write!(f, "truncated frame: needs {needed} bytes, {available} remain")
            }
            FrameError::BadLength(l) => write!(f, "invalid frame length {l}"),
            FrameError::BadChecksum { stored, computed } => write!(
                f,
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
        }
    }
}

fn checksum(len_bytes: [u8; 4], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len_bytes);
    h.update(body);
    h.finalize()
}

/// Append a frame around `body` (already in `out` from `body_start`).
///
/// The body is encoded first, in place, after 8 reserved bytes; this fills
/// those bytes in. Avoids a copy of every record.
pub fn seal_in_place(out: &mut [u8], frame_start: usize) {
    let body = &out[frame_start + FRAME_HEADER_LEN..];
    let len_bytes = (body.len() as u32).to_le_bytes();
    let crc = checksum(len_bytes, body);
    out[frame_start..frame_start + 4].copy_from_slice(&len_bytes);
    out[frame_start + 4..frame_start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Reserve a frame header in `out`; returns the frame start for
/// [`seal_in_place`].
pub fn begin(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    start
}

/// Encode a complete frame (used by tests and tools).
pub fn encode(body: &[u8], out: &mut Vec<u8>) {
    let start = begin(out);
    out.extend_from_slice(body);
    seal_in_place(out, start);
}

/// Decode the frame at the start of `buf`; returns the body and the frame's
/// total length.
pub fn decode(buf: &[u8]) -> Result<(&[u8], usize), FrameError> {
    if buf.len() < FRAME_HEADER_LEN {
        return Err(FrameError::Truncated {
            needed: FRAME_HEADER_LEN,
            available: buf.len(),
        });
    }
    let len_bytes = [buf[0], buf[1], buf[2], buf[3]];
    let len = u32::from_le_bytes(len_bytes);
    if len == 0 || len as usize > MAX_BODY_LEN {
        return Err(FrameError::BadLength(len));
    }
    let total = FRAME_HEADER_LEN + len as usize;
    if buf.len() < total {
        return Err(FrameError::Truncated {
            needed: total,
            available: buf.len(),
        });
    }
    let stored = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let body = &buf[FRAME_HEADER_LEN..total];
    let computed = checksum(len_bytes, body);
    if stored != computed {
        return Err(FrameError::BadChecksum { stored, computed });
    }
    Ok((body, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_bit_flip_is_caught() {
        let mut buf = Vec::new();
        encode(b"hello audit log", &mut buf);
        let (body, n) = decode(&buf).unwrap();
        assert_eq!(body, b"hello audit log");
        assert_eq!(n, buf.len());
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&bad).is_err(), "flip of bit {bit} not detected");
        }
    }

    #[test]
    fn every_truncation_is_reported_as_truncated_or_bad() {
        let mut buf = Vec::new();
        encode(b"0123456789", &mut buf);
        for cut in 0..buf.len() {
            assert!(matches!(decode(&buf[..cut]), Err(FrameError::Truncated { .. })));
        }
    }

    #[test]
    fn zero_and_huge_lengths_are_rejected() {
        assert_eq!(decode(&[0u8; 16]), Err(FrameError::BadLength(0)));
        let mut b = vec![0xffu8; 16];
        b[4..].fill(0);
        assert!(matches!(decode(&b), Err(FrameError::BadLength(_))));
    }
}
