//! Segment files: creation, frames, torn tails, rolls.

use super::*;
use crate::io::RealIo;
use std::sync::atomic::{AtomicU64, Ordering};

/// The real file system, counting the bytes of zeros written ahead.
#[derive(Debug, Default)]
struct CountingIo(AtomicU64);

impl Io for CountingIo {
    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
        RealIo.write_at(file, buf, offset)
    }
    fn sync_data(&self, file: &File) -> std::io::Result<()> {
        RealIo.sync_data(file)
    }
    fn sync_all(&self, file: &File) -> std::io::Result<()> {
        RealIo.sync_all(file)
    }
    fn set_len(&self, file: &File, len: u64) -> std::io::Result<()> {
        RealIo.set_len(file, len)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        RealIo.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        RealIo.sync_dir(dir)
    }
    fn write_zeros(&self, file: &File, offset: u64, len: u64) -> std::io::Result<()> {
        self.0.fetch_add(len, Ordering::SeqCst);
        RealIo.write_zeros(file, offset, len)
    }
}

/// Append `count` chunks of `size` bytes; return the file's bytes after
/// a trim, the zeros written ahead and the file size before the trim.
fn appended(count: usize, size: usize, ahead: SpaceAhead) -> (Vec<u8>, u64, u64, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let io = Arc::new(CountingIo::default());
    let mut active = ActiveFile::create(io.clone(), dir.path(), 1, ahead).expect("create");
    let mut expected = header::encode(1).to_vec();
    for i in 0..count {
        let chunk = vec![(i % 251) as u8 + 1; size];
        active.append(&chunk).expect("append");
        expected.extend_from_slice(&chunk);
    }
    let size_before_trim = active.file.metadata().expect("stat").len();
    active.trim().expect("trim");
    let bytes = std::fs::read(&active.path).expect("read");
    (bytes, io.0.load(Ordering::SeqCst), size_before_trim, expected)
}

#[test]
fn small_appends_get_zeros_written_ahead_a_chunk_at_a_time_and_trim_cuts_them() {
    let ahead = SpaceAhead {
        allocate_to: 64 << 20,
        zero_ahead: true,
    };
    // 1.5 MB in 500-byte appends: two chunks of zeros, each written
    // once the data passed the previous one.
    let (bytes, zeros, size, expected) = appended(3_000, 500, ahead);
    assert_eq!(zeros, 2 * ZERO_AHEAD);
    assert!(
        size > expected.len() as u64,
        "zeros (or allocation) past the data"
    );
    assert_eq!(bytes, expected, "trimmed to exactly the data");
}

#[test]
fn large_appends_and_unsynced_ones_get_no_zeros_ahead() {
    let synced = SpaceAhead {
        allocate_to: 64 << 20,
        zero_ahead: true,
    };
    let (bytes, zeros, _, expected) = appended(20, 128 << 10, synced);
    assert_eq!(zeros, 0, "128 KiB appends");
    assert_eq!(bytes, expected);
    let unsynced = SpaceAhead {
        zero_ahead: false,
        ..synced
    };
    let (bytes, zeros, _, expected) = appended(3_000, 500, unsynced);
    assert_eq!(zeros, 0, "zero_ahead off");
    assert_eq!(bytes, expected);
}

#[test]
fn zeros_stop_at_the_segment_size() {
    let ahead = SpaceAhead {
        allocate_to: 100_000,
        zero_ahead: true,
    };
    let (bytes, zeros, size, expected) = appended(100, 500, ahead);
    assert!(zeros < 100_000, "{zeros} bytes of zeros");
    assert_eq!(size, 100_000, "allocated and zeroed up to the segment size");
    assert_eq!(bytes, expected);
    // Past the segment size (before a roll), nothing more is zeroed.
    let (bytes, _, size, expected) = appended(300, 500, ahead);
    assert_eq!(size, expected.len() as u64);
    assert_eq!(bytes, expected);
}
