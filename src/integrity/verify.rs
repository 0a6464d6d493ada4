//! Checking proofs: the verification algorithms of RFC 9162 §2.1.3.2
//! (inclusion) and §2.1.4.2 (consistency), step for step, so that a proof
//! this crate accepts is one any RFC 9162 verifier accepts.

use super::hash::{node_hash, Hash};

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("old size {old} is larger than new size {new}")]
    SizesReversed { old: u64, new: u64 },
    #[error("the proof has {got} hashes; a proof for these sizes has {expected}")]
    WrongLength { got: usize, expected: usize },
    #[error("the proof has more hashes than the tree has levels")]
    TooLong,
    #[error("the proof is empty")]
    Empty,
    #[error("the proof has too few hashes")]
    TooShort,
    #[error("leaf index {index} is out of order: leaf indices must ascend, each once")]
    NotAscending { index: u64 },
    #[error("the proof does not lead to the root hash")]
    RootMismatch,
    #[error("the proof does not lead to the old root hash")]
    OldRootMismatch,
    #[error("equal sizes with different root hashes")]
    EqualSizesDifferentRoots,
}

/// RFC 9162 §2.1.3.2: does `proof` show the leaf with hash `leaf` at
/// `index` in the tree of `size` leaves with root `root`?
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    // 1. leaf_index must be below tree_size.
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // 2. fn = leaf_index, sn = tree_size - 1.
    let (mut fn_, mut sn) = (index, size - 1);
    // 3. r = leaf_hash.
    let mut r = *leaf;
    // 4. For each p in the path:
    for p in proof {
        // a. sn == 0 means the path is longer than the tree is high.
        if sn == 0 {
            return Err(ProofError::TooLong);
        }
        // b. A right child, or the last node of its level: p is on the left.
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            // Skip the levels where this node has no right sibling.
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        // c. Up one level.
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5. All levels used, and the root reached.
    if sn != 0 {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            expected: inclusion_len(index, size),
        });
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: does `proof` show that the tree of `old` leaves with
/// root `old_root` is a prefix of the tree of `new` leaves with `new_root`?
///
/// The RFC's algorithm covers `0 < old < new`. As RFC 9162 §2.1.4.1 (and
/// the transparency-dev and Go sumdb verifiers) define the edges: equal
/// sizes need an empty proof and equal roots; every tree extends the empty
/// tree, with an empty proof.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::SizesReversed { old, new });
    }
    if old == new || old == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                expected: 0,
            });
        }
        if old == new && old_root != new_root {
            return Err(ProofError::EqualSizesDifferentRoots);
        }
        return Ok(());
    }
    // 1. An empty path fails.
    let Some((first, rest)) = proof.split_first() else {
        return Err(ProofError::Empty);
    };
    // 2. If old is a power of two, the old root is the first element.
    let (mut fr, mut sr, rest) = if old.is_power_of_two() {
        (*old_root, *old_root, proof)
    } else {
        // 5. fr = sr = the first element.
        (*first, *first, rest)
    };
    // 3. fn = old - 1, sn = new - 1.
    let (mut fn_, mut sn) = (old - 1, new - 1);
    // 4. Skip the levels where the old tree's last node is a right child.
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // 6. For each remaining element c:
    for c in rest {
        // a. A path longer than the tree is high.
        if sn == 0 {
            return Err(ProofError::TooLong);
        }
        // b. c is a left sibling: it goes into both roots.
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            // Otherwise c is to the right: only the new tree has it.
            sr = node_hash(&sr, c);
        }
        // c. Up one level.
        fn_ >>= 1;
        sn >>= 1;
    }
    // 7. All levels used, and both roots reached.
    if sn != 0 {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            expected: consistency_len(old, new),
        });
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Hashes in the inclusion proof of `index` in a tree of `size` (for error
/// messages).
fn inclusion_len(index: u64, size: u64) -> usize {
    let (mut n, mut m, mut len) = (size, index, 0usize);
    while n > 1 {
        let k = super::hash::split(n);
        len += 1;
        if m < k {
            n = k;
        } else {
            m -= k;
            n -= k;
        }
    }
    len
}

/// Hashes in the consistency proof from `old` to `new` (`0 < old < new`).
fn consistency_len(old: u64, new: u64) -> usize {
    let (mut n, mut m, mut b, mut len) = (new, old, true, 0usize);
    while m != n {
        let k = super::hash::split(n);
        len += 1;
        if m <= k {
            n = k;
        } else {
            m -= k;
            n -= k;
            b = false;
        }
    }
    len + usize::from(!b)
}
