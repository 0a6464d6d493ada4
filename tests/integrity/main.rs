//! Tests of the tamper-evidence core (`auditstore::integrity`): published
//! vectors, an independent RFC 6962 implementation (ct-merkle), property
//! tests, the tile files and the key file.

mod leaf;
mod note;
mod proofs;
mod tiles;
mod vectors;

use auditstore::integrity::Hash;

/// Decodes hex (test data only).
pub fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test hex"))
        .collect()
}

pub fn hash(s: &str) -> Hash {
    unhex(s).try_into().expect("32-byte test hash")
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Distinct leaf hashes `0..n` for trees of any size.
pub fn leaves(n: u64) -> Vec<Hash> {
    (0..n)
        .map(|i| auditstore::integrity::leaf_hash(&i.to_le_bytes()))
        .collect()
}
