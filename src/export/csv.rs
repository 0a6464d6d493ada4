//! The export CSV format (RFC 4180, `\n` line ends, UTF-8, one header row).
//!
//! Columns: `id,action,actor,target,payload,occurred_at,metadata,version,scope,success,request`.
//! Nested fields are the stored compact JSON text, copied verbatim; absent
//! optional fields are empty cells. No cell can start with `=`, `+`, `-` or
//! `@` (spreadsheet formula injection): `action` starts with a letter (it is
//! validated on append), nested fields start with `{`, and the rest are UUIDs,
//! timestamps, numbers and booleans. [`RowFormatter::push`] (behind
//! [`CsvSink::write_record`] and every export) re-checks this for every row
//! and refuses a row that would break it.

use std::io::Write;

use crate::codec::RecordView;

/// The header row's columns, in order.
pub const COLUMNS: [&str; 11] = [
    "id",
    "action",
    "actor",
    "target",
    "payload",
    "occurred_at",
    "metadata",
    "version",
    "scope",
    "success",
    "request",
];

/// Why a row could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("writing CSV: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error(
        "refusing to write a cell that a spreadsheet would execute: column {column} starts with {first:?}"
    )]
    Dangerous { column: &'static str, first: char },
}

/// Streams rows to a writer through a 256 KiB buffer.
///
/// Quoting follows the `csv` crate's `QuoteStyle::Necessary` exactly (a
/// field is quoted when it holds `"`, `,`, `\n` or `\r`; quotes inside are
/// doubled), but runs a `memchr` search over each field instead of a
/// byte-at-a-time state machine: JSON blobs are full of quotes, and this is
/// the hot loop of every export. The `csv` crate stays the reference: the
/// tests compare both byte for byte, and every export test parses the
/// files back with `csv::Reader`.
pub struct CsvSink<W: Write> {
    out: W,
    buf: Vec<u8>,
    rows: u64,
    row: RowFormatter,
}

/// Formats one event's row onto the end of a buffer (what [`CsvSink`]
/// does per row, for callers that manage their own buffers).
#[derive(Debug, Default)]
pub struct RowFormatter {
    ts: String,
}

impl RowFormatter {
    /// Append `v`'s row (with its `\n`) to `buf`. On a refused cell
    /// ([`CsvError::Dangerous`]) nothing is appended.
    pub fn push(&mut self, buf: &mut Vec<u8>, v: &RecordView<'_>) -> Result<(), CsvError> {
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid::Uuid::from_bytes(v.id).hyphenated().encode_lower(&mut id);
        self.ts.clear();
        v.occurred_at.write_rfc3339(&mut self.ts);
        let mut version = itoa_u32(v.version);
        let version = version.as_str();
        let cells: [(&'static str, &str); 11] = [
            ("id", id),
            ("action", v.action),
            ("actor", v.actor),
            ("target", v.target),
            ("payload", v.payload),
            ("occurred_at", &self.ts),
            ("metadata", v.metadata),
            ("version", version),
            ("scope", v.scope.unwrap_or("")),
            ("success", if v.success { "true" } else { "false" }),
            ("request", v.request.unwrap_or("")),
        ];
        for (column, cell) in cells {
            if let Some(first) = cell.chars().next() {
                if is_formula_start(first) {
                    return Err(CsvError::Dangerous { column, first });
                }
            }
        }
        push_record(buf, cells.iter().map(|(_, c)| c.as_bytes()));
        Ok(())
    }
}

/// The header row (with its `\n`).
pub fn header() -> Vec<u8> {
    let mut buf = Vec::new();
    push_header(&mut buf);
    buf
}

fn push_header(buf: &mut Vec<u8>) {
    push_record(buf, COLUMNS.iter().map(|c| c.as_bytes()));
}

const FLUSH_AT: usize = 256 * 1024;

/// True when a spreadsheet would treat a cell starting with `c` as a formula.
pub fn is_formula_start(c: char) -> bool {
    matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r')
}

/// Append one field, quoted if it must be.
fn push_field(buf: &mut Vec<u8>, field: &[u8]) {
    let needs_quotes =
        memchr::memchr3(b'"', b',', b'\n', field).is_some() || memchr::memchr(b'\r', field).is_some();
    if !needs_quotes {
        buf.extend_from_slice(field);
        return;
    }
    buf.push(b'"');
    let mut rest = field;
    while let Some(i) = memchr::memchr(b'"', rest) {
        buf.extend_from_slice(&rest[..=i]);
        buf.push(b'"');
        rest = &rest[i + 1..];
    }
    buf.extend_from_slice(rest);
    buf.push(b'"');
}

fn push_record<'a>(buf: &mut Vec<u8>, fields: impl IntoIterator<Item = &'a [u8]>) {
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        push_field(buf, f);
    }
    buf.push(b'\n');
}

impl<W: Write> CsvSink<W> {
    /// Start a file: writes the header row.
    pub fn new(writer: W) -> Result<Self, CsvError> {
        let mut buf = Vec::with_capacity(FLUSH_AT + 64 * 1024);
        push_header(&mut buf);
        Ok(CsvSink {
            out: writer,
            buf,
            rows: 0,
            row: RowFormatter::default(),
        })
    }

    /// Append one event's row.
    pub fn write_record(&mut self, v: &RecordView<'_>) -> Result<(), CsvError> {
        self.row.push(&mut self.buf, v)?;
        self.rows += 1;
        if self.buf.len() >= FLUSH_AT {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Rows written so far (header excluded).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flush and hand back the writer.
    pub fn finish(mut self) -> Result<W, CsvError> {
        self.out.write_all(&self.buf)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// A small stack string for a u32 (no allocation per row).
struct SmallNum {
    buf: [u8; 10],
    start: usize,
}

impl SmallNum {
    fn as_str(&mut self) -> &str {
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}

fn itoa_u32(mut n: u32) -> SmallNum {
    let mut buf = [0u8; 10];
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    SmallNum { buf, start }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(rows: &[Vec<String>]) -> Vec<u8> {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .quote_style(csv::QuoteStyle::Necessary)
            .flexible(true)
            .from_writer(Vec::new());
        for r in rows {
            w.write_record(r).unwrap();
        }
        w.into_inner().unwrap()
    }

    fn ours(rows: &[Vec<String>]) -> Vec<u8> {
        let mut buf = Vec::new();
        for r in rows {
            push_record(&mut buf, r.iter().map(|f| f.as_bytes()));
        }
        buf
    }

    proptest! {
        #[test]
        fn quoting_matches_the_csv_crate_byte_for_byte(
            rows in proptest::collection::vec(
                proptest::collection::vec("[a-z\"{},:\n\r =+@-é]{0,12}|\\PC{0,8}", 2..6),
                1..5,
            )
        ) {
            prop_assert_eq!(ours(&rows), reference(&rows));
        }
    }

    #[test]
    fn numbers_format() {
        for n in [0u32, 1, 9, 10, 12345, u32::MAX] {
            assert_eq!(itoa_u32(n).as_str(), n.to_string());
        }
    }
}
