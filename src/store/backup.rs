//! Online backups: a consistent copy of the store in a new directory,
//! taken while appends go on (docs/reliability.md, "Backups").
//!
//! What is copied is fixed in one critical section under the writer lock:
//! the sealed segments, the segments still being sealed, and the active
//! segment's id and synced end. Nothing is copied under the lock: sealed
//! segments are immutable (hard-linked where the file system allows), a
//! sealing segment is complete and durable, and the active segment's bytes
//! before its synced end are never rewritten, so appends go on meanwhile.
//! Everything is written into a temporary sibling of the destination,
//! fsynced, and renamed into place, so a crash never leaves half a backup
//! at the destination.

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;

use super::*;
use crate::export::request::{Registry, Status};
use crate::export::{ExportError, POLICY_FILE};

/// What [`Store::backup`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackupReport {
    /// Events in the backup.
    pub events: u64,
    /// Bytes of the files in the backup.
    pub bytes: u64,
    /// The backup's directory.
    pub dest: PathBuf,
    /// Segments in the backup.
    pub segments: u64,
    /// Files hard-linked from the store (sealed segments and their indexes,
    /// export files).
    pub linked_files: u64,
    /// Files written by copying (or, for indexes of segments still being
    /// sealed and the metadata, by writing what the store holds).
    pub copied_files: u64,
}

/// Bytes read and written at a time when copying a segment.
const COPY_CHUNK: usize = 1 << 20;

/// Backups started by this process: part of the temporary directory's name.
static BACKUPS: AtomicU64 = AtomicU64::new(0);

/// What a backup copies, fixed under the writer lock.
struct Snapshot {
    sealed: Arc<Vec<Arc<SealedSegment>>>,
    sealing: Vec<Arc<Sealing>>,
    active: Option<ActivePrefix>,
}

/// The active segment up to its synced end.
struct ActivePrefix {
    id: u64,
    path: PathBuf,
    file: Arc<File>,
    end: u64,
    events: u64,
}

impl Store {
    /// Write a consistent copy of the store into `dest`, a directory that
    /// must not exist or be empty (anything else is refused with
    /// `InvalidArgument`: a backup never overwrites). Appends on other
    /// threads go on meanwhile.
    ///
    /// The copy opens and verifies by itself and holds every event whose
    /// append returned `Ok` before this call began (under
    /// [`Durability::Buffered`] the store is flushed first, so that this
    /// holds too), the organization settings and export requests, the
    /// export policy, and the files of finished exports. Sealed segments
    /// and export files are hard-linked where the file system allows
    /// (they are immutable), else copied; a backup on another file system
    /// is a full copy. Not copied: `LOCK`, `dedup.fp` (a cache: the
    /// backup's first open rebuilds it), `*.tmp`, `*.deleted` and
    /// `quarantine/`.
    ///
    /// A read-only store ([`Store::open_read_only`]) backs up the snapshot
    /// its open took: that is how a second process backs up a store that
    /// another process holds.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let backups = tempfile::tempdir()?;
    /// let store = auditstore::Store::open(dir.path())?;
    /// let report = store.backup(backups.path().join("2026-06-01"))?;
    /// assert_eq!(report.events, 0);
    /// let copy = auditstore::Store::open(&report.dest)?;
    /// assert!(copy.verify()?.problems.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<BackupReport> {
        let dest = dest.as_ref().to_path_buf();
        check_dest(&dest, &self.dir)?;
        let parent = parent_of(&dest);
        std::fs::create_dir_all(&parent).ctx(|| format!("create {}", parent.display()))?;
        let tmp = tmp_path(&dest)?;
        match std::fs::create_dir(&tmp) {
            Ok(()) => {}
            // Left by a backup of an earlier process with the same id.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::remove_dir_all(&tmp).ctx(|| format!("remove leftover {}", tmp.display()))?;
                std::fs::create_dir(&tmp).ctx(|| format!("create {}", tmp.display()))?;
            }
            Err(e) => return Err(Error::io(format!("create {}", tmp.display()), e)),
        }
        let outcome = self.backup_into(&tmp).and_then(|report| {
            // Replaces an empty directory; fails on anything else (a
            // directory filled meanwhile is not overwritten).
            std::fs::rename(&tmp, &dest).ctx(|| format!("rename {} to {}", tmp.display(), dest.display()))?;
            segment::sync_dir(&parent)?;
            Ok(report)
        });
        match outcome {
            Ok(report) => Ok(BackupReport { dest, ..report }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }

    /// Fix what to copy: in one critical section under the writer lock, so
    /// that no roll (or retention) slips between the list of segments and
    /// the active segment's end.
    fn backup_snapshot(&self) -> Snapshot {
        let mut w = lock(&self.writer);
        self.install_sealed(&mut w);
        let sealed = self.sealed_snapshot();
        let sealing = w.sealing.clone();
        let synced = self.synced_lsn.load(Ordering::Acquire);
        let header = SEGMENT_HEADER_LEN as u64;
        let end = match synced >> LSN_OFFSET_BITS == w.active.id {
            true => synced & ((1 << LSN_OFFSET_BITS) - 1),
            false => header,
        }
        .min(w.active.len);
        // A read-only open that found no active segment has none (len 0).
        let active = (end >= header).then(|| ActivePrefix {
            id: w.active.id,
            path: w.active.path.clone(),
            file: w.active.file.clone(),
            end,
            events: w.index.count_below(end) as u64,
        });
        Snapshot {
            sealed,
            sealing,
            active,
        }
    }

    /// Everything into `tmp`, fsynced (files and directories).
    fn backup_into(&self, tmp: &Path) -> Result<BackupReport> {
        if self.options.durability == Durability::Buffered && !self.read_only {
            // What was acknowledged is in the file but maybe not synced yet.
            self.flush()?;
        }
        // Read before the log is fixed, so that no checkpoint or tile in the
        // copy covers an event the copy lacks.
        let integrity = self.integrity_files()?;
        let snap = self.backup_snapshot();
        let mut out = Out {
            dir: tmp,
            report: BackupReport::default(),
        };
        for (rel, bytes, secret) in &integrity {
            let to = tmp.join(rel);
            if let Some(parent) = to.parent().filter(|p| !p.exists()) {
                std::fs::create_dir(parent).ctx(|| format!("create {}", parent.display()))?;
            }
            out.write_private(&to, bytes, *secret)?;
        }
        if tmp.join(crate::integrity::tiles::TREE_DIR).exists() {
            segment::sync_dir(&tmp.join(crate::integrity::tiles::TREE_DIR))?;
        }
        // Links first: retention may delete a sealed segment meanwhile (then
        // its mapping, which outlives the unlink, is copied).
        for seg in snap.sealed.iter() {
            out.link_or_write(&seg.log_path, seg.log_bytes())?;
            out.link_or_write(&seg.idx_path, seg.idx_bytes())?;
            out.report.events += seg.layout.event_count;
            out.report.segments += 1;
        }
        for s in &snap.sealing {
            // Copied, never linked: only a valid index makes a log immutable
            // (an open may make an unindexed last segment active again).
            out.copy_prefix(&s.file, &s.path, s.len, &segment::log_path(tmp, s.id))?;
            let (names, mut entries) = s.index.to_build();
            let idx = idxfile::build(s.id, s.len, &names, &mut entries);
            out.write(&segment::idx_path(tmp, s.id), &idx)?;
            out.report.events += s.index.len() as u64;
            out.report.segments += 1;
        }
        if let Some(a) = &snap.active {
            out.copy_prefix(&a.file, &a.path, a.end, &segment::log_path(tmp, a.id))?;
            out.report.events += a.events;
            out.report.segments += 1;
        }
        self.backup_metadata(&mut out)?;
        segment::sync_dir(tmp)?;
        Ok(out.report)
    }

    /// The tamper-evidence files, as (path relative to the store, bytes,
    /// whether secret): the valid prefix of `checkpoints`, the tiles
    /// (`tree/partial` before the level files it points into) and the
    /// signing key when it is kept in the store.
    fn integrity_files(&self) -> Result<Vec<(PathBuf, Vec<u8>, bool)>> {
        use crate::integrity::{key::KEY_FILE, log as cplog, tiles::TREE_DIR};
        let mut files = Vec::new();
        let read = |path: &Path| -> Result<Option<Vec<u8>>> {
            match std::fs::read(path) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
            }
        };
        let cp = self.dir.join(cplog::CHECKPOINTS_FILE);
        if let Some(bytes) = read(&cp)? {
            let valid = cplog::parse(&cp, &bytes).map_err(tlog::log_err)?.valid_len as usize;
            files.push((
                PathBuf::from(cplog::CHECKPOINTS_FILE),
                bytes[..valid.min(bytes.len())].to_vec(),
                false,
            ));
        }
        if matches!(self.options.signing_key, SigningKey::InStore) {
            if let Some(bytes) = read(&self.dir.join(KEY_FILE))? {
                files.push((PathBuf::from(KEY_FILE), bytes, true));
            }
        }
        let tree = Path::new(TREE_DIR);
        if let Some(bytes) = read(&self.dir.join(tree).join("partial"))? {
            files.push((tree.join("partial"), bytes, false));
            for level in 1.. {
                let name = format!("level-{level}.tiles");
                match read(&self.dir.join(tree).join(&name))? {
                    Some(bytes) => files.push((tree.join(name), bytes, false)),
                    None => break,
                }
            }
        }
        Ok(files)
    }

    /// `meta.redb` and `store.id` as of one consistent state, the export
    /// policy, and the file (and signed manifest) of every finished export
    /// request in that state.
    fn backup_metadata(&self, out: &mut Out<'_>) -> Result<()> {
        let policy = self.dir.join(POLICY_FILE);
        match std::fs::read(&policy) {
            Ok(bytes) => out.write(&out.dir.join(POLICY_FILE), &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("read {}", policy.display()), e)),
        }
        let (bytes, descriptor) = self.meta.consistent_bytes()?;
        if bytes.is_empty() {
            // A read-only snapshot of a directory without metadata.
            return Ok(());
        }
        out.write(&out.dir.join(META_FILE), &bytes)?;
        descriptor.write(&RealIo, out.dir)?;
        out.report.bytes += descriptor.encode().len() as u64;
        out.report.copied_files += 1;
        // The requests as copied: exactly their files are linked (an export
        // is renamed into place before its request records success; one
        // built after this state is not known to the copy).
        let meta = Meta::snapshot(out.dir, Arc::new(RealIo), true)?;
        let requests = Registry::new(&meta).all().map_err(|e| match e {
            ExportError::Store(e) => e,
            e => Error::Metadata(format!("export requests: {e}")),
        })?;
        let finished: Vec<(uuid::Uuid, bool)> = requests
            .iter()
            .filter(|r| r.status == Status::Success && r.has_data)
            .map(|r| (r.id, r.manifest_sha256.is_some()))
            .collect();
        if finished.is_empty() {
            return Ok(());
        }
        let to_dir = out.dir.join(EXPORTS_DIR);
        std::fs::create_dir(&to_dir).ctx(|| format!("create {}", to_dir.display()))?;
        let from_dir = self.dir.join(EXPORTS_DIR);
        for (id, has_manifest) in finished {
            let csv = crate::export::builder::final_path(&from_dir, &id);
            let manifest = crate::export::manifest_build::manifest_path(&from_dir, &id);
            for from in std::iter::once(csv).chain(has_manifest.then_some(manifest)) {
                let Some(name) = from.file_name() else { continue };
                // Gone: expired (and deleted) meanwhile, or lost before.
                out.link_or_copy_file(&from, &to_dir.join(name))?;
            }
        }
        segment::sync_dir(&to_dir)
    }
}

/// Files written into the backup's temporary directory, and the counts.
struct Out<'a> {
    dir: &'a Path,
    report: BackupReport,
}

impl Out<'_> {
    /// [`Out::write`], with mode 0600 when `secret` (the signing key).
    fn write_private(&mut self, to: &Path, bytes: &[u8], secret: bool) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mode = if secret { 0o600 } else { 0o644 };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(to)
            .ctx(|| format!("create {}", to.display()))?;
        f.write_all(bytes).ctx(|| format!("write {}", to.display()))?;
        f.sync_all().ctx(|| format!("fsync {}", to.display()))?;
        self.report.bytes += bytes.len() as u64;
        self.report.copied_files += 1;
        Ok(())
    }

    /// Write `bytes` as a new file at `to`, fsynced.
    fn write(&mut self, to: &Path, bytes: &[u8]) -> Result<()> {
        let mut f = File::create_new(to).ctx(|| format!("create {}", to.display()))?;
        f.write_all(bytes).ctx(|| format!("write {}", to.display()))?;
        f.sync_all().ctx(|| format!("fsync {}", to.display()))?;
        self.report.bytes += bytes.len() as u64;
        self.report.copied_files += 1;
        Ok(())
    }

    /// Hard-link the immutable file `from` (whose bytes are `bytes`) into
    /// the backup under its name; where that fails (another file system,
    /// no hard links, the file deleted by retention meanwhile), write
    /// `bytes`.
    fn link_or_write(&mut self, from: &Path, bytes: &[u8]) -> Result<()> {
        let name = from.file_name().unwrap_or_default();
        let to = self.dir.join(name);
        if std::fs::hard_link(from, &to).is_ok() {
            // The same file as the one mapped, unless it was replaced
            // meanwhile (it never is: ids are not reused).
            match std::fs::metadata(&to) {
                Ok(m) if m.len() == bytes.len() as u64 => {
                    self.report.bytes += m.len();
                    self.report.linked_files += 1;
                    return Ok(());
                }
                _ => std::fs::remove_file(&to).ctx(|| format!("remove {}", to.display()))?,
            }
        }
        self.write(&to, bytes)
    }

    /// Hard-link the immutable file `from` to `to`, else copy it; a missing
    /// `from` is skipped.
    fn link_or_copy_file(&mut self, from: &Path, to: &Path) -> Result<()> {
        if std::fs::hard_link(from, to).is_ok() {
            let len = std::fs::metadata(to)
                .ctx(|| format!("stat {}", to.display()))?
                .len();
            self.report.bytes += len;
            self.report.linked_files += 1;
            return Ok(());
        }
        let mut src = match File::open(from) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("open {}", from.display()), e)),
        };
        let mut dst = File::create_new(to).ctx(|| format!("create {}", to.display()))?;
        let n = std::io::copy(&mut src, &mut dst)
            .ctx(|| format!("copy {} to {}", from.display(), to.display()))?;
        dst.sync_all().ctx(|| format!("fsync {}", to.display()))?;
        self.report.bytes += n;
        self.report.copied_files += 1;
        Ok(())
    }

    /// Copy the first `len` bytes of `file` (at `path`) to a new file at
    /// `to`, fsynced.
    fn copy_prefix(&mut self, file: &File, path: &Path, len: u64, to: &Path) -> Result<()> {
        let mut dst = File::create_new(to).ctx(|| format!("create {}", to.display()))?;
        let mut buf = vec![0u8; COPY_CHUNK.min(len as usize)];
        let mut at = 0u64;
        while at < len {
            let n = COPY_CHUNK.min((len - at) as usize);
            file.read_exact_at(&mut buf[..n], at)
                .ctx(|| format!("read {} at {at}", path.display()))?;
            dst.write_all(&buf[..n])
                .ctx(|| format!("write {}", to.display()))?;
            at += n as u64;
        }
        dst.sync_all().ctx(|| format!("fsync {}", to.display()))?;
        self.report.bytes += len;
        self.report.copied_files += 1;
        Ok(())
    }
}

/// Refuse a destination that exists and is not an empty directory, or that
/// lies inside the store's own directory.
fn check_dest(dest: &Path, store_dir: &Path) -> Result<()> {
    let refuse = |reason: String| {
        Err(Error::InvalidArgument {
            what: "backup destination",
            reason: format!("{}: {reason}", dest.display()),
        })
    };
    match std::fs::symlink_metadata(dest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("stat {}", dest.display()), e)),
        Ok(m) if !m.is_dir() => {
            return refuse("exists and is not a directory (a backup never overwrites)".into())
        }
        Ok(_) => {
            let mut entries = std::fs::read_dir(dest).ctx(|| format!("list {}", dest.display()))?;
            if entries.next().is_some() {
                return refuse("exists and is not empty (a backup never overwrites)".into());
            }
        }
    }
    let store = store_dir
        .canonicalize()
        .ctx(|| format!("resolve {}", store_dir.display()))?;
    let parent = parent_of(dest);
    let within = parent
        .ancestors()
        .find_map(|p| p.canonicalize().ok())
        .is_some_and(|p| p.starts_with(&store));
    if within {
        return refuse(format!("inside the store's directory {}", store_dir.display()));
    }
    Ok(())
}

/// The directory `path` is in (`.` for a bare name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `DEST.tmp-<pid>-<n>`, next to `dest`.
fn tmp_path(dest: &Path) -> Result<PathBuf> {
    let Some(name) = dest.file_name() else {
        return Err(Error::InvalidArgument {
            what: "backup destination",
            reason: format!("{}: names no directory", dest.display()),
        });
    };
    let mut tmp = name.to_owned();
    let n = BACKUPS.fetch_add(1, Ordering::Relaxed);
    tmp.push(format!(".tmp-{}-{n}", std::process::id()));
    Ok(parent_of(dest).join(tmp))
}
