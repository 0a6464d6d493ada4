//! The tamper-evidence tree wired into the store (shared/spec/integrity.md):
//! the background integrator, signed checkpoints, and proofs.
//!
//! **Leaves.** Leaf `i` is the `i`-th record of the log: segments in order,
//! records in file order. The tree keeps, per segment it has reached, the
//! leaf index of the segment's first record (`firsts`); a record's leaf
//! index is that plus its ordinal in the segment, found from the segment's
//! record offsets (built on first use and kept for the 8 segments used
//! last: 4 bytes per record of those segments, in memory only).
//!
//! **Integrating.** Appends never hash: a background thread (the
//! integrator) reads the records up to `synced_lsn` (everything at or below
//! it is fsynced) from the segment files, hashes them off every lock the
//! write path takes, and pushes the hashes into the tree. So a checkpoint
//! never covers a record that is not durable. At most once a second while
//! the tree grows it writes the tiles completed since (`tree/`) and signs
//! a checkpoint, appended and synced to the `checkpoints` file before it is
//! given out. [`Store::checkpoint`] does the same on demand after
//! integrating everything acknowledged; so do a clean close, a retention
//! run and export processing.
//!
//! **Opening.** The tiles are a cache of the log: missing or damaged, they
//! are rebuilt (in the background). The last checkpoint is not: the log
//! must hold at least its tree size of records and hash to its root, or the
//! open fails with `Corrupt`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::tlog_hash::foreground_threads;
use super::tlog_read::{open_log, position_of, record_offsets, resolve_signer, LogLeaves};
use super::{lock, LSN_OFFSET_BITS};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::integrity::key::KEY_FILE;
use crate::integrity::log::{self as cplog, CheckpointLog, EntryKind};
use crate::integrity::tiles::{TileError, TileStore, TREE_DIR};
use crate::integrity::tree::TILE_WIDTH;
use crate::integrity::{Checkpoint, Hash, Signer, Tree};
use crate::log::header::SEGMENT_HEADER_LEN;
use crate::log::segment;
use crate::store::SigningKey;

/// Records hashed per step of the integrator (the tree's lock is taken
/// once per step, briefly).
const STEP: u64 = 8192;

/// How often the integrator looks for newly durable records.
const POLL: Duration = Duration::from_millis(50);
/// Least time between two checkpoints the integrator signs on its own.
const SIGN_EVERY: Duration = Duration::from_secs(1);
/// How often the integrator thins out old checkpoints
/// ([`crate::integrity::log_thin`]); also once soon after an open.
const THIN_EVERY: Duration = Duration::from_secs(3600);
const OFFSET_TABLES: usize = 8;
pub(crate) const LEAF_TILES: usize = 64;

/// A checkpoint the store signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub tree_size: u64,
    pub root_hash: Hash,
    /// The C2SP signed note.
    pub note: String,
}

pub(crate) struct TreeState {
    pub tree: Tree,
    tiles: TileStore,
    log: CheckpointLog,
    /// The next record to integrate: segment id and offset.
    seg: u64,
    off: u64,
    /// Leaf index of the first record of each segment the tree reached.
    pub firsts: BTreeMap<u64, u64>,
    pub latest: Option<SignedCheckpoint>,
    last_signed: Instant,
    /// An integration that failed: reported by checkpoints until reopened.
    failed: Option<String>,
    /// The first leaf the log still holds (retention deleted those before).
    pub base: u64,
    /// The leaf hashes of `base`'s bottom tile before it.
    pub before: Vec<Hash>,
}

#[derive(Default)]
pub(crate) struct Caches {
    /// Segment id -> (record offsets, offset walked to).
    offsets: HashMap<u64, (Arc<Vec<u32>>, u64)>,
    /// Bottom tile -> its 256 leaf hashes.
    pub leaves: HashMap<u64, Arc<Vec<Hash>>>,
}

pub(crate) struct Tlog {
    pub(crate) dir: PathBuf,
    pub signer: Arc<Signer>,
    pub origin: String,
    clock: Arc<dyn Clock>,
    synced_lsn: Arc<AtomicU64>,
    pub(crate) state: Mutex<TreeState>,
    /// Held by whoever integrates (the thread, or an on-demand checkpoint).
    integrating: Mutex<()>,
    pub(crate) caches: Mutex<Caches>,
    stop: AtomicBool,
    wake: (Mutex<()>, Condvar),
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn tile_err(e: TileError) -> Error {
    match e {
        TileError::Corrupt { path, offset, reason } => Error::corrupt(path, offset, reason),
        e => Error::io("tree tiles", std::io::Error::other(e.to_string())),
    }
}

pub(crate) fn log_err(e: cplog::LogError) -> Error {
    match e {
        cplog::LogError::Corrupt { path, offset, reason } => Error::corrupt(path, offset, reason),
        cplog::LogError::UnsupportedVersion { path, found } => Error::UnsupportedVersion {
            path,
            found,
            supported: cplog::FORMAT_VERSION,
        },
        cplog::LogError::Io {
            context,
            path,
            source,
        } => Error::io(format!("{context} {}", path.display()), source),
    }
}

fn split_lsn(lsn: u64) -> (u64, u64) {
    (lsn >> LSN_OFFSET_BITS, lsn & ((1 << LSN_OFFSET_BITS) - 1))
}

/// What the open knows of the log: each segment's id and record count, in
/// order, and where the log ends.
pub(crate) struct LogShape {
    pub segments: Vec<(u64, u64)>,
}

impl Tlog {
    /// Opens (or creates) the tree, key and checkpoints of the store in
    /// `dir`, checks the log against the last checkpoint, and starts the
    /// integrator.
    pub(crate) fn open(
        dir: &Path,
        key: &SigningKey,
        origin: String,
        clock: Arc<dyn Clock>,
        synced_lsn: Arc<AtomicU64>,
        shape: LogShape,
    ) -> Result<Arc<Tlog>> {
        let cp_path = dir.join(cplog::CHECKPOINTS_FILE);
        let tree_dir = dir.join(TREE_DIR);
        let (log, summary) = match cplog::read_summary(&cp_path).map_err(log_err)? {
            Some(summary) => (
                CheckpointLog::open(&cp_path, summary.valid_len).map_err(log_err)?,
                summary,
            ),
            // Created before the key and the tree, so a store that has
            // either and not this file lost it.
            None if tree_dir.exists()
                || (matches!(key, SigningKey::InStore) && dir.join(KEY_FILE).exists()) =>
            {
                return Err(Error::corrupt(
                    &cp_path,
                    0,
                    "the checkpoints file is missing while the tree (tree/) or the signing key exists: \
                     it was removed",
                ))
            }
            None => (
                CheckpointLog::create(&cp_path).map_err(log_err)?,
                cplog::Summary::default(),
            ),
        };
        if summary.entries > 0 && matches!(key, SigningKey::InStore) && !dir.join(KEY_FILE).exists() {
            return Err(Error::corrupt(
                dir.join(KEY_FILE),
                0,
                "the signing key is missing while the store holds checkpoints signed with it",
            ));
        }
        let signer = resolve_signer(dir, key, &origin)?;
        let verifier = signer.verifier();
        // Only the entries the open relies on are checked: the last (the
        // tree must agree with it) and the last retention run (where the
        // leaves start); `verify` checks every one. A checkpoint a second
        // under load makes tens of thousands a day, each signature check
        // tens of microseconds.
        let open_entry = |e: &cplog::Entry| {
            Checkpoint::open(&e.note, &verifier, &origin).map_err(|err| {
                Error::corrupt(&cp_path, e.offset, format!("checkpoint does not verify: {err}"))
            })
        };
        let mut base = (shape.segments.first().map_or(1, |s| s.0), 0u64);
        let mut before: Vec<Hash> = Vec::new();
        if let Some(e) = &summary.last_retention {
            open_entry(e)?;
            if let EntryKind::Retention {
                first_leaf,
                first_segment,
                before: hashes,
            } = &e.kind
            {
                base = (*first_segment, *first_leaf);
                before = hashes.clone();
            }
        }
        let latest = match &summary.last {
            Some(e) => {
                let cp = open_entry(e)?;
                Some(SignedCheckpoint {
                    tree_size: cp.size,
                    root_hash: cp.root,
                    note: e.note.clone(),
                })
            }
            None => None,
        };
        // Leaf indexes from the first retained segment on; segments before
        // it that a crashed retention run left are just before it.
        let mut firsts = BTreeMap::new();
        let mut total = base.1;
        for &(id, count) in shape.segments.iter().filter(|s| s.0 >= base.0) {
            firsts.insert(id, total);
            total += count;
        }
        let mut first = base.1;
        for &(id, count) in shape.segments.iter().rev().filter(|s| s.0 < base.0) {
            first = first.saturating_sub(count);
            firsts.insert(id, first);
        }
        let tile_start = base.1 - before.len() as u64;
        // Findings about the log name its last segment (where the missing
        // or changed events end) and the checkpoints file.
        let last_log = segment::log_path(dir, shape.segments.last().map_or(1, |s| s.0));
        if let Some(cp) = &latest {
            if cp.tree_size > total {
                return Err(Error::corrupt(
                    &last_log,
                    0,
                    format!(
                        "the log holds {total} events, fewer than the {} of the last signed checkpoint in {}: \
                         events were removed or the log truncated (run `verify`)",
                        cp.tree_size,
                        cp_path.display()
                    ),
                ));
            }
        }
        let (mut tree, tiles) = match TileStore::load(&tree_dir) {
            Ok(Some((tree, tiles))) if tree.size() <= total && tree.size() >= tile_start => (tree, tiles),
            _ if base.1 > 0 => {
                return Err(Error::corrupt(
                    &tree_dir,
                    0,
                    "the tree tiles are missing or damaged after retention deleted leaves they held: \
                     they cannot be rebuilt",
                ))
            }
            // None, damaged, or covering more than the log: a cache, rebuilt.
            _ => {
                let tree = Tree::new();
                let tiles = TileStore::create(&tree_dir, &tree).map_err(tile_err)?;
                (tree, tiles)
            }
        };
        // A crash while tiles were appended leaves bytes past what `partial`
        // claims (a file with no header, say): cut, as the log's torn tail is.
        tiles.cut_unclaimed().map_err(tile_err)?;
        if tree.size() < base.1 {
            // The tiles end at the first retained leaf's bottom tile: its
            // leaves before that one are in the retention entry.
            before.iter().for_each(|h| tree.push(*h));
        }
        let (seg, off) = position_of(dir, &firsts, tree.size())?;
        let tlog = Arc::new(Tlog {
            dir: dir.to_owned(),
            signer,
            origin,
            clock,
            synced_lsn,
            state: Mutex::new(TreeState {
                tree,
                tiles,
                log,
                seg,
                off,
                firsts,
                latest,
                last_signed: Instant::now(),
                failed: None,
                base: base.1,
                before,
            }),
            integrating: Mutex::new(()),
            caches: Mutex::new(Caches::default()),
            stop: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
            thread: Mutex::new(None),
        });
        let want = lock(&tlog.state)
            .latest
            .as_ref()
            .map(|c| (c.tree_size, c.root_hash));
        if let Some((size, root)) = want {
            tlog.integrate_until(Some(size), foreground_threads())?;
            let st = lock(&tlog.state);
            let got = st
                .tree
                .root_at(size, &mut tlog.source(&st.firsts, st.base, &st.before))
                .map_err(|e| Error::corrupt(dir.join(TREE_DIR), 0, e.to_string()))?;
            if got != root {
                return Err(Error::corrupt(
                    &last_log,
                    0,
                    format!(
                        "the first {size} events of the log do not hash to the root of the last signed \
                         checkpoint in {}: events were changed, removed, inserted or moved (run `verify`)",
                        cp_path.display()
                    ),
                ));
            }
        }
        let worker = tlog.clone();
        let handle = std::thread::Builder::new()
            .name("auditstore-integrator".into())
            .spawn(move || worker.run())
            .map_err(|e| Error::io("start the integrator thread", e))?;
        *lock(&tlog.thread) = Some(handle);
        Ok(tlog)
    }

    /// The integrator thread: hash what became durable, sign once a second.
    fn run(&self) {
        let mut thinned: Option<Instant> = None;
        while !self.stop.load(Ordering::Acquire) {
            {
                let guard = lock(&self.wake.0);
                let _ = self.wake.1.wait_timeout(guard, POLL);
            }
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            if self.integrate_until(None, 1).is_err() {
                continue;
            }
            let mut st = lock(&self.state);
            let grown = st
                .latest
                .as_ref()
                .map_or(st.tree.size() > 0, |c| c.tree_size < st.tree.size());
            if grown && st.last_signed.elapsed() >= SIGN_EVERY {
                let _ = self.sign(&mut st);
            }
            if thinned.is_none_or(|t| t.elapsed() >= THIN_EVERY) {
                thinned = Some(Instant::now());
                self.thin_checkpoints(&mut st);
            }
        }
    }

    /// Thins out old checkpoints. A failure leaves the file as it was (the
    /// new one replaces it only by the final rename) and is tried again at
    /// the next round.
    fn thin_checkpoints(&self, st: &mut TreeState) {
        let path = self.dir.join(cplog::CHECKPOINTS_FILE);
        if let Ok(Some((log, _))) = crate::integrity::log_thin::thin(&path, self.clock.now().as_nanos()) {
            st.log = log;
        }
    }

    /// Stops the integrator, integrates everything durable and signs (a
    /// clean close).
    pub(crate) fn close(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake.1.notify_all();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
        let _ = self.checkpoint_now();
    }

    /// Integrates every durable record, then signs a checkpoint if the tree
    /// grew since the last one; returns the latest checkpoint.
    pub(crate) fn checkpoint_now(&self) -> Result<SignedCheckpoint> {
        self.integrate_until(None, foreground_threads())?;
        let mut st = lock(&self.state);
        if let Some(f) = &st.failed {
            return Err(Error::Poisoned(format!("the tamper-evidence tree: {f}")));
        }
        match &st.latest {
            Some(c) if c.tree_size == st.tree.size() => Ok(c.clone()),
            _ => self.sign(&mut st),
        }
    }

    /// Records a retention run about to delete the segments before
    /// `first_segment`, before it deletes anything: the first retained leaf
    /// index, the leaf hashes of its bottom tile before it (read now, while
    /// the log still holds them), and the run's checkpoint `cp`.
    pub(crate) fn record_retention(&self, first_segment: u64, cp: &SignedCheckpoint) -> Result<u64> {
        // No integration meanwhile: its position may be in a doomed segment.
        let _one = lock(&self.integrating);
        let mut st = lock(&self.state);
        let first_leaf = st
            .firsts
            .get(&first_segment)
            .copied()
            .unwrap_or_else(|| st.tree.size());
        let tile = first_leaf / TILE_WIDTH as u64;
        let before: Vec<Hash> = if first_leaf % TILE_WIDTH as u64 == 0 {
            Vec::new()
        } else {
            let mut source = self.source(&st.firsts, st.base, &st.before);
            source
                .tile_leaves_until(tile, first_leaf)
                .map_err(|e| Error::corrupt(self.dir.join(TREE_DIR), 0, e.to_string()))?
        };
        let at = self.clock.now().as_nanos();
        let kind = EntryKind::Retention {
            first_leaf,
            first_segment,
            before: before.clone(),
        };
        st.log.append(&kind, at, &cp.note).map_err(log_err)?;
        st.firsts.retain(|&id, _| id >= first_segment);
        if st.seg < first_segment {
            // Everything before was integrated (the run's checkpoint): go on
            // from the first retained segment, never reading a deleted one.
            st.seg = first_segment;
            st.off = SEGMENT_HEADER_LEN as u64;
            st.firsts.insert(first_segment, first_leaf);
        }
        st.base = first_leaf;
        st.before = before;
        drop(st);
        let mut caches = lock(&self.caches);
        caches.offsets.retain(|&id, _| id >= first_segment);
        caches.leaves.clear();
        Ok(first_leaf)
    }

    fn sign(&self, st: &mut TreeState) -> Result<SignedCheckpoint> {
        st.tiles.sync(&st.tree).map_err(tile_err)?;
        let size = st.tree.size();
        let root = st.tree.root();
        let note = Checkpoint::new(&self.origin, size, root)
            .sign(&self.signer)
            .map_err(|e| Error::InvalidArgument {
                what: "checkpoint",
                reason: e.to_string(),
            })?;
        let at = self.clock.now().as_nanos();
        st.log
            .append(&EntryKind::Checkpoint, at, &note)
            .map_err(log_err)?;
        let signed = SignedCheckpoint {
            tree_size: size,
            root_hash: root,
            note,
        };
        st.latest = Some(signed.clone());
        st.last_signed = Instant::now();
        Ok(signed)
    }

    /// Integrates durable records: all of them, or (at open) until the tree
    /// holds `until` leaves. Hashing happens outside the tree's lock.
    fn integrate_until(&self, until: Option<u64>, threads: usize) -> Result<()> {
        let _one = lock(&self.integrating);
        let limit = split_lsn(self.synced_lsn.load(Ordering::Acquire));
        loop {
            let (seg, off, size) = {
                let st = lock(&self.state);
                if let Some(f) = &st.failed {
                    return Err(Error::Poisoned(format!("the tamper-evidence tree: {f}")));
                }
                (st.seg, st.off, st.tree.size())
            };
            if until.is_some_and(|u| size >= u) || (seg, off) >= limit {
                return Ok(());
            }
            let path = segment::log_path(&self.dir, seg);
            let step = until.map_or(STEP, |u| (u - size).min(STEP));
            let stepped = self.hash_step(&path, seg, off, limit, step, threads);
            let mut st = lock(&self.state);
            match stepped {
                Ok((hashes, end, next)) => {
                    hashes.into_iter().for_each(|h| st.tree.push(h));
                    st.off = end;
                    if next {
                        st.seg += 1;
                        st.off = SEGMENT_HEADER_LEN as u64;
                        let (seg, first) = (st.seg, st.tree.size());
                        st.firsts.insert(seg, first);
                    }
                }
                Err(e) => {
                    st.failed = Some(e.to_string());
                    return Err(e);
                }
            }
        }
    }

    /// A leaf source reading the log, for proofs.
    pub(crate) fn source<'a>(
        &'a self,
        firsts: &'a BTreeMap<u64, u64>,
        base: u64,
        before: &'a [Hash],
    ) -> LogLeaves<'a> {
        LogLeaves {
            tlog: self,
            firsts,
            base,
            before,
        }
    }

    /// The leaf index of the record at `offset` of segment `seg`, if the tree
    /// has reached that segment.
    pub(crate) fn leaf_index(&self, seg: u64, offset: u64) -> Result<Option<u64>> {
        let first = match lock(&self.state).firsts.get(&seg) {
            Some(&f) => f,
            None => return Ok(None),
        };
        let offsets = self.offsets(seg, offset + 1)?;
        Ok(offsets
            .binary_search(&(offset as u32))
            .ok()
            .map(|ordinal| first + ordinal as u64))
    }

    /// The record offsets of segment `seg`, walked at least up to `upto`.
    pub(crate) fn offsets(&self, seg: u64, upto: u64) -> Result<Arc<Vec<u32>>> {
        if let Some((table, walked)) = lock(&self.caches).offsets.get(&seg) {
            if *walked >= upto {
                return Ok(table.clone());
            }
        }
        let path = segment::log_path(&self.dir, seg);
        let file = open_log(&path)?;
        let (mut table, from) = match lock(&self.caches).offsets.get(&seg) {
            Some((t, w)) => (t.as_ref().clone(), *w),
            None => (Vec::new(), SEGMENT_HEADER_LEN as u64),
        };
        let (limit_seg, limit_off) = split_lsn(self.synced_lsn.load(Ordering::Acquire));
        let to = if seg >= limit_seg { limit_off } else { u64::MAX };
        let end = record_offsets(&file, &path, from, to, &mut table)?;
        // A segment the log has gone past is complete: never walked again.
        let end = if seg < limit_seg { u64::MAX } else { end };
        let table = Arc::new(table);
        let mut caches = lock(&self.caches);
        if caches.offsets.len() >= OFFSET_TABLES {
            let evict = caches.offsets.keys().copied().find(|&k| k != seg);
            evict.map(|k| caches.offsets.remove(&k));
        }
        caches.offsets.insert(seg, (table.clone(), end));
        Ok(table)
    }
}

impl Drop for Tlog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.wake.1.notify_all();
    }
}
