//! Id fingerprints and the store-wide set of fingerprints of sealed events.
//!
//! De-duplication must be exact over the whole retained history without a
//! random disk access per appended event. The store keeps every sealed
//! event's 64-bit fingerprint in one sorted array in memory (8 bytes per
//! event) with a 2^16-bucket directory over the top bits, so a lookup is a
//! jump plus a short binary search. A fingerprint hit is only a candidate:
//! the store then finds the offsets with that fingerprint in the sealed
//! segments' id tables and compares the stored ids, so collisions never
//! cause a false duplicate.

/// The fingerprint of an id: with `lo`/`hi` its two little-endian u64
/// halves and `mix` the SplitMix64 finalizer, `mix(lo ^ mix(hi ^ K))` with
/// `K = 0x9e3779b97f4a7c15`. Part of the index format (docs/format.md).
pub fn fingerprint(id: &[u8; 16]) -> u64 {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&id[..8]);
    hi.copy_from_slice(&id[8..]);
    mix(u64::from_le_bytes(lo) ^ mix(u64::from_le_bytes(hi) ^ 0x9e37_79b9_7f4a_7c15))
}

/// The SplitMix64 finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A fast hasher for 16-byte ids in in-memory maps: the fingerprint mix
/// with two per-process random keys, so that chosen ids cannot be made to
/// collide (SipHash, the std default, costs several times more per id).
#[derive(Debug, Clone, Copy)]
pub struct IdBuildHasher {
    k0: u64,
    k1: u64,
}

impl Default for IdBuildHasher {
    fn default() -> Self {
        use std::hash::BuildHasher;
        let seed = std::collections::hash_map::RandomState::new();
        IdBuildHasher {
            k0: seed.hash_one(0x5eed_u64),
            k1: seed.hash_one(0xfeed_u64),
        }
    }
}

impl std::hash::BuildHasher for IdBuildHasher {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher {
            k0: self.k0,
            k1: self.k1,
            h: self.k0,
        }
    }
}

/// See [`IdBuildHasher`].
#[derive(Debug, Clone, Copy)]
pub struct IdHasher {
    k0: u64,
    k1: u64,
    h: u64,
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(16) {
            let mut lo = [0u8; 8];
            let mut hi = [0u8; 8];
            let (a, b) = chunk.split_at(chunk.len().min(8));
            lo[..a.len()].copy_from_slice(a);
            hi[..b.len()].copy_from_slice(b);
            self.h = mix(u64::from_le_bytes(lo) ^ self.k0 ^ mix(u64::from_le_bytes(hi) ^ self.k1 ^ self.h));
        }
    }
    fn write_usize(&mut self, _len: usize) {
        // Only the length prefix of fixed-size ids: carries no information.
    }
    fn finish(&self) -> u64 {
        self.h
    }
}

/// A map keyed by event id.
pub type IdMap<V> = std::collections::HashMap<[u8; 16], V, IdBuildHasher>;

const BUCKET_BITS: u32 = 16;
const BUCKETS: usize = 1 << BUCKET_BITS;

/// A sorted multiset of fingerprints with a bucket directory.
#[derive(Debug, Clone)]
pub struct FingerprintSet {
    sorted: Vec<u64>,
    /// `starts[b]` is the first position whose top bits are >= b;
    /// `starts[BUCKETS]` is `sorted.len()`.
    starts: Vec<u32>,
}

impl Default for FingerprintSet {
    fn default() -> Self {
        Self::from_sorted(Vec::new())
    }
}

impl FingerprintSet {
    /// Build from an already sorted vector.
    pub fn from_sorted(sorted: Vec<u64>) -> Self {
        let mut starts = vec![0u32; BUCKETS + 1];
        let mut pos = 0usize;
        for (b, start) in starts.iter_mut().enumerate().take(BUCKETS) {
            while pos < sorted.len() && ((sorted[pos] >> (64 - BUCKET_BITS)) as usize) < b {
                pos += 1;
            }
            *start = pos as u32;
        }
        starts[BUCKETS] = sorted.len() as u32;
        FingerprintSet { sorted, starts }
    }

    /// Build from several sorted runs (one per sealed segment), merging
    /// them pairwise: O(n log runs), cheaper than sorting from scratch.
    pub fn from_runs(mut runs: Vec<Vec<u64>>) -> Self {
        while runs.len() > 1 {
            let mut next = Vec::with_capacity(runs.len().div_ceil(2));
            let mut it = runs.into_iter();
            while let Some(a) = it.next() {
                match it.next() {
                    Some(b) => next.push(merge_sorted(&a, &b)),
                    None => next.push(a),
                }
            }
            runs = next;
        }
        Self::from_sorted(runs.pop().unwrap_or_default())
    }

    /// Merge a sorted run into the set.
    pub fn merge(&mut self, run: &[u64]) {
        let merged = merge_sorted(&self.sorted, run);
        *self = Self::from_sorted(merged);
    }

    /// The sorted fingerprints.
    pub fn as_sorted(&self) -> &[u64] {
        &self.sorted
    }

    pub fn contains(&self, fp: u64) -> bool {
        let b = (fp >> (64 - BUCKET_BITS)) as usize;
        let (lo, hi) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        self.sorted[lo..hi].binary_search(&fp).is_ok()
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.sorted.capacity() * 8 + self.starts.capacity() * 4
    }
}

fn merge_sorted(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_exactly_what_was_added() {
        let ids: Vec<[u8; 16]> = (0..5000u32)
            .map(|i| {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&i.to_le_bytes());
                id[12] = 0x40;
                id
            })
            .collect();
        let mut a: Vec<u64> = ids[..2500].iter().map(fingerprint).collect();
        a.sort_unstable();
        let mut b: Vec<u64> = ids[2500..4000].iter().map(fingerprint).collect();
        b.sort_unstable();
        let mut c: Vec<u64> = ids[4000..4100].iter().map(fingerprint).collect();
        c.sort_unstable();
        let mut set = FingerprintSet::from_runs(vec![a, c.clone(), b.clone()]);
        assert!(set.as_sorted().windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(set.len(), 4100);
        set = FingerprintSet::from_runs(vec![set.as_sorted()[..0].to_vec()]);
        assert!(set.is_empty());
        let mut a: Vec<u64> = ids[..2500].iter().map(fingerprint).collect();
        a.sort_unstable();
        set = FingerprintSet::from_runs(vec![a]);
        set.merge(&b);
        assert_eq!(set.len(), 4000);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(set.contains(fingerprint(id)), i < 4000, "id {i}");
        }
        assert!(!FingerprintSet::default().contains(0));
        assert!(FingerprintSet::from_sorted(vec![0, u64::MAX]).contains(u64::MAX));
    }

    #[test]
    fn id_map_works_and_hashes_differ_per_key() {
        let mut m: IdMap<u32> = IdMap::default();
        for i in 0..1000u32 {
            let mut id = [0u8; 16];
            id[15] = (i % 256) as u8;
            id[0] = (i / 256) as u8;
            m.insert(id, i);
        }
        assert_eq!(m.len(), 1000);
        let mut id = [0u8; 16];
        id[15] = 7;
        id[0] = 2;
        assert_eq!(m.get(&id), Some(&(2 * 256 + 7)));
        use std::hash::BuildHasher;
        let (a, b) = (IdBuildHasher::default(), IdBuildHasher::default());
        assert_ne!(
            a.hash_one([1u8; 16]),
            b.hash_one([1u8; 16]),
            "keys are random per map"
        );
    }

    #[test]
    fn fingerprint_is_stable() {
        // Part of the on-disk format: must never change.
        let mut id = [0u8; 16];
        id[0] = 1;
        // Independently computed (Python) from the formula in the doc comment.
        assert_eq!(fingerprint(&id), 0x9e01_6029_3a33_aaf7);
    }
}
