//! A file written on a helper thread, for export builds.
//!
//! The exporter formats rows while the helper writes full chunks. Without
//! it, a build formats, then waits for each `write`, then waits at the
//! final `fsync` for the whole file (557 MB for a million rows) to reach
//! the disk: the three happen one after another. With it, they overlap.
//!
//! Two ways to write:
//! - **Direct** ([`PipedFile::create`] on Linux, where the filesystem
//!   accepts `O_DIRECT`): chunks go from page-aligned buffers straight to
//!   the disk, bypassing the page cache. An export is written once and
//!   read rarely, so caching it only evicts the application's own data,
//!   and copying it into the cache costs as much CPU as formatting it on
//!   a VM whose free memory is handed back to the host. Every write is a
//!   whole number of [`ALIGN`]-byte blocks; the last one is padded with
//!   zeros and the file cut back to its length at [`PipedFile::finish`].
//! - **Buffered** ([`PipedFile::new`], and the fallback where direct I/O is
//!   refused): writes through the page cache, `fdatasync` every
//!   [`SYNC_EVERY`] bytes so the final `fsync` only flushes the tail.
//!
//! Either way the caller's final `sync_all` is what makes the file durable.
//! The helper also computes the CRC-32 of the bytes it writes (padding
//! excluded), off the formatting thread: [`PipedFile::finish_with_crc32`]
//! returns it, and export builds record it so that a file damaged on disk
//! is refused rather than served.
//! Memory stays bounded: at most [`IN_FLIGHT`] chunks of [`CHUNK`] bytes
//! wait for the helper (the exporter blocks when they are all taken).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Bytes handed to the helper at a time (a multiple of [`ALIGN`]).
pub const CHUNK: usize = 256 << 10;
/// Chunks that may wait for the helper.
pub const IN_FLIGHT: usize = 16;
/// Buffered mode: the helper flushes to disk after writing this many bytes.
pub const SYNC_EVERY: u64 = 16 << 20;
/// Direct mode: buffer addresses, write sizes and offsets are multiples of
/// this (the largest logical block size in common use).
pub const ALIGN: usize = 4096;

/// A chunk's memory: [`CHUNK`] bytes at an [`ALIGN`]-aligned address
/// inside a slightly larger allocation.
struct Chunk {
    mem: Box<[u8]>,
    start: usize,
    len: usize,
}

impl Chunk {
    fn new() -> Chunk {
        let mem = vec![0u8; CHUNK + ALIGN].into_boxed_slice();
        // `align_offset` may in theory give up (usize::MAX): the chunk then
        // starts unaligned, and the helper writes it buffered.
        let start = mem.as_ptr().align_offset(ALIGN).min(ALIGN);
        Chunk { mem, start, len: 0 }
    }

    fn is_aligned(&self) -> bool {
        self.start < ALIGN
    }

    /// Copy as much of `bytes` as fits; returns how much did.
    fn fill(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(CHUNK - self.len);
        let at = self.start + self.len;
        self.mem[at..at + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        n
    }

    fn bytes(&self) -> &[u8] {
        &self.mem[self.start..self.start + self.len]
    }

    /// The bytes followed by zeros up to the next multiple of [`ALIGN`].
    fn padded(&mut self) -> &[u8] {
        let padded = self.len.div_ceil(ALIGN) * ALIGN;
        self.mem[self.start + self.len..self.start + padded].fill(0);
        &self.mem[self.start..self.start + padded]
    }
}

/// What the helper writes with.
struct Target {
    /// Opened with `O_DIRECT`, when that was possible.
    direct: Option<File>,
    /// The same file through the page cache.
    buffered: File,
}

/// A [`Write`] to a file whose writes (and syncs) run on a helper thread.
/// [`PipedFile::finish`] returns the file once everything handed over is
/// written (not yet synced: the caller's `sync_all` does that). A write
/// error on the helper is returned by the next `write` or by `finish`.
pub struct PipedFile {
    chunk: Chunk,
    direct: bool,
    to_helper: Option<SyncSender<Chunk>>,
    spare: Receiver<Chunk>,
    helper: Option<JoinHandle<io::Result<(File, u32)>>>,
}

impl std::fmt::Debug for PipedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipedFile")
            .field("direct", &self.direct)
            .field("buffered_bytes", &self.chunk.len)
            .finish_non_exhaustive()
    }
}

impl PipedFile {
    /// Write `file` through the page cache.
    pub fn new(file: File) -> io::Result<Self> {
        Self::start(Target {
            direct: None,
            buffered: file,
        })
    }

    /// Create (or truncate) `path` and write it directly to the disk where
    /// the platform and filesystem allow it, through the page cache where
    /// they do not (see the module documentation).
    pub fn create(path: &Path) -> io::Result<Self> {
        let buffered = File::create(path)?;
        Self::start(Target {
            direct: open_direct(path),
            buffered,
        })
    }

    fn start(target: Target) -> io::Result<Self> {
        let direct = target.direct.is_some();
        let (to_helper, chunks) = mpsc::sync_channel::<Chunk>(IN_FLIGHT);
        let (give_back, spare) = mpsc::sync_channel::<Chunk>(IN_FLIGHT + 1);
        let helper = std::thread::Builder::new()
            .name("auditstore-export-writer".into())
            .spawn(move || write_chunks(target, chunks, give_back))?;
        Ok(PipedFile {
            chunk: Chunk::new(),
            direct,
            to_helper: Some(to_helper),
            spare,
            helper: Some(helper),
        })
    }

    /// True when the file was opened for direct I/O (its writes still go
    /// through the page cache if the filesystem refuses one of them).
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Hand the current chunk to the helper.
    fn hand_over(&mut self) -> io::Result<()> {
        if self.chunk.len == 0 {
            return Ok(());
        }
        let next = self.spare.try_recv().unwrap_or_else(|_| Chunk::new());
        let full = std::mem::replace(&mut self.chunk, next);
        let sent = match &self.to_helper {
            Some(tx) => tx.send(full).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            // The helper stopped: its error says why.
            Err(self
                .join()
                .err()
                .unwrap_or_else(|| io::Error::other("export writer stopped")))
        }
    }

    fn join(&mut self) -> io::Result<(File, u32)> {
        self.to_helper = None;
        match self.helper.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("export writer panicked"))),
            None => Err(io::Error::other("export writer already finished")),
        }
    }

    /// Write what is left and return the file (written, not synced).
    pub fn finish(self) -> io::Result<File> {
        self.finish_with_crc32().map(|(file, _)| file)
    }

    /// Write what is left; return the file (written, not synced) and the
    /// CRC-32 ([`crc32fast`]) of every byte written to it.
    pub fn finish_with_crc32(mut self) -> io::Result<(File, u32)> {
        self.hand_over()?;
        self.join()
    }
}

impl Write for PipedFile {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let total = buf.len();
        while !buf.is_empty() {
            let n = self.chunk.fill(buf);
            buf = &buf[n..];
            if self.chunk.len == CHUNK {
                self.hand_over()?;
            }
        }
        Ok(total)
    }

    /// Nothing to do: chunks are handed over as they fill, and the rest at
    /// [`PipedFile::finish`] (a partial chunk in the middle of the file
    /// would break the alignment of direct writes).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for PipedFile {
    fn drop(&mut self) {
        if self.helper.is_some() {
            let _ = self.join();
        }
    }
}

/// The errors with which a filesystem turns down a direct write it cannot
/// do (alignment, or no direct I/O at all): nothing was written.
fn refuses_direct_io(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::EOPNOTSUPP))
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> Option<File> {
    None
}

/// The helper: write each chunk in order at its offset, give emptied
/// chunks back for reuse; at the end, cut the padding of a direct write.
/// Returns the file and the CRC-32 of the bytes written.
fn write_chunks(
    mut target: Target,
    chunks: Receiver<Chunk>,
    give_back: SyncSender<Chunk>,
) -> io::Result<(File, u32)> {
    let mut crc = crc32fast::Hasher::new();
    let mut offset = 0u64;
    let mut unsynced = 0u64;
    let mut padded_to = 0u64;
    for mut chunk in chunks {
        let len = chunk.len as u64;
        crc.update(chunk.bytes());
        let mut written = false;
        if let Some(direct) = target.direct.as_ref().filter(|_| chunk.is_aligned()) {
            let bytes = chunk.padded();
            match direct.write_all_at(bytes, offset) {
                Ok(()) => {
                    written = true;
                    padded_to = offset + bytes.len() as u64;
                }
                // The filesystem refuses these alignments after all (it
                // wrote nothing): go on through the page cache.
                Err(e) if refuses_direct_io(&e) => target.direct = None,
                Err(e) => return Err(e),
            }
        }
        if !written {
            target.buffered.write_all_at(chunk.bytes(), offset)?;
            unsynced += len;
            if unsynced >= SYNC_EVERY {
                target.buffered.sync_data()?;
                unsynced = 0;
            }
        }
        offset += len;
        chunk.len = 0;
        let _ = give_back.try_send(chunk);
    }
    if padded_to > offset {
        target.buffered.set_len(offset)?;
    }
    Ok((target.buffered, crc.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Write `pieces` through a PipedFile made by `open`, check the file.
    fn round_trip(path: &Path, open: impl Fn(&Path) -> PipedFile, pieces: &[Vec<u8>]) {
        let mut piped = open(path);
        let mut expected = Vec::new();
        for piece in pieces {
            piped.write_all(piece).expect("write");
            expected.extend_from_slice(piece);
        }
        piped.flush().expect("flush");
        let (file, crc) = piped.finish_with_crc32().expect("finish");
        assert_eq!(file.metadata().expect("stat").len(), expected.len() as u64);
        assert_eq!(crc, crc32fast::hash(&expected));
        drop(file);
        let got = std::fs::read(path).expect("read");
        assert!(
            got == expected,
            "{} bytes differ from {}",
            got.len(),
            expected.len()
        );
    }

    fn direct(path: &Path) -> PipedFile {
        PipedFile::create(path).expect("create")
    }

    fn buffered(path: &Path) -> PipedFile {
        PipedFile::new(File::create(path).expect("create")).expect("pipe")
    }

    #[test]
    fn bytes_arrive_in_order_whatever_the_write_sizes() {
        let dir = tempfile::tempdir().expect("tempdir");
        // ~40 MB in writes from 1 byte to ~300 KB: many chunks, two syncs.
        let mut pieces = Vec::new();
        let (mut total, mut i) = (0, 0u32);
        while total < 40 << 20 {
            let len = (i as usize * 7919) % 300_000 + 1;
            pieces.push((0..len).map(|j| (j as u32 ^ i) as u8).collect::<Vec<u8>>());
            total += len;
            i += 1;
        }
        round_trip(&dir.path().join("direct"), direct, &pieces);
        round_trip(&dir.path().join("buffered"), buffered, &pieces);
    }

    #[test]
    fn file_lengths_around_block_and_chunk_sizes_are_exact() {
        let dir = tempfile::tempdir().expect("tempdir");
        for len in [
            0,
            1,
            ALIGN - 1,
            ALIGN,
            ALIGN + 1,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            3 * CHUNK + 12_345,
        ] {
            let piece: Vec<u8> = (0..len).map(|j| (j % 251) as u8 + 1).collect();
            round_trip(
                &dir.path().join(format!("d{len}")),
                direct,
                std::slice::from_ref(&piece),
            );
            round_trip(&dir.path().join(format!("b{len}")), buffered, &[piece]);
        }
        // An existing, longer file is truncated first.
        let path = dir.path().join("again");
        std::fs::write(&path, vec![9u8; 5 * CHUNK]).expect("write");
        round_trip(&path, direct, &[vec![1u8; 1000]]);
    }

    /// Direct I/O is used wherever the filesystem takes `O_DIRECT` (the
    /// project's disks do), and a filesystem that does not (tmpfs) gets a
    /// correct file through the page cache.
    #[test]
    fn create_writes_directly_where_the_filesystem_allows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("probe");
        std::fs::write(&path, b"").expect("create");
        let supported = open_direct(&path).is_some();
        assert_eq!(direct(&dir.path().join("x")).is_direct(), supported);
        assert!(!buffered(&dir.path().join("y")).is_direct());
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            if let Ok(dir) = tempfile::tempdir_in(shm) {
                let pieces = [vec![7u8; CHUNK + 3], vec![8u8; 10]];
                round_trip(&dir.path().join("tmpfs"), direct, &pieces);
            }
        }
    }

    /// A "direct" handle whose writes fail with EINVAL (what a filesystem
    /// that refuses the alignment returns): the file is still complete,
    /// written through the page cache.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_refused_direct_write_falls_back_to_the_page_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out");
        // Not a number: the kernel refuses every write with EINVAL.
        let refusing = OpenOptions::new().write(true).open("/proc/self/oom_score_adj");
        let Ok(refusing) = refusing else { return };
        assert_eq!(
            refusing.write_at(&[b'x'; ALIGN], 0).map_err(|e| e.raw_os_error()),
            Err(Some(libc::EINVAL))
        );
        let piped = |p: &Path| {
            PipedFile::start(Target {
                direct: Some(refusing.try_clone().expect("clone")),
                buffered: File::create(p).expect("create"),
            })
            .expect("pipe")
        };
        let pieces = [vec![3u8; 2 * CHUNK + 100], vec![4u8; CHUNK]];
        round_trip(&path, piped, &pieces);
    }

    #[test]
    fn a_write_error_on_the_helper_reaches_the_exporter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ro");
        std::fs::write(&path, b"").expect("create");
        // Read-only: every write of the helper fails with EBADF.
        let file = File::open(&path).expect("open");
        let mut piped = PipedFile::new(file).expect("pipe");
        let chunk = vec![b'x'; CHUNK];
        let mut failed = None;
        for _ in 0..2 * IN_FLIGHT + 4 {
            if let Err(e) = piped.write_all(&chunk) {
                failed = Some(e);
                break;
            }
        }
        let err = match failed {
            Some(e) => e,
            None => piped.finish().expect_err("finish must fail"),
        };
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
    }

    #[test]
    fn dropping_without_finish_stops_the_helper() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out");
        let mut piped = direct(&path);
        piped.write_all(&vec![1u8; 3 * CHUNK]).expect("write");
        drop(piped);
        // The chunks handed over were written; the helper is gone.
        assert!(std::fs::metadata(&path).expect("stat").len() >= 3 * CHUNK as u64);
    }
}
