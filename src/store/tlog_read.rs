//! Reading the log for the tamper-evidence tree: the leaf hash of a stored
//! record, walking a segment's records between two offsets, and each
//! segment's record offsets (to turn a record's offset into its ordinal in
//! the segment, hence its leaf index).

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use crate::codec::{self, RecordView};
use crate::error::{Error, IoContext, Result};
use crate::event::numbers_exact;
use crate::event::Event;
use crate::integrity::leaf::leaf_data_of_json;
use crate::integrity::{leaf_hash, Hash};
use crate::log::frame;

/// Bytes read at a time when walking a segment.
const CHUNK: usize = 4 << 20;

/// The leaf hash of a stored record: `SHA-256(0x00 || JCS({"org", "event"}))`
/// (shared/spec/integrity.md). An event with no RFC 8785 form (stored before
/// appends refused such events: a repeated key, a number beyond the double
/// range) is hashed over its `get` JSON text instead, as documented in
/// docs/format.md, "Tree tiles".
pub(crate) fn record_leaf(view: &RecordView<'_>) -> Hash {
    event_leaf(view.org, &view.to_event())
}

/// [`record_leaf`] of an event as `get` returns it. An event with a number
/// RFC 8785 would round (which appends refuse) is hashed over its text too:
/// a record changed to hold one then never hashes like the original.
pub(crate) fn event_leaf(org: &str, event: &Event) -> Hash {
    let text = event.to_json();
    if numbers_exact(&text) {
        if let Ok(data) = leaf_data_of_json(org, event, &text) {
            return leaf_hash(&data);
        }
    }
    let org = serde_json::Value::String(org.to_owned());
    leaf_hash(format!("{{\"org\":{org},\"event\":{text}}}").as_bytes())
}

/// Where a walk ended.
pub(crate) struct Walked {
    /// Offset after the last record visited.
    pub end: u64,
    /// Records visited.
    pub count: u64,
}

/// Visits the records of the segment file `path` from offset `from` (a
/// record's start) up to `to` (or the end of the file), in order, at most
/// `max` of them. A frame that does not decode before `to` is `Corrupt`,
/// except zeros up to the end of the file (space allocated ahead) and, when
/// `to` is `None`, a torn last frame (what a crash leaves; an open cuts it).
pub(crate) fn walk_records(
    file: &File,
    path: &Path,
    from: u64,
    to: Option<u64>,
    max: u64,
    mut visit: impl FnMut(u64, &RecordView<'_>),
) -> Result<Walked> {
    let file_len = file
        .metadata()
        .ctx(|| format!("read metadata of {}", path.display()))?
        .len();
    let to = to.unwrap_or(file_len).min(file_len);
    let mut at = from;
    let mut count = 0u64;
    let mut buf = Vec::new();
    while at < to && count < max {
        let want = ((to - at) as usize).min(CHUNK.max(frame::MAX_BODY_LEN + frame::FRAME_HEADER_LEN));
        buf.resize(want, 0);
        file.read_exact_at(&mut buf, at)
            .ctx(|| format!("read {} at {at}", path.display()))?;
        let mut pos = 0usize;
        while pos < buf.len() && count < max {
            match frame::decode(&buf[pos..]) {
                Ok((body, len)) => {
                    let view = codec::decode(body)
                        .map_err(|e| Error::corrupt(path, at + pos as u64, format!("record body: {e}")))?;
                    visit(at + pos as u64, &view);
                    pos += len;
                    count += 1;
                }
                Err(frame::FrameError::Truncated { .. }) if at + (buf.len() as u64) < to => break,
                Err(e) => {
                    if buf[pos..].iter().all(|b| *b == 0) && at + buf.len() as u64 == to {
                        return Ok(Walked {
                            end: at + pos as u64,
                            count,
                        });
                    }
                    return Err(Error::corrupt(path, at + pos as u64, e.to_string()));
                }
            }
        }
        if pos == 0 && count < max {
            return Err(Error::corrupt(path, at, "a record larger than the largest frame"));
        }
        at += pos as u64;
    }
    Ok(Walked { end: at, count })
}

/// The offsets of the records of `path` from `from` up to `to`, appended to
/// `out`; returns where the walk ended.
pub(crate) fn record_offsets(
    file: &File,
    path: &Path,
    from: u64,
    to: u64,
    out: &mut Vec<u32>,
) -> Result<u64> {
    let walked = walk_records(file, path, from, Some(to), u64::MAX, |off, _| {
        out.push(off as u32)
    })?;
    Ok(walked.end)
}

/// Opens a segment's log for reading.
pub(crate) fn open_log(path: &Path) -> Result<File> {
    File::open(path).ctx(|| format!("open {}", path.display()))
}
