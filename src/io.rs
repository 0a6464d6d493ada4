//! The file operations the engine's write path makes, behind a trait so
//! tests can inject faults (failed or short writes, a full disk, failed
//! fsyncs, failed renames) at a chosen operation.
//!
//! [`RealIo`] is the default. [`FaultyIo`] wraps it and fails one chosen
//! operation; it is public so that integration tests and embedders' own
//! tests can use it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// File operations of the write path.
pub trait Io: Send + Sync + std::fmt::Debug {
    /// Write all of `buf` at `offset`.
    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()>;
    /// `fdatasync`.
    fn sync_data(&self, file: &File) -> io::Result<()>;
    /// `fsync` (data and metadata).
    fn sync_all(&self, file: &File) -> io::Result<()>;
    /// `ftruncate`.
    fn set_len(&self, file: &File, len: u64) -> io::Result<()>;
    /// `rename`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// fsync a directory.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Allocate disk space for the file up to `len` bytes (`fallocate`,
    /// extending the size; the new range reads as zeros).
    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        fs4::FileExt::allocate(file, len)
    }
    /// Write `len` zero bytes at `offset` (space claimed ahead of the data,
    /// apart from [`Io::write_at`] so that faults can aim at either).
    fn write_zeros(&self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        let mut at = offset;
        let end = offset + len;
        while at < end {
            let n = ZEROS.len().min((end - at) as usize);
            file.write_all_at(&ZEROS[..n], at)?;
            at += n as u64;
        }
        Ok(())
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealIo;

impl Io for RealIo {
    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(buf, offset)
    }
    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }
    fn sync_all(&self, file: &File) -> io::Result<()> {
        file.sync_all()
    }
    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// Which operation to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    Write,
    Sync,
    SetLen,
    Rename,
    SyncDir,
    /// Allocating space ahead (`fallocate`).
    Allocate,
    /// Writing zeros ahead of the data.
    WriteZeros,
}

/// How it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The call fails with EIO and writes nothing.
    Error,
    /// The disk is full (ENOSPC); a write stores nothing.
    NoSpace,
    /// A write stores only its first half, then fails with EIO.
    ShortWrite,
}

/// Fail the `nth` (0-based) call of `op` with `kind`; with `sticky`, every
/// later call of `op` fails too (a disk that stays full).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub op: FaultOp,
    pub nth: u64,
    pub kind: FaultKind,
    pub sticky: bool,
}

/// [`RealIo`] with planned faults.
#[derive(Debug)]
pub struct FaultyIo {
    plan: Mutex<Vec<Fault>>,
    counts: [AtomicU64; 7],
    injected: AtomicU64,
}

impl FaultyIo {
    pub fn new(faults: Vec<Fault>) -> Self {
        FaultyIo {
            plan: Mutex::new(faults),
            counts: Default::default(),
            injected: AtomicU64::new(0),
        }
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// Stop injecting faults.
    pub fn heal(&self) {
        self.plan.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn check(&self, op: FaultOp) -> Option<FaultKind> {
        let n = self.counts[op as usize].fetch_add(1, Ordering::SeqCst);
        let plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        let f = plan
            .iter()
            .find(|f| f.op == op && (n == f.nth || (f.sticky && n > f.nth)))?;
        self.injected.fetch_add(1, Ordering::SeqCst);
        Some(f.kind)
    }
}

fn injected(kind: FaultKind) -> io::Error {
    match kind {
        FaultKind::NoSpace => io::Error::from_raw_os_error(libc::ENOSPC),
        _ => io::Error::from_raw_os_error(libc::EIO),
    }
}

impl Io for FaultyIo {
    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        match self.check(FaultOp::Write) {
            None => RealIo.write_at(file, buf, offset),
            Some(FaultKind::ShortWrite) => {
                RealIo.write_at(file, &buf[..buf.len() / 2], offset)?;
                Err(injected(FaultKind::Error))
            }
            Some(k) => Err(injected(k)),
        }
    }
    fn sync_data(&self, file: &File) -> io::Result<()> {
        match self.check(FaultOp::Sync) {
            None => RealIo.sync_data(file),
            Some(k) => Err(injected(k)),
        }
    }
    fn sync_all(&self, file: &File) -> io::Result<()> {
        match self.check(FaultOp::Sync) {
            None => RealIo.sync_all(file),
            Some(k) => Err(injected(k)),
        }
    }
    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        match self.check(FaultOp::SetLen) {
            None => RealIo.set_len(file, len),
            Some(k) => Err(injected(k)),
        }
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self.check(FaultOp::Rename) {
            None => RealIo.rename(from, to),
            Some(k) => Err(injected(k)),
        }
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        match self.check(FaultOp::SyncDir) {
            None => RealIo.sync_dir(dir),
            Some(k) => Err(injected(k)),
        }
    }
    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        match self.check(FaultOp::Allocate) {
            None => RealIo.allocate(file, len),
            Some(k) => Err(injected(k)),
        }
    }
    fn write_zeros(&self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        match self.check(FaultOp::WriteZeros) {
            None => RealIo.write_zeros(file, offset, len),
            Some(FaultKind::ShortWrite) => {
                RealIo.write_zeros(file, offset, len / 2)?;
                Err(injected(FaultKind::Error))
            }
            Some(k) => Err(injected(k)),
        }
    }
}
