//! `verify`'s tamper-evidence checks, reading the files only (read-only
//! like the rest of `verify`): every leaf hash is recomputed from the log
//! in log order and the tree rebuilt; then
//! - the tree's tiles on disk (`tree/`) must equal the rebuilt ones: the
//!   first tile that differs locates a changed, removed, inserted or moved
//!   event to its 256 leaves (its first leaf's index, file and offset);
//! - every checkpoint in `checkpoints` must verify with the store's key and
//!   name the store's origin, and its tree size and root must be those of
//!   the log's first leaves;
//! - with `--against`, the same of a checkpoint kept elsewhere: a store
//!   truncated or rolled back (fewer leaves) or rewritten (another root)
//!   since it was signed is reported.
//!
//! After retention the rebuild starts from the stored tiles and the
//! retention entry's hashes that stand for the deleted leaves.

use std::collections::BTreeMap;

use super::tlog::log_err;
use super::tlog_read::record_leaf;
use super::tlog_read::resolve_signer_read_only;
use super::*;
use crate::integrity::log::{self as cplog, EntryKind};
use crate::integrity::tiles::{TileStore, TREE_DIR};
use crate::integrity::tree::TILE_WIDTH;
use crate::integrity::{Checkpoint, Hash, Tree, VerifierKey};

/// Where the rebuild from the log starts: the whole tree, or after a
/// retention run the kept tiles before the first retained leaf's bottom
/// tile and that tile's leaf hashes before it (from the retention entry).
struct Start {
    tree: Tree,
    /// The first retained leaf index.
    base: u64,
    first_segment: u64,
}

/// Where to start rebuilding, from the last retention entry if any and the
/// stored tiles; a message when the leaves deleted by retention are needed
/// and the tiles that stand for them are missing or too short.
fn retained_start(contents: &cplog::Contents, stored: Option<&Tree>) -> std::result::Result<Start, String> {
    let last = contents.entries.iter().rev().find_map(|e| match &e.kind {
        EntryKind::Retention {
            first_leaf,
            first_segment,
            before,
        } => Some((*first_leaf, *first_segment, before)),
        EntryKind::Checkpoint => None,
    });
    let Some((base, first_segment, before)) = last.filter(|(leaf, ..)| *leaf > 0) else {
        return Ok(Start {
            tree: Tree::new(),
            base: 0,
            first_segment: 0,
        });
    };
    let tile_start = base - before.len() as u64;
    let tiles = tile_start / TILE_WIDTH as u64;
    let Some(mut tree) = stored.and_then(|t| t.prefix_tiles(tiles)) else {
        return Err(format!(
            "the tree tiles are missing or hold fewer than the {tiles} complete tiles before the first \
             retained leaf {base}: the leaves retention deleted cannot be stood for, so the retained \
             events cannot be checked against the checkpoints"
        ));
    };
    before.iter().for_each(|h| tree.push(*h));
    Ok(Start {
        tree,
        base,
        first_segment,
    })
}

/// The log's leaves, rebuilt.
struct Rebuilt {
    tree: Tree,
    /// The bottom tile `tile_starts[0]` is in.
    first_tile: u64,
    /// The first retained leaf (`tile_starts[0]`'s).
    base: u64,
    /// File and offset of the first leaf of each bottom tile (the first
    /// retained leaf for the first, after retention).
    tile_starts: Vec<(PathBuf, u64)>,
    /// Where the log ends (for findings past its last leaf).
    end: (PathBuf, u64),
    /// Root at each size asked for.
    roots: BTreeMap<u64, Hash>,
    /// The segment file after the last one.
    next_segment: PathBuf,
}

impl Rebuilt {
    /// File, offset and leaf index of the first leaf of tile `tile` (or of
    /// the end of the log).
    fn at_tile(&self, tile: u64) -> (PathBuf, u64, u64) {
        let leaf = (tile * TILE_WIDTH as u64).max(self.base).min(self.tree.size());
        let i = usize::try_from(tile.saturating_sub(self.first_tile)).unwrap_or(usize::MAX);
        match self.tile_starts.get(i) {
            Some((p, o)) => (p.clone(), *o, leaf),
            None => (self.end.0.clone(), self.end.1, leaf),
        }
    }
}

fn problem(file: PathBuf, offset: u64, leaf: Option<u64>, message: String) -> Problem {
    Problem {
        file,
        offset,
        message,
        leaf_index: leaf,
    }
}

impl Store {
    pub(super) fn verify_tree(&self, against: Option<&str>, report: &mut VerifyReport) {
        let dir = &self.dir;
        let cp_path = dir.join(cplog::CHECKPOINTS_FILE);
        let tree_dir = dir.join(TREE_DIR);
        let contents = match cplog::read(&cp_path) {
            Ok(c) => c,
            Err(e) => {
                report
                    .problems
                    .push(problem(cp_path.clone(), 0, None, log_err(e).to_string()));
                Some(cplog::Contents::default())
            }
        };
        let in_store_key = matches!(self.options.signing_key, SigningKey::InStore);
        let contents = match contents {
            Some(c) => c,
            None if tree_dir.exists()
                || (in_store_key && dir.join(crate::integrity::key::KEY_FILE).exists()) =>
            {
                report.problems.push(problem(
                    cp_path.clone(),
                    0,
                    None,
                    "the checkpoints file is missing while the tree or the signing key exists: it was removed"
                        .into(),
                ));
                cplog::Contents::default()
            }
            // A store that never kept a tree (created before it, not opened
            // for writing since): nothing to check but `--against`.
            None => cplog::Contents::default(),
        };
        if let Some((offset, reason)) = &contents.bad_tail {
            report.problems.push(problem(
                cp_path.clone(),
                *offset,
                None,
                format!("last checkpoint entry is torn or damaged ({reason}); an open for writing cuts it"),
            ));
        }
        let origin = format!("auditstore/{}", self.meta.identity().id_text());
        let key_path = dir.join(crate::integrity::key::KEY_FILE);
        if in_store_key && !contents.entries.is_empty() && !key_path.exists() {
            report.problems.push(problem(
                key_path,
                0,
                None,
                "the signing key is missing while the store holds checkpoints signed with it".into(),
            ));
        }
        let key: Option<VerifierKey> = match resolve_signer_read_only(dir, &self.options.signing_key) {
            Ok(k) => k.map(|s| s.verifier()),
            Err(e) => {
                report.problems.push(problem(
                    dir.join(crate::integrity::key::KEY_FILE),
                    0,
                    None,
                    e.to_string(),
                ));
                None
            }
        };
        let stored = match TileStore::load(&tree_dir) {
            Ok(stored) => stored.map(|(tree, _)| tree),
            Err(e) => {
                report
                    .problems
                    .push(problem(tree_dir.clone(), 0, None, format!("{e}")));
                None
            }
        };
        let start = match retained_start(&contents, stored.as_ref()) {
            Ok(start) => start,
            Err(message) => {
                report.problems.push(problem(tree_dir.clone(), 0, None, message));
                return;
            }
        };
        // Checkpoints to check: (file, offset, note).
        let mut notes: Vec<(PathBuf, u64, &str)> = contents
            .entries
            .iter()
            .map(|e| (cp_path.clone(), e.offset, e.note.as_str()))
            .collect();
        if let Some(note) = against {
            notes.push((PathBuf::from("--against"), 0, note));
        }
        let mut checked: Vec<(PathBuf, u64, Checkpoint)> = Vec::new();
        for (file, offset, note) in notes {
            let Some(key) = &key else {
                if file == cp_path && offset == 0 {
                    continue;
                }
                report.problems.push(problem(
                    file,
                    offset,
                    None,
                    "no signing key to check the checkpoint with".into(),
                ));
                continue;
            };
            match Checkpoint::open(note, key, &origin) {
                Ok(cp) => checked.push((file, offset, cp)),
                Err(e) => report.problems.push(problem(
                    file,
                    offset,
                    None,
                    format!(
                        "signed checkpoint does not verify with the store's key and origin {origin}: {e}"
                    ),
                )),
            }
        }
        report.checkpoints += checked.len() as u64;
        // A checkpoint from before the last retention run, of a size whose
        // leaves are gone, was checked against the log when it was signed.
        let base = start.base;
        checked.retain(|(_, _, cp)| cp.size >= base);
        let sizes: Vec<u64> = checked.iter().map(|(_, _, c)| c.size).collect();
        let rebuilt = match self.rebuild_from_log(&sizes, start) {
            Ok(r) => r,
            Err(e) => {
                report.problems.push(problem(
                    dir.clone(),
                    0,
                    None,
                    format!("reading the log for the tree: {e}"),
                ));
                return;
            }
        };
        report.leaves = rebuilt.tree.size();
        // The first bottom tile that differs from the tiles on disk.
        let mut first_bad_tile: Option<u64> = None;
        if let Some(stored) = &stored {
            let (ours, theirs) = (rebuilt.tree.level(0), stored.level(0));
            let differs = ours.iter().zip(theirs).position(|(a, b)| a != b);
            if let Some(i) = differs {
                first_bad_tile = Some(i as u64);
                let (file, offset, leaf) = rebuilt.at_tile(i as u64);
                report.problems.push(problem(
                    file,
                    offset,
                    Some(leaf),
                    format!(
                        "the events at leaf indexes {leaf}..{} (from this record on) do not hash to the \
                         tree's tile {i} as integrated: an event among them was changed, or events were \
                         removed, inserted or moved",
                        (i as u64 + 1) * TILE_WIDTH as u64
                    ),
                ));
            } else if theirs.len() > ours.len() {
                first_bad_tile = Some(ours.len() as u64);
                let (file, offset, leaf) = rebuilt.at_tile(ours.len() as u64);
                report.problems.push(problem(
                    file,
                    offset,
                    Some(leaf),
                    format!(
                        "the tree holds {} leaves in complete tiles but the log only {}: events were \
                         removed or the log truncated",
                        theirs.len() * TILE_WIDTH,
                        rebuilt.tree.size()
                    ),
                ));
            }
        }
        // Every level file whole, also past what `partial` claims.
        for level in 1.. {
            let path = tree_dir.join(format!("level-{level}.tiles"));
            if !path.exists() {
                break;
            }
            if let Err(e) = crate::integrity::tiles::check_level_file(&path, level) {
                report.problems.push(problem(path, 0, None, e.to_string()));
            }
        }
        let mut reported_root = false;
        for (file, offset, cp) in checked {
            let leaves = rebuilt.tree.size();
            if cp.size > leaves {
                let (f, o, _) = rebuilt.at_tile(u64::MAX / TILE_WIDTH as u64);
                report.problems.push(problem(
                    f,
                    o,
                    Some(leaves),
                    format!(
                        "the checkpoint at {} offset {offset} was signed at tree size {} but the log holds only \
                         {leaves} events: events were removed (from the end of the log, or a later segment \
                         such as {} is missing), or the store was truncated or rolled back",
                        file.display(),
                        cp.size,
                        rebuilt.next_segment.display()
                    ),
                ));
                continue;
            }
            if rebuilt.roots.get(&cp.size) == Some(&cp.root) || reported_root {
                continue;
            }
            // Located by the tiles when they differ before the size; else
            // somewhere after the last tile that matched.
            let matched = rebuilt.tree.level(0).len() as u64;
            let tile = first_bad_tile.unwrap_or(matched).min(cp.size / TILE_WIDTH as u64);
            let (f, o, leaf) = rebuilt.at_tile(tile);
            report.problems.push(problem(
                f,
                o,
                Some(leaf),
                format!(
                    "the first {} events of the log do not hash to the root of the signed checkpoint at {} \
                     offset {offset}: from leaf index {leaf} on, an event was changed, removed, inserted or \
                     moved, or the log was rewritten",
                    cp.size,
                    file.display()
                ),
            ));
            reported_root = true;
        }
    }

    /// Every leaf hash from the log's files, in order, into a tree; the root
    /// at each of `sizes` on the way.
    fn rebuild_from_log(&self, sizes: &[u64], start: Start) -> Result<Rebuilt> {
        let listing = list_store(&self.dir)?;
        let mut out = Rebuilt {
            first_tile: start.tree.size() / TILE_WIDTH as u64,
            base: start.base,
            tree: start.tree,
            tile_starts: Vec::new(),
            end: (self.dir.clone(), 0),
            roots: BTreeMap::new(),
            next_segment: segment::log_path(&self.dir, listing.logs.last().map_or(1, |l| l + 1)),
        };
        let mut wanted: Vec<u64> = sizes.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        // Sizes the start already has (0, or the first retained leaf).
        let mut next = wanted.partition_point(|&size| size < out.tree.size());
        if wanted.get(next) == Some(&out.tree.size()) {
            out.roots.insert(out.tree.size(), out.tree.root());
            next += 1;
        }
        // Segments before the first retained one are left by a retention
        // run that crashed before deleting them.
        for id in listing.logs.into_iter().filter(|&id| id >= start.first_segment) {
            let path = segment::log_path(&self.dir, id);
            let bytes = std::fs::read(&path).ctx(|| format!("read {}", path.display()))?;
            let walk = recovery::walk(&bytes, SEGMENT_HEADER_LEN.min(bytes.len()), |off, view| {
                if out.tree.size().is_multiple_of(TILE_WIDTH as u64) || out.tile_starts.is_empty() {
                    out.tile_starts.push((path.clone(), off));
                }
                out.tree.push(record_leaf(view));
                if wanted.get(next) == Some(&out.tree.size()) {
                    out.roots.insert(out.tree.size(), out.tree.root());
                    next += 1;
                }
            });
            out.end = (path.clone(), walk.valid_end);
        }
        Ok(out)
    }
}
