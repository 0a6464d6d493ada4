//! The RFC 6962 test vectors of the Certificate Transparency / transparency-
//! dev Go repositories (testonly/constants.go, proof/verify_test.go): the
//! tree heads of the eight well-known leaves and the proofs among them.

use auditstore::integrity::{leaf_hash, verify_consistency, verify_inclusion, Hash, Tree};

use super::{hash, unhex};

const INPUTS: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// Root hashes of the trees of 0..=8 of those leaves.
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf index, tree size, proof): the Go file's 1-based leaf numbers less one.
const INCLUSION: [(u64, u64, &[&str]); 4] = [
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (old size, new size, proof).
const CONSISTENCY: [(u64, u64, &[&str]); 4] = [
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn leaf_hashes() -> Vec<Hash> {
    INPUTS.iter().map(|i| leaf_hash(&unhex(i))).collect()
}

fn proof(p: &[&str]) -> Vec<Hash> {
    p.iter().map(|h| hash(h)).collect()
}

fn root(size: u64) -> Hash {
    hash(ROOTS[size as usize])
}

#[test]
fn roots_of_every_size_match_the_published_ones() {
    let mut leaves = leaf_hashes();
    let tree = Tree::rebuild(leaves.clone());
    for size in 0..=8u64 {
        let got = tree.root_at(size, leaves.as_mut_slice()).expect("root");
        assert_eq!(got, root(size), "size {size}");
        assert_eq!(
            Tree::rebuild(leaves[..size as usize].to_vec()).root(),
            root(size),
            "size {size}"
        );
    }
}

#[test]
fn inclusion_proofs_match_and_verify() {
    let mut leaves = leaf_hashes();
    let tree = Tree::rebuild(leaves.clone());
    for (index, size, expected) in INCLUSION {
        let got = tree
            .inclusion_proof(index, size, leaves.as_mut_slice())
            .expect("proof");
        assert_eq!(got, proof(expected), "index {index} size {size}");
        let leaf = leaves[index as usize];
        verify_inclusion(&leaf, index, size, &got, &root(size)).expect("published proof verifies");
    }
}

#[test]
fn consistency_proofs_match_and_verify() {
    let mut leaves = leaf_hashes();
    let tree = Tree::rebuild(leaves.clone());
    for (old, new, expected) in CONSISTENCY {
        let got = tree
            .consistency_proof(old, new, leaves.as_mut_slice())
            .expect("proof");
        assert_eq!(got, proof(expected), "{old} -> {new}");
        verify_consistency(old, new, &root(old), &root(new), &got).expect("published proof verifies");
    }
}

/// The probes of the Go verifier tests: every one must fail.
#[test]
fn corrupted_published_inclusion_proofs_fail() {
    let leaves = leaf_hashes();
    let some = hash("abacaba000000000000000000000000000000000000000000060061e00123456");
    for (index, size, p) in INCLUSION {
        let (p, root, leaf) = (proof(p), root(size), leaves[index as usize]);
        let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>, String)> = vec![
            (
                index.wrapping_sub(1),
                size,
                leaf,
                root,
                p.clone(),
                "index - 1".into(),
            ),
            (index + 1, size, leaf, root, p.clone(), "index + 1".into()),
            (index ^ 2, size, leaf, root, p.clone(), "index ^ 2".into()),
            (index, size * 2, leaf, root, p.clone(), "size * 2".into()),
            (index, size / 2, leaf, root, p.clone(), "size / 2".into()),
            (index, size, some, root, p.clone(), "wrong leaf".into()),
            (
                index,
                size,
                leaf,
                super::hash(ROOTS[0]),
                p.clone(),
                "empty root".into(),
            ),
            (index, size, leaf, some, p.clone(), "random root".into()),
            (
                index,
                size,
                leaf,
                root,
                [p.clone(), vec![root]].concat(),
                "trailing root".into(),
            ),
            (
                index,
                size,
                leaf,
                root,
                [vec![root], p.clone()].concat(),
                "preceding root".into(),
            ),
            (
                index,
                size,
                leaf,
                root,
                p[..p.len() - 1].to_vec(),
                "removed".into(),
            ),
        ];
        for i in 0..p.len() {
            let mut bad = p.clone();
            bad[i][0] ^= 8;
            probes.push((index, size, leaf, root, bad, format!("bit flip in {i}")));
        }
        for (i, s, l, r, pr, what) in probes {
            assert!(
                verify_inclusion(&l, i, s, &pr, &r).is_err(),
                "{what} verified for ({index}, {size})"
            );
        }
    }
}

#[test]
fn corrupted_published_consistency_proofs_fail() {
    for (old, new, p) in CONSISTENCY {
        let (p, r1, r2) = (proof(p), root(old), root(new));
        let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>, String)> = vec![
            (old - 1, new, r1, r2, p.clone(), "old - 1".into()),
            (old + 1, new, r1, r2, p.clone(), "old + 1".into()),
            (old ^ 2, new, r1, r2, p.clone(), "old ^ 2".into()),
            (old, new * 2, r1, r2, p.clone(), "new * 2".into()),
            (old, new / 2, r1, r2, p.clone(), "new / 2".into()),
            (old, new, r2, r1, p.clone(), "swapped roots".into()),
            (old, new, r1, r2, Vec::new(), "empty proof".into()),
            (
                old,
                new,
                r1,
                r2,
                [p.clone(), vec![r1]].concat(),
                "trailing root1".into(),
            ),
            (
                old,
                new,
                r1,
                r2,
                [vec![r2], p.clone()].concat(),
                "preceding root2".into(),
            ),
            (
                old,
                new,
                r1,
                r2,
                [vec![p[0]], p.clone()].concat(),
                "preceding proof[0]".into(),
            ),
            (old, new, r1, r2, p[..p.len() - 1].to_vec(), "truncated".into()),
        ];
        for i in 0..p.len() {
            let mut bad = p.clone();
            bad[i][0] ^= 16;
            probes.push((old, new, r1, r2, bad, format!("bit flip in {i}")));
        }
        for (o, n, a, b, pr, what) in probes {
            // "old - 1" of old 1 is old 0, trivially consistent with an empty
            // proof only: this non-empty proof must still fail.
            assert!(
                verify_consistency(o, n, &a, &b, &pr).is_err(),
                "{what} verified for {old} -> {new}"
            );
        }
    }
}

/// The edge cases of the Go verifier's table.
#[test]
fn consistency_edge_cases() {
    let (a, b) = (hash(ROOTS[1]), hash(ROOTS[2]));
    assert!(verify_consistency(0, 0, &a, &a, &[]).is_ok());
    assert!(verify_consistency(0, 1, &a, &b, &[]).is_ok());
    assert!(verify_consistency(1, 1, &b, &b, &[]).is_ok());
    assert!(
        verify_consistency(0, 0, &a, &b, &[]).is_err(),
        "equal sizes, different roots"
    );
    assert!(verify_consistency(1, 1, &a, &b, &[]).is_err());
    assert!(verify_consistency(1, 0, &a, &b, &[]).is_err(), "time travel");
    assert!(verify_consistency(2, 1, &a, &b, &[]).is_err());
    assert!(verify_consistency(1, 2, &a, &b, &[]).is_err(), "empty proof");
    assert!(
        verify_consistency(0, 1, &a, &a, &[a]).is_err(),
        "non-empty proof from the empty tree"
    );
    assert!(verify_consistency(1, 1, &a, &a, &[a]).is_err());
}

#[test]
fn inclusion_edge_cases() {
    let a = hash(ROOTS[1]);
    assert!(
        verify_inclusion(&a, 0, 1, &[], &a).is_ok(),
        "one leaf: the leaf is the root"
    );
    assert!(verify_inclusion(&a, 0, 0, &[], &a).is_err());
    assert!(verify_inclusion(&a, 1, 1, &[], &a).is_err());
    assert!(verify_inclusion(&a, 2, 1, &[], &a).is_err());
}
