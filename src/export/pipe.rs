//! A file written on a helper thread, for export builds.
//!
//! The exporter formats rows while the helper copies full chunks into the
//! page cache and flushes them to disk (`fdatasync`) every [`SYNC_EVERY`]
//! bytes. Without it, a build formats, then waits for the `write` copies,
//! then waits at the final `fsync` for the whole file (557 MB for a million
//! rows) to reach the disk: the three happen one after another. With it,
//! they overlap, and the final `fsync` only flushes the tail.
//!
//! Memory stays bounded: at most [`IN_FLIGHT`] chunks of [`CHUNK`] bytes
//! wait for the helper (the exporter blocks when they are all taken).

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Bytes handed to the helper at a time.
pub const CHUNK: usize = 256 << 10;
/// Chunks that may wait for the helper.
pub const IN_FLIGHT: usize = 16;
/// The helper flushes to disk after writing this many bytes.
pub const SYNC_EVERY: u64 = 16 << 20;

/// A [`Write`] to a file whose writes and periodic syncs run on a helper
/// thread. [`PipedFile::finish`] returns the file once everything handed
/// over is written (not yet synced: the caller's `sync_all` does that).
/// A write error on the helper is returned by the next `write` or by
/// `finish`.
#[derive(Debug)]
pub struct PipedFile {
    chunk: Vec<u8>,
    to_helper: Option<SyncSender<Vec<u8>>>,
    spare: Receiver<Vec<u8>>,
    helper: Option<JoinHandle<io::Result<File>>>,
}

impl PipedFile {
    pub fn new(file: File) -> io::Result<Self> {
        let (to_helper, chunks) = mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT);
        let (give_back, spare) = mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT + 1);
        let helper = std::thread::Builder::new()
            .name("auditstore-export-writer".into())
            .spawn(move || write_chunks(file, chunks, give_back))?;
        Ok(PipedFile {
            chunk: Vec::with_capacity(CHUNK),
            to_helper: Some(to_helper),
            spare,
            helper: Some(helper),
        })
    }

    /// Hand the current chunk to the helper.
    fn hand_over(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
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

    fn join(&mut self) -> io::Result<File> {
        self.to_helper = None;
        match self.helper.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("export writer panicked"))),
            None => Err(io::Error::other("export writer already finished")),
        }
    }

    /// Write what is left and return the file (written, not synced).
    pub fn finish(mut self) -> io::Result<File> {
        self.hand_over()?;
        self.join()
    }
}

impl Write for PipedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.chunk.extend_from_slice(buf);
        if self.chunk.len() >= CHUNK {
            self.hand_over()?;
        }
        Ok(buf.len())
    }

    /// Hands the buffered bytes over; does not wait for them to be written.
    fn flush(&mut self) -> io::Result<()> {
        self.hand_over()
    }
}

impl Drop for PipedFile {
    fn drop(&mut self) {
        if self.helper.is_some() {
            let _ = self.join();
        }
    }
}

/// The helper: write each chunk in order, `fdatasync` every [`SYNC_EVERY`]
/// bytes, give emptied chunks back for reuse.
fn write_chunks(file: File, chunks: Receiver<Vec<u8>>, give_back: SyncSender<Vec<u8>>) -> io::Result<File> {
    let mut unsynced = 0u64;
    for mut chunk in chunks {
        (&file).write_all(&chunk)?;
        unsynced += chunk.len() as u64;
        if unsynced >= SYNC_EVERY {
            file.sync_data()?;
            unsynced = 0;
        }
        chunk.clear();
        let _ = give_back.try_send(chunk);
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_in_order_whatever_the_write_sizes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out");
        let mut piped = PipedFile::new(File::create(&path).expect("create")).expect("pipe");
        let mut expected = Vec::new();
        let mut i = 0u32;
        // ~40 MB in writes from 1 byte to ~300 KB: many chunks, two syncs.
        while expected.len() < 40 << 20 {
            let len = (i as usize * 7919) % 300_000 + 1;
            let piece: Vec<u8> = (0..len).map(|j| (j as u32 ^ i) as u8).collect();
            piped.write_all(&piece).expect("write");
            expected.extend_from_slice(&piece);
            i += 1;
        }
        let file = piped.finish().expect("finish");
        drop(file);
        assert_eq!(std::fs::read(&path).expect("read"), expected);
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
        let mut piped = PipedFile::new(File::create(&path).expect("create")).expect("pipe");
        piped.write_all(&vec![1u8; 3 * CHUNK]).expect("write");
        drop(piped);
        // The chunks handed over were written; the helper is gone.
        assert!(std::fs::metadata(&path).expect("stat").len() >= 3 * CHUNK as u64);
    }
}
