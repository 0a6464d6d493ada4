//! Reading the log for the tamper-evidence tree: the leaf hash of a stored
//! record, walking a segment's records between two offsets, and each
//! segment's record offsets (to turn a record's offset into its ordinal in
//! the segment, hence its leaf index).

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use std::collections::BTreeMap;
use std::sync::Arc;

use super::tlog::{Tlog, LEAF_TILES};
use super::{lock, SigningKey};
use crate::codec::{self, RecordView};
use crate::error::{Error, IoContext, Result};
use crate::event::Event;
use crate::integrity::key::{self as keyfile, KeyError, KEY_FILE};
use crate::integrity::leaf::{fast_leaf_hash, leaf_data_of_json, LeafParts};
use crate::integrity::tree::{LeafSource, SourceError, TILE_WIDTH};
use crate::integrity::Signer;
use crate::integrity::{leaf_hash, Hash};
use crate::log::frame;
use crate::log::header::SEGMENT_HEADER_LEN;
use crate::log::segment;

/// Bytes read at a time when walking a segment.
const CHUNK: usize = 4 << 20;

/// The leaf hash of a stored record: `SHA-256(0x00 || JCS({"org", "event"}))`
/// (shared/spec/integrity.md). An event with no RFC 8785 form (a repeated
/// key, which appends refuse, in a record stored before they did or changed
/// since) is hashed over its `get` JSON text instead, as documented in
/// docs/format.md, "Tree tiles".
pub(crate) fn record_leaf(view: &RecordView<'_>) -> Hash {
    let parts = LeafParts {
        org: view.org,
        id: uuid::Uuid::from_bytes(view.id),
        action: view.action,
        actor: view.actor,
        target: view.target,
        payload: view.payload,
        occurred_at: view.occurred_at,
        metadata: view.metadata,
        version: view.version,
        scope: view.scope,
        success: view.success,
        request: view.request,
    };
    fast_leaf_hash(&parts).unwrap_or_else(|| event_leaf(view.org, &view.to_event()))
}

/// [`record_leaf`] of an event as `get` returns it.
pub(crate) fn event_leaf(org: &str, event: &Event) -> Hash {
    if let Some(h) = fast_leaf_hash(&LeafParts::of_event(org, event)) {
        return h;
    }
    let text = event.to_json();
    if let Ok(data) = leaf_data_of_json(org, event, &text) {
        return leaf_hash(&data);
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
    walk_bodies(file, path, from, to, max, |off, body| {
        let view = codec::decode(body).map_err(|e| Error::corrupt(path, off, format!("record body: {e}")))?;
        visit(off, &view);
        Ok(())
    })
}

/// [`walk_records`], visiting each record's body undecoded.
pub(crate) fn walk_bodies(
    file: &File,
    path: &Path,
    from: u64,
    to: Option<u64>,
    max: u64,
    mut visit: impl FnMut(u64, &[u8]) -> Result<()>,
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
                    visit(at + pos as u64, body)?;
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

/// The signer of `key`: for the key in the store, `signing.key`, created
/// (mode 0600, named `origin`) when missing.
pub(crate) fn resolve_signer(dir: &Path, key: &SigningKey, origin: &str) -> Result<Arc<Signer>> {
    let path = match key {
        SigningKey::Signer(s) => return Ok(s.clone()),
        SigningKey::File(path) => path.clone(),
        SigningKey::InStore => {
            let path = dir.join(KEY_FILE);
            if !path.exists() {
                return keyfile::create(&path, origin).map(Arc::new).map_err(key_err);
            }
            path
        }
    };
    keyfile::load(&path).map(Arc::new).map_err(key_err)
}

/// The signer of `key` if there is one, creating nothing (for `verify`).
pub(crate) fn resolve_signer_read_only(dir: &Path, key: &SigningKey) -> Result<Option<Arc<Signer>>> {
    match key {
        SigningKey::InStore if !dir.join(KEY_FILE).exists() => Ok(None),
        SigningKey::InStore => keyfile::load(&dir.join(KEY_FILE))
            .map(|s| Some(Arc::new(s)))
            .map_err(key_err),
        SigningKey::File(path) => keyfile::load(path).map(|s| Some(Arc::new(s))).map_err(key_err),
        SigningKey::Signer(s) => Ok(Some(s.clone())),
    }
}

pub(crate) fn key_err(e: KeyError) -> Error {
    match e {
        // Not UTF-8: damaged content, not a disk problem.
        KeyError::Io { path, source, .. } if source.kind() == std::io::ErrorKind::InvalidData => {
            Error::corrupt(path, 0, format!("key file is not a key line: {source}"))
        }
        KeyError::Io {
            context,
            path,
            source,
        } => Error::io(format!("{context} {}", path.display()), source),
        KeyError::Malformed { ref path, .. }
        | KeyError::NotOneLine { ref path }
        | KeyError::TooLarge { ref path }
        | KeyError::NotAFile { ref path } => Error::corrupt(path.clone(), 0, e.to_string()),
        e => Error::InvalidArgument {
            what: "signing key",
            reason: e.to_string(),
        },
    }
}

/// Where leaf `leaf` is: its segment and offset (the end of the log when it
/// is the next leaf to come).
pub(crate) fn position_of(dir: &Path, firsts: &BTreeMap<u64, u64>, leaf: u64) -> Result<(u64, u64)> {
    let Some((&seg, &first)) = firsts.range(..).rev().find(|(_, &f)| f <= leaf) else {
        return Ok((1, SEGMENT_HEADER_LEN as u64));
    };
    let path = segment::log_path(dir, seg);
    let file = open_log(&path)?;
    let walked = walk_records(
        &file,
        &path,
        SEGMENT_HEADER_LEN as u64,
        None,
        leaf - first,
        |_, _| (),
    )?;
    Ok((seg, walked.end))
}

/// The log as a [`LeafSource`]: a bottom tile's 256 leaf hashes, read from
/// the segments and hashed (the last 64 tiles read are kept).
pub(crate) struct LogLeaves<'a> {
    pub(crate) tlog: &'a Tlog,
    pub(crate) firsts: &'a BTreeMap<u64, u64>,
    /// Leaves before `base` are gone from the log; those of its bottom
    /// tile are `before`.
    pub(crate) base: u64,
    pub(crate) before: &'a [Hash],
}

impl LeafSource for LogLeaves<'_> {
    fn tile_leaves(&mut self, tile: u64) -> std::result::Result<Vec<Hash>, SourceError> {
        if let Some(hit) = lock(&self.tlog.caches).leaves.get(&tile) {
            return Ok(hit.as_ref().clone());
        }
        let out = self.tile_leaves_until(tile, (tile + 1) * TILE_WIDTH as u64)?;
        let mut caches = lock(&self.tlog.caches);
        if caches.leaves.len() >= LEAF_TILES {
            caches.leaves.clear();
        }
        caches.leaves.insert(tile, Arc::new(out.clone()));
        Ok(out)
    }
}

impl LogLeaves<'_> {
    /// The leaf hashes of bottom tile `tile` before leaf `end`.
    pub(crate) fn tile_leaves_until(
        &mut self,
        tile: u64,
        end: u64,
    ) -> std::result::Result<Vec<Hash>, SourceError> {
        let mut leaf = tile * TILE_WIDTH as u64;
        let mut out = Vec::with_capacity(TILE_WIDTH);
        let kept_from = self.base - self.before.len() as u64;
        while leaf < end.min(self.base) {
            match leaf
                .checked_sub(kept_from)
                .and_then(|i| self.before.get(i as usize))
            {
                Some(h) => out.push(*h),
                None => return Err(format!("leaf {leaf} was deleted by retention").into()),
            }
            leaf += 1;
        }
        while leaf < end {
            let Some((&seg, &first)) = self.firsts.range(..).rev().find(|(_, &f)| f <= leaf) else {
                return Err(format!("leaf {leaf} is before the first retained segment").into());
            };
            let offsets = self.tlog.offsets(seg, u64::MAX)?;
            let ordinal = (leaf - first) as usize;
            let Some(&from) = offsets.get(ordinal) else {
                return Err(format!("leaf {leaf} is not in segment {seg}").into());
            };
            let path = segment::log_path(&self.tlog.dir, seg);
            let file: File = open_log(&path)?;
            let want = (end - leaf).min((offsets.len() - ordinal) as u64);
            let walked = walk_records(&file, &path, u64::from(from), None, want, |_, view| {
                out.push(record_leaf(view))
            })?;
            if walked.count == 0 {
                return Err(format!("no record for leaf {leaf} in {}", path.display()).into());
            }
            leaf += walked.count;
        }
        Ok(out)
    }
}
