//! Opening: the recovery of the active segment, sealed segments' indexes
//! and the de-duplication set.

use super::*;

/// The fingerprint set of the sealed segments: from the checkpoint where it
/// is valid and covers only existing segments, plus the segments it does
/// not cover. Returns whether the checkpoint describes the result exactly.
///
/// A checkpoint that covers a segment which is not sealed now (deleted, or
/// made the active segment again because its index was missing after an
/// interrupted roll) can never be used again, and would be wrong once that
/// id is sealed with other records: it is removed, durably.
pub(super) fn load_fingerprints(
    io: &dyn Io,
    dir: &Path,
    sealed: &[Arc<SealedSegment>],
) -> Result<(FingerprintSet, bool)> {
    let mut checkpoint = read_checkpoint(dir);
    if checkpoint.as_ref().is_some_and(|cp| !covers_only(cp, sealed)) {
        checkpoint = None;
        let path = dir.join(CHECKPOINT_FILE);
        std::fs::remove_file(&path).ctx(|| format!("remove stale {}", path.display()))?;
        segment::sync_dir_via(io, dir)?;
    }
    Ok(fingerprints_from(checkpoint, sealed))
}

/// Whether a checkpoint covers only segments among `sealed`.
pub(super) fn covers_only(checkpoint: &(Vec<u64>, FingerprintSet), sealed: &[Arc<SealedSegment>]) -> bool {
    let ids: HashSet<u64> = sealed.iter().map(|s| s.id).collect();
    checkpoint.0.iter().all(|s| ids.contains(s))
}

/// The fingerprint set of `sealed` from a checkpoint that covers only
/// segments among them (if any) plus the segments it does not cover, and
/// whether the checkpoint describes the result exactly.
pub(super) fn fingerprints_from(
    checkpoint: Option<(Vec<u64>, FingerprintSet)>,
    sealed: &[Arc<SealedSegment>],
) -> (FingerprintSet, bool) {
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
pub(super) fn read_checkpoint(dir: &Path) -> Option<(Vec<u64>, FingerprintSet)> {
    let map = segment::map(&dir.join(CHECKPOINT_FILE)).ok()?;
    checkpoint::decode(Arc::new(map)).ok()
}

/// The index entries of a segment's records, as they are visited.
#[derive(Default)]
pub(super) struct IndexEntries {
    pub(super) orgs: Vec<String>,
    org_no: HashMap<String, u32>,
    pub(super) entries: Vec<idxfile::BuildEntry>,
}

impl IndexEntries {
    pub(super) fn add(&mut self, offset: u64, v: &RecordView<'_>) {
        let orgs = &mut self.orgs;
        let n = *self.org_no.entry(v.org.to_owned()).or_insert_with(|| {
            orgs.push(v.org.to_owned());
            (orgs.len() - 1) as u32
        });
        self.entries.push(idxfile::BuildEntry {
            org: n,
            occurred_at: v.occurred_at.as_nanos(),
            id: v.id,
            offset: offset as u32,
        });
    }
}

/// The index entries of a segment's valid prefix, and where the walk stopped.
pub(super) fn index_log(log: &[u8]) -> (Vec<String>, Vec<idxfile::BuildEntry>, recovery::Walk) {
    let mut found = IndexEntries::default();
    let walk = recovery::walk(log, SEGMENT_HEADER_LEN, |off, v| found.add(off, v));
    (found.orgs, found.entries, walk)
}

/// The refusal for a sealed segment whose log is missing while its index
/// remains: lost data, not what a crash leaves (retention renames the
/// index aside before the log).
pub(super) fn missing_segment(dir: &Path, id: u64) -> Error {
    let idx = segment::idx_path(dir, id);
    Error::corrupt(
        segment::log_path(dir, id),
        0,
        format!(
            "segment file is missing while its index {} remains: its events are lost unless the file is \
             restored (from a backup); removing the index accepts the loss",
            idx.display()
        ),
    )
}

/// Ids of segments whose files retention had renamed aside (`*.deleted`)
/// when it was interrupted.
pub(super) fn retired_id(name: &str) -> Option<u64> {
    segment::parse_name(name.strip_suffix(".deleted")?).map(|(id, _)| id)
}

/// Where retention moves a file before unlinking it (`x.log` -> `x.log.deleted`).
pub(super) fn aside_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".deleted");
    PathBuf::from(name)
}

/// Open a sealed segment; if its index is missing or damaged, rebuild it
/// from the log (persisting it only when the log is intact).
pub(super) fn open_or_rebuild_sealed(
    io: &dyn Io,
    dir: &Path,
    id: u64,
    recovery: &mut RecoveryReport,
) -> Result<SealedSegment> {
    // A missing index is what a crash between a roll and its seal leaves;
    // a damaged one cannot come from a crash (indexes are written aside and
    // renamed into place), so it is reported as well as rebuilt.
    let damage = match SealedSegment::open(dir, id) {
        Ok(s) => return Ok(s),
        Err(e @ Error::UnsupportedVersion { .. }) => return Err(e),
        Err(_) if !segment::idx_path(dir, id).exists() => None,
        Err(Error::Corrupt { offset, reason, .. }) => Some((offset, reason)),
        Err(e) => Some((0, e.to_string())),
    };
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
    if let Some((offset, reason)) = damage {
        recovery.problems.push(Problem {
            leaf_index: None,
            file: idx_path.clone(),
            offset,
            message: format!("damaged index ({reason}): rebuilt from its segment, which is intact"),
        });
    }
    recovery.rebuilt_indexes.push(idx_path);
    SealedSegment::open(dir, id)
}

/// How the active segment claims space: a whole segment allocated on its
/// first append; zeros written ahead of small appends only when each is
/// synced (buffered appends would pay for them and gain nothing).
pub(super) fn space_ahead(options: &Options) -> SpaceAhead {
    SpaceAhead {
        allocate_to: options.segment_size,
        zero_ahead: options.durability == Durability::Sync,
    }
}

/// The store files in a directory, by what they are.
#[derive(Default)]
pub(super) struct Listing {
    /// Segment ids with a `.log`, sorted.
    pub(super) logs: Vec<u64>,
    /// Segment ids with a `.idx`.
    pub(super) idxs: HashSet<u64>,
    /// Segment ids whose files retention had renamed aside.
    pub(super) retired: HashSet<u64>,
    /// `*.tmp` and `*.deleted`: never read; an open for writing deletes them.
    pub(super) leftovers: Vec<PathBuf>,
}

impl Listing {
    /// A roll creates the next segment before sealing the current one; a
    /// crash (or failure) in between leaves an empty last segment after an
    /// unsealed one, which is the real active segment. Drops such segments
    /// from the listing and returns their ids, newest first (an open for
    /// writing removes their files).
    pub(super) fn drop_interrupted_rolls(&mut self, dir: &Path) -> Result<Vec<u64>> {
        let mut dropped = Vec::new();
        while let [.., prev, last] = self.logs[..] {
            if !segment::holds_no_records(&segment::log_path(dir, last))?
                || SealedSegment::open(dir, prev).is_ok()
            {
                break;
            }
            self.idxs.remove(&last);
            self.logs.pop();
            dropped.push(last);
        }
        Ok(dropped)
    }

    /// Indexes whose `.log` is missing, sorted: `(lost, retired)`, where a
    /// retired one is what interrupted retention left (its log renamed
    /// aside) and a lost one is a missing segment ([`missing_segment`]).
    pub(super) fn orphan_indexes(&self) -> (Vec<u64>, Vec<u64>) {
        let logs: HashSet<u64> = self.logs.iter().copied().collect();
        let mut orphans: Vec<u64> = self
            .idxs
            .iter()
            .copied()
            .filter(|id| !logs.contains(id))
            .collect();
        orphans.sort_unstable();
        orphans.into_iter().partition(|id| !self.retired.contains(id))
    }
}

/// List `dir` (a missing directory lists as empty).
pub(super) fn list_store(dir: &Path) -> Result<Listing> {
    let mut listing = Listing::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(listing),
        Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.ctx(|| format!("list {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = retired_id(name) {
            listing.retired.insert(id);
        }
        if name.ends_with(".tmp") || name.ends_with(".deleted") {
            listing.leftovers.push(entry.path());
            continue;
        }
        match segment::parse_name(name) {
            Some((id, "log")) => listing.logs.push(id),
            Some((id, "idx")) => {
                listing.idxs.insert(id);
            }
            _ => {}
        }
    }
    listing.logs.sort_unstable();
    Ok(listing)
}

/// A segment's records walked into an in-memory index.
pub(super) struct IndexedWalk {
    pub(super) index: ActiveIndex,
    pub(super) walk: recovery::Walk,
    pub(super) records: u64,
    /// The end of the bytes ever written: after the last non-zero byte.
    /// Zeros after the last record are space allocated ahead (or never
    /// written), not a torn write: only bytes up to here count as cut.
    pub(super) written_end: usize,
}

/// Bytes written after a segment's valid prefix: a torn tail, or damage.
pub(super) struct Tail<'a> {
    /// Where and why the walk stopped.
    pub(super) stop: &'a recovery::Stop,
    /// Bytes from there to the last non-zero one.
    pub(super) bytes: u64,
    /// Valid records found after the stop: when there are any, this is
    /// damage inside acknowledged data, not a write a crash cut short.
    pub(super) intact: usize,
}

impl IndexedWalk {
    /// What was written after the valid prefix of `bytes` (the segment
    /// walked), if anything.
    pub(super) fn tail<'a>(&'a self, bytes: &[u8]) -> Option<Tail<'a>> {
        let valid_end = self.walk.valid_end as usize;
        let stop = self.walk.stop.as_ref().filter(|_| self.written_end > valid_end)?;
        Some(Tail {
            stop,
            bytes: (self.written_end - valid_end) as u64,
            intact: recovery::salvage(&bytes[..self.written_end], valid_end).len(),
        })
    }
}

/// Walk the frames of a segment's `bytes` (header checked by the caller)
/// into an in-memory index, up to the first invalid frame.
pub(super) fn walk_into_index(bytes: &[u8]) -> IndexedWalk {
    let mut index = ActiveIndex::with_capacity(bytes.len() / TYPICAL_FRAME_BYTES);
    let mut records = 0u64;
    let walk = recovery::walk(bytes, SEGMENT_HEADER_LEN, |off, v| {
        records += 1;
        index.insert(
            v.org,
            ActiveEntry {
                occurred_at: v.occurred_at.as_nanos(),
                id: v.id,
                offset: off as u32,
            },
        );
    });
    let valid_end = walk.valid_end as usize;
    let written_end = bytes
        .get(valid_end..)
        .and_then(|tail| tail.iter().rposition(|b| *b != 0))
        .map_or(valid_end, |p| valid_end + p + 1);
    IndexedWalk {
        index,
        walk,
        records,
        written_end,
    }
}

/// Take the store's lock (`flock`, exclusive, non-blocking): `Locked` if
/// another process (or another open in this one) holds it.
pub(super) fn take_lock(dir: &Path) -> Result<File> {
    let lock_path = dir.join(LOCK_FILE);
    let lock_file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .ctx(|| format!("open lock file {}", lock_path.display()))?;
    match lock_file.try_lock() {
        Ok(()) => Ok(lock_file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked {
            dir: dir.to_path_buf(),
            lock: lock_path,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(format!("lock {}", lock_path.display()), e)),
    }
}

/// Recover the active segment: find its valid prefix, cut the rest, rebuild
/// its in-memory index.
pub(super) fn recover_active(
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
    let walked = walk_into_index(&bytes);
    recovery.records_scanned = walked.records;
    if let Some(tail) = walked.tail(&bytes) {
        if tail.intact > 0 {
            // Valid records after the damage: not a torn tail but damage
            // inside acknowledged data. Keep every cut byte, and the open
            // appends the valid records again (`Store::salvage_quarantined`).
            let valid_end = walked.walk.valid_end as usize;
            let kept = new_quarantine_path(dir, id, tail.stop.offset);
            write_quarantine(&*io, dir, &kept, &bytes[valid_end..walked.written_end])?;
            recovery.problems.push(Problem {
                leaf_index: None,
                file: path.clone(),
                offset: tail.stop.offset,
                message: format!(
                    "damaged record in the active segment ({}) with {} valid record(s) after it: \
                     the {} bytes from it on were cut, kept in {}, and the valid records appended again",
                    tail.stop.reason,
                    tail.intact,
                    tail.bytes,
                    kept.with_extension(CUT).display()
                ),
            });
            recovery.quarantined.push(kept.with_extension(CUT));
        }
        recovery.truncated_bytes = tail.bytes;
        recovery.truncation = Some(format!(
            "{}: cut {} bytes at offset {}: {}",
            path.display(),
            tail.bytes,
            tail.stop.offset,
            tail.stop.reason
        ));
    }
    drop(bytes);
    let IndexedWalk { index, walk, .. } = walked;
    Ok((ActiveFile::reopen(io, path, id, walk.valid_end, ahead)?, index))
}

/// Extension of a quarantine file whose valid records are still to be
/// appended again, and of one whose records were.
const PENDING: &str = "pending";
const CUT: &str = "cut";

/// `quarantine/<segment file>.<offset>.pending`, or `<offset>-<n>` when an
/// earlier cut at the same place (of records appended again there) is kept
/// already. A `.pending` file of the same name is an attempt at this very
/// cut that a crash interrupted before the segment was cut: it is replaced.
fn new_quarantine_path(dir: &Path, id: u64, offset: u64) -> PathBuf {
    let log = segment::log_path(dir, id);
    let name = log
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let qdir = dir.join(QUARANTINE_DIR);
    (0u64..)
        .map(|n| match n {
            0 => qdir.join(format!("{name}.{offset}.{PENDING}")),
            n => qdir.join(format!("{name}.{offset}-{n}.{PENDING}")),
        })
        .find(|p| !p.with_extension(CUT).exists())
        .unwrap_or_else(|| qdir.join(format!("{name}.{offset}.{PENDING}")))
}

/// The segment file and offset a quarantine file was cut from, by its name.
pub(super) fn quarantined_from(dir: &Path, kept: &Path) -> Option<(PathBuf, u64)> {
    let stem = kept.file_stem()?.to_str()?;
    let (segment, place) = stem.rsplit_once('.')?;
    let offset = place.split('-').next()?;
    Some((dir.join(segment), offset.parse().ok()?))
}

/// Save `bytes` durably under `quarantine/` before they are cut.
fn write_quarantine(io: &dyn Io, dir: &Path, kept: &Path, bytes: &[u8]) -> Result<()> {
    let qdir = dir.join(QUARANTINE_DIR);
    if !qdir.exists() {
        std::fs::create_dir(&qdir).ctx(|| format!("create {}", qdir.display()))?;
        segment::sync_dir_via(io, dir)?;
    }
    segment::write_atomically_via(io, kept, bytes)
}

/// Files under `quarantine/`, in name order.
pub(super) fn quarantine_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(QUARANTINE_DIR))
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| matches!(p.extension().and_then(|e| e.to_str()), Some(PENDING | CUT)));
    files.sort();
    files
}

impl Store {
    /// Append again the intact records of every quarantine file still
    /// pending (this open's, or one a crash interrupted), then mark it done.
    /// Records already stored come back as duplicates, so a repeat after a
    /// crash adds nothing twice.
    pub(super) fn salvage_quarantined(&mut self) -> Result<()> {
        // A crash while a quarantine file was written aside leaves its `.tmp`.
        if let Ok(entries) = std::fs::read_dir(self.dir.join(QUARANTINE_DIR)) {
            for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
                if path.extension().is_some_and(|e| e == "tmp") {
                    std::fs::remove_file(&path).ctx(|| format!("remove leftover {}", path.display()))?;
                }
            }
        }
        for kept in quarantine_files(&self.dir) {
            if kept.extension().and_then(|e| e.to_str()) != Some(PENDING) {
                continue;
            }
            // The bytes are safe in the file: a failure here (a full disk,
            // say) leaves it pending for the next open instead of refusing
            // a store that is otherwise whole.
            if let Err(e) = self.salvage_one(&kept) {
                let (file, offset) = quarantined_from(&self.dir, &kept).unwrap_or_else(|| (kept.clone(), 0));
                self.recovery.problems.push(Problem {
                    leaf_index: None,
                    file,
                    offset,
                    message: format!(
                        "the intact records kept in {} could not all be appended again yet ({e}); \
                         the next open retries",
                        kept.display()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Append the intact records of one pending quarantine file, make them
    /// durable, and mark the file done.
    fn salvage_one(&mut self, kept: &Path) -> Result<()> {
        let bytes = std::fs::read(kept).ctx(|| format!("read {}", kept.display()))?;
        let records: Vec<(String, Event)> = recovery::salvage(&bytes, 0)
            .into_iter()
            .filter_map(|at| {
                let (body, _) = frame::decode(&bytes[at]).ok()?;
                let view = codec::decode(body).ok()?;
                Some((view.org.to_owned(), view.to_event()))
            })
            .collect();
        for chunk in records.chunks(1024) {
            let report = self.append_batch(chunk.iter().map(|(org, e)| (org.as_str(), e)))?;
            self.recovery.salvaged_records += report.appended;
        }
        self.flush()?;
        let done = kept.with_extension(CUT);
        self.options
            .io
            .rename(kept, &done)
            .ctx(|| format!("rename {} to {}", kept.display(), done.display()))?;
        segment::sync_dir_via(&*self.options.io, &self.dir.join(QUARANTINE_DIR))
    }
}
