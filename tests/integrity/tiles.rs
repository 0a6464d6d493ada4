//! The tile files: they load back to the same tree, survive a crash between
//! their two writes, never trust a torn or damaged file, and cost well under
//! 2 bytes per leaf.

use std::fs::{self, OpenOptions};
use std::path::Path;

use auditstore::integrity::tiles::{TileError, TileStore, RECORD_LEN, TREE_DIR};
use auditstore::integrity::Tree;

use super::leaves;

/// The loaded tree, caught up with the leaves after those the tiles cover.
fn load_and_catch_up(dir: &Path, all: &[[u8; 32]]) -> (Tree, TileStore) {
    let (mut tree, store) = TileStore::load(dir).expect("load").expect("tiles present");
    assert_eq!(
        tree.size(),
        store.covered(),
        "tiles cover whole bottom tiles only"
    );
    all[tree.size() as usize..].iter().for_each(|h| tree.push(*h));
    (tree, store)
}

#[test]
fn rebuilt_tiles_load_back_to_the_same_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiles = dir.path().join(TREE_DIR);
    let n = 2 * 65_536 + 5 * 256 + 99;
    let all = leaves(n);
    let (tree, store) = TileStore::rebuild(&tiles, all.clone()).expect("rebuild");
    assert_eq!(store.covered(), n / 256 * 256);
    let (loaded, _) = load_and_catch_up(&tiles, &all);
    assert_eq!(loaded, tree);
    assert_eq!(loaded.root(), tree.root());
}

#[test]
fn no_tiles_is_none_so_the_caller_rebuilds() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(TileStore::load(&dir.path().join(TREE_DIR))
        .expect("load")
        .is_none());
}

#[test]
fn syncing_as_the_tree_grows_matches_a_rebuild() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiles = dir.path().join(TREE_DIR);
    let all = leaves(65_536 + 1000);
    let mut tree = Tree::new();
    let mut store = TileStore::create(&tiles, &tree).expect("create");
    for chunk in all.chunks(777) {
        chunk.iter().for_each(|h| tree.push(*h));
        store.sync(&tree).expect("sync");
        let (loaded, _) = load_and_catch_up(&tiles, &all[..tree.size() as usize]);
        assert_eq!(loaded, tree, "at size {}", tree.size());
    }
    assert_eq!(tree, Tree::rebuild(all));
}

#[test]
fn a_tile_appended_before_a_crash_but_never_claimed_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiles = dir.path().join(TREE_DIR);
    let all = leaves(4 * 65_536);
    let half = &all[..65_536 + 300];
    let (mut tree, mut store) = TileStore::rebuild(&tiles, half.to_vec()).expect("rebuild");
    let saved_partial = fs::read(tiles.join("partial")).expect("partial");
    // Grow by more than a level-1 tile, sync, then put the old `partial`
    // back: as if the crash came after the level file's append and before
    // the rename of the new `partial`.
    all[half.len()..2 * 65_536 + 10]
        .iter()
        .for_each(|h| tree.push(*h));
    store.sync(&tree).expect("sync");
    fs::write(tiles.join("partial"), &saved_partial).expect("restore old partial");
    let (mut loaded, mut store) = load_and_catch_up(&tiles, half);
    assert_eq!(loaded, Tree::rebuild(half.to_vec()));
    // Catching up again from the log rewrites the dropped tile.
    all[half.len()..].iter().for_each(|h| loaded.push(*h));
    store.sync(&loaded).expect("sync");
    let (again, _) = load_and_catch_up(&tiles, &all);
    assert_eq!(again, Tree::rebuild(all));
}

/// A log cut back (or a caller's mistake) gives a smaller tree: syncing it
/// cuts the files back, and growing again rewrites what was cut.
#[test]
fn syncing_a_smaller_tree_cuts_the_files_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiles = dir.path().join(TREE_DIR);
    let all = leaves(3 * 65_536 + 3);
    let (_, mut store) = TileStore::rebuild(&tiles, all.clone()).expect("rebuild");
    // A different history of the same length up to the cut: the other leaves.
    let other: Vec<[u8; 32]> = all.iter().map(|h| auditstore::integrity::leaf_hash(h)).collect();
    let small = Tree::rebuild(other[..65_536 - 256].to_vec());
    store.sync(&small).expect("sync smaller");
    let (loaded, _) = load_and_catch_up(&tiles, &other[..65_536 - 256]);
    assert_eq!(loaded, small);
    let mut big = small;
    other[65_536 - 256..].iter().for_each(|h| big.push(*h));
    store.sync(&big).expect("sync bigger");
    let (loaded, _) = load_and_catch_up(&tiles, &other);
    assert_eq!(loaded, Tree::rebuild(other));
}

fn damaged(tiles: &Path) -> TileError {
    match TileStore::load(tiles) {
        Err(e) => e,
        Ok(_) => panic!("damaged tiles loaded"),
    }
}

#[test]
fn torn_or_damaged_tiles_are_never_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiles = dir.path().join(TREE_DIR);
    let all = leaves(3 * 65_536 + 7);
    TileStore::rebuild(&tiles, all.clone()).expect("rebuild");
    let level1 = tiles.join("level-1.tiles");
    let good = fs::read(&level1).expect("read");
    assert_eq!(good.len(), 32 + 3 * RECORD_LEN);

    // Torn: the last tile cut short.
    let file = OpenOptions::new().write(true).open(&level1).expect("open");
    file.set_len((good.len() - 100) as u64).expect("truncate");
    drop(file);
    match damaged(&tiles) {
        TileError::Corrupt { offset, .. } => assert_eq!(offset, (32 + 2 * RECORD_LEN) as u64),
        other => panic!("expected Corrupt, got {other:?}"),
    }

    // One bit flipped in the second tile's hashes.
    let mut bad = good.clone();
    bad[32 + RECORD_LEN + 8 + 40] ^= 0x10;
    fs::write(&level1, &bad).expect("write");
    match damaged(&tiles) {
        TileError::Corrupt { offset, reason, .. } => {
            assert_eq!(offset, (32 + RECORD_LEN) as u64);
            assert!(reason.contains("CRC"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }

    // A tile whose CRC was recomputed after the change: the tree above it
    // no longer fits.
    let mut forged = good.clone();
    let at = 32 + RECORD_LEN;
    forged[at + 8 + 40] ^= 0x10;
    let crc = crc32fast::hash(&forged[at..at + RECORD_LEN - 4]);
    forged[at + RECORD_LEN - 4..at + RECORD_LEN].copy_from_slice(&crc.to_le_bytes());
    fs::write(&level1, &forged).expect("write");
    assert!(matches!(damaged(&tiles), TileError::Tree { .. }));

    // A damaged `partial`.
    fs::write(&level1, &good).expect("write");
    let partial = tiles.join("partial");
    let mut p = fs::read(&partial).expect("read");
    let last = p.len() - 10;
    p[last] ^= 1;
    fs::write(&partial, &p).expect("write");
    assert!(matches!(damaged(&tiles), TileError::Corrupt { .. }));

    // A newer format version is named as such.
    p[last] ^= 1;
    p[8] = 2;
    fs::write(&partial, &p).expect("write");
    assert!(matches!(
        damaged(&tiles),
        TileError::UnsupportedVersion { found: 2, .. }
    ));

    // After each, a rebuild from the log restores the tree.
    let (tree, _) = TileStore::rebuild(&tiles, all.clone()).expect("rebuild");
    let (loaded, _) = load_and_catch_up(&tiles, &all);
    assert_eq!(loaded, tree);
}

/// The cost on disk: at most 2 bytes per leaf is the target; the design
/// gives about 0.126.
#[test]
fn tiles_cost_well_under_two_bytes_per_leaf() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiles = dir.path().join(TREE_DIR);
    let n = 8 * 65_536u64;
    TileStore::rebuild(&tiles, leaves(n)).expect("rebuild");
    let bytes: u64 = fs::read_dir(&tiles)
        .expect("read dir")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum();
    let per_leaf = bytes as f64 / n as f64;
    assert!(
        per_leaf < 0.13,
        "{bytes} bytes for {n} leaves: {per_leaf} B per leaf"
    );
    assert!(
        per_leaf > 0.12,
        "level 1 alone is 8204 B per 65,536 leaves: {per_leaf}"
    );
}

/// What a crash leaves past `partial` (a torn append to a level file, a new
/// level file without its header yet) is cut at the next open for writing,
/// after which every level file is whole again and the tree is the same.
#[test]
fn appends_a_crash_left_past_partial_are_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiles = dir.path().join(TREE_DIR);
    // One complete level-1 tile (65,536 leaves), no level-2 tile.
    let all = leaves(65_536 + 300);
    let (tree, _) = TileStore::rebuild(&tiles, all.clone()).expect("rebuild");
    let level1 = tiles.join("level-1.tiles");
    let whole = fs::metadata(&level1).expect("level 1").len();
    // Half a tile appended to level 1; level 2 created, nothing written yet.
    let mut f = OpenOptions::new().append(true).open(&level1).expect("open");
    std::io::Write::write_all(&mut f, &vec![7u8; RECORD_LEN / 2]).expect("append");
    fs::File::create(tiles.join("level-2.tiles")).expect("create level 2");
    let check =
        |n: usize| auditstore::integrity::tiles::check_level_file(&tiles.join(format!("level-{n}.tiles")), n);
    assert!(
        check(1).is_err() && check(2).is_err(),
        "the leftovers are damage as they stand"
    );
    let (loaded, store) = TileStore::load(&tiles).expect("load").expect("tiles");
    store.cut_unclaimed().expect("cut");
    assert_eq!(fs::metadata(&level1).expect("level 1").len(), whole);
    assert_eq!(check(2).expect("level 2: its header alone"), 0);
    assert_eq!(check(1).expect("level 1 whole"), 1);
    let (again, _) = TileStore::load(&tiles).expect("load").expect("tiles");
    assert_eq!(again, loaded);
    assert_eq!(loaded.level(0), tree.level(0));
}
