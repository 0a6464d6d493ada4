//! Organization → partition (docs/cluster.md, "Partitions").
//!
//! `partition = u64::from_be_bytes(SHA-256(org name as UTF-8)[0..8]) mod P`.
//! P is fixed when the cluster is created (16 by default) and kept in the
//! cluster's metadata bucket: changing it would move organizations between
//! streams.

/// Partitions of a new cluster unless told otherwise.
pub const DEFAULT_PARTITIONS: u32 = 16;
/// The most partitions a cluster may have (streams and consumers cost
/// every NATS server memory and Raft traffic).
pub const MAX_PARTITIONS: u32 = 1024;

pub use crate::partitions::partition_of;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_documented_formula() {
        // SHA-256("org-00") begins 1f56dcfb90e3c774 (`printf org-00 |
        // sha256sum`).
        let first = 0x1f56_dcfb_90e3_c774u64;
        assert_eq!(partition_of("org-00", 16), (first % 16) as u32);
        assert_eq!(partition_of("org-00", 1000), (first % 1000) as u32);
        assert_eq!(partition_of("org-00", 1), 0);
    }

    #[test]
    fn pinned_values() {
        for (org, p16) in PINNED {
            assert_eq!(partition_of(org, 16), *p16, "{org}");
        }
    }

    #[test]
    fn in_range_and_spread() {
        let mut counts = [0u32; 16];
        for i in 0..16_000 {
            let p = partition_of(&format!("org-{i}"), 16);
            counts[p as usize] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "{counts:?}");
        }
        for p in [1u32, 2, 3, 7, 16, 1024] {
            assert!(partition_of("x", p) < p);
        }
        // Zero partitions is treated as one rather than dividing by zero.
        assert_eq!(partition_of("x", 0), 0);
    }

    /// Computed outside Rust (`printf NAME | sha256sum`, the first 16 hex
    /// digits mod 16): a change of the formula, which would move
    /// organizations between streams, fails here.
    const PINNED: &[(&str, u32)] = &[("org-00", 4), ("org-01", 12), ("acme", 0), ("é", 3)];
}
