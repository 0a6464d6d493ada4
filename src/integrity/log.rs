//! The `checkpoints` file: every checkpoint the store signed, and every
//! retention run, in the order they happened (docs/format.md,
//! "Checkpoints file"). Append-only: a 32-byte header, then entries, each
//! CRC-32 framed and synced before the checkpoint in it is given out.
//!
//! ```text
//! header:  magic "AUDITCKP" | version u32 = 1 | header length u32 = 32
//!          | 12 reserved zero bytes | CRC-32 of bytes 0..28
//! entry:   payload length N u32 | payload (N bytes) | CRC-32 of the
//!          length and the payload
//! payload: kind u8 (1 checkpoint, 2 retention) | written at, i64 Unix ns
//!          | (retention only) first retained leaf index u64,
//!            first retained segment id u64, hash count u32, that many
//!            32-byte leaf hashes (the leaves of the first retained leaf's
//!            bottom tile before it, which the log no longer holds)
//!          | the signed note, UTF-8, to the end
//! ```
//!
//! All integers little-endian.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The file name, in the store directory.
pub const CHECKPOINTS_FILE: &str = "checkpoints";
const MAGIC: &[u8; 8] = b"AUDITCKP";
/// The version of the layout.
pub const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 32;
/// No note comes near this; a larger length is damage.
const MAX_PAYLOAD: u32 = 1 << 20;
const KIND_CHECKPOINT: u8 = 1;
const KIND_RETENTION: u8 = 2;

/// Why the file could not be read or appended to.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt checkpoints file {}: at byte offset {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{}: unsupported checkpoints format version {found}", path.display())]
    UnsupportedVersion { path: PathBuf, found: u32 },
}

pub(super) fn io(context: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LogError {
    let path = path.to_owned();
    move |source| LogError::Io {
        context,
        path,
        source,
    }
}

/// What one entry records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A signed checkpoint.
    Checkpoint,
    /// A retention run that deleted the leaves before `first_leaf` (the
    /// first event of segment `first_segment`); `note` is the checkpoint
    /// taken by the run.
    Retention {
        first_leaf: u64,
        first_segment: u64,
        /// The leaf hashes from the start of the first retained leaf's
        /// bottom tile up to it (fewer than 256).
        before: Vec<[u8; 32]>,
    },
}

/// One entry, with where it is in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    pub kind: EntryKind,
    /// Unix nanoseconds, by the store's clock, when it was written.
    pub at: i64,
    /// The signed note (a C2SP checkpoint).
    pub note: String,
}

/// The file read: its entries and, when the last one is torn or damaged
/// (what a crash while appending leaves), where the valid entries end.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    pub entries: Vec<Entry>,
    /// `(offset, reason)` of a bad last entry.
    pub bad_tail: Option<(u64, String)>,
    /// Bytes of the valid entries and header.
    pub valid_len: u64,
}

pub(super) fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> LogError {
    LogError::Corrupt {
        path: path.to_owned(),
        offset,
        reason: reason.into(),
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
}

/// Parses the bytes of a checkpoints file. A bad header, or a bad entry
/// followed by more bytes, is `Corrupt`; a bad last entry is `bad_tail`.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Contents, LogError> {
    let mut entries = Vec::new();
    let mut out = parse_each(path, bytes, |e| entries.push(e))?;
    out.entries = entries;
    Ok(out)
}

/// What an open needs of the file: the last entry, the last retention
/// entry, and where the valid entries end; without holding every entry
/// (one a second under load).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub last: Option<Entry>,
    pub last_retention: Option<Entry>,
    pub entries: u64,
    /// `(offset, reason)` of a bad last entry.
    pub bad_tail: Option<(u64, String)>,
    /// Bytes of the valid entries and header.
    pub valid_len: u64,
}

/// Reads the file at `path` into a [`Summary`] (`None` if there is none).
pub fn read_summary(path: &Path) -> Result<Option<Summary>, LogError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("reading", path)(e)),
    };
    let mut summary = Summary::default();
    let tail = parse_each(path, &bytes, |e| {
        summary.entries += 1;
        if matches!(e.kind, EntryKind::Retention { .. }) {
            summary.last_retention = Some(e.clone());
        }
        summary.last = Some(e);
    })?;
    summary.bad_tail = tail.bad_tail;
    summary.valid_len = tail.valid_len;
    Ok(Some(summary))
}

/// [`parse`], giving each entry to `visit` (the result holds none).
fn parse_each(path: &Path, bytes: &[u8], mut visit: impl FnMut(Entry)) -> Result<Contents, LogError> {
    let head = bytes
        .get(..HEADER_LEN)
        .ok_or_else(|| corrupt(path, 0, format!("{} bytes: shorter than the header", bytes.len())))?;
    if &head[..8] != MAGIC {
        return Err(corrupt(path, 0, "not a checkpoints file (bad magic)"));
    }
    let version = u32_at(head, 8).unwrap_or(0);
    if version != FORMAT_VERSION {
        return Err(LogError::UnsupportedVersion {
            path: path.to_owned(),
            found: version,
        });
    }
    if head != header() {
        return Err(corrupt(path, 0, "header fails its CRC-32 or has a wrong field"));
    }
    let mut out = Contents {
        valid_len: HEADER_LEN as u64,
        ..Contents::default()
    };
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        match parse_entry(bytes, at) {
            Ok((entry, len)) => {
                visit(entry);
                at += len;
                out.valid_len = at as u64;
            }
            Err((reason, end)) => {
                // Damage that more entries follow is no torn append.
                if end < bytes.len() {
                    return Err(corrupt(path, at as u64, reason));
                }
                out.bad_tail = Some((at as u64, reason));
                break;
            }
        }
    }
    Ok(out)
}

/// One entry at `at`, and its length; or why not and where it would end.
fn parse_entry(b: &[u8], at: usize) -> Result<(Entry, usize), (String, usize)> {
    let Some(n) = u32_at(b, at) else {
        return Err(("torn entry length".into(), b.len()));
    };
    if !(9..=MAX_PAYLOAD).contains(&n) {
        return Err((format!("entry length {n} is impossible"), b.len()));
    }
    let end = at + 4 + n as usize + 4;
    let Some(crc) = u32_at(b, end - 4).filter(|_| end <= b.len()) else {
        return Err(("torn entry (the file ends inside it)".into(), b.len()));
    };
    if crc32fast::hash(&b[at..end - 4]) != crc {
        return Err(("entry fails its CRC-32".into(), end));
    }
    let p = &b[at + 4..end - 4];
    let at_ns = u64_at(p, 1).unwrap_or(0) as i64;
    let (kind, text_from) = match p.first() {
        Some(&KIND_CHECKPOINT) => (EntryKind::Checkpoint, 9),
        Some(&KIND_RETENTION) => match (u64_at(p, 9), u64_at(p, 17), u32_at(p, 25)) {
            (Some(first_leaf), Some(first_segment), Some(n)) if n < 256 => {
                let hashes = p
                    .get(29..29 + 32 * n as usize)
                    .ok_or_else(|| ("retention entry too short".to_string(), end))?;
                let before = hashes
                    .chunks_exact(32)
                    .map(|c| {
                        let mut h = [0u8; 32];
                        h.copy_from_slice(c);
                        h
                    })
                    .collect();
                (
                    EntryKind::Retention {
                        first_leaf,
                        first_segment,
                        before,
                    },
                    29 + 32 * n as usize,
                )
            }
            _ => return Err(("retention entry too short or holds 256+ hashes".into(), end)),
        },
        other => return Err((format!("unknown entry kind {other:?}"), end)),
    };
    let note = std::str::from_utf8(p.get(text_from..).unwrap_or_default())
        .map_err(|_| ("note is not UTF-8".to_string(), end))?;
    Ok((
        Entry {
            offset: at as u64,
            kind,
            at: at_ns,
            note: note.to_owned(),
        },
        end - at,
    ))
}

/// Reads the file at `path` (`None` if there is none).
pub fn read(path: &Path) -> Result<Option<Contents>, LogError> {
    match std::fs::read(path) {
        Ok(bytes) => parse(path, &bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("reading", path)(e)),
    }
}

/// The file open for appending.
#[derive(Debug)]
pub struct CheckpointLog {
    pub(super) path: PathBuf,
    pub(super) file: File,
}

impl CheckpointLog {
    /// Creates an empty file (header only), synced with its directory.
    pub fn create(path: &Path) -> Result<CheckpointLog, LogError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io("creating", path))?;
        file.write_all(&header())
            .and_then(|()| file.sync_all())
            .map_err(io("writing", path))?;
        sync_parent(path)?;
        Ok(CheckpointLog {
            path: path.to_owned(),
            file,
        })
    }

    /// Opens the file for appending after its first `valid_len` bytes (its
    /// valid entries, as read from it), cutting a bad last entry.
    pub fn open(path: &Path, valid_len: u64) -> Result<CheckpointLog, LogError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io("opening", path))?;
        let len = file.metadata().map_err(io("reading metadata of", path))?.len();
        if len != valid_len {
            file.set_len(valid_len)
                .and_then(|()| file.sync_all())
                .map_err(io("cutting the torn tail of", path))?;
        }
        Ok(CheckpointLog {
            path: path.to_owned(),
            file,
        })
    }

    /// Appends an entry and syncs it.
    pub fn append(&mut self, kind: &EntryKind, at: i64, note: &str) -> Result<(), LogError> {
        let mut payload = Vec::with_capacity(25 + note.len());
        match kind {
            EntryKind::Checkpoint => payload.push(KIND_CHECKPOINT),
            EntryKind::Retention { .. } => payload.push(KIND_RETENTION),
        }
        payload.extend_from_slice(&at.to_le_bytes());
        if let EntryKind::Retention {
            first_leaf,
            first_segment,
            before,
        } = kind
        {
            payload.extend_from_slice(&first_leaf.to_le_bytes());
            payload.extend_from_slice(&first_segment.to_le_bytes());
            payload.extend_from_slice(&(before.len() as u32).to_le_bytes());
            before.iter().for_each(|h| payload.extend_from_slice(h));
        }
        payload.extend_from_slice(note.as_bytes());
        let mut out = Vec::with_capacity(payload.len() + 8);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&payload);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        // O_APPEND is not used: seek to the end explicitly.
        use std::io::Seek;
        self.file
            .seek(std::io::SeekFrom::End(0))
            .and_then(|_| self.file.write_all(&out))
            .and_then(|()| self.file.sync_data())
            .map_err(io("appending to", &self.path))
    }
}

pub(super) fn sync_parent(path: &Path) -> Result<(), LogError> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing directory of", path)),
        None => Ok(()),
    }
}

/// Reads a whole small file (a checkpoint kept elsewhere) as text.
pub fn read_note_file(path: &Path) -> Result<String, LogError> {
    let mut text = String::new();
    File::open(path)
        .and_then(|f| f.take(u64::from(MAX_PAYLOAD)).read_to_string(&mut text))
        .map_err(io("reading", path))?;
    Ok(text)
}
