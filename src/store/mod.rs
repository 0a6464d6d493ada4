//! The store: open and recover, append with de-duplication and group
//! commit, range scans, point reads, retention, verification and stats.
//!
//! Here: the public types, opening, and the read path (`scan` setup,
//! `get`). `append.rs`: the write path (dedup, encoding, group commit,
//! rolls, installing sealed segments). `open.rs`: what opening uses to
//! recover (the active segment's walk, sealed indexes, the dedup set).
//! `upkeep.rs`: retention, stats and verification. `backup.rs`: online
//! backups into a new directory.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::clock::Clock;
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
use crate::meta::{Meta, META_FILE};
use crate::org::{self, OrgSettings, Plan};
use crate::scan::{Query, Scan};
use crate::sealer::{self, Sealed, Sealer, Sealing};
use crate::time::Timestamp;
use crate::writeback::{Writeback, WRITEBACK_BYTES};

mod append;
mod backup;
mod export_proof;
mod open;
pub mod own_events;
mod proofs;
mod readonly;
mod tlog;
mod tlog_hash;
mod tlog_read;
mod tlog_verify;
mod types;
mod upkeep;

pub use proofs::{ConsistencyProof, InclusionProof, KeyInfo};
pub use tlog::SignedCheckpoint;
#[cfg(feature = "cluster")]
pub(crate) use tlog_read::key_err;
pub(crate) use tlog_read::record_leaf;

pub use types::*;

pub use backup::BackupReport;
use open::*;

const LOCK_FILE: &str = "LOCK";
const CHECKPOINT_FILE: &str = "dedup.fp";
/// Where bytes cut from the active segment are kept when valid records
/// followed the damage (docs/format.md, recovery).
pub const QUARANTINE_DIR: &str = "quarantine";
/// Name of the directory (inside the store's) holding export files.
pub const EXPORTS_DIR: &str = "exports";
/// For sizing the active index before a recovery walk (an estimate).
const TYPICAL_FRAME_BYTES: usize = 512;
const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;
/// How far ahead of the event being encoded `append_batch` loads events.
const TOUCH_EVENTS_AHEAD: usize = 4;
/// Bits of a log sequence number given to the offset within a segment.
const LSN_OFFSET_BITS: u32 = 40;

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
    /// The store's lock, held while open for writing (`None` read-only).
    _lock: Option<File>,
    /// Opened with [`Store::open_read_only`]: every write is refused.
    read_only: bool,
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
    meta: Meta,
    recovery: RecoveryReport,
    /// Held by each export processing run: two runs at once (the server's
    /// schedule and an operator's `export process`) would remove each
    /// other's files in progress.
    processing: Mutex<()>,
    /// Where [`Store::record_own_event`] sends events instead of the log,
    /// once set (a cluster node: through the streams, to every replica).
    own_event_sink: std::sync::OnceLock<Arc<dyn own_events::OwnEventSink>>,
    /// The tamper-evidence tree and its checkpoints (`None` read-only or
    /// with `Options::integrity` off).
    tlog: Option<Arc<tlog::Tlog>>,
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

/// Whether `dir` holds export files (whose requests live in the metadata).
fn holds_exports(dir: &Path) -> bool {
    std::fs::read_dir(dir.join(EXPORTS_DIR))
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false)
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
        let lock_file = take_lock(&dir)?;
        let mut listing = list_store(&dir)?;
        for path in &listing.leftovers {
            std::fs::remove_file(path).ctx(|| format!("remove leftover {}", path.display()))?;
        }
        // The descriptor is written through the real file system: the injected
        // `Io` is the write path's, and its tests count that path's calls.
        let meta = Meta::open(
            &dir,
            Arc::new(RealIo),
            !listing.logs.is_empty() || holds_exports(&dir),
            options.store_id,
        )?;
        let mut recovery = RecoveryReport::default();
        for id in listing.drop_interrupted_rolls(&dir)? {
            let path = segment::log_path(&dir, id);
            std::fs::remove_file(&path).ctx(|| format!("remove empty {}", path.display()))?;
        }
        let (lost, retired) = listing.orphan_indexes();
        if let Some(&id) = lost.first() {
            return Err(missing_segment(&dir, id));
        }
        for id in retired {
            // Retention was interrupted between renaming this segment's
            // files aside: finish it.
            let idx = segment::idx_path(&dir, id);
            std::fs::remove_file(&idx).ctx(|| format!("remove retired {}", idx.display()))?;
            segment::sync_dir_via(&*options.io, &dir)?;
        }
        let Listing { logs, idxs, .. } = listing;

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
        let (fps, checkpoint_current) = load_fingerprints(&*options.io, &dir, &sealed)?;
        let end = lsn(active.id, active.len);
        let synced_lsn = Arc::new(AtomicU64::new(end));
        let writeback = match options.durability {
            Durability::Buffered => Some(
                Writeback::start(options.io.clone(), synced_lsn.clone())
                    .ctx(|| "start the writeback thread".to_string())?,
            ),
            Durability::Sync => None,
        };
        let tlog = match options.integrity {
            true => {
                let mut segments: Vec<(u64, u64)> =
                    sealed.iter().map(|s| (s.id, s.layout.event_count)).collect();
                segments.push((active.id, index.len() as u64));
                Some(tlog::Tlog::open(
                    &dir,
                    &options.signing_key,
                    format!("auditstore/{}", meta.identity().id_text()),
                    options.clock.clone(),
                    synced_lsn.clone(),
                    tlog::LogShape { segments },
                )?)
            }
            false => None,
        };
        let sealer =
            Sealer::start(dir.clone(), options.io.clone()).ctx(|| "start the sealer thread".to_string())?;
        let mut store = Store {
            dir,
            options,
            _lock: Some(lock_file),
            read_only: false,
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
            processing: Mutex::new(()),
            own_event_sink: std::sync::OnceLock::new(),
            tlog,
        };
        store.salvage_quarantined()?;
        // Own events a crash left staged (their metadata change committed).
        store.record_staged_events()?;
        Ok(store)
    }

    /// Whether `dir` holds a store's files (its metadata database or a
    /// segment), without opening or changing anything.
    pub fn exists_at(dir: &Path) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.filter_map(|e| e.ok()).any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name == META_FILE
                || name == crate::meta::DESCRIPTOR_FILE
                || matches!(segment::parse_name(&name), Some((_, "log")))
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory the export policy is read from.
    pub fn policy_dir(&self) -> &Path {
        self.options.policy_dir.as_deref().unwrap_or(&self.dir)
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The clock the store evaluates time-dependent rules with.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.options.clock
    }

    /// What the last open found and repaired.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    pub(crate) fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The lock of export processing runs.
    pub(crate) fn processing_lock(&self) -> MutexGuard<'_, ()> {
        lock(&self.processing)
    }

    /// Settings of `org` (defaults if never set).
    pub fn org_settings(&self, org: &str) -> Result<OrgSettings> {
        org::get(&self.meta, org)
    }

    /// Create or update an organization's settings; a change is recorded
    /// in the organization's log as `org.settings.update` by the store
    /// itself (see [`Store::set_org_as`] to name who made it).
    pub fn set_org(&self, org: &str, plan: Option<Plan>, retention_days: Option<u32>) -> Result<OrgSettings> {
        let now = self.options.clock.now();
        self.set_org_by(own_events::Actor::SYSTEM, org, plan, retention_days, now)
    }

    /// [`Store::set_org`], recording `user` as who made the change.
    pub fn set_org_as(
        &self,
        user: &str,
        org: &str,
        plan: Option<Plan>,
        retention_days: Option<u32>,
    ) -> Result<OrgSettings> {
        let now = self.options.clock.now();
        self.set_org_by(own_events::Actor::user(user), org, plan, retention_days, now)
    }

    /// [`Store::set_org_as`], the change recorded as made at `at` instead
    /// of the store's clock (a caller with its own clock, such as the admin
    /// tool's `--as-of` run by a server that holds the store).
    pub fn set_org_as_at(
        &self,
        user: &str,
        org: &str,
        plan: Option<Plan>,
        retention_days: Option<u32>,
        at: Timestamp,
    ) -> Result<OrgSettings> {
        self.set_org_by(own_events::Actor::user(user), org, plan, retention_days, at)
    }

    fn set_org_by(
        &self,
        actor: own_events::Actor<'_>,
        org: &str,
        plan: Option<Plan>,
        retention_days: Option<u32>,
        at: Timestamp,
    ) -> Result<OrgSettings> {
        self.refuse_if_read_only()?;
        let settings = org::set(&self.meta, org, plan, retention_days, actor, at)?;
        self.record_staged_events()?;
        Ok(settings)
    }

    /// Every configured organization.
    pub fn orgs(&self) -> Result<Vec<OrgSettings>> {
        org::list(&self.meta)
    }

    /// The end of what readers see of the active segment: records queued,
    /// or written and not yet synced (under the default durability), are
    /// still in flight.
    fn visible_end(&self, w: &Writer) -> u64 {
        let visible = self.visible_lsn.load(Ordering::Acquire);
        if visible >> LSN_OFFSET_BITS == w.active.id {
            visible & ((1 << LSN_OFFSET_BITS) - 1)
        } else {
            SEGMENT_HEADER_LEN as u64
        }
    }

    fn sealed_snapshot(&self) -> Arc<Vec<Arc<SealedSegment>>> {
        self.sealed.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn retention_from(&self, org: &str, as_of: Timestamp) -> Result<i64> {
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
        let (sealed, sealing, active_entries, active_id, active_file, active_path) = {
            let mut w = lock(&self.writer);
            self.install_sealed(&mut w);
            let visible_end = self.visible_end(&w);
            let entries = w.index.range(&query.org, from, to, visible_end);
            let sealing: Vec<_> = w
                .sealing
                .iter()
                .map(|s| {
                    (
                        s.id,
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
                w.active.id,
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
        for (id, file, path, entries) in sealing {
            scan.push_in_memory(id, file, path, entries);
        }
        scan.push_in_memory(active_id, active_file, active_path, active_entries);
        Ok(scan)
    }

    /// The event with this id, unless it is past its organization's
    /// retention as of the store's clock.
    pub fn get(&self, id: uuid::Uuid) -> Result<Option<Event>> {
        self.get_as_of(id, self.options.clock.now())
    }

    /// [`Store::get`] with retention evaluated at `as_of`.
    pub fn get_as_of(&self, id: uuid::Uuid, as_of: Timestamp) -> Result<Option<Event>> {
        Ok(self.get_with_org(id, as_of)?.map(|(_, event)| event))
    }

    /// [`Store::get_as_of`] with the organization the event is stored
    /// under (which its `scope` need not name).
    pub fn get_with_org(&self, id: uuid::Uuid, as_of: Timestamp) -> Result<Option<(String, Event)>> {
        Ok(self.locate(id, as_of)?.map(|(_, _, org, event)| (org, event)))
    }

    /// The segment, offset, organization and content of the event `id`,
    /// unless it is past retention at `as_of` (as [`Store::get`]).
    fn locate(&self, id: uuid::Uuid, as_of: Timestamp) -> Result<Option<(u64, u64, String, Event)>> {
        let id = *id.as_bytes();
        let found = {
            let mut w = lock(&self.writer);
            self.install_sealed(&mut w);
            let visible = |off: u32| lsn(w.active.id, off as u64) < self.visible_lsn.load(Ordering::Acquire);
            let in_memory = match w.index.offset_of(&id).filter(|off| visible(*off)) {
                Some(off) => Some((w.active.id, &w.active.file, &w.active.path, off)),
                None => w
                    .sealing
                    .iter()
                    .find_map(|s| s.index.offset_of(&id).map(|off| (s.id, &s.file, &s.path, off))),
            };
            if let Some((seg, file, path, off)) = in_memory {
                let mut buf = Vec::new();
                let v = segment::read_record_at(file, path, off as u64, &mut buf)?;
                Some((seg, off as u64, v.org.to_owned(), v.to_event()))
            } else if w.fps.contains(fingerprint(&id)) {
                drop(w);
                let mut hit = None;
                for seg in self.sealed_snapshot().iter() {
                    if let Some(off) = seg.find_id(&id)? {
                        let v = seg.record(off)?;
                        hit = Some((seg.id, off as u64, v.org.to_owned(), v.to_event()));
                        break;
                    }
                }
                hit
            } else {
                None
            }
        };
        let Some((seg, off, org, event)) = found else {
            return Ok(None);
        };
        let cutoff = self.retention_from(&org, as_of)?;
        Ok((event.occurred_at().as_nanos() >= cutoff).then_some((seg, off, org, event)))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.read_only {
            return;
        }
        let mut w = lock(&self.writer);
        self.settle_sealing(&mut w);
        if w.poisoned.is_none() {
            // Nothing is queued once every append has returned; written
            // anyway rather than dropped, should that ever change.
            let _ = self.write_queued(&mut w);
            let _ = w.active.trim();
            if w.active.sync().is_ok() {
                self.synced_lsn
                    .fetch_max(lsn(w.active.id, w.active.len), Ordering::AcqRel);
            }
            if !w.checkpoint_current {
                // Best effort: a missing checkpoint only makes the next open
                // rebuild the set from the indexes.
                let segments: Vec<u64> = self.sealed_snapshot().iter().map(|s| s.id).collect();
                let bytes = checkpoint::encode(&segments, &w.fps);
                let _ =
                    segment::write_atomically_via(&*self.options.io, &self.dir.join(CHECKPOINT_FILE), &bytes);
            }
        }
        drop(w);
        // Everything written is synced now: the last checkpoint covers it.
        if let Some(t) = &self.tlog {
            t.close();
        }
    }
}
