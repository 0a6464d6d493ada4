//! The two hash functions of RFC 6962 / RFC 9162 §2.1.1, with their domain
//! separation bytes: a leaf can never be mistaken for an interior node.

use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf hash, an interior node hash or a root.
pub type Hash = [u8; 32];

/// Bytes of a [`Hash`].
pub const HASH_LEN: usize = 32;

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256()` of no bytes (RFC 9162 §2.1.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Reduces `2^k` hashes of one level to the hash of the perfect subtree they
/// span (the caller guarantees a power-of-two, non-empty count).
pub(crate) fn reduce_perfect(hashes: &[Hash]) -> Hash {
    let mut level: Vec<Hash> = hashes.to_vec();
    while level.len() > 1 {
        level = level.chunks(2).map(reduce_pair).collect();
    }
    level.first().copied().unwrap_or_else(empty_root)
}

/// One pair of a perfect level (a lone last hash is carried up unchanged,
/// which never happens for the power-of-two counts `reduce_perfect` gets).
fn reduce_pair(pair: &[Hash]) -> Hash {
    match pair {
        [l, r] => node_hash(l, r),
        [one] => *one,
        _ => empty_root(),
    }
}

/// The Merkle tree hash (RFC 9162 §2.1.1) of a list of leaf hashes, by the
/// definition: the reference the tree and its tests are checked against.
pub fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// The largest power of two smaller than `n` (for `n >= 2`): where RFC 9162
/// splits a tree of `n` leaves.
pub(crate) fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_the_largest_power_of_two_below() {
        for (n, k) in [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (1000, 512),
            (1 << 40, 1 << 39),
        ] {
            assert_eq!(split(n), k, "n = {n}");
        }
    }

    #[test]
    fn reduce_perfect_matches_mth() {
        let leaves: Vec<Hash> = (0u8..16).map(|i| leaf_hash(&[i])).collect();
        for k in [1usize, 2, 4, 8, 16] {
            assert_eq!(reduce_perfect(&leaves[..k]), mth(&leaves[..k]));
        }
    }
}
