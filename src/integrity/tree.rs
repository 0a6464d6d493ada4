//! The Merkle tree over the log, kept compactly: only the hashes of complete
//! 256-leaf subtrees and of every complete subtree above them at heights 16,
//! 24, ... (the C2SP tlog-tiles levels 1, 2, ...), plus the leaf hashes after
//! the last complete 256-leaf subtree. That is 32 bytes per 256 leaves
//! (0.126 B per leaf over all levels) instead of 32 bytes per leaf.
//!
//! A hash the tree does not keep is recomputed: from up to 128 kept hashes of
//! the level below (heights between two tile levels), or, below height 8,
//! from the 256 leaf hashes of one tile, which a [`LeafSource`] (the log)
//! supplies. Leaves read back are checked against the kept tile hash, so a
//! log changed since the tree was built is reported, never proven.

use super::hash::{empty_root, node_hash, reduce_perfect, split, Hash};

/// Hashes per tile, and leaves per complete bottom subtree.
pub const TILE_WIDTH: usize = 256;
/// The height of a tile: `TILE_WIDTH == 1 << TILE_HEIGHT`.
pub const TILE_HEIGHT: u32 = 8;

/// A boxed error from a [`LeafSource`] (reading the log, say).
pub type SourceError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where the leaf hashes of a complete bottom tile come from when a proof or
/// an older root needs them: in the store, the log, re-hashing 256 events.
pub trait LeafSource {
    /// The 256 leaf hashes of leaves `tile * 256 .. tile * 256 + 256`.
    fn tile_leaves(&mut self, tile: u64) -> Result<Vec<Hash>, SourceError>;
}

/// Every leaf hash in memory: for tests, and for callers that have them.
impl LeafSource for [Hash] {
    fn tile_leaves(&mut self, tile: u64) -> Result<Vec<Hash>, SourceError> {
        let start = usize::try_from(tile)?.saturating_mul(TILE_WIDTH);
        let end = start.saturating_add(TILE_WIDTH);
        match self.get(start..end) {
            Some(leaves) => Ok(leaves.to_vec()),
            None => Err(format!("leaf tile {tile} is past the {} leaves held", self.len()).into()),
        }
    }
}

/// A source with no leaves, for what the tree answers from its own hashes
/// (the current root, proofs that stay out of complete bottom tiles).
pub struct NoLeaves;

impl LeafSource for NoLeaves {
    fn tile_leaves(&mut self, tile: u64) -> Result<Vec<Hash>, SourceError> {
        Err(format!("leaf tile {tile} is needed and no leaf source was given").into())
    }
}

/// Why the tree could not answer.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("tree size {size} is larger than the tree ({tree_size} leaves)")]
    SizeOutOfRange { size: u64, tree_size: u64 },
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("consistency from size {old} to the smaller size {new}")]
    SizesReversed { old: u64, new: u64 },
    #[error("reading the leaves of tile {tile}: {source}")]
    Source {
        tile: u64,
        #[source]
        source: SourceError,
    },
    #[error("the leaf source gave {got} leaf hashes for tile {tile}, not 256")]
    SourceShort { tile: u64, got: usize },
    /// The log's leaves no longer hash to what the tree recorded for them:
    /// an event of that tile was changed, removed, inserted or moved.
    #[error(
        "the 256 leaves of tile {tile} (leaf indexes {first}..{end}) do not hash to the tree's recorded hash"
    )]
    LeafMismatch { tile: u64, first: u64, end: u64 },
    /// Stored tile levels that do not fit together.
    #[error("tile level {level} is inconsistent: {reason}")]
    Inconsistent { level: usize, reason: String },
}

/// The compact Merkle tree (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    /// `levels[k]`: the hashes of the complete subtrees of height
    /// `8 * (k + 1)`, left to right.
    levels: Vec<Vec<Hash>>,
    /// The leaf hashes after the last complete 256-leaf subtree (< 256).
    tail: Vec<Hash>,
}

impl Tree {
    /// The empty tree.
    pub fn new() -> Tree {
        Tree::default()
    }

    /// The tree of these leaf hashes, in order: how the tree is rebuilt from
    /// the log when its tiles are lost or damaged.
    pub fn rebuild(leaf_hashes: impl IntoIterator<Item = Hash>) -> Tree {
        let mut tree = Tree::new();
        leaf_hashes.into_iter().for_each(|h| tree.push(h));
        tree
    }

    /// The tree from stored tile levels (`levels[k]` at height `8 * (k + 1)`),
    /// covering `levels[0].len() * 256` leaves; push the leaf hashes after
    /// those to catch up with the log. Refuses levels that do not fit: a
    /// level must hold exactly one hash per 256 of the level below, each
    /// equal to those 256 reduced.
    pub fn from_levels(mut levels: Vec<Vec<Hash>>) -> Result<Tree, TreeError> {
        while levels.last().is_some_and(Vec::is_empty) {
            levels.pop();
        }
        for k in 1..levels.len() {
            let (below, above) = (&levels[k - 1], &levels[k]);
            if above.len() != below.len() / TILE_WIDTH {
                return Err(TreeError::Inconsistent {
                    level: k + 1,
                    reason: format!(
                        "{} hashes over {} below (expected {})",
                        above.len(),
                        below.len(),
                        below.len() / TILE_WIDTH
                    ),
                });
            }
            for (i, (hash, group)) in above.iter().zip(below.chunks_exact(TILE_WIDTH)).enumerate() {
                if reduce_perfect(group) != *hash {
                    return Err(TreeError::Inconsistent {
                        level: k + 1,
                        reason: format!("hash {i} is not the hash of the 256 below it"),
                    });
                }
            }
        }
        // A top level of 256 or more hashes must have its parent level.
        if levels.last().is_some_and(|top| top.len() >= TILE_WIDTH) {
            return Err(TreeError::Inconsistent {
                level: levels.len(),
                reason: "256 or more hashes and no level above".into(),
            });
        }
        Ok(Tree {
            levels,
            tail: Vec::new(),
        })
    }

    /// The tree of this one's first `tiles` complete bottom tiles (its first
    /// `tiles * 256` leaves), with the kept hashes above them: where a
    /// rebuild starts when the leaves before are gone (retention). `None`
    /// when the tree holds fewer complete tiles.
    pub fn prefix_tiles(&self, tiles: u64) -> Option<Tree> {
        if tiles > self.level(0).len() as u64 {
            return None;
        }
        let mut levels = Vec::new();
        let mut keep = tiles;
        for level in &self.levels {
            let n = usize::try_from(keep).ok()?;
            if n == 0 {
                break;
            }
            levels.push(level.get(..n)?.to_vec());
            keep /= TILE_WIDTH as u64;
        }
        Some(Tree {
            levels,
            tail: Vec::new(),
        })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        let full = self.levels.first().map_or(0, Vec::len) as u64;
        full * TILE_WIDTH as u64 + self.tail.len() as u64
    }

    /// The kept hashes at height `8 * (k + 1)`: tile level `k + 1`.
    pub fn level(&self, k: usize) -> &[Hash] {
        self.levels.get(k).map_or(&[], Vec::as_slice)
    }

    /// How many tile levels (1, 2, ...) hold at least one hash.
    pub fn level_count(&self) -> usize {
        self.levels.len()
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.tail.push(leaf);
        if self.tail.len() == TILE_WIDTH {
            let up = reduce_perfect(&self.tail);
            self.tail.clear();
            self.push_level(0, up);
        }
    }

    fn push_level(&mut self, k: usize, hash: Hash) {
        if self.levels.len() <= k {
            self.levels.resize_with(k + 1, Vec::new);
        }
        let Some(level) = self.levels.get_mut(k) else {
            return;
        };
        level.push(hash);
        if level.len() % TILE_WIDTH == 0 {
            let up = reduce_perfect(&level[level.len() - TILE_WIDTH..]);
            self.push_level(k + 1, up);
        }
    }

    /// The root of the whole tree (needs no leaf source).
    pub fn root(&self) -> Hash {
        // The current size splits into complete subtrees of height >= 8
        // (kept) and a right edge inside the tail: no leaf is ever read.
        self.root_at(self.size(), &mut NoLeaves)
            .unwrap_or_else(|_| empty_root())
    }

    /// The root the tree had at `size` leaves.
    pub fn root_at<S: LeafSource + ?Sized>(&self, size: u64, source: &mut S) -> Result<Hash, TreeError> {
        self.check_size(size)?;
        if size == 0 {
            return Ok(empty_root());
        }
        self.view(source).range(0, size)
    }

    pub(crate) fn check_size(&self, size: u64) -> Result<(), TreeError> {
        if size > self.size() {
            return Err(TreeError::SizeOutOfRange {
                size,
                tree_size: self.size(),
            });
        }
        Ok(())
    }

    pub(crate) fn view<'a, S: LeafSource + ?Sized>(&'a self, source: &'a mut S) -> View<'a, S> {
        View {
            tree: self,
            source,
            cache: None,
        }
    }
}

/// Anything that gives the hash of a range of leaves: the tree (through a
/// [`View`]) or, in tests, a plain list of leaf hashes.
pub trait Subtrees {
    /// MTH of the leaves `start .. start + n` (`n >= 1`, inside the tree).
    fn range(&mut self, start: u64, n: u64) -> Result<Hash, TreeError>;
}

/// The tree with a leaf source, caching the bottom tile last read: a
/// proof's hashes are asked for bottom up, so those inside one bottom tile
/// come together and each tile is read once (at most two per consistency
/// proof: around the old size, then around the new one).
pub struct View<'a, S: ?Sized> {
    tree: &'a Tree,
    source: &'a mut S,
    cache: Option<(u64, Vec<Hash>)>,
}

impl<S: LeafSource + ?Sized> View<'_, S> {
    /// The hash of the perfect subtree of height `h`, the `i`-th at that height.
    fn perfect(&mut self, h: u32, i: u64) -> Result<Hash, TreeError> {
        if h >= TILE_HEIGHT {
            let k = (h / TILE_HEIGHT - 1) as usize;
            let j = h % TILE_HEIGHT;
            let level = self.tree.level(k);
            let range = usize::try_from(i << j)
                .ok()
                .zip(usize::try_from((i + 1) << j).ok());
            return match range.and_then(|(a, b)| level.get(a..b)) {
                Some(hashes) => Ok(reduce_perfect(hashes)),
                None => Err(TreeError::Inconsistent {
                    level: k + 1,
                    reason: format!("no kept hashes for the subtree {i} of height {h}"),
                }),
            };
        }
        let first = i << h;
        let tile = first / TILE_WIDTH as u64;
        let at = (first % TILE_WIDTH as u64) as usize;
        let count = 1usize << h;
        let leaves: &[Hash] = if tile == self.tree.level(0).len() as u64 {
            &self.tree.tail
        } else {
            self.bottom_tile(tile)?
        };
        match leaves.get(at..at + count) {
            Some(hashes) => Ok(reduce_perfect(hashes)),
            None => Err(TreeError::IndexOutOfRange {
                index: first + count as u64 - 1,
                size: self.tree.size(),
            }),
        }
    }

    /// The leaf hashes of a complete bottom tile, read once and checked.
    fn bottom_tile(&mut self, tile: u64) -> Result<&[Hash], TreeError> {
        if self.cache.as_ref().is_none_or(|(t, _)| *t != tile) {
            let leaves = self
                .source
                .tile_leaves(tile)
                .map_err(|source| TreeError::Source { tile, source })?;
            if leaves.len() != TILE_WIDTH {
                return Err(TreeError::SourceShort {
                    tile,
                    got: leaves.len(),
                });
            }
            let kept = usize::try_from(tile).ok().and_then(|t| self.tree.level(0).get(t));
            if kept != Some(&reduce_perfect(&leaves)) {
                let first = tile * TILE_WIDTH as u64;
                return Err(TreeError::LeafMismatch {
                    tile,
                    first,
                    end: first + TILE_WIDTH as u64,
                });
            }
            self.cache = Some((tile, leaves));
        }
        Ok(self.cache.as_ref().map_or(&[], |(_, l)| l.as_slice()))
    }
}

impl<S: LeafSource + ?Sized> Subtrees for View<'_, S> {
    fn range(&mut self, start: u64, n: u64) -> Result<Hash, TreeError> {
        if n.is_power_of_two() && start.is_multiple_of(n) {
            return self.perfect(n.trailing_zeros(), start / n);
        }
        if n == 0 {
            return Ok(empty_root());
        }
        let k = split(n);
        let left = self.range(start, k)?;
        let right = self.range(start + k, n - k)?;
        Ok(node_hash(&left, &right))
    }
}

/// Leaf hashes in memory answer by the RFC's definition: the reference the
/// compact tree is tested against.
pub struct Reference<'a>(pub &'a [Hash]);

impl Subtrees for Reference<'_> {
    fn range(&mut self, start: u64, n: u64) -> Result<Hash, TreeError> {
        let slice = usize::try_from(start)
            .ok()
            .zip(usize::try_from(start + n).ok())
            .and_then(|(a, b)| self.0.get(a..b));
        match slice {
            Some(leaves) => Ok(super::hash::mth(leaves)),
            None => Err(TreeError::SizeOutOfRange {
                size: start + n,
                tree_size: self.0.len() as u64,
            }),
        }
    }
}
