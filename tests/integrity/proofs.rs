//! The compact tree against the RFC's definitions (by recursion over all
//! leaves) and against an independent implementation (ct-merkle); property
//! tests that proofs verify and that any change to them fails.

use auditstore::integrity::proof::{consistency_path, inclusion_path};
use auditstore::integrity::tree::Reference;
use auditstore::integrity::{verify_consistency, verify_inclusion, Hash, NoLeaves, Tree, TreeError};
use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use proptest::prelude::*;
use sha2::Sha256;

use super::leaves;

fn reference_root(leaves: &[Hash], size: u64) -> Hash {
    auditstore::integrity::hash::mth(&leaves[..size as usize])
}

/// ct-merkle hashes its leaves itself: give it the leaf data, and us the
/// leaf hashes of the same data.
#[test]
fn roots_and_proofs_agree_with_ct_merkle() {
    let mut ct: MemoryBackedTree<Sha256, Vec<u8>> = MemoryBackedTree::new();
    let mut ours = Tree::new();
    let mut hashes = Vec::new();
    for i in 0u64..600 {
        let data = format!("event {i}").into_bytes();
        hashes.push(auditstore::integrity::leaf_hash(&data));
        ours.push(*hashes.last().expect("pushed"));
        ct.push(data);
        let size = i + 1;
        // Every small size, then sizes around the 256-leaf tile boundaries.
        if size > 64 && size % 41 != 0 && !matches!(size % 256, 0 | 1 | 255) {
            continue;
        }
        assert_eq!(
            ours.root().as_slice(),
            ct.root().as_bytes().as_slice(),
            "root at size {size}"
        );
        for index in [0, size / 3, size / 2, size - 1] {
            let p = ours
                .inclusion_proof(index, size, hashes.as_mut_slice())
                .expect("our proof");
            let theirs = ct.prove_inclusion(index as usize);
            assert_eq!(p.concat(), theirs.as_bytes(), "inclusion ({index}, {size})");
            // ct-merkle's verifier accepts our proof.
            let proof = InclusionProof::<Sha256>::from_bytes(p.concat());
            ct.root()
                .verify_inclusion(&ct.items()[index as usize], index, &proof)
                .expect("ct-merkle verifies our inclusion proof");
        }
        for old in [1, size / 2, size - 1]
            .into_iter()
            .filter(|&o| o >= 1 && o < size)
        {
            let p = ours
                .consistency_proof(old, size, hashes.as_mut_slice())
                .expect("our proof");
            let theirs = ct.prove_consistency((size - old) as usize);
            assert_eq!(p.concat(), theirs.as_bytes(), "consistency {old} -> {size}");
            let old_root = RootHash::<Sha256>::new(reference_root(&hashes, old).into(), old);
            let proof = ConsistencyProof::<Sha256>::try_from_bytes(p.concat()).expect("proof bytes");
            ct.root()
                .verify_consistency(&old_root, &proof)
                .expect("ct-merkle verifies our consistency proof");
        }
    }
}

/// Past 65,536 leaves the tree keeps tile levels 1 and 2; roots and proofs
/// from there must still be those of the definition.
#[test]
fn a_tree_with_two_tile_levels_answers_like_the_definition() {
    let n = 65_536 + 3 * 256 + 17;
    let mut all = leaves(n);
    let tree = Tree::rebuild(all.clone());
    assert_eq!(tree.level(0).len(), (n / 256) as usize);
    assert_eq!(tree.level(1).len(), 1);
    assert_eq!(tree.root(), reference_root(&all, n));
    for size in [255, 257, 65_536, 65_537, n - 1] {
        let got = tree.root_at(size, all.as_mut_slice()).expect("root");
        assert_eq!(got, reference_root(&all, size), "size {size}");
    }
    for (index, size) in [(0, n), (65_535, n), (n - 1, n), (300, 65_537)] {
        let got = tree
            .inclusion_proof(index, size, all.as_mut_slice())
            .expect("proof");
        let want = inclusion_path(&mut Reference(&all), index, size).expect("reference");
        assert_eq!(got, want, "({index}, {size})");
        let root = reference_root(&all, size);
        verify_inclusion(&all[index as usize], index, size, &got, &root).expect("verifies");
    }
    for (old, new) in [(1, n), (65_536, n), (65_537, n), (1000, 65_600)] {
        let got = tree
            .consistency_proof(old, new, all.as_mut_slice())
            .expect("proof");
        let want = consistency_path(&mut Reference(&all), old, new).expect("reference");
        assert_eq!(got, want, "{old} -> {new}");
        let (r1, r2) = (reference_root(&all, old), reference_root(&all, new));
        verify_consistency(old, new, &r1, &r2, &got).expect("verifies");
    }
}

/// The current root and proofs that stay out of complete bottom tiles read
/// no leaves; a proof inside one does, and says which tile it needed.
#[test]
fn leaves_are_read_only_when_a_proof_needs_a_complete_bottom_tile() {
    let n = 3 * 256 + 5;
    let all = leaves(n);
    let tree = Tree::rebuild(all.clone());
    assert_eq!(tree.root(), reference_root(&all, n));
    assert!(
        tree.inclusion_proof(n - 1, n, &mut NoLeaves).is_ok(),
        "a tail leaf needs no source"
    );
    assert!(
        tree.consistency_proof(512, n, &mut NoLeaves).is_ok(),
        "a tile boundary needs no source"
    );
    match tree.inclusion_proof(300, n, &mut NoLeaves) {
        Err(TreeError::Source { tile, .. }) => assert_eq!(tile, 1),
        other => panic!("expected a source error for tile 1, got {other:?}"),
    }
}

/// Counts the bottom tiles a proof reads.
struct Counting<'a>(&'a mut [Hash], Vec<u64>);

impl auditstore::integrity::LeafSource for Counting<'_> {
    fn tile_leaves(&mut self, tile: u64) -> Result<Vec<Hash>, auditstore::integrity::tree::SourceError> {
        self.1.push(tile);
        self.0.tile_leaves(tile)
    }
}

/// A consistency proof needs the tiles around both sizes; each is read once.
#[test]
fn a_proof_reads_each_bottom_tile_it_needs_once() {
    let n = 5 * 256 + 7;
    let mut all = leaves(n);
    let tree = Tree::rebuild(all.clone());
    let mut source = Counting(all.as_mut_slice(), Vec::new());
    let proof = tree
        .consistency_proof(300, 3 * 256 + 100, &mut source)
        .expect("proof");
    // Leaves 299 and 867 (the last of each tree) lie in tiles 1 and 3.
    let mut read = source.1.clone();
    read.sort_unstable();
    assert_eq!(read, vec![1, 3], "each tile once: {:?}", source.1);
    let (r1, r2) = (
        reference_root(&leaves(n), 300),
        reference_root(&leaves(n), 3 * 256 + 100),
    );
    verify_consistency(300, 3 * 256 + 100, &r1, &r2, &proof).expect("verifies");
    let mut source = Counting(all.as_mut_slice(), Vec::new());
    tree.inclusion_proof(5, n, &mut source).expect("proof");
    assert_eq!(source.1, vec![0]);
}

/// A log whose leaves changed after the tree recorded them is reported, not
/// proven.
#[test]
fn changed_leaves_are_detected_when_read_back() {
    let n = 600;
    let mut all = leaves(n);
    let tree = Tree::rebuild(all.clone());
    all[257][0] ^= 1;
    match tree.inclusion_proof(300, n, all.as_mut_slice()) {
        Err(TreeError::LeafMismatch { tile, first, end }) => assert_eq!((tile, first, end), (1, 256, 512)),
        other => panic!("expected a leaf mismatch, got {other:?}"),
    }
    // Moving two leaves is a change too.
    let mut moved = leaves(n);
    moved.swap(10, 11);
    assert!(matches!(
        tree.inclusion_proof(3, n, moved.as_mut_slice()),
        Err(TreeError::LeafMismatch { tile: 0, .. })
    ));
}

#[test]
fn out_of_range_requests_are_errors() {
    let mut all = leaves(10);
    let tree = Tree::rebuild(all.clone());
    assert!(matches!(
        tree.inclusion_proof(10, 10, all.as_mut_slice()),
        Err(TreeError::IndexOutOfRange { index: 10, size: 10 })
    ));
    assert!(matches!(
        tree.inclusion_proof(0, 11, all.as_mut_slice()),
        Err(TreeError::SizeOutOfRange {
            size: 11,
            tree_size: 10
        })
    ));
    assert!(matches!(
        tree.consistency_proof(5, 4, all.as_mut_slice()),
        Err(TreeError::SizesReversed { old: 5, new: 4 })
    ));
    assert!(tree.root_at(11, all.as_mut_slice()).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_inclusion_proof_verifies_and_no_altered_one_does(
        size in 1u64..1500, index_seed in any::<u64>(), other in any::<u64>(), bit in 0usize..256,
    ) {
        let index = index_seed % size;
        let mut all = leaves(size);
        let tree = Tree::rebuild(all.clone());
        let root = tree.root();
        prop_assert_eq!(root, reference_root(&all, size));
        let proof = tree.inclusion_proof(index, size, all.as_mut_slice()).unwrap();
        prop_assert_eq!(&proof, &inclusion_path(&mut Reference(&all), index, size).unwrap());
        let leaf = all[index as usize];
        prop_assert!(verify_inclusion(&leaf, index, size, &proof, &root).is_ok());

        // Another leaf hash, root or any proof hash with one bit flipped.
        let flip = |h: &Hash| { let mut h = *h; h[bit / 8] ^= 1 << (bit % 8); h };
        prop_assert!(verify_inclusion(&flip(&leaf), index, size, &proof, &root).is_err());
        prop_assert!(verify_inclusion(&leaf, index, size, &proof, &flip(&root)).is_err());
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i] = flip(&bad[i]);
            prop_assert!(verify_inclusion(&leaf, index, size, &bad, &root).is_err());
        }
        // Another index, with the same tree head.
        let index2 = other % size;
        if index2 != index {
            prop_assert!(verify_inclusion(&leaf, index2, size, &proof, &root).is_err());
        }
        // Another size, with that size's real root (as a checkpoint pairs them).
        let size2 = 1 + other % 1500;
        if size2 != size && index < size2 {
            let root2 = reference_root(&leaves(size2), size2);
            prop_assert!(verify_inclusion(&leaf, index, size2, &proof, &root2).is_err());
        }
        // A hash more or less.
        prop_assert!(verify_inclusion(&leaf, index, size, &[proof.clone(), vec![root]].concat(), &root).is_err());
        if !proof.is_empty() {
            prop_assert!(verify_inclusion(&leaf, index, size, &proof[1..], &root).is_err());
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_no_altered_one_does(
        new in 1u64..1500, old_seed in any::<u64>(), other in any::<u64>(), bit in 0usize..256,
    ) {
        let old = 1 + old_seed % new;
        let mut all = leaves(new);
        let tree = Tree::rebuild(all.clone());
        let (r1, r2) = (reference_root(&all, old), tree.root());
        let proof = tree.consistency_proof(old, new, all.as_mut_slice()).unwrap();
        prop_assert_eq!(&proof, &consistency_path(&mut Reference(&all), old, new).unwrap());
        prop_assert!(verify_consistency(old, new, &r1, &r2, &proof).is_ok());
        if old == new {
            prop_assert!(proof.is_empty());
            return Ok(());
        }
        let flip = |h: &Hash| { let mut h = *h; h[bit / 8] ^= 1 << (bit % 8); h };
        prop_assert!(verify_consistency(old, new, &flip(&r1), &r2, &proof).is_err());
        prop_assert!(verify_consistency(old, new, &r1, &flip(&r2), &proof).is_err());
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i] = flip(&bad[i]);
            prop_assert!(verify_consistency(old, new, &r1, &r2, &bad).is_err());
        }
        // Other sizes, each with its real root.
        let old2 = 1 + other % new;
        if old2 != old {
            let r = reference_root(&all, old2);
            prop_assert!(verify_consistency(old2, new, &r, &r2, &proof).is_err());
        }
        let new2 = old + other % 1500;
        if new2 != new {
            let r = reference_root(&leaves(new2), new2);
            prop_assert!(verify_consistency(old, new2, &r1, &r, &proof).is_err());
        }
        prop_assert!(verify_consistency(old, new, &r1, &r2, &[proof.clone(), vec![r1]].concat()).is_err());
        prop_assert!(verify_consistency(old, new, &r1, &r2, &proof[1..]).is_err());
    }

    /// Appending leaf by leaf and rebuilding at once give the same tree.
    #[test]
    fn pushing_and_rebuilding_agree(n in 0u64..2000) {
        let all = leaves(n);
        let mut pushed = Tree::new();
        all.iter().for_each(|h| pushed.push(*h));
        prop_assert_eq!(pushed.size(), n);
        prop_assert_eq!(pushed.root(), reference_root(&all, n));
        prop_assert_eq!(&pushed, &Tree::rebuild(all));
    }
}

/// A tree cut back to its first complete tiles, then given the leaves
/// after them again, is the whole tree: how `verify` rebuilds past leaves
/// deleted by retention (two tile levels: 65,536 leaves a level-2 hash).
#[test]
fn a_prefix_of_tiles_grows_back_into_the_tree() {
    let all = leaves(65_536 * 2 + 700);
    let tree = Tree::rebuild(all.clone());
    for tiles in [0u64, 1, 255, 256, 257, 512, 513, 514] {
        let mut grown = tree.prefix_tiles(tiles).unwrap();
        assert_eq!(grown.size(), tiles * 256);
        all[tiles as usize * 256..].iter().for_each(|h| grown.push(*h));
        assert_eq!(grown, tree, "from {tiles} tiles");
    }
    assert!(tree.prefix_tiles(515).is_none());
}
