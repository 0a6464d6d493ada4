//! Which nodes apply which partition (docs/cluster.md, "Assignment").
//!
//! Partition 0 carries the cluster's tokens and users besides its
//! organizations' data, so every node applies it: any node authenticates
//! any caller. Every other partition is applied by [`APPLIERS`] nodes,
//! chosen among the members (the nodes holding a lease,
//! [`super::lease`]) by rendezvous hashing: node `n` ranks
//! `u64::from_be_bytes(SHA-256(n as UTF-8 ‖ 0x00 ‖ p as u32 big-endian)[0..8])`
//! for partition `p`, and the [`APPLIERS`] highest (ties: the smaller id)
//! apply it. A member joining or leaving moves only the partitions it
//! ranks among the first for, and every node computes the same answer
//! from the same members, without a coordinator.
//!
//! Make before break: a node that is no longer chosen keeps applying a
//! partition until [`APPLIERS`] of the chosen nodes serve it (have caught
//! up with its stream, as their leases say), so that a partition never has
//! fewer serving nodes than before while another catches up.

use sha2::{Digest, Sha256};

/// How many nodes apply each partition but 0 (fewer when the cluster has
/// fewer members).
pub const APPLIERS: usize = 2;
/// The partition every node applies.
pub const EVERY_NODE: u32 = 0;

/// Node `node`'s rank for partition `partition` (higher first).
pub fn rank(node: &str, partition: u32) -> u64 {
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update([0u8]);
    h.update(partition.to_be_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The nodes chosen for `partition` among `members` (any order, no
/// duplicates assumed): all of them for [`EVERY_NODE`], else the
/// [`APPLIERS`] of highest rank, highest first.
pub fn chosen<'a>(partition: u32, members: &[&'a str]) -> Vec<&'a str> {
    let mut ranked: Vec<(u64, &str)> = members.iter().map(|m| (rank(m, partition), *m)).collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    ranked.dedup_by(|a, b| a.1 == b.1);
    let keep = if partition == EVERY_NODE {
        ranked.len()
    } else {
        APPLIERS
    };
    ranked.into_iter().take(keep).map(|(_, m)| m).collect()
}

/// What one node knows when it decides about one partition.
pub struct View<'a> {
    /// This node's id.
    pub me: &'a str,
    /// The members' ids (this node included or not).
    pub members: &'a [&'a str],
    /// Whether a member other than this node serves the partition now.
    pub serves: &'a dyn Fn(&str) -> bool,
}

/// Whether this node should apply `partition`: it is chosen, or it
/// applies it now and fewer than [`APPLIERS`] of the chosen serve it.
pub fn should_apply(partition: u32, view: &View<'_>, applying: bool) -> bool {
    let mut members: Vec<&str> = view.members.to_vec();
    if !members.contains(&view.me) {
        members.push(view.me);
    }
    let chosen = chosen(partition, &members);
    if chosen.contains(&view.me) {
        return true;
    }
    applying && chosen.iter().filter(|n| (view.serves)(n)).count() < APPLIERS.min(chosen.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_matches_the_documented_formula() {
        // printf 'n1\0\0\0\0\3' | sha256sum
        let mut input = b"n1".to_vec();
        input.extend([0, 0, 0, 0, 3]);
        let digest = Sha256::digest(&input);
        assert_eq!(rank("n1", 3), u64::from_be_bytes(digest[..8].try_into().unwrap()));
        assert_ne!(rank("n1", 3), rank("n1", 4));
        assert_ne!(rank("n1", 3), rank("n2", 3));
    }

    #[test]
    fn partition_zero_is_everyones_and_others_get_two() {
        let members = ["a", "b", "c", "d"];
        assert_eq!(chosen(0, &members).len(), 4);
        for p in 1..64 {
            let c = chosen(p, &members);
            assert_eq!(c.len(), 2, "{p}");
            assert_ne!(c[0], c[1]);
        }
        assert_eq!(chosen(5, &["a"]), ["a"]);
        assert_eq!(chosen(5, &["a", "a", "b"]).len(), 2);
    }

    #[test]
    fn spread_is_even_and_stable() {
        let members = ["n1", "n2", "n3"];
        let mut load = [0usize; 3];
        for p in 1..=300 {
            for n in chosen(p, &members) {
                load[members.iter().position(|m| *m == n).unwrap()] += 1;
            }
        }
        for l in load {
            assert!((160..240).contains(&l), "{load:?}");
        }
        // Removing a member moves only its partitions.
        for p in 1..=300 {
            let before = chosen(p, &members);
            let after = chosen(p, &["n1", "n2"]);
            if !before.contains(&"n3") {
                assert_eq!(before.len(), 2);
                let (mut b, mut a) = (before.clone(), after.clone());
                b.sort();
                a.sort();
                assert_eq!(a, b, "partition {p} moved although n3 did not apply it");
            }
        }
    }

    #[test]
    fn make_before_break() {
        let members = ["n1", "n2", "n3"];
        // A partition n3 is not chosen for.
        let p = (1..100).find(|p| !chosen(*p, &members).contains(&"n3")).unwrap();
        fn nobody(_: &str) -> bool {
            false
        }
        fn everybody(_: &str) -> bool {
            true
        }
        let view = |serves: &'static dyn Fn(&str) -> bool| View {
            me: "n3",
            members: &["n1", "n2", "n3"],
            serves,
        };
        // Not applying: stays out.
        assert!(!should_apply(p, &view(&nobody), false));
        // Applying while the chosen catch up: keeps applying.
        assert!(should_apply(p, &view(&nobody), true));
        // Once both chosen serve: lets go.
        assert!(!should_apply(p, &view(&everybody), true));
        // Partition 0: always.
        assert!(should_apply(0, &view(&everybody), false));
        // Alone: applies everything.
        let alone = View {
            me: "n3",
            members: &[],
            serves: &nobody,
        };
        assert!(should_apply(p, &alone, false));
    }
}
