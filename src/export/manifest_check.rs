//! Checking an export file against its manifest offline (`export verify`):
//! with the file, the manifest and the store's verifier key, and nothing
//! else, show that every row is an event the signed log holds, unaltered,
//! and that the file is the one the store built. docs/exports.md says what
//! this does not show.
//!
//! Steps, each a [`CheckError`] naming what failed and where:
//! 1. the manifest's signature (by the key named by its origin), then the
//!    checkpoint's, by the same key;
//! 2. the file's size and SHA-256;
//! 3. the header, then every row: rebuilt into the event `get` prints,
//!    its leaf hash computed (RFC 8785 of `{"org", "event"}`, on every
//!    core), its time in the covered window, rows in (occurred_at, id)
//!    order;
//! 4. the row count, and one batch inclusion proof of every row's leaf at
//!    its leaf index in the checkpoint's tree.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::event::Event;
use crate::export::csv::COLUMNS;
use crate::export::manifest::{Manifest, ManifestError};
use crate::integrity::leaf::{fast_leaf_hash, LeafParts};
use crate::integrity::{batch_root, event_leaf_hash, Checkpoint, Hash, VerifierKey};
use crate::time::Timestamp;

/// Why an export file does not check out.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("manifest checkpoint: {0}")]
    Checkpoint(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the file is {got} bytes; the manifest says {expected}")]
    Size { got: u64, expected: u64 },
    #[error("the file's SHA-256 is {got}; the manifest says {expected}: the file was changed")]
    FileHash { got: String, expected: String },
    #[error("line {line}: {reason}")]
    Row { line: u64, reason: String },
    #[error("the file has {got} rows; the manifest lists {expected}")]
    RowCount { got: u64, expected: u64 },
    #[error("the rows are not the log's: {0}")]
    NotInLog(String),
}

/// What a good export file was shown to be.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Checked {
    pub export_id: String,
    pub org: String,
    pub rows: u64,
    pub tree_size: u64,
    pub sequence: u64,
    pub previous_manifest_sha256: Option<String>,
    /// Hex SHA-256 of the manifest file (the next manifest's
    /// `previous_manifest_sha256`).
    pub manifest_sha256: String,
}

/// Checks the export file `csv` against the manifest file's bytes with
/// `key` (see the module documentation).
pub fn check_export(csv: &Path, manifest_bytes: &[u8], key: &VerifierKey) -> Result<Checked, CheckError> {
    let manifest = Manifest::parse(manifest_bytes)?;
    manifest.check_signature(key)?;
    let cp = Checkpoint::open(&manifest.checkpoint, key, &manifest.origin)
        .map_err(|e| CheckError::Checkpoint(e.to_string()))?;
    let io = |source| CheckError::Io {
        path: csv.display().to_string(),
        source,
    };
    let file = File::open(csv).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size != manifest.file.bytes {
        return Err(CheckError::Size {
            got: size,
            expected: manifest.file.bytes,
        });
    }
    // The file's SHA-256 as the CSV reader reads it: one read of the file.
    let mut hashing = HashingReader {
        inner: BufReader::with_capacity(1 << 20, file),
        sha: Sha256::new(),
    };
    let leaves = row_leaves(&mut hashing, &manifest)?;
    // Whatever the CSV reader left unread still belongs to the file.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(io)?;
    let got = crate::hex::encode(&hashing.sha.finalize());
    if got != manifest.file.sha256 {
        return Err(CheckError::FileHash {
            got,
            expected: manifest.file.sha256.clone(),
        });
    }
    let rows = leaves.len() as u64;
    if rows != manifest.file.rows || leaves.len() != manifest.leaf_indexes.len() {
        return Err(CheckError::RowCount {
            got: rows,
            expected: manifest.leaf_indexes.len() as u64,
        });
    }
    let mut by_index: Vec<(u64, Hash)> = manifest.leaf_indexes.iter().copied().zip(leaves).collect();
    by_index.sort_unstable_by_key(|(i, _)| *i);
    let root = batch_root(&by_index, cp.size, &manifest.inclusion_hashes()?)
        .map_err(|e| CheckError::NotInLog(e.to_string()))?;
    if root != cp.root {
        return Err(CheckError::NotInLog(format!(
            "the rows' leaves do not lead to the root of the signed tree of {} leaves: \
             a row was changed, added, removed or moved",
            cp.size
        )));
    }
    Ok(Checked {
        export_id: manifest.export_id,
        org: manifest.org,
        rows,
        tree_size: cp.size,
        sequence: manifest.sequence,
        previous_manifest_sha256: manifest.previous_manifest_sha256,
        manifest_sha256: crate::export::manifest::hex_sha256(manifest_bytes),
    })
}

/// Rows handed to a hashing thread at a time.
const BATCH: usize = 2048;

/// A row's instant, id and leaf hash.
type RowLeafOf = (Timestamp, Uuid, Hash);

/// Every row's leaf hash, in row order, checking the header, each row's
/// window and the rows' order. One thread reads and parses the CSV (and
/// so hashes the file, through `input`); the rows' leaves are computed on
/// as many threads as there are cores, in batches, and checked here in row
/// order. The first bad row by line is the one reported.
fn row_leaves<R: Read + Send>(input: R, manifest: &Manifest) -> Result<Vec<Hash>, CheckError> {
    let when = |field: &str, s: &str| {
        Timestamp::parse_rfc3339(s).map_err(|e| ManifestError::Malformed(format!("{field}: {e}")))
    };
    let from = when("covered_from", &manifest.covered_from)?;
    let to = when("window_end", &manifest.window_end)?;
    let org = manifest.org.as_str();
    // Every core (one worker fewer measured slower on 2 cores, though the
    // reader and the file's hashing run beside them).
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let stop = AtomicBool::new(false);
    let (batch_tx, batch_rx) = mpsc::sync_channel::<(u64, Rows)>(workers * 2);
    let batch_rx = Mutex::new(batch_rx);
    let (done_tx, done_rx) = mpsc::channel::<(u64, Result<Vec<RowLeafOf>, CheckError>)>();
    std::thread::scope(|s| {
        for _ in 0..workers {
            let (batch_rx, done_tx) = (&batch_rx, done_tx.clone());
            s.spawn(move || loop {
                let next = batch_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                let Ok((first, rows)) = next else { return };
                let _ = done_tx.send((first, leaves_of(org, first, rows)));
            });
        }
        drop(done_tx);
        let stop = &stop;
        let reader = s.spawn(move || read_rows(input, batch_tx, stop));
        let mut leaves = Vec::with_capacity(manifest.leaf_indexes.len());
        let checked = (|| {
            let mut pending = BTreeMap::new();
            let mut next_line = 2u64;
            let mut last: Option<(Timestamp, Uuid)> = None;
            for (first, rows) in done_rx.iter() {
                pending.insert(first, rows);
                while let Some(rows) = pending.remove(&next_line) {
                    let rows = rows?;
                    for (k, (at, id, leaf)) in rows.iter().enumerate() {
                        let line = next_line + k as u64;
                        if *at < from || *at >= to {
                            return Err(CheckError::Row {
                                line,
                                reason: format!(
                                    "occurred_at {at} is outside the export's window [{from}, {to})"
                                ),
                            });
                        }
                        if last.is_some_and(|prev| prev >= (*at, *id)) {
                            return Err(CheckError::Row {
                                line,
                                reason: "rows are not in (occurred_at, id) order".into(),
                            });
                        }
                        last = Some((*at, *id));
                        leaves.push(*leaf);
                    }
                    next_line += rows.len() as u64;
                }
            }
            Ok(())
        })();
        if checked.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        drop(done_rx);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(CheckError::NotInLog("the CSV reader thread panicked".into())));
        checked?;
        read?;
        Ok(leaves)
    })
}

/// A batch of rows: their cells back to back, and where each cell ends.
/// Two buffers per batch, not two per row: the rows are made on the
/// reader's thread and dropped on a worker's.
#[derive(Default)]
struct Rows {
    bytes: Vec<u8>,
    /// Per row, the end of each of its cells in `bytes`, after the row's
    /// cell count.
    ends: Vec<usize>,
    count: usize,
}

impl Rows {
    fn push(&mut self, record: &csv::ByteRecord) {
        self.ends.push(record.len());
        for cell in record.iter() {
            self.bytes.extend_from_slice(cell);
            self.ends.push(self.bytes.len());
        }
        self.count += 1;
    }

    /// Each row's cells, in order.
    fn each<'a>(&'a self, mut f: impl FnMut(&[&'a [u8]])) {
        let mut cells: Vec<&'a [u8]> = Vec::with_capacity(COLUMNS.len());
        let (mut k, mut from) = (0, 0);
        while let Some(&n) = self.ends.get(k) {
            cells.clear();
            for &end in self.ends.get(k + 1..k + 1 + n).unwrap_or_default() {
                cells.push(self.bytes.get(from..end).unwrap_or_default());
                from = end;
            }
            k += 1 + n;
            f(&cells);
        }
    }
}

/// Reads the header and the rows, sending them in batches (each with its
/// first line number) until the file ends or `stop` is set.
fn read_rows<R: Read>(
    input: R,
    batches: mpsc::SyncSender<(u64, Rows)>,
    stop: &AtomicBool,
) -> Result<(), CheckError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(input);
    let read = |reader: &mut csv::Reader<R>, record: &mut csv::ByteRecord, line: u64| {
        reader.read_byte_record(record).map_err(|e| CheckError::Row {
            line,
            reason: format!("not CSV: {e}"),
        })
    };
    let mut record = csv::ByteRecord::new();
    if !read(&mut reader, &mut record, 1)? || !record.iter().eq(COLUMNS.iter().map(|c| c.as_bytes())) {
        return Err(CheckError::Row {
            line: 1,
            reason: format!("the header is not {}", COLUMNS.join(",")),
        });
    }
    let mut line = 1u64;
    while !stop.load(Ordering::Relaxed) {
        let first = line + 1;
        let mut rows = Rows {
            bytes: Vec::with_capacity(BATCH * 640),
            ends: Vec::with_capacity(BATCH * (COLUMNS.len() + 1)),
            count: 0,
        };
        while rows.count < BATCH && read(&mut reader, &mut record, line + 1)? {
            line += 1;
            rows.push(&record);
        }
        let ended = rows.count < BATCH;
        if rows.count > 0 && batches.send((first, rows)).is_err() {
            break;
        }
        if ended {
            break;
        }
    }
    Ok(())
}

/// The instants, ids and leaves of rows from line `first` on.
fn leaves_of(org: &str, first: u64, rows: Rows) -> Result<Vec<RowLeafOf>, CheckError> {
    let mut json = String::new();
    let mut out = Vec::with_capacity(rows.count);
    let mut texts: Vec<&str> = Vec::with_capacity(COLUMNS.len());
    let mut failed = None;
    rows.each(|cells| {
        if failed.is_some() {
            return;
        }
        let line = first + out.len() as u64;
        let row_err = |reason: String| CheckError::Row { line, reason };
        texts.clear();
        for (column, cell) in cells.iter().enumerate() {
            match std::str::from_utf8(cell) {
                Ok(text) => texts.push(text),
                Err(e) => {
                    failed = Some(row_err(format!(
                        "not UTF-8: invalid UTF-8 in field {column} near byte index {}",
                        e.valid_up_to()
                    )));
                    return;
                }
            }
        }
        let leaf = match fast_row_leaf(org, &texts) {
            Some(fast) => Ok(fast),
            None => event_of_row(&texts, &mut json)
                .map_err(row_err)
                .and_then(|event| {
                    let leaf = event_leaf_hash(org, &event).map_err(|e| row_err(e.to_string()))?;
                    Ok((event.occurred_at(), event.id(), leaf))
                }),
        };
        match leaf {
            Ok(leaf) => out.push(leaf),
            Err(e) => failed = Some(e),
        }
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// A row's instant, id and leaf hash straight from its cells (the leaf
/// data's fast path), without making the event; `None` for a row only the
/// general path ([`event_of_row`]) can answer for (or refuse). A row whose
/// cells are not the event's as the export writes them cannot hash to a
/// leaf of the log, so what the event's own rules would refuse fails here
/// as a leaf not in the tree.
fn fast_row_leaf(org: &str, r: &[&str]) -> Option<(Timestamp, Uuid, Hash)> {
    if r.len() != COLUMNS.len() {
        return None;
    }
    let cell = |i: usize| r.get(i).copied().unwrap_or_default();
    let nested = |i: usize| Some(cell(i)).filter(|c| !c.is_empty());
    let id = Uuid::parse_str(cell(0)).ok()?;
    let occurred_at = Timestamp::parse_rfc3339(cell(5)).ok()?;
    let version = cell(7);
    if version.is_empty() || version.starts_with('0') || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let parts = LeafParts {
        org,
        id,
        action: cell(1),
        actor: nested(2)?,
        target: nested(3)?,
        payload: nested(4)?,
        occurred_at,
        metadata: nested(6)?,
        version: version.parse().ok()?,
        scope: nested(8),
        success: match cell(9) {
            "true" => true,
            "false" => false,
            _ => return None,
        },
        request: nested(10),
    };
    Some((occurred_at, id, fast_leaf_hash(&parts)?))
}

/// The event a CSV row was made from: the cells back into the JSON object
/// `get` prints (an empty optional cell is an absent field).
fn event_of_row(record: &[&str], json: &mut String) -> Result<Event, String> {
    if record.len() != COLUMNS.len() {
        return Err(format!("{} cells; a row has {}", record.len(), COLUMNS.len()));
    }
    json.clear();
    json.push('{');
    for (i, (column, cell)) in COLUMNS.iter().zip(record.iter()).enumerate() {
        let raw = matches!(
            *column,
            "actor" | "target" | "payload" | "metadata" | "scope" | "request" | "version" | "success"
        );
        if cell.is_empty() && i > 0 {
            continue;
        }
        if json.len() > 1 {
            json.push(',');
        }
        json.push('"');
        json.push_str(column);
        json.push_str("\":");
        if raw {
            json.push_str(cell);
        } else {
            json.push_str(&serde_json::Value::String((*cell).to_owned()).to_string());
        }
    }
    json.push('}');
    Event::from_json(json).map_err(|e| format!("not an event: {e}"))
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    sha: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}
