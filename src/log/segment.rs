//! Segment files on disk: `<id>.log` (header + frames) and, once sealed,
//! `<id>.idx`. The active segment is written with positioned writes; sealed
//! segments are immutable and read through `memmap2`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use super::{frame, header};
use crate::codec::{self, RecordView};
use crate::error::{Error, IoContext, Result};
use crate::index::file::{self as idxfile, IndexLayout, OrgRange};
use crate::index::id::fingerprint;
use crate::io::Io;

pub fn log_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.log"))
}

pub fn idx_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.idx"))
}

/// Parse a segment file name (`0000000000000042.log`) into (id, extension).
pub fn parse_name(name: &str) -> Option<(u64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 16 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, ext))
}

/// fsync a directory so that creations, renames and unlinks in it are durable.
pub fn sync_dir_via(io: &dyn Io, dir: &Path) -> Result<()> {
    io.sync_dir(dir)
        .ctx(|| format!("fsync directory {}", dir.display()))
}

/// [`sync_dir_via`] the real file system.
pub fn sync_dir(dir: &Path) -> Result<()> {
    sync_dir_via(&crate::io::RealIo, dir)
}

/// Write `bytes` to `path` atomically: a temporary file (`path`'s name and
/// `.tmp`), fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically_via(&crate::io::RealIo, path, bytes)
}

/// [`write_atomically`] through `io`.
pub fn write_atomically_via(io: &dyn Io, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let f = File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?;
    io.write_at(&f, bytes, 0)
        .ctx(|| format!("write {}", tmp.display()))?;
    io.sync_all(&f).ctx(|| format!("fsync {}", tmp.display()))?;
    drop(f);
    io.rename(&tmp, path)
        .ctx(|| format!("rename {} to {}", tmp.display(), path.display()))?;
    if let Some(dir) = path.parent() {
        sync_dir_via(io, dir)?;
    }
    Ok(())
}

/// Check the header of segment `id` held in `buf` (read from `path`): a
/// newer format version is `UnsupportedVersion`, anything else `Corrupt`
/// at offset 0.
pub fn check_header(buf: &[u8], id: u64, path: &Path) -> Result<()> {
    header::check(buf, id).map_err(|e| match e {
        header::HeaderError::UnsupportedVersion(v) => Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: v,
            supported: header::SEGMENT_FORMAT_VERSION,
        },
        other => Error::corrupt(path, 0, other.to_string()),
    })
}

/// The segment currently appended to.
///
/// Its file may be longer than its data, in two ways, both so that an
/// `fdatasync` flushes data into blocks the file system already considers
/// written instead of also committing metadata to its journal:
/// - on the first append that needs it, space for a whole segment is
///   allocated (`fallocate`): no journaled growth of the file's size;
/// - while appends are small (the durable single-event appends of a group
///   commit, a few KiB per sync), a chunk of zeros is written ahead of the
///   data ([`ZERO_AHEAD`] at a time). `fallocate`d space is *unwritten* to
///   ext4 and XFS, and converting it at each sync is a journal commit too;
///   overwriting blocks already written is not (measured here: `fdatasync`
///   of a 5 KB append p50 ~160 µs instead of ~300-400 µs, p99 ~0.4 ms
///   instead of ~2 ms). Large writes skip it: writing every byte twice costs
///   them more than the journal commit saves.
///
/// The zeros after the data are cut before the segment is sealed and when
/// the store closes; a crash leaves them, and recovery tells them apart
/// from a torn write.
#[derive(Debug)]
pub struct ActiveFile {
    pub id: u64,
    pub path: PathBuf,
    pub file: Arc<File>,
    /// Bytes written and acknowledged by the OS (header included).
    pub len: u64,
    /// Size of the file: `len`, or more once space was allocated ahead.
    size: u64,
    /// Size to allocate when an append outgrows `size` (0: do not).
    allocate_to: u64,
    /// End of the bytes written at least once (data or zeros written ahead).
    written_to: u64,
    /// The segment size: no zeros are written past it.
    zero_limit: u64,
    /// Write zeros ahead while appends are small.
    zero_ahead: bool,
    /// Moving average of the bytes per append.
    typical_append: u64,
    io: Arc<dyn Io>,
}

/// How an active segment claims disk space ahead of its data.
#[derive(Debug, Clone, Copy)]
pub struct SpaceAhead {
    /// Allocate (`fallocate`) up to this size on the first append (0: no);
    /// zeros are written up to it at most.
    pub allocate_to: u64,
    /// Write zeros ahead of small appends (worth it when each is synced).
    pub zero_ahead: bool,
}

/// Zeros written ahead of small appends at a time.
pub const ZERO_AHEAD: u64 = 1 << 20;

/// Appends at most this large (on average) get zeros written ahead.
const SMALL_APPEND: u64 = 64 << 10;

impl ActiveFile {
    /// Create a new, empty segment file with its header, durably. An existing
    /// file of that id (left by a failed earlier attempt: ids only grow, so
    /// it can hold nothing acknowledged) is overwritten.
    pub fn create(io: Arc<dyn Io>, dir: &Path, id: u64, ahead: SpaceAhead) -> Result<Self> {
        let active = Self::create_unsynced(io, dir, id, ahead)?;
        active
            .io
            .sync_all(&active.file)
            .ctx(|| format!("fsync {}", active.path.display()))?;
        sync_dir_via(&*active.io, dir)?;
        Ok(active)
    }

    /// [`ActiveFile::create`] without the file and directory syncs, for a
    /// segment roll: the roll's directory sync (publishing the sealed
    /// segment's index) makes the new name durable, and the fdatasync that
    /// precedes any acknowledgement of an append to it flushes the header.
    pub fn create_unsynced(io: Arc<dyn Io>, dir: &Path, id: u64, ahead: SpaceAhead) -> Result<Self> {
        let path = log_path(dir, id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .ctx(|| format!("create segment {}", path.display()))?;
        io.write_at(&file, &header::encode(id), 0)
            .ctx(|| format!("write header of {}", path.display()))?;
        Ok(Self::new(
            io,
            id,
            path,
            file,
            header::SEGMENT_HEADER_LEN as u64,
            ahead,
        ))
    }

    /// Open an existing segment for appending after its first `valid_len`
    /// bytes; anything after them (a torn tail, or space allocated ahead) is
    /// cut off and the cut made durable.
    pub fn reopen(
        io: Arc<dyn Io>,
        path: PathBuf,
        id: u64,
        valid_len: u64,
        ahead: SpaceAhead,
    ) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .ctx(|| format!("open segment {}", path.display()))?;
        let actual = file.metadata().ctx(|| format!("stat {}", path.display()))?.len();
        if actual != valid_len {
            io.set_len(&file, valid_len)
                .ctx(|| format!("truncate torn tail of {}", path.display()))?;
            io.sync_all(&file).ctx(|| format!("fsync {}", path.display()))?;
        }
        Ok(Self::new(io, id, path, file, valid_len, ahead))
    }

    /// The active segment of a read-only open: its first `valid_len` bytes
    /// are read through `file` (opened read-only); nothing is written.
    pub fn read_only(io: Arc<dyn Io>, path: PathBuf, file: File, id: u64, valid_len: u64) -> Self {
        let none = SpaceAhead {
            allocate_to: 0,
            zero_ahead: false,
        };
        Self::new(io, id, path, file, valid_len, none)
    }

    /// The active segment of a read-only open where there is none (the
    /// last segment is sealed, or its header was torn): empty, `len` 0.
    pub fn absent(io: Arc<dyn Io>, dir: &Path, id: u64) -> Result<Self> {
        let none = SpaceAhead {
            allocate_to: 0,
            zero_ahead: false,
        };
        // Never read (there is nothing to read) nor written (read-only
        // stores refuse writes); `/dev/null` stands in for the file.
        let file = File::open("/dev/null").ctx(|| "open /dev/null".to_string())?;
        Ok(Self::new(io, id, log_path(dir, id), file, 0, none))
    }

    fn new(io: Arc<dyn Io>, id: u64, path: PathBuf, file: File, len: u64, ahead: SpaceAhead) -> Self {
        ActiveFile {
            id,
            path,
            file: Arc::new(file),
            len,
            size: len,
            allocate_to: ahead.allocate_to,
            written_to: len,
            zero_limit: ahead.allocate_to,
            zero_ahead: ahead.zero_ahead,
            typical_append: SMALL_APPEND,
            io,
        }
    }

    /// Write [`ZERO_AHEAD`] zeros after `end` if the appends are small and
    /// `end` passes what was written before. Best effort: on a failure
    /// (a full disk, say) it stops for this segment, and the zeros that
    /// made it are cut like any others.
    fn write_zeros_ahead(&mut self, end: u64, append_len: u64) {
        if !self.zero_ahead {
            return;
        }
        self.typical_append = (self.typical_append * 7 + append_len) / 8;
        if self.typical_append > SMALL_APPEND || end <= self.written_to {
            return;
        }
        let from = end.max(self.written_to);
        let to = (from + ZERO_AHEAD).min(self.zero_limit);
        if to <= from {
            return;
        }
        match self.io.write_zeros(&self.file, from, to - from) {
            Ok(()) => {
                self.written_to = to;
                self.size = self.size.max(to);
            }
            Err(_) => {
                self.zero_ahead = false;
                // Part of the zeros may have made it: they are cut like
                // the rest (assume they all did if the size is unknown).
                let now = self.file.metadata().map_or(to, |m| m.len());
                self.size = self.size.max(now);
            }
        }
    }

    /// Append `bytes` at the end. On failure the file is cut back to its
    /// previous length so that no partial frame sits before later ones; if
    /// even that fails, the caller must stop writing (the error says so).
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self.len + bytes.len() as u64;
        if end > self.size && self.allocate_to > self.size {
            // Best effort, once per segment: without it, writes simply
            // extend the file (and a full disk shows up at the write).
            match self.io.allocate(&self.file, self.allocate_to) {
                Ok(()) => self.size = self.allocate_to,
                Err(_) => self.allocate_to = 0,
            }
        }
        self.write_zeros_ahead(end, bytes.len() as u64);
        if let Err(e) = self.io.write_at(&self.file, bytes, self.len) {
            let restore = self.io.set_len(&self.file, self.len);
            let context = match restore {
                Ok(()) => {
                    self.size = self.len;
                    self.written_to = self.len;
                    format!("append {} bytes to {}", bytes.len(), self.path.display())
                }
                Err(r) => format!(
                    "append {} bytes to {} (and cutting the partial write failed too: {r})",
                    bytes.len(),
                    self.path.display()
                ),
            };
            return Err(Error::io(context, e));
        }
        self.len = end;
        self.size = self.size.max(end);
        self.written_to = self.written_to.max(end);
        Ok(())
    }

    /// Cut the space allocated after the data (before sealing, and on
    /// close, so that a finished segment is exactly its frames). Not synced
    /// here: the caller's next `sync` (fdatasync, which flushes a changed
    /// file size) makes the cut durable together with the data.
    pub fn trim(&mut self) -> Result<()> {
        if self.size > self.len {
            self.io
                .set_len(&self.file, self.len)
                .ctx(|| format!("cut allocated space of {}", self.path.display()))?;
            self.size = self.len;
            self.written_to = self.len;
        }
        Ok(())
    }

    pub fn sync(&self) -> Result<()> {
        self.io
            .sync_data(&self.file)
            .ctx(|| format!("fdatasync {}", self.path.display()))
    }
}

/// Read the frame at `offset` of an open file (for the active segment).
pub fn read_frame_at(file: &File, path: &Path, offset: u64, buf: &mut Vec<u8>) -> Result<()> {
    let mut head = [0u8; frame::FRAME_HEADER_LEN];
    file.read_exact_at(&mut head, offset)
        .ctx(|| format!("read {} at {offset}", path.display()))?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len == 0 || len > frame::MAX_BODY_LEN {
        return Err(Error::corrupt(
            path,
            offset,
            format!("invalid frame length {len}"),
        ));
    }
    buf.clear();
    buf.resize(frame::FRAME_HEADER_LEN + len, 0);
    buf[..frame::FRAME_HEADER_LEN].copy_from_slice(&head);
    file.read_exact_at(
        &mut buf[frame::FRAME_HEADER_LEN..],
        offset + frame::FRAME_HEADER_LEN as u64,
    )
    .ctx(|| format!("read {} at {offset}", path.display()))?;
    Ok(())
}

/// [`read_frame_at`] then [`decode_frame`]: the record at `offset` of an
/// open file, read into `buf`.
pub fn read_record_at<'a>(
    file: &File,
    path: &Path,
    offset: u64,
    buf: &'a mut Vec<u8>,
) -> Result<RecordView<'a>> {
    read_frame_at(file, path, offset, buf)?;
    decode_frame(buf, path, offset)
}

/// Decode a whole frame held in `buf` into a record, mapping failures to a
/// `Corrupt` error naming the file and offset.
pub fn decode_frame<'a>(buf: &'a [u8], path: &Path, offset: u64) -> Result<RecordView<'a>> {
    let (body, _) = frame::decode(buf).map_err(|e| Error::corrupt(path, offset, e.to_string()))?;
    codec::decode(body).map_err(|e| Error::corrupt(path, offset, format!("record body: {e}")))
}

/// Bytes of a record [`SealedSegment::touch`] loads: a typical record.
const TOUCH_BYTES: usize = 640;

/// Map a file read-only.
pub fn map(path: &Path) -> Result<Mmap> {
    let file = File::open(path).ctx(|| format!("open {}", path.display()))?;
    // SAFETY: the files mapped here (sealed segments, their indexes, the
    // de-duplication checkpoint) are immutable: the store never writes,
    // truncates or shrinks them after the rename that publishes them; a new
    // checkpoint replaces the old one by rename and retention only unlinks
    // (the mapping outlives the name); the lock file keeps other auditstore
    // writers out of the directory. A foreign process truncating the file is
    // outside the documented contract.
    unsafe { Mmap::map(&file) }.ctx(|| format!("mmap {}", path.display()))
}

/// Drop this process's resident pages of a read-only file mapping (they
/// stay in the page cache; the next access maps them again). Best effort.
fn release_pages(map: &Mmap) {
    // SAFETY: `map` is a shared, read-only mapping of a file that nothing
    // modifies (see `map`). MADV_DONTNEED on such a mapping only discards
    // page-table entries: later reads fault the same bytes back in from the
    // page cache or the file, so no reference into the mapping observes a
    // change. (It would zero pages only of private or anonymous mappings.)
    let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
}

/// Does the segment file at `path` hold no record? (Only a header, a torn
/// header, or zeros where the first frame would be: a frame never has
/// length 0.)
pub fn holds_no_records(path: &Path) -> Result<bool> {
    let file = File::open(path).ctx(|| format!("open {}", path.display()))?;
    let mut first = [0u8; header::SEGMENT_HEADER_LEN + 4];
    let mut got = 0;
    while got < first.len() {
        match file.read_at(&mut first[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
        }
    }
    Ok(got < first.len() || first[header::SEGMENT_HEADER_LEN..] == [0; 4])
}

/// Map the active segment read-only for the recovery walk of an open.
pub fn map_for_recovery(path: &Path) -> Result<Mmap> {
    let file = File::open(path).ctx(|| format!("open {}", path.display()))?;
    // SAFETY: called only while opening a store, with its lock held and
    // before this process has a writer for the segment: nothing writes or
    // truncates the file while the map lives, and the caller drops the map
    // before it cuts a torn tail.
    unsafe { Mmap::map(&file) }.ctx(|| format!("mmap {}", path.display()))
}

/// An immutable, indexed segment.
#[derive(Debug)]
pub struct SealedSegment {
    pub id: u64,
    pub log_path: PathBuf,
    pub idx_path: PathBuf,
    log: Mmap,
    idx: Mmap,
    pub layout: IndexLayout,
    org_pos: HashMap<String, usize>,
}

impl SealedSegment {
    /// Map a sealed segment and check its index (checksum, version, and that
    /// it describes exactly this log file).
    pub fn open(dir: &Path, id: u64) -> Result<Self> {
        let log_path = log_path(dir, id);
        let idx_path = idx_path(dir, id);
        let idx = map(&idx_path)?;
        let layout = idxfile::parse(&idx, id).map_err(|e| match e.unsupported_version {
            Some(v) => Error::UnsupportedVersion {
                path: idx_path.clone(),
                found: v,
                supported: idxfile::INDEX_FORMAT_VERSION,
            },
            None => Error::corrupt(&idx_path, e.offset, e.reason),
        })?;
        // Parsing checksummed every page of the index; scans need only parts
        // of it again, and resident pages count against the process.
        release_pages(&idx);
        let log = map(&log_path)?;
        if log.len() as u64 != layout.log_len {
            return Err(Error::corrupt(
                &log_path,
                log.len() as u64,
                format!(
                    "segment is {} bytes but its index describes {} bytes",
                    log.len(),
                    layout.log_len
                ),
            ));
        }
        check_header(&log, id, &log_path)?;
        let org_pos = layout
            .orgs
            .iter()
            .enumerate()
            .map(|(i, o)| (o.name.clone(), i))
            .collect();
        Ok(SealedSegment {
            id,
            log_path,
            idx_path,
            log,
            idx,
            layout,
            org_pos,
        })
    }

    pub fn log_bytes(&self) -> &[u8] {
        &self.log
    }

    pub fn idx_bytes(&self) -> &[u8] {
        &self.idx
    }

    pub fn org(&self, name: &str) -> Option<&OrgRange> {
        self.org_pos.get(name).map(|i| &self.layout.orgs[*i])
    }

    /// The record whose frame starts at `offset`, checksum verified.
    pub fn record(&self, offset: u32) -> Result<RecordView<'_>> {
        let at = offset as usize;
        if at >= self.log.len() {
            return Err(Error::corrupt(
                &self.idx_path,
                0,
                format!(
                    "index points at offset {at}, past the end of {}",
                    self.log_path.display()
                ),
            ));
        }
        decode_frame(&self.log[at..], &self.log_path, offset as u64)
    }

    /// Touch the record at `offset` so its first cache lines are on the way
    /// before it is read: scans call this a few records ahead, turning one
    /// memory miss per record into several in flight at once.
    pub fn touch(&self, offset: u32) {
        let at = offset as usize;
        if let Some(bytes) = self.log.get(at..(at + TOUCH_BYTES).min(self.log.len())) {
            let mut x = 0u8;
            for b in bytes.iter().step_by(64) {
                x ^= *b;
            }
            std::hint::black_box(x);
        }
    }

    /// Frame offset of the event with this id, if this segment holds it.
    pub fn find_id(&self, id: &[u8; 16]) -> Result<Option<u32>> {
        for off in idxfile::offsets_with_fingerprint(&self.idx, &self.layout, fingerprint(id)) {
            if self.record(off)?.id == *id {
                return Ok(Some(off));
            }
        }
        Ok(None)
    }

    /// This segment's fingerprints, sorted (they are stored sorted).
    pub fn fingerprints(&self) -> Vec<u64> {
        let fps = (0..self.layout.event_count)
            .map(|i| idxfile::id_entry(&self.idx, &self.layout, i).0)
            .collect();
        release_pages(&self.idx);
        fps
    }

    /// Give back this process's resident pages of both mappings (they stay
    /// in the page cache). Dedup lookups and scans fault in scattered pages;
    /// the store calls this at every segment roll so that mapped memory
    /// stays bounded by what one segment's worth of work touched.
    pub fn release_resident_pages(&self) {
        release_pages(&self.log);
        release_pages(&self.idx);
    }

    pub fn disk_bytes(&self) -> u64 {
        (self.log.len() + self.idx.len()) as u64
    }
}

#[cfg(test)]
mod tests;
