//! Building one request's CSV file: scan the padded window (clamped to the
//! organization's retention as of completion) through the time index,
//! format its rows (on several threads when it is long: [`rows`]) into
//! `exports/<id>.csv.tmp` (written by a helper thread, straight to the
//! disk where the filesystem allows: [`PipedFile`]), fsync, rename to
//! `exports/<id>.csv`, fsync the directory. Memory stays bounded (the
//! slices formatted ahead and the helper's chunks: ~10 MiB) whatever the
//! size of the export.
//!
//! An empty window creates no file. A failure removes the temporary file.
//! A crash leaves at most a `.csv.tmp`, which the next processing run
//! removes before it builds again: no partial file is ever under the final
//! name.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::export::csv;
use crate::export::error::{self, ExportError};
use crate::export::pipe::PipedFile;
use crate::export::request::ExportRequest;
use crate::export::rows::{self, RowLeaf};
use crate::log::segment::sync_dir;
use crate::scan::{Query, Scan};
use crate::store::Store;
use crate::time::Timestamp;

pub use crate::store::EXPORTS_DIR;
/// Rows between two progress reports.
pub const PROGRESS_EVERY: u64 = 65_536;

/// Progress of a CSV build, reported each time the row count passes a
/// multiple of [`PROGRESS_EVERY`] (rows are counted a chunk at a time, so
/// the count may be a little past it) and once at the end (`done`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress<'a> {
    /// The request being built (`None` for a full export).
    pub request: Option<Uuid>,
    pub org: &'a str,
    pub rows: u64,
    pub done: bool,
}

/// A progress callback (e.g. the admin tool's progress bar).
pub type ProgressFn = Arc<dyn Fn(&Progress<'_>) + Send + Sync>;

/// What a build produced: `rows == 0` means no file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Built {
    pub rows: u64,
    pub bytes: u64,
    /// CRC-32 of the file's bytes (computed by the writer thread as it
    /// wrote them; 0 without a file).
    pub crc32: u32,
    /// Hex SHA-256 of the file's bytes, and each row's leaf, when the store
    /// keeps the tamper-evidence tree (for the manifest); else empty.
    pub sha256: String,
    pub leaves: Vec<RowLeaf>,
}

/// `exports/<id>.csv`
pub(crate) fn final_path(dir: &Path, id: &Uuid) -> PathBuf {
    dir.join(format!("{}.csv", id.hyphenated()))
}

/// The finished files `exports/<id>.csv` in `dir` (named by a request id),
/// with their ids; a missing directory holds none.
pub(crate) fn finished_files(dir: &Path) -> Result<Vec<(Uuid, PathBuf)>, ExportError> {
    let list_error = |e| error::io(format!("list {}", dir.display()), e);
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(list_error(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(list_error)?;
        let name = entry.file_name();
        let id = name
            .to_str()
            .and_then(|n| n.strip_suffix(".csv"))
            .and_then(|stem| Uuid::parse_str(stem).ok());
        if let Some(id) = id {
            files.push((id, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// `exports/<id>.csv.tmp`
pub(crate) fn tmp_path(dir: &Path, id: &Uuid) -> PathBuf {
    dir.join(format!("{}.csv.tmp", id.hyphenated()))
}

/// Counts the rows of one file and reports them to the optional callback
/// each time the count passes a multiple of [`PROGRESS_EVERY`].
struct Reporter<'a> {
    progress: Option<&'a ProgressFn>,
    request: Option<Uuid>,
    org: &'a str,
    rows: u64,
}

impl Reporter<'_> {
    fn add(&mut self, rows: u64) {
        let before = self.rows;
        self.rows += rows;
        if self.rows / PROGRESS_EVERY > before / PROGRESS_EVERY {
            self.tick(false);
        }
    }

    fn done(&self) {
        self.tick(true);
    }

    fn tick(&self, done: bool) {
        if let Some(f) = self.progress {
            f(&Progress {
                request: self.request,
                org: self.org,
                rows: self.rows,
                done,
            });
        }
    }
}

/// Remove `path` if it exists.
pub(crate) fn remove_if_exists(path: &Path) -> Result<bool, ExportError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(error::io(format!("remove {}", path.display()), e)),
    }
}

/// How rows are formatted and progress reported, for every build.
#[derive(Clone, Copy)]
pub(crate) struct Formatting<'a> {
    pub progress: Option<&'a ProgressFn>,
    /// Formatter threads for a long export ([`rows::format_rows`]).
    pub threads: usize,
}

/// Build the file of `req` in `dir` as of `now` (retention is applied as of
/// `now`). On error the temporary file is removed and nothing is renamed.
pub(crate) fn build(
    store: &Store,
    dir: &Path,
    req: &ExportRequest,
    now: Timestamp,
    how: Formatting<'_>,
) -> Result<Built, ExportError> {
    let tmp = tmp_path(dir, &req.id);
    let result = build_inner(store, dir, req, now, how, &tmp);
    if result.is_err() {
        // Best effort: the next processing run sweeps it anyway.
        let _ = remove_if_exists(&tmp);
    }
    result
}

fn build_inner(
    store: &Store,
    dir: &Path,
    req: &ExportRequest,
    now: Timestamp,
    how: Formatting<'_>,
    tmp: &Path,
) -> Result<Built, ExportError> {
    let query = Query::new(&req.org, req.window_start, req.window_end).as_of(now);
    let scan = store.scan(&query)?;
    let mut reporter = Reporter {
        progress: how.progress,
        request: Some(req.id),
        org: &req.org,
        rows: 0,
    };
    let final_path = final_path(dir, &req.id);
    let manifest = store.keeps_tree();
    let mut sha = Sha256::new();
    let mut leaves = Vec::new();
    // The file is created with the first row: an empty window has none.
    let mut out: Option<PipedFile> = None;
    rows::format_rows(scan, how.threads, rows::PARALLEL_MIN_ROWS, manifest, |chunk| {
        let w = match &mut out {
            Some(w) => w,
            None => {
                let mut piped =
                    PipedFile::create(tmp).map_err(|e| error::io(format!("create {}", tmp.display()), e))?;
                let header = csv::header();
                piped
                    .write_all(&header)
                    .map_err(|e| error::io(format!("write {}", tmp.display()), e))?;
                if manifest {
                    sha.update(&header);
                }
                out.insert(piped)
            }
        };
        w.write_all(chunk.bytes)
            .map_err(|e| error::io(format!("write {}", tmp.display()), e))?;
        if manifest {
            sha.update(chunk.bytes);
            leaves.extend_from_slice(chunk.leaves);
        }
        reporter.add(chunk.rows);
        Ok(())
    })?;
    let Some(piped) = out else {
        // No event: success without data, and no file (not even a stale
        // one from an earlier, interrupted run).
        if remove_if_exists(&final_path)? {
            sync_dir(dir)?;
        }
        reporter.done();
        return Ok(Built {
            rows: 0,
            bytes: 0,
            crc32: 0,
            sha256: String::new(),
            leaves: Vec::new(),
        });
    };
    let (file, crc32) = piped
        .finish_with_crc32()
        .map_err(|e| error::io(format!("write {}", tmp.display()), e))?;
    file.sync_all()
        .map_err(|e| error::io(format!("fsync {}", tmp.display()), e))?;
    let bytes = file
        .metadata()
        .map_err(|e| error::io(format!("stat {}", tmp.display()), e))?
        .len();
    drop(file);
    std::fs::rename(tmp, &final_path)
        .map_err(|e| error::io(format!("rename {} to {}", tmp.display(), final_path.display()), e))?;
    sync_dir(dir)?;
    reporter.done();
    Ok(Built {
        rows: reporter.rows,
        bytes,
        crc32,
        sha256: if manifest {
            crate::hex::encode(&sha.finalize())
        } else {
            String::new()
        },
        leaves,
    })
}

/// Stream every event of `scan` into `out` as CSV (header included, even
/// when there is no row); returns the row count.
pub(crate) fn stream_all<W: Write>(
    scan: Scan,
    mut out: W,
    org: &str,
    how: Formatting<'_>,
) -> Result<u64, ExportError> {
    let mut reporter = Reporter {
        progress: how.progress,
        request: None,
        org,
        rows: 0,
    };
    let write_err = |e| error::io("write the CSV output", e);
    out.write_all(&csv::header()).map_err(write_err)?;
    rows::format_rows(scan, how.threads, rows::PARALLEL_MIN_ROWS, false, |chunk| {
        out.write_all(chunk.bytes).map_err(write_err)?;
        reporter.add(chunk.rows);
        Ok(())
    })?;
    out.flush().map_err(write_err)?;
    reporter.done();
    Ok(reporter.rows)
}
