//! The export CSV format (RFC 4180, `\n` line ends, UTF-8, one header row).
//!
//! Columns: `id,action,actor,target,payload,occurred_at,metadata,version,scope,success,request`.
//! Nested fields are the stored compact JSON text, copied verbatim; absent
//! optional fields are empty cells. No cell can start with `=`, `+`, `-` or
//! `@` (spreadsheet formula injection): `action` starts with a letter (it is
//! validated on append), nested fields start with `{`, and the rest are UUIDs,
//! timestamps, numbers and booleans. [`CsvSink::write_record`] re-checks this
//! for every row and refuses a row that would break it.

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

/// Streams rows to a writer; buffers at most one row's worth beyond the
/// underlying writer's own buffer.
pub struct CsvSink<W: Write> {
    out: csv::Writer<W>,
    rows: u64,
    ts: String,
}

/// True when a spreadsheet would treat a cell starting with `c` as a formula.
pub fn is_formula_start(c: char) -> bool {
    matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r')
}

impl<W: Write> CsvSink<W> {
    /// Start a file: writes the header row.
    pub fn new(writer: W) -> Result<Self, CsvError> {
        let mut out = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .quote_style(csv::QuoteStyle::Necessary)
            .buffer_capacity(256 * 1024)
            .from_writer(writer);
        out.write_record(COLUMNS)?;
        Ok(CsvSink {
            out,
            rows: 0,
            ts: String::with_capacity(32),
        })
    }

    /// Append one event's row.
    pub fn write_record(&mut self, v: &RecordView<'_>) -> Result<(), CsvError> {
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid::Uuid::from_bytes(v.id).hyphenated().encode_lower(&mut id);
        self.ts.clear();
        v.occurred_at.write_rfc3339(&mut self.ts);
        let version = v.version.to_string();
        let cells: [(&'static str, &str); 11] = [
            ("id", id),
            ("action", v.action),
            ("actor", v.actor),
            ("target", v.target),
            ("payload", v.payload),
            ("occurred_at", &self.ts),
            ("metadata", v.metadata),
            ("version", &version),
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
        self.out.write_record(cells.iter().map(|(_, c)| c.as_bytes()))?;
        self.rows += 1;
        Ok(())
    }

    /// Rows written so far (header excluded).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flush and hand back the writer.
    pub fn finish(self) -> Result<W, CsvError> {
        self.out
            .into_inner()
            .map_err(|e| CsvError::Io(std::io::Error::other(e.to_string())))
    }
}
