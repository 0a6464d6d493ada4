//! Range queries: [`Query`] says what to read, [`Scan`] reads it.
//!
//! A scan holds one cursor per segment that has entries in the range (a
//! slice of a sealed segment's time table, or a copy of the entries of a
//! segment still in memory: the active one, or one being sealed) and merges
//! them in (occurred_at, id) order. Every record is checksummed as it is
//! read and checked against its index entry.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::codec::{self, RecordView};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::index::file::{self as idxfile};
use crate::index::time::ActiveEntry;
use crate::log::frame;
use crate::log::segment::{self, SealedSegment};
use crate::time::Timestamp;

/// A range query over one organization: `from <= occurred_at < to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub org: String,
    pub from: Timestamp,
    pub to: Timestamp,
    /// Exact action, or a prefix when it ends in `*` (`workflow.*`).
    pub action: Option<String>,
    pub actor_id: Option<String>,
    pub target_id: Option<String>,
    pub limit: Option<usize>,
    /// Instant retention is evaluated at (default: the store's clock).
    pub as_of: Option<Timestamp>,
}

impl Query {
    pub fn new(org: impl Into<String>, from: Timestamp, to: Timestamp) -> Self {
        Query {
            org: org.into(),
            from,
            to,
            action: None,
            actor_id: None,
            target_id: None,
            limit: None,
            as_of: None,
        }
    }
    pub fn action(mut self, action: impl Into<String>) -> Self {
        self.action = Some(action.into());
        self
    }
    pub fn actor(mut self, id: impl Into<String>) -> Self {
        self.actor_id = Some(id.into());
        self
    }
    pub fn target(mut self, id: impl Into<String>) -> Self {
        self.target_id = Some(id.into());
        self
    }
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }
    pub fn as_of(mut self, at: Timestamp) -> Self {
        self.as_of = Some(at);
        self
    }
}

#[derive(Clone, Default)]
struct Filter {
    action: Option<(String, bool)>,
    actor: Option<String>,
    target: Option<String>,
}

#[derive(serde::Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
}

fn json_id_is(text: &str, want: &str) -> bool {
    serde_json::from_str::<IdOnly<'_>>(text)
        .map(|v| v.id == want)
        .unwrap_or(false)
}

impl Filter {
    fn new(q: &Query) -> Self {
        Filter {
            action: q.action.as_ref().map(|a| match a.strip_suffix('*') {
                Some(prefix) => (prefix.to_owned(), true),
                None => (a.clone(), false),
            }),
            actor: q.actor_id.clone(),
            target: q.target_id.clone(),
        }
    }

    fn matches(&self, v: &RecordView<'_>) -> bool {
        if let Some((a, prefix)) = &self.action {
            let ok = if *prefix {
                v.action.starts_with(a.as_str())
            } else {
                v.action == a
            };
            if !ok {
                return false;
            }
        }
        if let Some(id) = &self.actor {
            if !json_id_is(v.actor, id) {
                return false;
            }
        }
        if let Some(id) = &self.target {
            if !json_id_is(v.target, id) {
                return false;
            }
        }
        true
    }
}

/// Where a record is in the log: its segment and the byte offset of its
/// frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RecordPos {
    pub segment: u64,
    pub offset: u32,
}

enum Cursor {
    Sealed {
        seg: Arc<SealedSegment>,
        pos: u64,
        end: u64,
    },
    Active {
        segment: u64,
        file: Arc<File>,
        path: PathBuf,
        entries: Vec<ActiveEntry>,
        pos: usize,
    },
}

type Key = (i64, [u8; 16], u32);

/// Records loaded ahead of a sealed cursor, see [`Cursor::touch_ahead`].
const TOUCH_AHEAD: u64 = 8;

impl Cursor {
    /// Entries left.
    fn len(&self) -> usize {
        match self {
            Cursor::Sealed { pos, end, .. } => end.saturating_sub(*pos) as usize,
            Cursor::Active { entries, pos, .. } => entries.len().saturating_sub(*pos),
        }
    }

    /// occurred_at of the entry `k` places ahead (`k < len()`).
    fn ts_ahead(&self, k: usize) -> i64 {
        match self {
            Cursor::Sealed { seg, pos, .. } => {
                idxfile::time_entry(seg.idx_bytes(), &seg.layout, pos + k as u64).0
            }
            Cursor::Active { entries, pos, .. } => entries[pos + k].occurred_at,
        }
    }

    /// The first of the entries left whose occurred_at is `ts` or later
    /// (entries are in occurred_at order), counted from the next one.
    fn lower_bound(&self, ts: i64) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.ts_ahead(mid) < ts {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The entries left with `from <= occurred_at < to` (`to: None`: no
    /// upper bound), as a cursor of their own; `None` when there are none.
    fn slice(&self, from: i64, to: Option<i64>) -> Option<Cursor> {
        let lo = self.lower_bound(from);
        let hi = to.map_or(self.len(), |to| self.lower_bound(to));
        if lo >= hi {
            return None;
        }
        Some(match self {
            Cursor::Sealed { seg, pos, .. } => Cursor::Sealed {
                seg: seg.clone(),
                pos: pos + lo as u64,
                end: pos + hi as u64,
            },
            Cursor::Active {
                segment,
                file,
                path,
                entries,
                pos,
            } => Cursor::Active {
                segment: *segment,
                file: file.clone(),
                path: path.clone(),
                entries: entries[pos + lo..pos + hi].to_vec(),
                pos: 0,
            },
        })
    }

    /// (occurred_at, id, offset) of the cursor's next entry.
    fn peek(&self) -> Result<Option<Key>> {
        match self {
            Cursor::Sealed { seg, pos, end } => {
                if pos >= end {
                    return Ok(None);
                }
                let (ts, off) = idxfile::time_entry(seg.idx_bytes(), &seg.layout, *pos);
                let body_at = off as usize + frame::FRAME_HEADER_LEN;
                let log = seg.log_bytes();
                if body_at + codec::FIXED_LEN > log.len() {
                    return Err(Error::corrupt(
                        &seg.idx_path,
                        0,
                        format!("index entry points past the end of the log ({off})"),
                    ));
                }
                let (_, id) = codec::peek_key(&log[body_at..])
                    .map_err(|e| Error::corrupt(&seg.log_path, off as u64, e.0))?;
                Ok(Some((ts, id, off)))
            }
            Cursor::Active { entries, pos, .. } => {
                Ok(entries.get(*pos).map(|e| (e.occurred_at, e.id, e.offset)))
            }
        }
    }

    /// (occurred_at, offset) of the next entry, without reading the log.
    fn peek_entry(&self) -> Option<(i64, u32)> {
        match self {
            Cursor::Sealed { seg, pos, end } => {
                (pos < end).then(|| idxfile::time_entry(seg.idx_bytes(), &seg.layout, *pos))
            }
            Cursor::Active { entries, pos, .. } => entries.get(*pos).map(|e| (e.occurred_at, e.offset)),
        }
    }

    /// Start loading the records a few entries ahead of a sealed cursor
    /// (once every [`TOUCH_AHEAD`] entries, for the next [`TOUCH_AHEAD`]).
    fn touch_ahead(&self) {
        if let Cursor::Sealed { seg, pos, end } = self {
            if pos % TOUCH_AHEAD == 0 {
                let idx = seg.idx_bytes();
                for p in (pos + TOUCH_AHEAD)..(pos + 2 * TOUCH_AHEAD).min(*end) {
                    seg.touch(idxfile::time_entry(idx, &seg.layout, p).1);
                }
            }
        }
    }

    fn advance(&mut self) {
        match self {
            Cursor::Sealed { pos, .. } => *pos += 1,
            Cursor::Active { pos, .. } => *pos += 1,
        }
    }
}

/// An iterator over a query's events, in (occurred_at, id) order. Reads
/// lazily; each record's checksum is verified as it is read.
pub struct Scan {
    cursors: Vec<Cursor>,
    heap: BinaryHeap<Reverse<(Key, usize)>>,
    filter: Filter,
    remaining: usize,
    buf: Vec<u8>,
    started: bool,
    failed: bool,
    /// The cursor that keeps the lead without going through the heap while
    /// its next key is below every other cursor's (always, when it is the
    /// only one left: then no tie-breaking id is even read).
    current: Option<usize>,
}

impl Scan {
    /// A scan of `query` with no cursor yet (the store adds them).
    pub(crate) fn new(query: &Query) -> Scan {
        Scan {
            filter: Filter::new(query),
            remaining: query.limit.unwrap_or(usize::MAX),
            ..Scan::new_empty()
        }
    }

    /// False once the scan's limit is reached.
    pub(crate) fn wants_more(&self) -> bool {
        self.remaining > 0
    }

    /// Read entries `pos..end` of a sealed segment's time table.
    pub(crate) fn push_sealed(&mut self, seg: Arc<SealedSegment>, pos: u64, end: u64) {
        if pos < end {
            self.cursors.push(Cursor::Sealed { seg, pos, end });
        }
    }

    /// Read these entries (in occurred_at order) of a segment indexed in
    /// memory: the active one, or one being sealed.
    pub(crate) fn push_in_memory(
        &mut self,
        segment: u64,
        file: Arc<File>,
        path: PathBuf,
        entries: Vec<ActiveEntry>,
    ) {
        if !entries.is_empty() {
            self.cursors.push(Cursor::Active {
                segment,
                file,
                path,
                entries,
                pos: 0,
            });
        }
    }

    /// Index entries the scan has left to visit: an upper bound on the
    /// events it will yield (a filter or a limit may stop it sooner).
    pub fn index_entries(&self) -> usize {
        self.cursors.iter().map(Cursor::len).sum()
    }

    /// Split a scan that has not yielded yet into up to `parts` scans over
    /// consecutive time slices, each with about the same number of index
    /// entries. Reading them one after another yields exactly what this
    /// scan would have, in the same order: every event of one timestamp
    /// falls in one slice. The parts share this scan's snapshot (what the
    /// store held when it was created) and can be read on different
    /// threads, e.g. to decode or format a long range on several cores.
    ///
    /// A scan with a limit, one that has started, or one with fewer entries
    /// than parts is returned whole (a one-element vector).
    pub fn split(self, parts: usize) -> Vec<Scan> {
        let total = self.index_entries();
        if parts <= 1 || self.started || self.failed || self.remaining != usize::MAX || total < parts {
            return vec![self];
        }
        // Timestamps sampled in proportion to each cursor's share; their
        // quantiles are the slice bounds.
        let want = parts.saturating_mul(16).min(total);
        let mut samples = Vec::with_capacity(want + self.cursors.len());
        for c in &self.cursors {
            let n = c.len();
            if n == 0 {
                continue;
            }
            let take = (n.saturating_mul(want) / total).clamp(1, n);
            samples.extend((0..take).map(|j| c.ts_ahead(j * n / take)));
        }
        samples.sort_unstable();
        let mut bounds: Vec<i64> = Vec::with_capacity(parts);
        for p in 1..parts {
            let ts = samples[p * samples.len() / parts];
            if ts > samples[0] && bounds.last().is_none_or(|&b| ts > b) {
                bounds.push(ts);
            }
        }
        let mut scans = Vec::with_capacity(bounds.len() + 1);
        let mut from = i64::MIN;
        for to in bounds.iter().map(|&b| Some(b)).chain([None]) {
            let cursors: Vec<Cursor> = self.cursors.iter().filter_map(|c| c.slice(from, to)).collect();
            if !cursors.is_empty() {
                scans.push(Scan {
                    cursors,
                    filter: self.filter.clone(),
                    ..Scan::new_empty()
                });
            }
            if let Some(to) = to {
                from = to;
            }
        }
        scans
    }

    fn new_empty() -> Scan {
        Scan {
            cursors: Vec::new(),
            heap: BinaryHeap::new(),
            filter: Filter::default(),
            remaining: usize::MAX,
            buf: Vec::new(),
            started: false,
            failed: false,
            current: None,
        }
    }

    fn start(&mut self) -> Result<()> {
        self.started = true;
        for i in 0..self.cursors.len() {
            if let Some(k) = self.cursors[i].peek()? {
                self.heap.push(Reverse((k, i)));
            }
        }
        Ok(())
    }

    /// Visit the next matching record without building an owned [`Event`].
    pub fn next_with<R>(&mut self, mut f: impl FnMut(&RecordView<'_>) -> R) -> Option<Result<R>> {
        self.next_at(|_, v| f(v))
    }

    /// [`Scan::next_with`], also telling where the record is in the log:
    /// its segment id and byte offset.
    pub(crate) fn next_at<R>(
        &mut self,
        mut f: impl FnMut(RecordPos, &RecordView<'_>) -> R,
    ) -> Option<Result<R>> {
        if self.failed || self.remaining == 0 {
            return None;
        }
        if !self.started {
            if let Err(e) = self.start() {
                self.failed = true;
                return Some(Err(e));
            }
        }
        loop {
            let i = match self.current {
                Some(c) => c,
                None => self.heap.pop()?.0 .1,
            };
            let Some((ts, off)) = self.cursors[i].peek_entry() else {
                self.current = None;
                continue;
            };
            self.cursors[i].touch_ahead();
            let result = self.read_one(i, ts, off, &mut f);
            self.cursors[i].advance();
            self.current = None;
            let top_ts = self.heap.peek().map(|Reverse(((ts, _, _), _))| *ts);
            let next_ts = self.cursors[i].peek_entry().map(|(ts, _)| ts);
            let strictly_ahead = match (next_ts, top_ts) {
                (Some(_), None) => true,
                (Some(n), Some(t)) => n < t,
                (None, _) => false,
            };
            if strictly_ahead {
                // No tie to break: the id (a read from the log) is not needed.
                self.current = Some(i);
            } else if next_ts.is_some() {
                match self.cursors[i].peek() {
                    Ok(Some(k)) => match self.heap.peek() {
                        Some(Reverse((top, _))) if k < *top => self.current = Some(i),
                        _ => self.heap.push(Reverse((k, i))),
                    },
                    Ok(None) => {}
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
            }
            match result {
                Ok(Some(r)) => {
                    self.remaining -= 1;
                    return Some(Ok(r));
                }
                Ok(None) => continue,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }

    fn read_one<R>(
        &mut self,
        i: usize,
        ts: i64,
        off: u32,
        f: &mut impl FnMut(RecordPos, &RecordView<'_>) -> R,
    ) -> Result<Option<R>> {
        let check = |v: &RecordView<'_>, path: &Path| -> Result<()> {
            if v.occurred_at.as_nanos() != ts {
                return Err(Error::corrupt(
                    path,
                    off as u64,
                    "record does not match its index entry",
                ));
            }
            Ok(())
        };
        match &self.cursors[i] {
            Cursor::Sealed { seg, .. } => {
                let v = seg.record(off)?;
                check(&v, &seg.log_path)?;
                let at = RecordPos {
                    segment: seg.id,
                    offset: off,
                };
                Ok(self.filter.matches(&v).then(|| f(at, &v)))
            }
            Cursor::Active {
                segment, file, path, ..
            } => {
                let v = segment::read_record_at(file, path, off as u64, &mut self.buf)?;
                check(&v, path)?;
                let at = RecordPos {
                    segment: *segment,
                    offset: off,
                };
                Ok(self.filter.matches(&v).then(|| f(at, &v)))
            }
        }
    }
}

impl Iterator for Scan {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with(|v| v.to_event())
    }
}
