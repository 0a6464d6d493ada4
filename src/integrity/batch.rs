//! Batch inclusion: one proof that many leaves are in a tree, smaller than
//! their separate RFC 9162 inclusion proofs, because subtrees that hold a
//! proven leaf are recomputed by the verifier instead of being sent.
//!
//! Given the tree size `n` and the proven leaf indices (ascending, distinct,
//! below `n`), walk the tree as RFC 9162 §2.1.1 splits it: `MTH(D[a:a+m])`
//! for `m > 1` splits at `k`, the largest power of two below `m`, into
//! `D[a:a+k]` and `D[a+k:a+m]`. A subtree that holds no proven leaf
//! contributes its hash to the proof; a one-leaf subtree that is proven
//! contributes nothing (the verifier has its leaf hash); any other subtree
//! recurses, left before right. The proof is those hashes in that
//! depth-first, left-to-right order. The verifier walks the same way and
//! consumes them, and the proof is good when the walk uses every hash and
//! ends at the signed root. This is the format of an export manifest's
//! `inclusion` (docs/exports.md, "Manifests").

use super::hash::{node_hash, split, Hash};
use super::tree::{LeafSource, Subtrees, Tree, TreeError};
use super::verify::ProofError;

/// The batch inclusion proof of `leaves` (ascending, distinct) in the tree
/// of `size` leaves.
pub fn batch_inclusion_path<T: Subtrees + ?Sized>(
    tree: &mut T,
    leaves: &[u64],
    size: u64,
) -> Result<Vec<Hash>, TreeError> {
    check_indices(leaves.iter().copied(), size).map_err(|e| match e {
        ProofError::IndexOutOfRange { index, size } => TreeError::IndexOutOfRange { index, size },
        _ => TreeError::IndexOutOfRange { index: size, size },
    })?;
    let mut out = Vec::new();
    if size > 0 {
        collect(tree, 0, size, leaves, &mut out)?;
    }
    Ok(out)
}

impl Tree {
    /// The batch inclusion proof of `leaves` (ascending, distinct) in the
    /// tree of `size` leaves.
    pub fn batch_inclusion_proof<S: LeafSource + ?Sized>(
        &self,
        leaves: &[u64],
        size: u64,
        source: &mut S,
    ) -> Result<Vec<Hash>, TreeError> {
        self.check_size(size)?;
        batch_inclusion_path(&mut self.view(source), leaves, size)
    }
}

fn collect<T: Subtrees + ?Sized>(
    tree: &mut T,
    start: u64,
    n: u64,
    leaves: &[u64],
    out: &mut Vec<Hash>,
) -> Result<(), TreeError> {
    if leaves.is_empty() {
        out.push(tree.range(start, n)?);
        return Ok(());
    }
    if n == 1 {
        return Ok(());
    }
    let k = split(n);
    let cut = leaves.partition_point(|&i| i < start + k);
    collect(tree, start, k, &leaves[..cut], out)?;
    collect(tree, start + k, n - k, &leaves[cut..], out)
}

/// The root that `leaves` (index and leaf hash, ascending by index,
/// distinct) and `proof` give for a tree of `size` leaves.
pub fn batch_root(leaves: &[(u64, Hash)], size: u64, proof: &[Hash]) -> Result<Hash, ProofError> {
    if leaves.is_empty() {
        return Err(ProofError::Empty);
    }
    check_indices(leaves.iter().map(|(i, _)| *i), size)?;
    let mut rest = proof;
    let root = fold(0, size, leaves, &mut rest)?;
    if !rest.is_empty() {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            expected: proof.len() - rest.len(),
        });
    }
    Ok(root)
}

/// Does `proof` show every one of `leaves` in the tree of `size` leaves
/// with root `root`?
pub fn verify_batch_inclusion(
    leaves: &[(u64, Hash)],
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if batch_root(leaves, size, proof)? == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

fn fold(start: u64, n: u64, leaves: &[(u64, Hash)], proof: &mut &[Hash]) -> Result<Hash, ProofError> {
    if leaves.is_empty() {
        let (first, rest) = proof.split_first().ok_or(ProofError::TooShort)?;
        *proof = rest;
        return Ok(*first);
    }
    if n == 1 {
        return Ok(leaves[0].1);
    }
    let k = split(n);
    let cut = leaves.partition_point(|(i, _)| *i < start + k);
    let left = fold(start, k, &leaves[..cut], proof)?;
    let right = fold(start + k, n - k, &leaves[cut..], proof)?;
    Ok(node_hash(&left, &right))
}

fn check_indices(indices: impl Iterator<Item = u64>, size: u64) -> Result<(), ProofError> {
    let mut last: Option<u64> = None;
    for index in indices {
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        if last.is_some_and(|l| l >= index) {
            return Err(ProofError::NotAscending { index });
        }
        last = Some(index);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrity::hash::{leaf_hash, mth};
    use crate::integrity::proof::inclusion_path;
    use crate::integrity::tree::Reference;
    use proptest::prelude::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    proptest! {
        #[test]
        fn every_subset_proves_and_nothing_else_does(
            n in 1u64..300,
            picks in proptest::collection::vec(any::<u64>(), 1..40),
        ) {
            let all = leaves(n);
            let root = mth(&all);
            let mut chosen: Vec<u64> = picks.iter().map(|p| p % n).collect();
            chosen.sort_unstable();
            chosen.dedup();
            let proof = batch_inclusion_path(&mut Reference(&all), &chosen, n).unwrap();
            let with: Vec<(u64, Hash)> = chosen.iter().map(|&i| (i, all[i as usize])).collect();
            prop_assert_eq!(verify_batch_inclusion(&with, n, &proof, &root), Ok(()));
            // One leaf: the batch proof holds the RFC 9162 inclusion path's
            // hashes (in walk order rather than bottom up).
            if chosen.len() == 1 {
                let mut path = inclusion_path(&mut Reference(&all), chosen[0], n).unwrap();
                let mut sorted = proof.clone();
                path.sort_unstable();
                sorted.sort_unstable();
                prop_assert_eq!(&sorted, &path);
            }
            // A changed leaf, a moved leaf, a dropped hash or an extra one fail.
            let mut changed = with.clone();
            changed[0].1[0] ^= 1;
            prop_assert!(verify_batch_inclusion(&changed, n, &proof, &root).is_err());
            if let Some(&(i, h)) = with.last() {
                if i + 1 < n && with.iter().all(|(j, _)| *j != i + 1) && all[i as usize + 1] != h {
                    let mut moved = with.clone();
                    let last = moved.len() - 1;
                    moved[last].0 = i + 1;
                    prop_assert!(verify_batch_inclusion(&moved, n, &proof, &root).is_err());
                }
            }
            if !proof.is_empty() {
                prop_assert!(verify_batch_inclusion(&with, n, &proof[1..], &root).is_err());
            }
            let mut longer = proof.clone();
            longer.push(root);
            prop_assert!(verify_batch_inclusion(&with, n, &longer, &root).is_err());
            // A leaf left out of the batch makes the proof too short.
            if with.len() > 1 {
                prop_assert!(verify_batch_inclusion(&with[1..], n, &proof, &root).is_err());
            }
        }
    }

    #[test]
    fn all_leaves_need_no_hash_and_indices_must_ascend() {
        let all = leaves(7);
        let every: Vec<u64> = (0..7).collect();
        let proof = batch_inclusion_path(&mut Reference(&all), &every, 7).unwrap();
        assert!(proof.is_empty());
        let with: Vec<(u64, Hash)> = every.iter().map(|&i| (i, all[i as usize])).collect();
        assert_eq!(verify_batch_inclusion(&with, 7, &proof, &mth(&all)), Ok(()));
        let swapped = [(3, all[3]), (2, all[2])];
        assert_eq!(
            batch_root(&swapped, 7, &[]),
            Err(ProofError::NotAscending { index: 2 })
        );
        assert_eq!(
            batch_root(&[(7, all[0])], 7, &[]),
            Err(ProofError::IndexOutOfRange { index: 7, size: 7 })
        );
        assert!(batch_inclusion_path(&mut Reference(&all), &[2, 2], 7).is_err());
    }
}
