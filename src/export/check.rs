//! `verify`'s part for exports: the export files and the requests in the
//! metadata must agree, since a lost or older `meta.redb` shows first as a
//! file nobody requested, or a request whose file is gone; and a finished
//! file must still be what was written (its size and CRC-32), which
//! [`Exports::download`] checks too before serving it, and so must its
//! signed manifest (its SHA-256), which [`Exports::manifest`] checks too.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::export::error::{self, ExportError};
use crate::export::request::ExportRequest;
use crate::export::Exports;
use crate::export::{builder, manifest_build};
use crate::store::Problem;

/// Bytes read at a time when checking a file's CRC-32.
const CHECK_BUF: usize = 256 << 10;

/// Check the open export file of `req` at `path` against the size and
/// CRC-32 its request recorded (only the size for a request recorded
/// without a CRC), reading it once; leaves it positioned at its start.
/// A mismatch is `corrupt` naming the file (at the offset where the file
/// and the recorded size part ways for a size mismatch, 0 for a CRC one).
pub(crate) fn check_file(path: &Path, file: &mut File, req: &ExportRequest) -> Result<(), ExportError> {
    let ctx = |what: &str| format!("{what} {}", path.display());
    let len = file.metadata().map_err(|e| error::io(ctx("stat"), e))?.len();
    let corrupt =
        |offset, reason: String| -> ExportError { crate::Error::corrupt(path, offset, reason).into() };
    if let Some(want) = req.bytes.filter(|&want| want != len) {
        return Err(corrupt(
            want.min(len),
            format!(
                "export file of request {} is {len} bytes, {want} were written: truncated, extended or replaced",
                req.id
            ),
        ));
    }
    let Some(want) = req.crc32 else {
        return Ok(());
    };
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; CHECK_BUF];
    let mut read = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(error::io(ctx("read"), e)),
        };
        hasher.update(&buf[..n]);
        read += n as u64;
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| error::io(ctx("seek"), e))?;
    let got = hasher.finalize();
    if read != len {
        return Err(corrupt(
            read.min(len),
            format!(
                "export file of request {} changed size while being read ({len} -> {read} bytes)",
                req.id
            ),
        ));
    }
    if got != want {
        return Err(corrupt(
            0,
            format!(
                "export file of request {} has CRC-32 {got:08x}, {want:08x} was written: its bytes changed on disk",
                req.id
            ),
        ));
    }
    Ok(())
}

impl Exports<'_> {
    /// Every disagreement between the export files and the requests:
    /// - a finished file `exports/<id>.csv` whose request is unknown;
    /// - a request stored as `success` with data, not yet past its expiry,
    ///   whose file is missing, or whose size or CRC-32 differs from what
    ///   was written (each such file is read once), or whose manifest is
    ///   missing or not the bytes written.
    ///
    /// Reads only (files being built, `*.csv.tmp`, are not looked at).
    pub fn check_files(&self) -> Result<Vec<Problem>, ExportError> {
        let dir = self.dir();
        let now = self.now();
        let mut problems = Vec::new();
        let requests = self.registry().all()?;
        let known: std::collections::HashSet<Uuid> = requests.iter().map(|r| r.id).collect();
        for (id, path) in builder::finished_files(&dir)? {
            if !known.contains(&id) {
                problems.push(Problem {
                    leaf_index: None,
                    file: path,
                    offset: 0,
                    message: "export file without its request in the metadata (meta.redb lost or replaced \
                              by an older copy?)"
                        .into(),
                });
            }
        }
        for r in requests.iter().filter(|r| r.downloadable_at(now)) {
            let path: PathBuf = builder::final_path(&dir, &r.id);
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    problems.push(Problem {
                        leaf_index: None,
                        file: path,
                        offset: 0,
                        message: format!(
                            "export request {} of {} succeeded with {} row(s) but its file is missing",
                            r.id,
                            r.org,
                            r.rows.unwrap_or(0)
                        ),
                    });
                    continue;
                }
                Err(e) => return Err(error::io(format!("open {}", path.display()), e)),
            };
            match check_file(&path, &mut file, r) {
                Ok(()) => {}
                Err(ExportError::Store(crate::Error::Corrupt { path, offset, reason })) => {
                    problems.push(Problem {
                        leaf_index: None,
                        file: path,
                        offset,
                        message: reason,
                    })
                }
                Err(e) => return Err(e),
            }
            if let Some(problem) = check_manifest(&dir, r)? {
                problems.push(problem);
            }
        }
        Ok(problems)
    }
}

/// The problem with the manifest of `req`, if it recorded one: missing, or
/// not the bytes written (their SHA-256 differs from the recorded one).
fn check_manifest(dir: &Path, req: &ExportRequest) -> Result<Option<Problem>, ExportError> {
    let Some(want) = req.manifest_sha256.as_deref() else {
        return Ok(None);
    };
    let (file, offset, message) = match manifest_build::read_checked(dir, req, want) {
        Ok(_) => return Ok(None),
        Err(ExportError::Store(crate::Error::Corrupt { path, offset, reason })) => (path, offset, reason),
        Err(ExportError::Store(crate::Error::Io { source, .. }))
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            (
                manifest_build::manifest_path(dir, &req.id),
                0,
                format!(
                    "export request {} recorded a signed manifest but its file is missing",
                    req.id
                ),
            )
        }
        Err(e) => return Err(e),
    };
    Ok(Some(Problem {
        leaf_index: None,
        file,
        offset,
        message,
    }))
}
