//! Read-only opening: a snapshot of the store that changes nothing in its
//! directory, for reading while another process holds the store for
//! writing, and for `verify`.
//!
//! It takes no lock and repairs nothing. What an open for writing would
//! repair is found and reported instead: a torn tail of the active segment
//! is left in place and read up to the last valid record; a segment whose
//! index is missing or damaged is indexed in memory; damage inside the
//! active segment with valid records after it is a problem (the records
//! before it are read, the ones after it are not until an open salvages
//! them). Sealed segments (those with a valid index) are immutable and are
//! mapped; every other segment is read into memory, because the writer may
//! still append to it or cut its trailing zeros.

use std::os::unix::fs::FileExt as _;

use crate::meta::DESCRIPTOR_FILE;

use super::*;

/// How a read-only open treats damage it cannot read past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tolerance {
    /// Refuse, as an open for writing would.
    Refuse,
    /// Record it as a problem and go on with what can be read (`verify`).
    Report,
}

impl Store {
    /// Open the store in `dir` read-only: no lock is taken and no file in
    /// `dir` is created, changed, renamed or removed. The result sees the
    /// store as it was at the open; appends and other writes are refused
    /// (`Error::ReadOnly`). Use it to read while another process holds the
    /// store for writing.
    pub fn open_read_only(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        Self::open_snapshot(dir.as_ref(), options, Tolerance::Refuse)
    }

    /// Check the store in `dir` without changing anything in it: every
    /// record's checksum, every index, the de-duplication checkpoint and the
    /// metadata database (redb's integrity check of a copy read into
    /// memory, its store identity and generation). What an open for writing
    /// would repair is reported, not repaired; damage that stops one part
    /// of the check is a problem, and the rest is still checked.
    pub fn verify_dir(dir: impl AsRef<Path>, options: Options) -> Result<VerifyReport> {
        Self::open_for_verify(dir, options)?.verify()
    }

    /// The read-only store [`Store::verify_dir`] checks: damage that stops
    /// part of a read-only open is recorded (see `verify`) instead of
    /// refused, and that part is left out.
    pub fn open_for_verify(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        Self::open_snapshot(dir.as_ref(), options, Tolerance::Report)
    }

    pub(super) fn open_snapshot(dir: &Path, options: Options, tolerance: Tolerance) -> Result<Store> {
        let dir = dir.to_path_buf();
        let mut recovery = RecoveryReport::default();
        // Leftovers (`*.tmp`, `*.deleted`) stay where they are.
        let mut listing = list_store(&dir)?;
        let holds_data = !listing.logs.is_empty() || holds_exports(&dir);
        let meta = match Meta::snapshot(&dir, options.io.clone(), holds_data) {
            Ok(m) => {
                if holds_data && tolerance == Tolerance::Report && !dir.join(DESCRIPTOR_FILE).exists() {
                    recovery.problems.push(Problem {
                        leaf_index: None,
                        file: dir.join(DESCRIPTOR_FILE),
                        offset: 0,
                        message: "the store descriptor is missing: an open writes it again from meta.redb, \
                                  but until then a lost or older meta.redb would go unnoticed"
                            .into(),
                    });
                }
                m
            }
            Err(e) if tolerance == Tolerance::Report => {
                recovery.problems.push(problem_of(&e, &dir.join(META_FILE)));
                Meta::empty(&dir, options.io.clone())?
            }
            Err(e) => return Err(e),
        };
        // What an interrupted roll leaves is not a problem (an open removes it).
        listing.drop_interrupted_rolls(&dir)?;
        for id in listing.orphan_indexes().0 {
            let e = missing_segment(&dir, id);
            match tolerance {
                Tolerance::Report => recovery
                    .problems
                    .push(problem_of(&e, &segment::log_path(&dir, id))),
                Tolerance::Refuse => return Err(e),
            }
        }
        let logs = listing.logs;
        let mut sealed = Vec::new();
        let mut in_memory = Vec::new();
        let last = logs.last().copied();
        let active_id = match last {
            Some(id) if SealedSegment::open(&dir, id).is_ok() => None,
            other => other,
        };
        for &id in &logs {
            if Some(id) == active_id {
                break;
            }
            let outcome = match SealedSegment::open(&dir, id) {
                Ok(s) => Ok(Some(Arc::new(s))),
                Err(e @ Error::UnsupportedVersion { .. }) => Err(e),
                Err(e) => index_in_memory(&dir, id, e, &mut recovery).map(|s| {
                    in_memory.push(Arc::new(s));
                    None
                }),
            };
            match (outcome, tolerance) {
                (Ok(Some(s)), _) => sealed.push(s),
                (Ok(None), _) => {}
                (Err(e), Tolerance::Report) => recovery
                    .problems
                    .push(problem_of(&e, &segment::log_path(&dir, id))),
                (Err(e), Tolerance::Refuse) => return Err(e),
            }
        }
        let next_id = last.map_or(1, |id| id + 1);
        let (active, index) = match active_id {
            None => (
                ActiveFile::absent(options.io.clone(), &dir, next_id)?,
                ActiveIndex::new(),
            ),
            Some(id) => match read_active(options.io.clone(), &dir, id, &mut recovery) {
                Ok(found) => found,
                Err(e) if tolerance == Tolerance::Report => {
                    recovery
                        .problems
                        .push(problem_of(&e, &segment::log_path(&dir, id)));
                    (
                        ActiveFile::absent(options.io.clone(), &dir, id)?,
                        ActiveIndex::new(),
                    )
                }
                Err(e) => return Err(e),
            },
        };
        let checkpoint = read_checkpoint(&dir).filter(|cp| covers_only(cp, &sealed));
        let (fps, _) = fingerprints_from(checkpoint, &sealed);
        let end = lsn(active.id, active.len);
        let sealer =
            Sealer::start(dir.clone(), options.io.clone()).ctx(|| "start the sealer thread".to_string())?;
        Ok(Store {
            dir,
            options,
            _lock: None,
            read_only: true,
            writer: Mutex::new(Writer {
                active,
                index,
                fps: Arc::new(fps),
                sealing: in_memory,
                sealing_queued: 0,
                seal_failed: Vec::new(),
                buf: Vec::new(),
                poisoned: None,
                checkpoint_current: true,
                writeback_requested: end,
                queued: Vec::new(),
                last_ticket: 0,
                written_ticket: 0,
            }),
            sealed: RwLock::new(Arc::new(sealed)),
            group_commit: GroupCommit::default(),
            resolved_ticket: AtomicU64::new(0),
            failed_tickets: Mutex::new(Vec::new()),
            synced_lsn: Arc::new(AtomicU64::new(end)),
            writeback: None,
            sealer,
            visible_lsn: AtomicU64::new(end),
            meta,
            recovery,
            processing: Mutex::new(()),
            own_event_sink: std::sync::OnceLock::new(),
            tlog: None,
        })
    }

    /// Whether this store was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub(crate) fn refuse_if_read_only(&self) -> Result<()> {
        match self.read_only {
            true => Err(Error::ReadOnly(format!(
                "{} was opened read-only (another process holds it for writing): this operation writes; \
                 retry once that process is done",
                self.dir.display()
            ))),
            false => Ok(()),
        }
    }
}

/// A problem naming `file` for an error that stopped a read.
fn problem_of(e: &Error, file: &Path) -> Problem {
    match e {
        Error::Corrupt { path, offset, reason } => Problem {
            leaf_index: None,
            file: path.clone(),
            offset: *offset,
            message: reason.clone(),
        },
        e => Problem {
            leaf_index: None,
            file: file.to_path_buf(),
            offset: 0,
            message: e.to_string(),
        },
    }
}

/// A segment without a valid index, indexed in memory from its log (which
/// must be intact, as an open for writing requires).
fn index_in_memory(dir: &Path, id: u64, why: Error, recovery: &mut RecoveryReport) -> Result<Sealing> {
    let idx_path = segment::idx_path(dir, id);
    let log_path = segment::log_path(dir, id);
    let file = File::open(&log_path).ctx(|| format!("open {}", log_path.display()))?;
    let log = std::fs::read(&log_path).ctx(|| format!("read {}", log_path.display()))?;
    segment::check_header(&log, id, &log_path)?;
    let IndexedWalk { index, walk, .. } = walk_into_index(&log);
    if let Some(stop) = walk.stop {
        return Err(Error::corrupt(
            &log_path,
            stop.offset,
            format!("sealed segment without a valid index: {}", stop.reason),
        ));
    }
    if idx_path.exists() {
        let (offset, reason) = match why {
            Error::Corrupt { offset, reason, .. } => (offset, reason),
            e => (0, e.to_string()),
        };
        recovery.problems.push(Problem {
            leaf_index: None,
            file: idx_path.clone(),
            offset,
            message: format!(
                "damaged index ({reason}): an open rebuilds it from its segment, which is intact"
            ),
        });
    }
    recovery.rebuilt_indexes.push(idx_path);
    Ok(Sealing {
        id,
        path: log_path,
        file: Arc::new(file),
        len: log.len() as u64,
        index,
    })
}

/// The active segment's valid prefix and its index, reporting what an
/// open for writing would cut or salvage.
fn read_active(
    io: Arc<dyn Io>,
    dir: &Path,
    id: u64,
    recovery: &mut RecoveryReport,
) -> Result<(ActiveFile, ActiveIndex)> {
    let path = segment::log_path(dir, id);
    let file = File::open(&path).ctx(|| format!("open {}", path.display()))?;
    let size = file.metadata().ctx(|| format!("stat {}", path.display()))?.len();
    let mut bytes = vec![0u8; size as usize];
    file.read_exact_at(&mut bytes, 0)
        .ctx(|| format!("read {}", path.display()))?;
    if bytes.len() < SEGMENT_HEADER_LEN {
        recovery.truncated_bytes = bytes.len() as u64;
        recovery.truncation = Some(format!(
            "{}: segment created but its header was torn (an open removes it)",
            path.display()
        ));
        return Ok((ActiveFile::absent(io, dir, id)?, ActiveIndex::new()));
    }
    segment::check_header(&bytes, id, &path)?;
    let walked = walk_into_index(&bytes);
    recovery.records_scanned = walked.records;
    if let Some(tail) = walked.tail(&bytes) {
        recovery.truncated_bytes = tail.bytes;
        recovery.truncation = Some(format!(
            "{}: {} bytes at offset {} after the last valid record: {}",
            path.display(),
            tail.bytes,
            tail.stop.offset,
            tail.stop.reason
        ));
        let message = match tail.intact {
            // Not a problem for an open (it cuts the tail of an append a
            // crash interrupted, never acknowledged), but the bytes are
            // still there: `verify` reports what an open would do.
            0 => format!(
                "{} bytes after the last valid record ({}): an open cuts them, as the tail of an \
                 append a crash interrupted (or a damaged last record)",
                tail.bytes, tail.stop.reason
            ),
            intact => format!(
                "damaged record in the active segment ({}) with {intact} valid record(s) after it: an \
                 open cuts the {} bytes from it on, keeps them under quarantine/ and appends the valid \
                 records again",
                tail.stop.reason, tail.bytes
            ),
        };
        recovery.problems.push(Problem {
            leaf_index: None,
            file: path.clone(),
            offset: tail.stop.offset,
            message,
        });
    }
    let IndexedWalk { index, walk, .. } = walked;
    Ok((ActiveFile::read_only(io, path, file, id, walk.valid_end), index))
}
