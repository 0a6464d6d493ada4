//! Building inclusion and consistency proofs (RFC 9162 §2.1.3.1 and
//! §2.1.4.1), over anything that gives subtree hashes.

use super::hash::{split, Hash};
use super::tree::{LeafSource, Subtrees, Tree, TreeError};

/// The inclusion proof `PATH(index, D[0:size])`: the sibling hashes from the
/// leaf up to the root.
pub fn inclusion_path<T: Subtrees + ?Sized>(
    tree: &mut T,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, TreeError> {
    if index >= size {
        return Err(TreeError::IndexOutOfRange { index, size });
    }
    // Walk down from the root, remembering each sibling subtree; the proof
    // lists them bottom up.
    let (mut start, mut n, mut m) = (0u64, size, index);
    let mut siblings = Vec::new();
    while n > 1 {
        let k = split(n);
        if m < k {
            siblings.push((start + k, n - k));
            n = k;
        } else {
            siblings.push((start, k));
            start += k;
            m -= k;
            n -= k;
        }
    }
    siblings
        .iter()
        .rev()
        .map(|&(s, len)| tree.range(s, len))
        .collect()
}

/// The consistency proof `PROOF(old, D[0:new])`: empty when `old` is 0 or
/// equal to `new` (nothing to prove), else `SUBPROOF(old, D[0:new], true)`.
pub fn consistency_path<T: Subtrees + ?Sized>(
    tree: &mut T,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, TreeError> {
    if old > new {
        return Err(TreeError::SizesReversed { old, new });
    }
    if old == 0 || old == new {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[start:start+n], b), unrolled: each step either descends
    // left (the right subtree is a proof element) or right (the left one is).
    let (mut start, mut n, mut m, mut b) = (0u64, new, old, true);
    let mut nodes = Vec::new();
    while m != n {
        let k = split(n);
        if m <= k {
            nodes.push((start + k, n - k));
            n = k;
        } else {
            nodes.push((start, k));
            start += k;
            m -= k;
            n -= k;
            b = false;
        }
    }
    if !b {
        // SUBPROOF(m, D[m], false) = {MTH(D[m])}: the old tree's last
        // subtree, which the verifier cannot know otherwise.
        nodes.push((start, n));
    }
    nodes.iter().rev().map(|&(s, len)| tree.range(s, len)).collect()
}

impl Tree {
    /// The inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn inclusion_proof<S: LeafSource + ?Sized>(
        &self,
        index: u64,
        size: u64,
        source: &mut S,
    ) -> Result<Vec<Hash>, TreeError> {
        self.check_size(size)?;
        inclusion_path(&mut self.view(source), index, size)
    }

    /// The consistency proof from the tree of `old` leaves to that of `new`.
    pub fn consistency_proof<S: LeafSource + ?Sized>(
        &self,
        old: u64,
        new: u64,
        source: &mut S,
    ) -> Result<Vec<Hash>, TreeError> {
        self.check_size(new)?;
        consistency_path(&mut self.view(source), old, new)
    }
}
