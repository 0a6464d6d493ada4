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
//!    its leaf hash computed (RFC 8785 of `{"org", "event"}`), its time in
//!    the covered window, rows in (occurred_at, id) order;
//! 4. the row count, and one batch inclusion proof of every row's leaf at
//!    its leaf index in the checkpoint's tree.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::event::Event;
use crate::export::csv::COLUMNS;
use crate::export::manifest::{Manifest, ManifestError};
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

/// Every row's leaf hash, in row order, checking the header, each row's
/// window and the rows' order.
fn row_leaves(input: &mut impl Read, manifest: &Manifest) -> Result<Vec<Hash>, CheckError> {
    let when = |field: &str, s: &str| {
        Timestamp::parse_rfc3339(s).map_err(|e| ManifestError::Malformed(format!("{field}: {e}")))
    };
    let from = when("covered_from", &manifest.covered_from)?;
    let to = when("window_end", &manifest.window_end)?;
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(input);
    let mut record = csv::StringRecord::new();
    let row_err = |line: u64, reason: String| CheckError::Row { line, reason };
    let read = |reader: &mut csv::Reader<_>, record: &mut csv::StringRecord, line: u64| {
        reader
            .read_record(record)
            .map_err(|e| row_err(line, format!("not CSV: {e}")))
    };
    if !read(&mut reader, &mut record, 1)? || !record.iter().eq(COLUMNS.iter().copied()) {
        return Err(row_err(1, format!("the header is not {}", COLUMNS.join(","))));
    }
    let mut leaves = Vec::with_capacity(manifest.leaf_indexes.len());
    let mut last: Option<(Timestamp, String)> = None;
    let mut line = 1;
    let mut json = String::new();
    while read(&mut reader, &mut record, line + 1)? {
        line += 1;
        let event = event_of_row(&record, &mut json).map_err(|reason| row_err(line, reason))?;
        let at = event.occurred_at();
        if at < from || at >= to {
            return Err(row_err(
                line,
                format!("occurred_at {at} is outside the export's window [{from}, {to})"),
            ));
        }
        let key = (at, event.id().to_string());
        if last.as_ref().is_some_and(|prev| *prev >= key) {
            return Err(row_err(line, "rows are not in (occurred_at, id) order".into()));
        }
        leaves.push(event_leaf_hash(&manifest.org, &event).map_err(|e| row_err(line, e.to_string()))?);
        last = Some(key);
    }
    Ok(leaves)
}

/// The event a CSV row was made from: the cells back into the JSON object
/// `get` prints (an empty optional cell is an absent field).
fn event_of_row(record: &csv::StringRecord, json: &mut String) -> Result<Event, String> {
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
            json.push_str(&serde_json::Value::String(cell.to_owned()).to_string());
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
        self.sha.update(&buf[..n]);
        Ok(n)
    }
}
