//! The 32-byte header at the start of every segment file.
//!
//! ```text
//! offset size field
//!      0    8 magic          b"AUDITLOG"
//!      8    4 format_version u32 = 1 (covers frame and record layout)
//!     12    4 header_len     u32 = 32
//!     16    8 segment_id     u64, equal to the number in the file name
//!     24    4 reserved       0
//!     28    4 crc            CRC-32 of bytes 0..28
//! ```

/// Magic number of segment files.
pub const SEGMENT_MAGIC: [u8; 8] = *b"AUDITLOG";
/// Format version written by this build.
pub const SEGMENT_FORMAT_VERSION: u32 = 1;
/// Length of the header; the first frame starts here.
pub const SEGMENT_HEADER_LEN: usize = 32;

/// Why a header is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    Short(usize),
    BadMagic,
    BadChecksum,
    UnsupportedVersion(u32),
    WrongSegmentId { expected: u64, found: u64 },
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Short(n) => write!(f, "file is {n} bytes, shorter than its header"),
            HeaderError::BadMagic => write!(f, "wrong magic number (not an auditstore file)"),
            HeaderError::BadChecksum => write!(f, "header checksum mismatch"),
            HeaderError::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            HeaderError::WrongSegmentId { expected, found } => write!(
                f,
                "header names segment {found} but the file name says {expected}"
            ),
        }
    }
}

/// Encode the header of segment `segment_id`.
pub fn encode(segment_id: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
    h[16..24].copy_from_slice(&segment_id.to_le_bytes());
    let crc = crc32fast::hash(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Check the header at the start of `buf` for segment `segment_id`.
pub fn check(buf: &[u8], segment_id: u64) -> Result<(), HeaderError> {
    if buf.len() < SEGMENT_HEADER_LEN {
        return Err(HeaderError::Short(buf.len()));
    }
    if buf[0..8] != SEGMENT_MAGIC {
        return Err(HeaderError::BadMagic);
    }
    let crc = u32::from_le_bytes([buf[28], buf[29], buf[30], buf[31]]);
    if crc != crc32fast::hash(&buf[0..28]) {
        return Err(HeaderError::BadChecksum);
    }
    let version = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if version != SEGMENT_FORMAT_VERSION {
        return Err(HeaderError::UnsupportedVersion(version));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&buf[16..24]);
    let found = u64::from_le_bytes(id);
    if found != segment_id {
        return Err(HeaderError::WrongSegmentId {
            expected: segment_id,
            found,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_rejections() {
        let h = encode(7);
        assert_eq!(check(&h, 7), Ok(()));
        assert!(matches!(check(&h, 8), Err(HeaderError::WrongSegmentId { .. })));
        assert_eq!(check(&h[..10], 7), Err(HeaderError::Short(10)));
        let mut bad = h;
        bad[0] = b'X';
        assert_eq!(check(&bad, 7), Err(HeaderError::BadMagic));
        let mut bad = h;
        bad[20] ^= 1;
        assert_eq!(check(&bad, 7), Err(HeaderError::BadChecksum));
        let mut future = h;
        future[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32fast::hash(&future[0..28]);
        future[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(check(&future, 7), Err(HeaderError::UnsupportedVersion(2)));
    }
}
