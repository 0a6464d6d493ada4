//! The tree's kept hashes on disk (docs/format.md, "Tree tiles"), in the
//! spirit of C2SP tlog-tiles: tiles of 256 hashes per level, complete tiles
//! immutable, the incomplete one rewritten. Only tile levels 1 and up are
//! stored (hashes at heights 8, 16, 24, ...): leaf hashes are recomputed
//! from the log, 256 events at a time, when a proof needs them.
//!
//! - `tree/level-<L>.tiles`: the complete tiles of level L, append-only,
//!   each record checksummed;
//! - `tree/partial`: the incomplete tile of every level and the number of
//!   leaves the tiles cover, replaced atomically (written aside, synced,
//!   renamed). Complete tiles are synced before it, so it never claims a
//!   tile that is not on disk.
//!
//! All of it is a cache of the log: a missing, torn or inconsistent tile is
//! reported as an error and the caller rebuilds from the log
//! ([`TileStore::rebuild`]); nothing damaged is ever trusted.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::hash::{Hash, HASH_LEN};
use super::tree::{Tree, TreeError, TILE_WIDTH};

/// The directory of the tiles, inside the store directory.
pub const TREE_DIR: &str = "tree";
const LEVEL_MAGIC: &[u8; 8] = b"AUDITTIL";
const PARTIAL_MAGIC: &[u8; 8] = b"AUDITTLP";
const PARTIAL_FILE: &str = "partial";
/// The version of both tile file layouts.
pub const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 32;
const TILE_BYTES: usize = TILE_WIDTH * HASH_LEN;
/// A complete tile on disk: index, 256 hashes, CRC-32.
pub const RECORD_LEN: usize = 8 + TILE_BYTES + 4;

/// Why the tiles could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TileError {
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Torn, damaged or mismatched: rebuild from the log.
    #[error("corrupt tile file {}: at byte offset {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("tile file {}: unsupported format version {found} (this build reads version {FORMAT_VERSION})", path.display())]
    UnsupportedVersion { path: PathBuf, found: u32 },
    /// The files are each intact but do not form one tree.
    #[error("tile files in {}: {source}", dir.display())]
    Tree {
        dir: PathBuf,
        #[source]
        source: TreeError,
    },
}

fn io(context: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TileError {
    let path = path.to_owned();
    move |source| TileError::Io {
        context,
        path,
        source,
    }
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> TileError {
    TileError::Corrupt {
        path: path.to_owned(),
        offset,
        reason: reason.into(),
    }
}

/// The tile files of one tree and what of it they hold.
#[derive(Debug)]
pub struct TileStore {
    dir: PathBuf,
    /// Complete tiles on disk, per level (index 0 is level 1).
    written: Vec<u64>,
    /// The leaves covered by the last `partial` written.
    partial_leaves: Option<u64>,
}

impl TileStore {
    /// Reads the tiles in `dir`: the tree they hold (covering
    /// `tree.level(0).len() * 256` leaves: push the log's leaf hashes from
    /// there on), or `None` when there are none (a new store, or lost tiles:
    /// rebuild). A damaged or inconsistent file is an error.
    pub fn load(dir: &Path) -> Result<Option<(Tree, TileStore)>, TileError> {
        let path = dir.join(PARTIAL_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("reading", &path)(e)),
        };
        let partial = Partial::decode(&path, &bytes)?;
        let mut levels = Vec::with_capacity(partial.tails.len());
        let mut written = Vec::with_capacity(partial.tails.len());
        for (k, tail) in partial.tails.iter().enumerate() {
            let full = partial.level_total(k) / TILE_WIDTH as u64;
            let mut hashes = read_level(&dir.join(level_name(k)), k + 1, full)?;
            hashes.extend_from_slice(tail);
            levels.push(hashes);
            written.push(full);
        }
        let tree = Tree::from_levels(levels).map_err(|source| TileError::Tree {
            dir: dir.to_owned(),
            source,
        })?;
        let store = TileStore {
            dir: dir.to_owned(),
            written,
            partial_leaves: Some(partial.leaves),
        };
        Ok(Some((tree, store)))
    }

    /// Writes the tiles of `tree` afresh, replacing any in `dir`.
    pub fn create(dir: &Path, tree: &Tree) -> Result<TileStore, TileError> {
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
        // First retire the old `partial`, so that a crash in the middle never
        // pairs it with rewritten level files.
        let partial = dir.join(PARTIAL_FILE);
        match fs::remove_file(&partial) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("removing", &partial)(e)),
            _ => sync_dir(dir)?,
        }
        let mut store = TileStore {
            dir: dir.to_owned(),
            written: Vec::new(),
            partial_leaves: None,
        };
        store.sync(tree)?;
        Ok(store)
    }

    /// Rebuilds the tree from the log's leaf hashes, in log order, and
    /// writes its tiles afresh.
    pub fn rebuild(
        dir: &Path,
        leaf_hashes: impl IntoIterator<Item = Hash>,
    ) -> Result<(Tree, TileStore), TileError> {
        let tree = Tree::rebuild(leaf_hashes);
        let store = TileStore::create(dir, &tree)?;
        Ok((tree, store))
    }

    /// Cuts what a crash left in the level files past what `partial`
    /// claims (an append torn, or done and not yet claimed, or a new file
    /// whose header was not written): each file back to its header and its
    /// claimed complete tiles.
    /// Nothing claimed is touched. For the writer at open; `verify` only
    /// reads, and reports such leftovers.
    pub fn cut_unclaimed(&self) -> Result<(), TileError> {
        let mut cut = false;
        for k in 0.. {
            let path = self.dir.join(level_name(k));
            let len = match fs::metadata(&path) {
                Ok(meta) => meta.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(io("reading metadata of", &path)(e)),
            };
            let claimed = self.written.get(k).copied().unwrap_or(0);
            let keep = HEADER_LEN as u64 + claimed * RECORD_LEN as u64;
            if claimed > 0 && len <= keep {
                continue;
            }
            if claimed == 0 && len == HEADER_LEN as u64 {
                let mut header = [0u8; HEADER_LEN];
                File::open(&path)
                    .and_then(|mut f| f.read_exact(&mut header))
                    .map_err(io("reading header of", &path))?;
                if header == level_header(k + 1) {
                    continue;
                }
            }
            let mut file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io("opening", &path))?;
            let cut_back = if claimed == 0 {
                // Nothing claimed: the file is its header alone, as made.
                file.set_len(0)
                    .and_then(|()| file.write_all(&level_header(k + 1)))
            } else {
                file.set_len(keep)
            };
            cut_back
                .and_then(|()| file.sync_all())
                .map_err(io("cutting", &path))?;
            cut = true;
        }
        if cut {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// The leaves the files cover.
    pub fn covered(&self) -> u64 {
        self.partial_leaves.unwrap_or(0)
    }

    /// Brings the files up to `tree` (which must extend what they hold):
    /// appends the tiles completed since, then replaces `partial`. Does
    /// nothing when no 256-leaf subtree was completed since the last call.
    pub fn sync(&mut self, tree: &Tree) -> Result<(), TileError> {
        let leaves = tree.level(0).len() as u64 * TILE_WIDTH as u64;
        if self.partial_leaves == Some(leaves) {
            return Ok(());
        }
        // Levels the tree does not have (it is smaller than what was
        // written) are forgotten, so that growing back rewrites them.
        self.written.truncate(tree.level_count());
        for k in 0..tree.level_count() {
            let level = tree.level(k);
            let full = (level.len() / TILE_WIDTH) as u64;
            let on_disk = self.written.get(k).copied();
            if on_disk != Some(full) {
                // From the first tile not yet on disk; a tree smaller than
                // what was written (a log cut back, a caller's mistake) gets
                // the file cut back to its own size.
                let from = on_disk.unwrap_or(0).min(full);
                append_tiles(&self.dir.join(level_name(k)), k + 1, level, from, full)?;
            }
            if self.written.len() <= k {
                self.written.resize(k + 1, 0);
            }
            if let Some(w) = self.written.get_mut(k) {
                *w = full;
            }
        }
        let partial = Partial {
            leaves,
            tails: (0..tree.level_count())
                .map(|k| {
                    let level = tree.level(k);
                    level[level.len() - level.len() % TILE_WIDTH..].to_vec()
                })
                .collect(),
        };
        replace(&self.dir, PARTIAL_FILE, &partial.encode())?;
        self.partial_leaves = Some(leaves);
        Ok(())
    }
}

/// Checks a whole level file (`verify`): its header, that it holds whole
/// records only, and every record's CRC and index; returns the number of
/// complete tiles in it.
pub fn check_level_file(path: &Path, level: usize) -> Result<u64, TileError> {
    let bytes = fs::read(path).map_err(io("reading", path))?;
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or_else(|| corrupt(path, 0, format!("{} bytes: shorter than the header", bytes.len())))?;
    check_level_header(path, level, header)?;
    let body = &bytes[HEADER_LEN..];
    if body.len() % RECORD_LEN != 0 {
        let at = HEADER_LEN + body.len() / RECORD_LEN * RECORD_LEN;
        return Err(corrupt(path, at as u64, "a torn or extended tile record"));
    }
    for (index, record) in body.chunks_exact(RECORD_LEN).enumerate() {
        let offset = (HEADER_LEN + index * RECORD_LEN) as u64;
        if crc32fast::hash(&record[..RECORD_LEN - 4]) != u32_at(record, RECORD_LEN - 4) {
            return Err(corrupt(path, offset, format!("tile {index} fails its CRC-32")));
        }
        if u64_at(record, 0) != index as u64 {
            return Err(corrupt(
                path,
                offset,
                format!("record {index} says it is tile {}", u64_at(record, 0)),
            ));
        }
    }
    Ok((body.len() / RECORD_LEN) as u64)
}

/// `level-<L>.tiles` for the level at index `k` (L = k + 1).
fn level_name(k: usize) -> String {
    format!("level-{}.tiles", k + 1)
}

fn level_header(level: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(LEVEL_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    h[16..20].copy_from_slice(&(level as u32).to_le_bytes());
    h[20..24].copy_from_slice(&(TILE_WIDTH as u32).to_le_bytes());
    // 24..28 reserved, zero.
    let crc = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

fn check_level_header(path: &Path, level: usize, h: &[u8]) -> Result<(), TileError> {
    if h.get(0..8) != Some(LEVEL_MAGIC.as_slice()) {
        return Err(corrupt(path, 0, "not a tile file (bad magic)"));
    }
    let version = u32_at(h, 8);
    if version != FORMAT_VERSION {
        return Err(TileError::UnsupportedVersion {
            path: path.to_owned(),
            found: version,
        });
    }
    if h != level_header(level).as_slice() {
        return Err(corrupt(
            path,
            0,
            format!("header is not that of level {level} (or its CRC is wrong)"),
        ));
    }
    Ok(())
}

/// Reads the first `full` complete tiles of a level file, checking each.
fn read_level(path: &Path, level: usize, full: u64) -> Result<Vec<Hash>, TileError> {
    if full == 0 {
        return Ok(Vec::new());
    }
    let mut file = File::open(path).map_err(io("opening", path))?;
    let mut header = [0u8; HEADER_LEN];
    file.read_exact(&mut header)
        .map_err(io("reading header of", path))?;
    check_level_header(path, level, &header)?;
    let mut hashes = Vec::with_capacity(full as usize * TILE_WIDTH);
    let mut record = vec![0u8; RECORD_LEN];
    for index in 0..full {
        let offset = HEADER_LEN as u64 + index * RECORD_LEN as u64;
        if let Err(e) = file.read_exact(&mut record) {
            return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                corrupt(
                    path,
                    offset,
                    format!("torn or missing tile {index}: {full} complete tiles expected"),
                )
            } else {
                io("reading", path)(e)
            });
        }
        let stored = u32_at(&record, RECORD_LEN - 4);
        if crc32fast::hash(&record[..RECORD_LEN - 4]) != stored {
            return Err(corrupt(path, offset, format!("tile {index} fails its CRC-32")));
        }
        if u64_at(&record, 0) != index {
            return Err(corrupt(
                path,
                offset,
                format!("record {index} says it is tile {}", u64_at(&record, 0)),
            ));
        }
        hashes.extend(record[8..8 + TILE_BYTES].chunks_exact(HASH_LEN).map(|c| {
            let mut h = [0u8; HASH_LEN];
            h.copy_from_slice(c);
            h
        }));
    }
    Ok(hashes)
}

/// Appends tiles `from..to` of `level_hashes` to a level file, after cutting
/// anything past tile `from` (a tile appended before a crash that `partial`
/// never claimed). `from == 0` starts the file afresh.
fn append_tiles(path: &Path, level: usize, hashes: &[Hash], from: u64, to: u64) -> Result<(), TileError> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(io("opening", path))?;
    let keep = if from == 0 {
        0
    } else {
        HEADER_LEN as u64 + from * RECORD_LEN as u64
    };
    file.set_len(keep).map_err(io("truncating", path))?;
    file.seek(SeekFrom::Start(keep)).map_err(io("seeking in", path))?;
    let mut out = Vec::with_capacity((to - from) as usize * RECORD_LEN + HEADER_LEN);
    if from == 0 {
        out.extend_from_slice(&level_header(level));
    }
    for index in from..to {
        let start = index as usize * TILE_WIDTH;
        let tile = hashes
            .get(start..start + TILE_WIDTH)
            .ok_or_else(|| corrupt(path, keep, format!("tile {index} is not complete in memory")))?;
        let at = out.len();
        out.extend_from_slice(&index.to_le_bytes());
        tile.iter().for_each(|h| out.extend_from_slice(h));
        let crc = crc32fast::hash(&out[at..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }
    file.write_all(&out).map_err(io("appending to", path))?;
    file.sync_data().map_err(io("syncing", path))?;
    if from == 0 {
        // A new file's directory entry must be durable before `partial`
        // claims its tiles.
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    Ok(())
}

/// The `partial` file's content.
struct Partial {
    /// Leaves covered: 256 per level-1 hash.
    leaves: u64,
    /// The incomplete tile of each level (index 0 is level 1), < 256 hashes.
    tails: Vec<Vec<Hash>>,
}

impl Partial {
    /// Hashes level index `k` holds in all, by the leaves covered.
    fn level_total(&self, k: usize) -> u64 {
        let shift = 8 * (k as u32 + 1);
        if shift >= 64 {
            0
        } else {
            self.leaves >> shift
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(PARTIAL_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        out.extend_from_slice(&self.leaves.to_le_bytes());
        out.extend_from_slice(&(self.tails.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for tail in &self.tails {
            out.extend_from_slice(&(tail.len() as u32).to_le_bytes());
            tail.iter().for_each(|h| out.extend_from_slice(h));
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(path: &Path, b: &[u8]) -> Result<Partial, TileError> {
        if b.len() < HEADER_LEN + 4 || b.get(0..8) != Some(PARTIAL_MAGIC.as_slice()) {
            return Err(corrupt(
                path,
                0,
                "not a partial-tiles file (bad magic or too short)",
            ));
        }
        let version = u32_at(b, 8);
        if version != FORMAT_VERSION {
            return Err(TileError::UnsupportedVersion {
                path: path.to_owned(),
                found: version,
            });
        }
        let body_end = b.len() - 4;
        if crc32fast::hash(&b[..body_end]) != u32_at(b, body_end) {
            return Err(corrupt(
                path,
                body_end as u64,
                "CRC-32 mismatch (torn or damaged)",
            ));
        }
        if u32_at(b, 12) as usize != HEADER_LEN || u32_at(b, 28) != 0 {
            return Err(corrupt(path, 12, "header length or reserved field is wrong"));
        }
        let leaves = u64_at(b, 16);
        let count = u32_at(b, 24) as usize;
        if !leaves.is_multiple_of(TILE_WIDTH as u64) {
            return Err(corrupt(
                path,
                16,
                format!("{leaves} leaves is not a multiple of 256"),
            ));
        }
        let mut partial = Partial {
            leaves,
            tails: Vec::new(),
        };
        let mut at = HEADER_LEN;
        for k in 0..count {
            let n = b.get(at..at + 4).map_or(usize::MAX, |_| u32_at(b, at) as usize);
            let expected = (partial.level_total(k) % TILE_WIDTH as u64) as usize;
            if n != expected {
                return Err(corrupt(
                    path,
                    at as u64,
                    format!("level {} holds {n} hashes, {expected} expected", k + 1),
                ));
            }
            let hashes = b
                .get(at + 4..at + 4 + n * HASH_LEN)
                .ok_or_else(|| corrupt(path, at as u64, "truncated"))?;
            partial.tails.push(
                hashes
                    .chunks_exact(HASH_LEN)
                    .map(|c| {
                        let mut h = [0u8; HASH_LEN];
                        h.copy_from_slice(c);
                        h
                    })
                    .collect(),
            );
            at += 4 + n * HASH_LEN;
        }
        let levels = (0..64).take_while(|&k| partial.level_total(k) > 0).count();
        if at != body_end || count != levels {
            return Err(corrupt(
                path,
                at as u64,
                format!("{count} levels stored, {levels} expected for {leaves} leaves"),
            ));
        }
        Ok(partial)
    }
}

/// Replaces `dir/name` atomically: `name.tmp` written and synced, renamed
/// over it, the directory synced.
fn replace(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), TileError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut file = File::create(&tmp).map_err(io("creating", &tmp))?;
    file.write_all(bytes).map_err(io("writing", &tmp))?;
    file.sync_all().map_err(io("syncing", &tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io("renaming", &path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), TileError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing directory", dir))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        x.copy_from_slice(s);
    }
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        x.copy_from_slice(s);
    }
    u64::from_le_bytes(x)
}
