//! Building one request's CSV file: scan the padded window (clamped to the
//! organization's retention as of completion) through the time index,
//! stream it through [`CsvSink`] into `exports/<id>.csv.tmp` (written and
//! synced as it grows by a helper thread: [`PipedFile`]), fsync, rename
//! to `exports/<id>.csv`, fsync the directory. Memory stays bounded (one
//! row, the CSV buffer and the helper's chunks: ~5 MiB) whatever the size
//! of the export.
//!
//! An empty window creates no file. A failure removes the temporary file.
//! A crash leaves at most a `.csv.tmp`, which the next processing run
//! removes before it builds again: no partial file is ever under the final
//! name.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use crate::export::csv::CsvSink;
use crate::export::error::{self, ExportError};
use crate::export::pipe::PipedFile;
use crate::export::request::ExportRequest;
use crate::log::segment::sync_dir;
use crate::scan::{Query, Scan};
use crate::store::Store;
use crate::time::Timestamp;

/// Name of the directory (inside the store's) holding export files.
pub const EXPORTS_DIR: &str = "exports";
/// Rows between two progress reports.
pub const PROGRESS_EVERY: u64 = 65_536;

/// Progress of a CSV build, reported every [`PROGRESS_EVERY`] rows and once
/// at the end (`done`).
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Built {
    pub rows: u64,
    pub bytes: u64,
}

/// `exports/<id>.csv`
pub(crate) fn final_path(dir: &Path, id: &Uuid) -> PathBuf {
    dir.join(format!("{}.csv", id.hyphenated()))
}

/// `exports/<id>.csv.tmp`
pub(crate) fn tmp_path(dir: &Path, id: &Uuid) -> PathBuf {
    dir.join(format!("{}.csv.tmp", id.hyphenated()))
}

/// Reports the progress of one file to the optional callback.
struct Reporter<'a> {
    progress: Option<&'a ProgressFn>,
    request: Option<Uuid>,
    org: &'a str,
}

impl Reporter<'_> {
    fn tick(&self, rows: u64, done: bool) {
        if let Some(f) = self.progress {
            f(&Progress {
                request: self.request,
                org: self.org,
                rows,
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

/// Build the file of `req` in `dir` as of `now` (retention is applied as of
/// `now`). On error the temporary file is removed and nothing is renamed.
pub(crate) fn build(
    store: &Store,
    dir: &Path,
    req: &ExportRequest,
    now: Timestamp,
    progress: Option<&ProgressFn>,
) -> Result<Built, ExportError> {
    let tmp = tmp_path(dir, &req.id);
    let result = build_inner(store, dir, req, now, progress, &tmp);
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
    progress: Option<&ProgressFn>,
    tmp: &Path,
) -> Result<Built, ExportError> {
    let query = Query::new(&req.org, req.window_start, req.window_end).as_of(now);
    let mut scan = store.scan(&query)?;
    let reporter = Reporter {
        progress,
        request: Some(req.id),
        org: &req.org,
    };
    let final_path = final_path(dir, &req.id);
    // The file is created with the first row: an empty window has none.
    let first = scan.next_with(|v| -> Result<CsvSink<PipedFile>, ExportError> {
        let f = File::create(tmp).map_err(|e| error::io(format!("create {}", tmp.display()), e))?;
        let piped = PipedFile::new(f).map_err(|e| error::io("start the export writer thread", e))?;
        let mut sink = CsvSink::new(piped)?;
        sink.write_record(v)?;
        Ok(sink)
    });
    let Some(first) = first else {
        // No event: success without data, and no file (not even a stale
        // one from an earlier, interrupted run).
        if remove_if_exists(&final_path)? {
            sync_dir(dir)?;
        }
        reporter.tick(0, true);
        return Ok(Built { rows: 0, bytes: 0 });
    };
    let mut sink = first??;
    drain(&mut scan, &mut sink, &reporter)?;
    let rows = sink.rows();
    let file = sink
        .finish()?
        .finish()
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
    reporter.tick(rows, true);
    Ok(Built { rows, bytes })
}

/// Stream every event of `scan` into `out` as CSV (header included, even
/// when there is no row); returns the row count.
pub(crate) fn stream_all<W: Write>(
    scan: &mut Scan,
    out: W,
    org: &str,
    progress: Option<&ProgressFn>,
) -> Result<u64, ExportError> {
    let mut sink = CsvSink::new(out)?;
    let reporter = Reporter {
        progress,
        request: None,
        org,
    };
    drain(scan, &mut sink, &reporter)?;
    let rows = sink.rows();
    let mut out = sink.finish()?;
    out.flush().map_err(|e| error::io("flush the CSV output", e))?;
    reporter.tick(rows, true);
    Ok(rows)
}

/// Write the rest of `scan` into `sink`, reporting progress.
fn drain<W: Write>(
    scan: &mut Scan,
    sink: &mut CsvSink<W>,
    reporter: &Reporter<'_>,
) -> Result<(), ExportError> {
    while let Some(r) = scan.next_with(|v| sink.write_record(v)) {
        r??;
        if sink.rows() % PROGRESS_EVERY == 0 {
            reporter.tick(sink.rows(), false);
        }
    }
    Ok(())
}
