//! The store: open and recover, append with de-duplication and group
//! commit, range scans, point reads, retention, verification and stats.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use fs4::fs_std::FileExt as _;

use crate::clock::{Clock, SystemClock};
use crate::codec::{self, RecordView};
use crate::error::{Error, IoContext, Result};
use crate::event::Event;
use crate::group_commit::GroupCommit;
use crate::index::checkpoint;
use crate::index::file::{self as idxfile};
use crate::index::id::{self, fingerprint, FingerprintSet};
use crate::index::time::{ActiveEntry, ActiveIndex};
use crate::io::{Io, RealIo};
use crate::log::frame;
use crate::log::header::{self, SEGMENT_HEADER_LEN};
use crate::log::recovery;
use crate::log::segment::{self, ActiveFile, SealedSegment, SpaceAhead};
use crate::org::{self, OrgSettings, Plan};
use crate::scan::{Query, Scan};
use crate::sealer::{self, Sealed, Sealer, Sealing};
use crate::time::Timestamp;
use crate::writeback::{Writeback, WRITEBACK_BYTES};

const LOCK_FILE: &str = "LOCK";
const META_FILE: &str = "meta.redb";
const CHECKPOINT_FILE: &str = "dedup.fp";
/// For sizing the active index before a recovery walk (an estimate).
const TYPICAL_FRAME_BYTES: usize = 512;
const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;
/// How far ahead of the event being encoded `append_batch` loads events.
const TOUCH_EVENTS_AHEAD: usize = 4;
/// Bits of a log sequence number given to the offset within a segment.
const LSN_OFFSET_BITS: u32 = 40;

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// (Default.) `append` returns after the record is written and
    /// `fdatasync`ed; concurrent appenders share one `fdatasync` (group
    /// commit). Survives `kill -9` and power loss.
    #[default]
    Sync,
    /// `append` returns after the record is handed to the OS with `write`;
    /// it is fsynced when a segment rolls, on [`Store::flush`] and on close.
    /// Survives `kill -9` of the process; a power loss or kernel crash can
    /// lose what was appended since the last fsync.
    Buffered,
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct Options {
    pub durability: Durability,
    /// Roll to a new segment once the active one would exceed this many
    /// bytes (4 KiB to 1 GiB; default 64 MiB).
    pub segment_size: u64,
    /// Source of "now" for retention and exports.
    pub clock: Arc<dyn Clock>,
    /// File operations of the write path (tests inject faults here).
    pub io: Arc<dyn Io>,
    /// Build and write a rolled segment's index on a background thread
    /// (default), so appends do not wait for it; the segment is served from
    /// memory meanwhile. A failure there is retried at the next roll and
    /// reported by [`Store::verify`]; the segment's data is durable either
    /// way, and an open indexes it. With `false` the append that rolls
    /// builds the index itself and gets any error from doing so.
    pub background_sealing: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Sync,
            segment_size: 64 << 20,
            clock: Arc::new(SystemClock),
            io: Arc::new(RealIo),
            background_sealing: true,
        }
    }
}

/// What happened to one appended event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored.
    Appended,
    /// Its id was already stored with the same content: not stored again.
    Duplicate,
    /// Its id was already stored with different content: not stored (the
    /// first write wins).
    Conflict,
}

/// Counts for a batch, and the outcome of each event in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub appended: u64,
    pub duplicates: u64,
    pub conflicts: u64,
    pub outcomes: Vec<AppendOutcome>,
}

impl BatchReport {
    fn record(&mut self, o: AppendOutcome) {
        match o {
            AppendOutcome::Appended => self.appended += 1,
            AppendOutcome::Duplicate => self.duplicates += 1,
            AppendOutcome::Conflict => self.conflicts += 1,
        }
        self.outcomes.push(o);
    }
}

/// What opening the store found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Bytes cut from the tail of the active segment (torn or corrupt).
    pub truncated_bytes: u64,
    /// Why the tail was cut, with file and offset.
    pub truncation: Option<String>,
    /// Sealed segments whose index was missing or damaged and rebuilt.
    pub rebuilt_indexes: Vec<PathBuf>,
    /// Damage found in sealed data (also reported by `verify`).
    pub problems: Vec<Problem>,
    /// Records read to recover the active segment.
    pub records_scanned: u64,
}

/// A problem found in the files, with where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub file: PathBuf,
    pub offset: u64,
    pub message: String,
}

/// What `verify` checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub segments: u64,
    pub records: u64,
    pub indexes: u64,
    pub bytes: u64,
    pub problems: Vec<Problem>,
}

/// What `apply_retention` freed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetentionReport {
    pub segments_deleted: u64,
    pub events_deleted: u64,
    pub bytes_freed: u64,
    pub files: Vec<PathBuf>,
}

/// Store-wide counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Events on disk (not clamped by retention).
    pub events: u64,
    /// Organizations with at least one event on disk.
    pub organizations: u64,
    pub segments: u64,
    /// Bytes of every store file (segments, indexes, metadata).
    pub bytes: u64,
    pub oldest: Option<Timestamp>,
    pub newest: Option<Timestamp>,
    /// Heap bytes of the de-duplication and active indexes.
    pub index_memory_bytes: u64,
}

struct Writer {
    active: ActiveFile,
    index: ActiveIndex,
    /// Dedup keys of the sealed segments (not of those still sealing).
    fps: Arc<FingerprintSet>,
    /// Rolled segments whose index is being built, oldest first; served
    /// from their in-memory index meanwhile.
    sealing: Vec<Arc<Sealing>>,
    /// Of `sealing`, those the sealer has not reported on yet.
    sealing_queued: usize,
    /// Of `sealing`, those whose sealing failed: queued again at the next
    /// roll (an open re-indexes them in any case).
    seal_failed: Vec<(Arc<Sealing>, String)>,
    buf: Vec<u8>,
    poisoned: Option<String>,
    /// `dedup.fp` on disk describes exactly `fps`.
    checkpoint_current: bool,
    /// LSN of the last background writeback requested.
    writeback_requested: u64,
    /// Frames of appended batches not yet written (sync mode), at
    /// `active.len` onwards; indexed already, invisible until synced.
    queued: Vec<u8>,
    /// Every batch that queued frames got a ticket; the last one issued.
    last_ticket: u64,
    /// Every ticket up to this one has been written (or failed).
    written_ticket: u64,
}

/// An open store. `Send + Sync`: share it (e.g. in an `Arc`) between
/// appending and reading threads.
pub struct Store {
    dir: PathBuf,
    options: Options,
    _lock: File,
    writer: Mutex<Writer>,
    sealed: RwLock<Arc<Vec<Arc<SealedSegment>>>>,
    group_commit: GroupCommit,
    /// Every ticket up to this one is durable or failed.
    resolved_ticket: AtomicU64,
    /// (first ticket, last ticket, error) of each failed write.
    failed_tickets: Mutex<Vec<(u64, u64, String)>>,
    /// Everything at or below this LSN is fsynced.
    synced_lsn: Arc<AtomicU64>,
    /// Background syncs in buffered mode.
    writeback: Option<Writeback>,
    /// Builds the indexes of rolled segments.
    sealer: Sealer,
    /// Readers see the active segment up to this LSN.
    visible_lsn: AtomicU64,
    meta: redb::Database,
    recovery: RecoveryReport,
    orphan_indexes: Vec<PathBuf>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn lsn(segment: u64, offset: u64) -> u64 {
    (segment << LSN_OFFSET_BITS) | offset
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn retention_cutoff(now: Timestamp, days: u32) -> i64 {
    now.as_nanos().saturating_sub(days as i64 * NANOS_PER_DAY)
}

impl Store {
    /// Open (or create) the store in `dir` with default options.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = auditstore::Store::open(dir.path())?;
    /// assert_eq!(store.stats()?.events, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(dir, Options::default())
    }

    /// Open (or create) the store in `dir`, recovering from a crash if
    /// needed: only the active segment is scanned; a torn or corrupt tail of
    /// it is cut off.
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        if !(4096..=1 << 30).contains(&options.segment_size) {
            return Err(Error::InvalidArgument {
                what: "segment size",
                reason: format!("{} is outside 4 KiB..=1 GiB", options.segment_size),
            });
        }
        std::fs::create_dir_all(&dir).ctx(|| format!("create store directory {}", dir.display()))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .ctx(|| format!("open lock file {}", lock_path.display()))?;
        match lock_file.try_lock_exclusive() {
            Ok(true) => {}
            Ok(false) => return Err(Error::Locked { dir, lock: lock_path }),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(Error::Locked { dir, lock: lock_path })
            }
            Err(e) => return Err(Error::io(format!("lock {}", lock_path.display()), e)),
        }
        let meta = redb::Database::create(dir.join(META_FILE))?;

        let mut logs = Vec::new();
        let mut idxs = HashSet::new();
        for entry in std::fs::read_dir(&dir).ctx(|| format!("list {}", dir.display()))? {
            let entry = entry.ctx(|| format!("list {}", dir.display()))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") || name.ends_with(".deleted") {
                std::fs::remove_file(entry.path())
                    .ctx(|| format!("remove leftover {}", entry.path().display()))?;
                continue;
            }
            match segment::parse_name(name) {
                Some((id, "log")) => logs.push(id),
                Some((id, "idx")) => {
                    idxs.insert(id);
                }
                _ => {}
            }
        }
        logs.sort_unstable();
        let mut recovery = RecoveryReport::default();
        // A roll creates the next segment before sealing the current one; a
        // crash (or failure) in between leaves an empty last segment after
        // an unsealed one, which is the real active segment.
        while logs.len() >= 2 {
            let last = logs[logs.len() - 1];
            let prev = logs[logs.len() - 2];
            let last_path = segment::log_path(&dir, last);
            if !segment::holds_no_records(&last_path)? || SealedSegment::open(&dir, prev).is_ok() {
                break;
            }
            std::fs::remove_file(&last_path).ctx(|| format!("remove empty {}", last_path.display()))?;
            idxs.remove(&last);
            logs.pop();
        }
        let log_set: HashSet<u64> = logs.iter().copied().collect();
        let mut orphan_indexes: Vec<PathBuf> = idxs
            .iter()
            .filter(|id| !log_set.contains(id))
            .map(|id| segment::idx_path(&dir, *id))
            .collect();
        orphan_indexes.sort();
        for p in &orphan_indexes {
            recovery.problems.push(Problem {
                file: p.clone(),
                offset: 0,
                message: "index without its segment: the segment file is missing".into(),
            });
        }

        let mut sealed = Vec::new();
        let last = logs.last().copied();
        for &id in &logs {
            if Some(id) == last {
                break;
            }
            sealed.push(Arc::new(open_or_rebuild_sealed(
                &*options.io,
                &dir,
                id,
                &mut recovery,
            )?));
        }
        let (active, index) = match last {
            None => (
                ActiveFile::create(options.io.clone(), &dir, 1, space_ahead(&options))?,
                ActiveIndex::new(),
            ),
            Some(id) if idxs.contains(&id) && SealedSegment::open(&dir, id).is_ok() => {
                // Crashed after sealing, before the next segment was created.
                sealed.push(Arc::new(SealedSegment::open(&dir, id)?));
                (
                    ActiveFile::create(options.io.clone(), &dir, id + 1, space_ahead(&options))?,
                    ActiveIndex::new(),
                )
            }
            Some(id) => recover_active(options.io.clone(), &dir, id, space_ahead(&options), &mut recovery)?,
        };
        let (fps, checkpoint_current) = load_fingerprints(&dir, &sealed);
        let end = lsn(active.id, active.len);
        let synced_lsn = Arc::new(AtomicU64::new(end));
        let writeback = match options.durability {
            Durability::Buffered => Some(
                Writeback::start(options.io.clone(), synced_lsn.clone())
                    .ctx(|| "start the writeback thread".to_string())?,
            ),
            Durability::Sync => None,
        };
        let sealer =
            Sealer::start(dir.clone(), options.io.clone()).ctx(|| "start the sealer thread".to_string())?;
        Ok(Store {
            dir,
            options,
            _lock: lock_file,
            writer: Mutex::new(Writer {
                active,
                index,
                fps: Arc::new(fps),
                sealing: Vec::new(),
                sealing_queued: 0,
                seal_failed: Vec::new(),
                buf: Vec::with_capacity(1 << 20),
                poisoned: None,
                checkpoint_current,
                writeback_requested: end,
                queued: Vec::with_capacity(1 << 20),
                last_ticket: 0,
                written_ticket: 0,
            }),
            sealed: RwLock::new(Arc::new(sealed)),
            group_commit: GroupCommit::default(),
            resolved_ticket: AtomicU64::new(0),
            failed_tickets: Mutex::new(Vec::new()),
            synced_lsn,
            writeback,
            sealer,
            visible_lsn: AtomicU64::new(end),
            meta,
            recovery,
            orphan_indexes,
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The clock the store evaluates time-dependent rules with.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.options.clock
    }

    /// What the last open found and repaired.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    pub(crate) fn meta(&self) -> &redb::Database {
        &self.meta
    }

    /// Settings of `org` (defaults if never set).
    pub fn org_settings(&self, org: &str) -> Result<OrgSettings> {
        org::get(&self.meta, org)
    }

    /// Create or update an organization's settings.
    pub fn set_org(&self, org: &str, plan: Option<Plan>, retention_days: Option<u32>) -> Result<OrgSettings> {
        org::set(&self.meta, org, plan, retention_days)
    }

    /// Every configured organization.
    pub fn orgs(&self) -> Result<Vec<OrgSettings>> {
        org::list(&self.meta)
    }

    /// Append one event owned by `org`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use auditstore::{AppendOutcome, Event, Store};
    /// let store = Store::open(dir.path())?;
    /// let event = Event::from_json(r#"{"id":"5f0c7d8e-1b2a-4c3d-9e8f-001122334455",
    ///   "action":"user.logged_in","actor":{"id":"u1","type":"user"},
    ///   "target":{"id":"u1","type":"user"},"occurred_at":"2026-06-01T10:00:00Z",
    ///   "success":true}"#)?;
    /// assert_eq!(store.append("org-01", &event)?, AppendOutcome::Appended);
    /// assert_eq!(store.append("org-01", &event)?, AppendOutcome::Duplicate);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append(&self, org: &str, event: &Event) -> Result<AppendOutcome> {
        let report = self.append_batch([(org, event)])?;
        Ok(report
            .outcomes
            .first()
            .copied()
            .unwrap_or(AppendOutcome::Duplicate))
    }

    /// Append a batch of `(org, event)` with one write and (under the default
    /// durability) one `fdatasync`. Duplicates within the batch count too.
    ///
    /// On error, a prefix of the batch may have been stored (when the batch
    /// spanned a segment roll); retrying the whole batch is safe, since
    /// stored events come back as duplicates.
    pub fn append_batch<'a, I>(&self, batch: I) -> Result<BatchReport>
    where
        I: IntoIterator<Item = (&'a str, &'a Event)>,
    {
        let items: Vec<(&str, &Event)> = batch.into_iter().collect();
        let mut report = BatchReport {
            outcomes: Vec::with_capacity(items.len()),
            ..Default::default()
        };
        for (org, _) in &items {
            org::validate_org_name(org)?;
        }
        let (wait_for, depends_from) = {
            let mut w = lock(&self.writer);
            if let Some(p) = &w.poisoned {
                return Err(Error::Poisoned(p.clone()));
            }
            if let Some(e) = self.writeback.as_ref().and_then(Writeback::take_error) {
                w.poisoned = Some(e.clone());
                return Err(Error::Poisoned(e));
            }
            let w = &mut *w;
            self.install_sealed(w);
            // Tickets above this one may still be queued or in flight: a
            // duplicate found among their records counts only if they land.
            let depends_from = w.written_ticket + 1;
            if let Err(e) = self.encode_batch(w, &items, &mut report) {
                // Unindex the frames that were encoded but not queued.
                w.index
                    .discard_from((w.active.len + w.queued.len() as u64) as u32);
                w.buf.clear();
                return Err(e);
            }
            if self.options.durability == Durability::Sync {
                // Queue the frames: the next group-commit leader writes
                // everything queued with one write, then syncs once.
                self.queue(w);
            } else {
                self.write_now(w)?;
                let end = lsn(w.active.id, w.active.len);
                self.visible_lsn.fetch_max(end, Ordering::AcqRel);
                if let Some(wb) = &self.writeback {
                    if end >= w.writeback_requested + WRITEBACK_BYTES {
                        w.writeback_requested = end;
                        wb.request(w.active.file.clone(), w.active.path.clone(), end);
                    }
                }
            }
            (w.last_ticket, depends_from)
        };
        if self.options.durability == Durability::Sync {
            self.wait_durable(wait_for)?;
            self.check_not_failed(depends_from, wait_for)?;
        }
        Ok(report)
    }

    /// Encode the batch's new events into `w.buf` and index them (readers
    /// do not see them before they are synced: `visible_lsn`), rolling
    /// when the segment is full. Every outcome goes to `report`. On error
    /// the caller unindexes what is still in `w.buf`.
    fn encode_batch(&self, w: &mut Writer, items: &[(&str, &Event)], report: &mut BatchReport) -> Result<()> {
        let mut scratch = Vec::new();
        w.buf.clear();
        let fps: Vec<u64> = items
            .iter()
            .map(|(_, e)| fingerprint(e.id().as_bytes()))
            .collect();
        let maybe_sealed = w.fps.contains_each(&fps);
        let fps_at_start = w.fps.clone();
        for (i, &(org, event)) in items.iter().enumerate() {
            if let Some((_, ahead)) = items.get(i + TOUCH_EVENTS_AHEAD) {
                ahead.touch();
            }
            let id = *event.id().as_bytes();
            // A roll inside this batch may have sealed a segment on this
            // thread (without background sealing): then the set grew and
            // the up-front answers are stale.
            let maybe_sealed = match Arc::ptr_eq(&w.fps, &fps_at_start) {
                true => maybe_sealed[i],
                false => w.fps.contains(fingerprint(&id)),
            };
            // Earlier events of this batch are indexed already, so this
            // also catches duplicates within the batch.
            if let Some(outcome) = self.check_stored(w, org, event, maybe_sealed, &mut scratch)? {
                report.record(outcome);
                continue;
            }
            let start = frame::begin(&mut w.buf);
            codec::encode(org, event, &mut w.buf);
            frame::seal_in_place(&mut w.buf, start);
            let frame_len = (w.buf.len() - start) as u64;
            let base = w.active.len + w.queued.len() as u64;
            if base + w.buf.len() as u64 > self.options.segment_size
                && base + start as u64 > SEGMENT_HEADER_LEN as u64
            {
                let tail = w.buf.split_off(start);
                self.write_now(w)?;
                self.roll(w)?;
                w.buf = tail;
            }
            let offset = w.active.len + (w.queued.len() + w.buf.len()) as u64 - frame_len;
            w.index.insert(
                org,
                ActiveEntry {
                    occurred_at: event.occurred_at().as_nanos(),
                    id,
                    offset: offset as u32,
                },
            );
            report.record(AppendOutcome::Appended);
        }
        Ok(())
    }

    /// Move the batch's frames (in `w.buf`, indexed already) to the commit
    /// queue under a new ticket.
    fn queue(&self, w: &mut Writer) {
        if w.buf.is_empty() {
            return;
        }
        if w.queued.is_empty() {
            // The usual case with one appender: no copy.
            std::mem::swap(&mut w.queued, &mut w.buf);
        } else {
            w.queued.extend_from_slice(&w.buf);
            w.buf.clear();
        }
        w.last_ticket += 1;
    }

    /// Write the queued frames and then the batch's own (`w.buf`): before a
    /// roll, and in buffered mode.
    fn write_now(&self, w: &mut Writer) -> Result<()> {
        self.write_queued(w)?;
        if w.buf.is_empty() {
            return Ok(());
        }
        self.queue(w);
        self.write_queued(w)
    }

    /// Write every queued frame with one write. On failure nothing queued
    /// stays: the frames leave the index, and their tickets are marked
    /// failed (their appenders get the error once the next round ends).
    fn write_queued(&self, w: &mut Writer) -> Result<()> {
        if w.queued.is_empty() {
            w.written_ticket = w.last_ticket;
            return Ok(());
        }
        let queued = std::mem::take(&mut w.queued);
        let result = w.active.append(&queued);
        w.queued = queued;
        w.queued.clear();
        let first = w.written_ticket + 1;
        w.written_ticket = w.last_ticket;
        if let Err(e) = result {
            w.index.discard_from(w.active.len as u32);
            lock(&self.failed_tickets).push((first, w.last_ticket, e.to_string()));
            if matches!(&e, Error::Io { context, .. } if context.contains("cutting the partial write failed"))
            {
                w.poisoned = Some(e.to_string());
            }
            return Err(e);
        }
        Ok(())
    }

    /// Err if a write of any ticket in `from..=to` failed.
    fn check_not_failed(&self, from: u64, to: u64) -> Result<()> {
        let failed = lock(&self.failed_tickets);
        match failed.iter().find(|(lo, hi, _)| *lo <= to && from <= *hi) {
            Some((_, _, e)) => Err(Error::Io {
                context: format!("group commit: the write carrying this batch failed: {e}"),
                source: std::io::Error::other(e.clone()),
            }),
            None => Ok(()),
        }
    }

    /// Is this event's id already stored? Returns the outcome if so.
    fn check_stored(
        &self,
        w: &Writer,
        org: &str,
        event: &Event,
        maybe_sealed: bool,
        scratch: &mut Vec<u8>,
    ) -> Result<Option<AppendOutcome>> {
        let id_bytes = *event.id().as_bytes();
        let id = &id_bytes;
        let compare = |view: &RecordView<'_>, scratch: &mut Vec<u8>| {
            scratch.clear();
            codec::encode(org, event, scratch);
            let same_bytes = codec::decode(scratch).map(|v| v == *view).unwrap_or(false);
            if same_bytes || (view.org == org && view.to_event().same_content(event)) {
                AppendOutcome::Duplicate
            } else {
                AppendOutcome::Conflict
            }
        };
        if let Some(off) = w.index.offset_of(id) {
            let mut buf = Vec::new();
            let frame: &[u8] = match (off as u64).checked_sub(w.active.len) {
                // Queued, or encoded earlier in this batch: not yet written.
                Some(at) => match (at as usize).checked_sub(w.queued.len()) {
                    None => w.queued.get(at as usize..).unwrap_or_default(),
                    Some(in_buf) => w.buf.get(in_buf..).unwrap_or_default(),
                },
                None => {
                    segment::read_frame_at(&w.active.file, &w.active.path, off as u64, &mut buf)?;
                    &buf
                }
            };
            let view = segment::decode_frame(frame, &w.active.path, off as u64)?;
            return Ok(Some(compare(&view, scratch)));
        }
        for s in &w.sealing {
            if let Some(off) = s.index.offset_of(id) {
                let mut buf = Vec::new();
                let view = segment::read_record_at(&s.file, &s.path, off as u64, &mut buf)?;
                return Ok(Some(compare(&view, scratch)));
            }
        }
        if !maybe_sealed {
            return Ok(None);
        }
        let sealed = self.sealed_snapshot();
        // Re-sends usually carry the same occurred_at: look there first.
        let ts = event.occurred_at().as_nanos();
        let (likely, rest): (Vec<_>, Vec<_>) = sealed
            .iter()
            .partition(|s| s.layout.min_ts <= ts && ts <= s.layout.max_ts);
        for seg in likely.into_iter().chain(rest) {
            if let Some(off) = seg.find_id(id)? {
                let view = seg.record(off)?;
                return Ok(Some(compare(&view, scratch)));
            }
        }
        Ok(None)
    }

    fn sealed_snapshot(&self) -> Arc<Vec<Arc<SealedSegment>>> {
        self.sealed.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Make the active segment durable and start the next one; the rolled
    /// segment is sealed (its index built) by the sealer thread. Called with
    /// the writer lock held and the write buffer flushed.
    fn roll(&self, w: &mut Writer) -> Result<()> {
        self.write_queued(w)?;
        w.active.trim()?;
        if let Err(e) = w.active.sync() {
            w.poisoned = Some(e.to_string());
            return Err(e);
        }
        let end = lsn(w.active.id, w.active.len);
        self.synced_lsn.fetch_max(end, Ordering::AcqRel);
        self.visible_lsn.fetch_max(end, Ordering::AcqRel);
        self.resolved_ticket.fetch_max(w.written_ticket, Ordering::AcqRel);
        // If this fails, nothing changed: the current segment stays active.
        // A crash after it leaves an empty last segment (recovery removes
        // it) or a rolled segment without an index (recovery builds it).
        let next = ActiveFile::create_unsynced(
            self.options.io.clone(),
            &self.dir,
            w.active.id + 1,
            space_ahead(&self.options),
        )?;
        let capacity = w.index.len();
        let index = std::mem::replace(&mut w.index, ActiveIndex::with_capacity(capacity));
        let sealing = Sealing {
            id: w.active.id,
            path: w.active.path.clone(),
            file: w.active.file.clone(),
            len: w.active.len,
            index,
        };
        if self.options.background_sealing {
            let sealing = Arc::new(sealing);
            w.sealing.push(sealing.clone());
            let retry: Vec<Arc<Sealing>> = w.seal_failed.drain(..).map(|(s, _)| s).collect();
            for s in retry.into_iter().chain([sealing]) {
                if self
                    .sealer
                    .submit(s.clone(), w.fps.clone(), self.sealed_snapshot())
                {
                    w.sealing_queued += 1;
                } else {
                    // The sealer thread is gone (it panicked): seal here.
                    let result = sealer::seal(&self.dir, &*self.options.io, &s, &w.fps);
                    self.release_resident_pages();
                    self.install_one(w, Sealed { sealing: s, result });
                }
            }
        } else {
            let result = sealer::seal(&self.dir, &*self.options.io, &sealing, &w.fps);
            if let Err(e) = result {
                // Undo: the current segment stays active; an empty next
                // segment left behind is removed by recovery.
                w.index = sealing.index;
                let _ = std::fs::remove_file(&next.path);
                return Err(e);
            }
            self.release_resident_pages();
            let sealing = Arc::new(sealing);
            self.install_one(w, Sealed { sealing, result });
        }
        w.active = next;
        let start = lsn(w.active.id, w.active.len);
        self.synced_lsn.fetch_max(start, Ordering::AcqRel);
        self.visible_lsn.fetch_max(start, Ordering::AcqRel);
        Ok(())
    }

    /// Install whatever the sealer has finished. Called under the writer
    /// lock by everything that takes it to read or append, so a sealed
    /// segment moves from `sealing` to the sealed list atomically for every
    /// reader.
    fn install_sealed(&self, w: &mut Writer) {
        if w.sealing_queued > 0 {
            for done in self.sealer.finished() {
                w.sealing_queued -= 1;
                self.install_one(w, done);
            }
        }
    }

    /// Wait for every queued sealing and install it.
    fn settle_sealing(&self, w: &mut Writer) {
        while w.sealing_queued > 0 {
            match self.sealer.wait() {
                Some(done) => {
                    w.sealing_queued -= 1;
                    self.install_one(w, done);
                }
                None => break,
            }
        }
    }

    /// Give back the resident pages of every sealed segment's mappings
    /// (they stay in the page cache), so that mapped memory stays bounded
    /// by what one segment's worth of work touched. At every roll: on the
    /// sealer thread, or here when sealing on the appending thread.
    fn release_resident_pages(&self) {
        for seg in self.sealed_snapshot().iter() {
            seg.release_resident_pages();
        }
    }

    fn install_one(&self, w: &mut Writer, done: Sealed) {
        let (seg, merged, base) = match done.result {
            Ok(r) => r,
            Err(e) => {
                w.seal_failed.push((done.sealing, e.to_string()));
                return;
            }
        };
        w.fps = if Arc::ptr_eq(&w.fps, &base) {
            merged
        } else {
            // The set changed meanwhile (retention, or another install).
            Arc::new(w.fps.merged(&seg.fingerprints()))
        };
        w.checkpoint_current = false;
        w.sealing.retain(|s| !Arc::ptr_eq(s, &done.sealing));
        let mut list = self.sealed.write().unwrap_or_else(|p| p.into_inner());
        let mut next_list: Vec<Arc<SealedSegment>> = list.as_ref().clone();
        let at = next_list.partition_point(|s| s.id < seg.id);
        next_list.insert(at, Arc::new(seg));
        *list = Arc::new(next_list);
    }

    /// Block until batch `ticket` (and every earlier one) is durable or
    /// failed; one caller runs the round for all who wait (group commit).
    fn wait_durable(&self, ticket: u64) -> Result<()> {
        self.group_commit
            .wait(ticket, &self.resolved_ticket, || self.commit_round())
    }

    /// One group-commit round: write everything queued with one write, then
    /// fdatasync once.
    fn commit_round(&self) -> Result<()> {
        let (file, path, upto, ticket, written) = {
            let mut w = lock(&self.writer);
            if let Some(p) = &w.poisoned {
                return Err(Error::Poisoned(p.clone()));
            }
            let written = self.write_queued(&mut w);
            (
                w.active.file.clone(),
                w.active.path.clone(),
                lsn(w.active.id, w.active.len),
                w.written_ticket,
                written,
            )
        };
        if let Err(e) = self.options.io.sync_data(&file) {
            let err = Error::io(format!("fdatasync {}", path.display()), e);
            lock(&self.writer).poisoned = Some(err.to_string());
            return Err(err);
        }
        self.synced_lsn.fetch_max(upto, Ordering::AcqRel);
        self.visible_lsn.fetch_max(upto, Ordering::AcqRel);
        self.resolved_ticket.fetch_max(ticket, Ordering::AcqRel);
        written
    }

    /// Make everything appended so far durable (useful with
    /// [`Durability::Buffered`]).
    pub fn flush(&self) -> Result<()> {
        let (ticket, from) = {
            let w = lock(&self.writer);
            (w.last_ticket, w.written_ticket + 1)
        };
        self.wait_durable(ticket)?;
        self.check_not_failed(from, ticket)
    }

    fn retention_from(&self, org: &str, as_of: Timestamp) -> Result<i64> {
        let settings = self.org_settings(org)?;
        Ok(retention_cutoff(as_of, settings.retention_days))
    }

    /// Events of `query.org` in `[from, to)`, clamped to the organization's
    /// retention, ordered by `occurred_at` then `id`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use auditstore::{Query, Store, Timestamp};
    /// let store = Store::open(dir.path())?;
    /// let from = Timestamp::parse_rfc3339("2026-06-01T00:00:00Z")?;
    /// let to = Timestamp::parse_rfc3339("2026-06-02T00:00:00Z")?;
    /// for event in store.scan(&Query::new("org-01", from, to).action("workflow.*"))? {
    ///     println!("{}", event?.to_json());
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn scan(&self, query: &Query) -> Result<Scan> {
        let as_of = query.as_of.unwrap_or_else(|| self.options.clock.now());
        let from = query.from.as_nanos().max(self.retention_from(&query.org, as_of)?);
        let to = query.to.as_nanos();
        let mut scan = Scan::new(query);
        if from >= to || !scan.wants_more() {
            return Ok(scan);
        }
        let (sealed, sealing, active_entries, active_file, active_path) = {
            let mut w = lock(&self.writer);
            self.install_sealed(&mut w);
            let visible = self.visible_lsn.load(Ordering::Acquire);
            let visible_end = if visible >> LSN_OFFSET_BITS == w.active.id {
                visible & ((1 << LSN_OFFSET_BITS) - 1)
            } else {
                SEGMENT_HEADER_LEN as u64
            };
            let entries = w.index.range(&query.org, from, to, visible_end);
            let sealing: Vec<_> = w
                .sealing
                .iter()
                .map(|s| {
                    (
                        s.file.clone(),
                        s.path.clone(),
                        s.index.range_shared(&query.org, from, to),
                    )
                })
                .collect();
            (
                self.sealed_snapshot(),
                sealing,
                entries,
                w.active.file.clone(),
                w.active.path.clone(),
            )
        };
        for seg in sealed.iter() {
            let Some(org) = seg.org(&query.org) else { continue };
            if org.max_ts < from || org.min_ts >= to {
                continue;
            }
            let lo = idxfile::lower_bound(seg.idx_bytes(), &seg.layout, org, from);
            let hi = idxfile::lower_bound(seg.idx_bytes(), &seg.layout, org, to);
            scan.push_sealed(seg.clone(), lo, hi);
        }
        for (file, path, entries) in sealing {
            scan.push_in_memory(file, path, entries);
        }
        scan.push_in_memory(active_file, active_path, active_entries);
        Ok(scan)
    }

    /// The event with this id, unless it is past its organization's
    /// retention as of the store's clock.
    pub fn get(&self, id: uuid::Uuid) -> Result<Option<Event>> {
        self.get_as_of(id, self.options.clock.now())
    }

    /// [`Store::get`] with retention evaluated at `as_of`.
    pub fn get_as_of(&self, id: uuid::Uuid, as_of: Timestamp) -> Result<Option<Event>> {
        let id = *id.as_bytes();
        let found: Option<(String, Event)> = {
            let mut w = lock(&self.writer);
            self.install_sealed(&mut w);
            let visible = |off: u32| lsn(w.active.id, off as u64) < self.visible_lsn.load(Ordering::Acquire);
            let in_memory = match w.index.offset_of(&id).filter(|off| visible(*off)) {
                Some(off) => Some((&w.active.file, &w.active.path, off)),
                None => w
                    .sealing
                    .iter()
                    .find_map(|s| s.index.offset_of(&id).map(|off| (&s.file, &s.path, off))),
            };
            if let Some((file, path, off)) = in_memory {
                let mut buf = Vec::new();
                let v = segment::read_record_at(file, path, off as u64, &mut buf)?;
                Some((v.org.to_owned(), v.to_event()))
            } else if w.fps.contains(fingerprint(&id)) {
                drop(w);
                let mut hit = None;
                for seg in self.sealed_snapshot().iter() {
                    if let Some(off) = seg.find_id(&id)? {
                        let v = seg.record(off)?;
                        hit = Some((v.org.to_owned(), v.to_event()));
                        break;
                    }
                }
                hit
            } else {
                None
            }
        };
        let Some((org, event)) = found else {
            return Ok(None);
        };
        let cutoff = self.retention_from(&org, as_of)?;
        Ok((event.occurred_at().as_nanos() >= cutoff).then_some(event))
    }

    /// Delete every sealed segment all of whose events are past the
    /// retention of their organizations, as of the store's clock.
    ///
    /// Files are renamed aside, the directory fsynced, then unlinked; a
    /// reader still holding a segment keeps its mapping (unlinking never
    /// shrinks a mapped file).
    pub fn apply_retention(&self) -> Result<RetentionReport> {
        let now = self.options.clock.now();
        let mut report = RetentionReport::default();
        let mut w = lock(&self.writer);
        // Only sealed segments are candidates; let the ones sealing finish.
        self.settle_sealing(&mut w);
        let sealed = self.sealed_snapshot();
        let mut keep = Vec::with_capacity(sealed.len());
        let mut doomed = Vec::new();
        let mut cutoffs: HashMap<String, i64> = HashMap::new();
        for seg in sealed.iter() {
            let mut expired = true;
            for o in &seg.layout.orgs {
                let cutoff = match cutoffs.get(&o.name) {
                    Some(c) => *c,
                    None => {
                        let c = self.retention_from(&o.name, now)?;
                        cutoffs.insert(o.name.clone(), c);
                        c
                    }
                };
                if o.max_ts >= cutoff {
                    expired = false;
                    break;
                }
            }
            if expired {
                doomed.push(seg.clone());
            } else {
                keep.push(seg.clone());
            }
        }
        if doomed.is_empty() {
            return Ok(report);
        }
        // Index first: a crash between the two renames leaves a log without
        // an index, which the next open re-indexes (and a later run deletes).
        for seg in &doomed {
            for path in [&seg.idx_path, &seg.log_path] {
                let aside = aside_path(path);
                self.options
                    .io
                    .rename(path, &aside)
                    .ctx(|| format!("rename {} aside", path.display()))?;
            }
        }
        segment::sync_dir_via(&*self.options.io, &self.dir)?;
        for seg in &doomed {
            for path in [&seg.idx_path, &seg.log_path] {
                let aside = aside_path(path);
                std::fs::remove_file(&aside).ctx(|| format!("remove {}", aside.display()))?;
                report.files.push(path.clone());
            }
            report.segments_deleted += 1;
            report.events_deleted += seg.layout.event_count;
            report.bytes_freed += seg.disk_bytes();
        }
        segment::sync_dir_via(&*self.options.io, &self.dir)?;
        w.fps = Arc::new(FingerprintSet::from_runs(
            keep.iter().map(|s| s.fingerprints()).collect(),
        ));
        w.checkpoint_current = false;
        *self.sealed.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keep);
        Ok(report)
    }

    /// Counts over the whole store.
    pub fn stats(&self) -> Result<Stats> {
        let mut w = lock(&self.writer);
        self.install_sealed(&mut w);
        let sealed = self.sealed_snapshot();
        let mut orgs: HashSet<&str> = HashSet::new();
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        let mut stats = Stats {
            segments: (sealed.len() + w.sealing.len()) as u64 + 1,
            index_memory_bytes: (w.fps.memory_bytes() + w.index.memory_bytes()) as u64,
            ..Default::default()
        };
        let mut sealing_orgs: Vec<String> = Vec::new();
        for s in &w.sealing {
            let index = &s.index;
            stats.events += index.len() as u64;
            stats.bytes += s.len;
            stats.index_memory_bytes += index.memory_bytes() as u64;
            sealing_orgs.extend(index.org_names().map(str::to_owned));
            if let Some((a, b)) = index.time_bounds() {
                lo = lo.min(a);
                hi = hi.max(b);
            }
        }
        for seg in sealed.iter() {
            stats.events += seg.layout.event_count;
            stats.bytes += seg.disk_bytes();
            for o in &seg.layout.orgs {
                orgs.insert(&o.name);
            }
            if seg.layout.event_count > 0 {
                lo = lo.min(seg.layout.min_ts);
                hi = hi.max(seg.layout.max_ts);
            }
        }
        stats.events += w.index.len() as u64;
        stats.bytes += w.active.len;
        if let Some((a, b)) = w.index.time_bounds() {
            lo = lo.min(a);
            hi = hi.max(b);
        }
        orgs.extend(sealing_orgs.iter().map(String::as_str));
        let mut count = orgs.len() as u64;
        for o in w.index.org_names() {
            if !orgs.contains(o) {
                count += 1;
            }
        }
        stats.organizations = count;
        if lo <= hi {
            stats.oldest = Some(Timestamp::from_nanos(lo));
            stats.newest = Some(Timestamp::from_nanos(hi));
        }
        stats.bytes += std::fs::metadata(self.dir.join(META_FILE))
            .map(|m| m.len())
            .unwrap_or(0);
        Ok(stats)
    }

    /// Check every record's checksum and every index against the log.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        report.problems.extend(self.recovery.problems.iter().cloned());
        for p in &self.orphan_indexes {
            if !report.problems.iter().any(|q| &q.file == p) {
                report.problems.push(Problem {
                    file: p.clone(),
                    offset: 0,
                    message: "index without its segment: the segment file is missing".into(),
                });
            }
        }
        let unsealed: Vec<(PathBuf, u64, String)> = {
            let mut w = lock(&self.writer);
            self.settle_sealing(&mut w);
            w.seal_failed
                .iter()
                .map(|(s, e)| (s.path.clone(), s.len, e.clone()))
                .collect()
        };
        for (path, len, e) in unsealed {
            report.segments += 1;
            report.bytes += len;
            report.problems.push(Problem {
                file: path,
                offset: 0,
                message: format!(
                    "rolled segment without an index: writing it failed ({e}); the next open builds it"
                ),
            });
        }
        let sealed = self.sealed_snapshot();
        for seg in sealed.iter() {
            report.segments += 1;
            report.indexes += 1;
            report.bytes += seg.disk_bytes();
            let log = seg.log_bytes();
            let (orgs, mut entries, walk) = index_log(log);
            report.records += entries.len() as u64;
            if let Some(stop) = walk.stop {
                report.problems.push(Problem {
                    file: seg.log_path.clone(),
                    offset: stop.offset,
                    message: format!("sealed segment: {}", stop.reason),
                });
                continue;
            }
            let expected = idxfile::build(seg.id, log.len() as u64, &orgs, &mut entries);
            let actual = seg.idx_bytes();
            if expected.as_slice() != actual {
                let at = expected
                    .iter()
                    .zip(actual.iter())
                    .position(|(a, b)| a != b)
                    .unwrap_or(expected.len().min(actual.len()));
                report.problems.push(Problem {
                    file: seg.idx_path.clone(),
                    offset: at as u64,
                    message: "index does not match its segment".into(),
                });
            }
        }
        // The de-duplication checkpoint, if any, must match the indexes it
        // claims to cover (a wrong one would let duplicates in).
        let cp_path = self.dir.join(CHECKPOINT_FILE);
        if let Ok(bytes) = std::fs::read(&cp_path) {
            report.indexes += 1;
            match checkpoint::decode(Arc::new(bytes)) {
                Err(e) => report.problems.push(Problem {
                    file: cp_path,
                    offset: 0,
                    message: format!("de-duplication checkpoint unreadable ({e}); it will be rebuilt"),
                }),
                Ok((covered, fps)) => {
                    let by_id: HashMap<u64, &Arc<SealedSegment>> = sealed.iter().map(|s| (s.id, s)).collect();
                    if covered.iter().all(|id| by_id.contains_key(id)) {
                        let runs = covered
                            .iter()
                            .filter_map(|id| by_id.get(id))
                            .map(|s| s.fingerprints())
                            .collect();
                        if FingerprintSet::from_runs(runs).keys() != fps.keys() {
                            report.problems.push(Problem {
                                file: cp_path,
                                offset: 0,
                                message: "de-duplication checkpoint does not match the indexes it covers"
                                    .into(),
                            });
                        }
                    }
                }
            }
        }
        // The active segment, up to what has been written.
        let (path, len, file) = {
            let w = lock(&self.writer);
            (w.active.path.clone(), w.active.len, w.active.file.clone())
        };
        report.segments += 1;
        report.bytes += len;
        let mut bytes = vec![0u8; len as usize];
        std::os::unix::fs::FileExt::read_exact_at(&*file, &mut bytes, 0)
            .ctx(|| format!("read {}", path.display()))?;
        let id = segment::parse_name(path.file_name().and_then(|n| n.to_str()).unwrap_or(""))
            .map(|(id, _)| id)
            .unwrap_or(0);
        if let Err(e) = header::check(&bytes, id) {
            report.problems.push(Problem {
                file: path.clone(),
                offset: 0,
                message: e.to_string(),
            });
        } else {
            let mut n = 0u64;
            let walk = recovery::walk(&bytes, SEGMENT_HEADER_LEN, |_, _| n += 1);
            report.records += n;
            if let Some(stop) = walk.stop {
                report.problems.push(Problem {
                    file: path,
                    offset: stop.offset,
                    message: format!("active segment: {}", stop.reason),
                });
            }
        }
        Ok(report)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let mut w = lock(&self.writer);
        self.settle_sealing(&mut w);
        if w.poisoned.is_none() {
            // Nothing is queued once every append has returned; written
            // anyway rather than dropped, should that ever change.
            let _ = self.write_queued(&mut w);
            let _ = w.active.trim();
            let _ = w.active.sync();
            if !w.checkpoint_current {
                // Best effort: a missing checkpoint only makes the next open
                // rebuild the set from the indexes.
                let segments: Vec<u64> = self.sealed_snapshot().iter().map(|s| s.id).collect();
                let bytes = checkpoint::encode(&segments, &w.fps);
                let _ =
                    segment::write_atomically_via(&*self.options.io, &self.dir.join(CHECKPOINT_FILE), &bytes);
            }
        }
    }
}

/// The fingerprint set of the sealed segments: from the checkpoint where it
/// is valid and covers only existing segments, plus the segments it does
/// not cover. Returns whether the checkpoint describes the result exactly.
fn load_fingerprints(dir: &Path, sealed: &[Arc<SealedSegment>]) -> (FingerprintSet, bool) {
    let ids: HashSet<u64> = sealed.iter().map(|s| s.id).collect();
    let checkpoint = read_checkpoint(dir).filter(|(segs, _)| segs.iter().all(|s| ids.contains(s)));
    match checkpoint {
        Some((covered, mut set)) => {
            let covered: HashSet<u64> = covered.into_iter().collect();
            let rest: Vec<Vec<u64>> = sealed
                .iter()
                .filter(|s| !covered.contains(&s.id))
                .map(|s| id::keys_of(s.fingerprints()))
                .collect();
            let exact = rest.is_empty();
            if !exact {
                set.merge_keys(id::merge_runs(rest).into_iter());
            }
            (set, exact)
        }
        None => (
            FingerprintSet::from_runs(sealed.iter().map(|s| s.fingerprints()).collect()),
            sealed.is_empty(),
        ),
    }
}

/// The checkpoint, mapped and verified, if there is a valid one.
fn read_checkpoint(dir: &Path) -> Option<(Vec<u64>, FingerprintSet)> {
    let map = segment::map(&dir.join(CHECKPOINT_FILE)).ok()?;
    checkpoint::decode(Arc::new(map)).ok()
}

/// Walk a segment's frames and collect what its index is built from:
/// organization names, one entry per valid record, and where the walk
/// stopped.
fn index_log(log: &[u8]) -> (Vec<String>, Vec<idxfile::BuildEntry>, recovery::Walk) {
    let mut orgs: Vec<String> = Vec::new();
    let mut org_no: HashMap<String, u32> = HashMap::new();
    let mut entries = Vec::new();
    let walk = recovery::walk(log, SEGMENT_HEADER_LEN, |off, v| {
        let n = *org_no.entry(v.org.to_owned()).or_insert_with(|| {
            orgs.push(v.org.to_owned());
            (orgs.len() - 1) as u32
        });
        entries.push(idxfile::BuildEntry {
            org: n,
            occurred_at: v.occurred_at.as_nanos(),
            id: v.id,
            offset: off as u32,
        });
    });
    (orgs, entries, walk)
}

/// Where retention moves a file before unlinking it (`x.log` -> `x.log.deleted`).
fn aside_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".deleted");
    PathBuf::from(name)
}

/// Open a sealed segment; if its index is missing or damaged, rebuild it
/// from the log (persisting it only when the log is intact).
fn open_or_rebuild_sealed(
    io: &dyn Io,
    dir: &Path,
    id: u64,
    recovery: &mut RecoveryReport,
) -> Result<SealedSegment> {
    match SealedSegment::open(dir, id) {
        Ok(s) => return Ok(s),
        Err(e @ Error::UnsupportedVersion { .. }) => return Err(e),
        Err(_) => {}
    }
    let log_path = segment::log_path(dir, id);
    let log = std::fs::read(&log_path).ctx(|| format!("read {}", log_path.display()))?;
    segment::check_header(&log, id, &log_path)?;
    let (orgs, mut entries, walk) = index_log(&log);
    if let Some(stop) = walk.stop {
        // Never cut sealed data: refuse, naming the place, and let the
        // operator decide (the error is also what `verify` would print).
        return Err(Error::corrupt(
            &log_path,
            stop.offset,
            format!("sealed segment without a valid index: {}", stop.reason),
        ));
    }
    let bytes = idxfile::build(id, log.len() as u64, &orgs, &mut entries);
    let idx_path = segment::idx_path(dir, id);
    segment::write_atomically_via(io, &idx_path, &bytes)?;
    recovery.rebuilt_indexes.push(idx_path);
    SealedSegment::open(dir, id)
}

/// How the active segment claims space: a whole segment allocated on its
/// first append; zeros written ahead of small appends only when each is
/// synced (buffered appends would pay for them and gain nothing).
fn space_ahead(options: &Options) -> SpaceAhead {
    SpaceAhead {
        allocate_to: options.segment_size,
        zero_ahead: options.durability == Durability::Sync,
    }
}

/// Recover the active segment: find its valid prefix, cut the rest, rebuild
/// its in-memory index.
fn recover_active(
    io: Arc<dyn Io>,
    dir: &Path,
    id: u64,
    ahead: SpaceAhead,
    recovery: &mut RecoveryReport,
) -> Result<(ActiveFile, ActiveIndex)> {
    let path = segment::log_path(dir, id);
    let bytes = segment::map_for_recovery(&path)?;
    if bytes.len() < SEGMENT_HEADER_LEN {
        // Torn while being created: nothing in it was ever acknowledged.
        std::fs::remove_file(&path).ctx(|| format!("remove torn {}", path.display()))?;
        recovery.truncated_bytes += bytes.len() as u64;
        recovery.truncation = Some(format!(
            "{}: segment created but its header was torn",
            path.display()
        ));
        return Ok((ActiveFile::create(io, dir, id, ahead)?, ActiveIndex::new()));
    }
    segment::check_header(&bytes, id, &path)?;
    let mut index = ActiveIndex::with_capacity(bytes.len() / TYPICAL_FRAME_BYTES);
    let mut n = 0u64;
    let walk = recovery::walk(&bytes, SEGMENT_HEADER_LEN, |off, v| {
        n += 1;
        index.insert(
            v.org,
            ActiveEntry {
                occurred_at: v.occurred_at.as_nanos(),
                id: v.id,
                offset: off as u32,
            },
        );
    });
    recovery.records_scanned = n;
    // Zeros after the last record are space allocated ahead (or never
    // written), not a torn write: only bytes up to the last non-zero one
    // count as cut.
    let valid_end = walk.valid_end as usize;
    let written_end = bytes
        .get(valid_end..)
        .and_then(|tail| tail.iter().rposition(|b| *b != 0))
        .map_or(valid_end, |p| valid_end + p + 1);
    drop(bytes);
    let torn = (written_end - valid_end) as u64;
    if let (Some(stop), true) = (&walk.stop, torn > 0) {
        recovery.truncated_bytes = torn;
        recovery.truncation = Some(format!(
            "{}: cut {} bytes at offset {}: {}",
            path.display(),
            recovery.truncated_bytes,
            stop.offset,
            stop.reason
        ));
    }
    Ok((ActiveFile::reopen(io, path, id, walk.valid_end, ahead)?, index))
}
