//! Id fingerprints and the store-wide set of dedup keys of sealed events.
//!
//! De-duplication must be exact over the whole retained history without a
//! random disk access per appended event. The store keeps a 48-bit key of
//! every sealed event's fingerprint in memory, in 4 bytes per event (see
//! [`FingerprintSet`]). A hit is only a candidate: the store then finds the
//! offsets with that fingerprint in the sealed segments' id tables and
//! compares the stored ids, so collisions never cause a false duplicate.

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

/// The 48-bit de-duplication key of a fingerprint: its top 48 bits. Order
/// preserving, so sorted fingerprints give sorted keys.
pub fn dedup_key(fp: u64) -> u64 {
    fp >> 16
}

/// The set of dedup keys of every sealed event, in 4 bytes per event: the
/// top 16 bits of a key select one of 2^16 buckets (a directory of start
/// positions), and each entry keeps the next 32 bits, sorted within its
/// bucket. A lookup is a jump plus a binary search over ~n/65536 entries.
/// With 48-bit keys, a new id matches some stored key with probability
/// about n / 2^48 (3.6e-8 at 10 million events); such a hit only costs a
/// look into the segments' id tables, which compare full ids.
#[derive(Debug, Clone)]
pub struct FingerprintSet {
    mids: Vec<u32>,
    /// `starts[b]` is the first position of bucket `b`;
    /// `starts[BUCKETS]` is `mids.len()`.
    starts: Vec<u32>,
}

impl Default for FingerprintSet {
    fn default() -> Self {
        Self::from_sorted_keys(Vec::new())
    }
}

fn split(key: u64) -> (usize, u32) {
    ((key >> 32) as usize & (BUCKETS - 1), key as u32)
}

impl FingerprintSet {
    /// Build from sorted dedup keys.
    pub fn from_sorted_keys(keys: Vec<u64>) -> Self {
        let mut starts = vec![0u32; BUCKETS + 1];
        let mut mids = Vec::with_capacity(keys.len());
        let mut bucket = 0usize;
        for key in keys {
            let (b, mid) = split(key);
            while bucket < b {
                bucket += 1;
                starts[bucket] = mids.len() as u32;
            }
            mids.push(mid);
        }
        while bucket < BUCKETS {
            bucket += 1;
            starts[bucket] = mids.len() as u32;
        }
        FingerprintSet { mids, starts }
    }

    /// Build from sorted runs of dedup keys (a checkpoint, and segments'
    /// fingerprints mapped through [`dedup_key`]), merging them pairwise:
    /// O(n log runs), cheaper than sorting from scratch.
    pub fn from_key_runs(mut runs: Vec<Vec<u64>>) -> Self {
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
        Self::from_sorted_keys(runs.pop().unwrap_or_default())
    }

    /// Build from sorted runs of fingerprints (one per sealed segment).
    pub fn from_runs(runs: Vec<Vec<u64>>) -> Self {
        Self::from_key_runs(runs.into_iter().map(keys_of).collect())
    }

    /// Add a sorted run of fingerprints.
    pub fn merge(&mut self, run: &[u64]) {
        let mut keys: Vec<u64> = Vec::with_capacity(self.mids.len() + run.len());
        let mut mine = self.keys_iter().peekable();
        for key in run.iter().map(|fp| dedup_key(*fp)) {
            while let Some(k) = mine.next_if(|k| *k <= key) {
                keys.push(k);
            }
            keys.push(key);
        }
        keys.extend(mine);
        *self = Self::from_sorted_keys(keys);
    }

    fn keys_iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..BUCKETS).flat_map(move |b| {
            let (lo, hi) = (self.starts[b] as usize, self.starts[b + 1] as usize);
            self.mids[lo..hi]
                .iter()
                .map(move |m| ((b as u64) << 32) | *m as u64)
        })
    }

    /// Every key, sorted (for the checkpoint and `verify`).
    pub fn keys(&self) -> Vec<u64> {
        self.keys_iter().collect()
    }

    /// Might an event with this fingerprint be stored? `false` is certain.
    pub fn contains(&self, fp: u64) -> bool {
        let (b, mid) = split(dedup_key(fp));
        let (lo, hi) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        self.mids[lo..hi].binary_search(&mid).is_ok()
    }

    pub fn len(&self) -> usize {
        self.mids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mids.is_empty()
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.mids.capacity() * 4 + self.starts.capacity() * 4
    }
}

/// Fingerprints (sorted) to dedup keys (still sorted).
pub fn keys_of(mut fps: Vec<u64>) -> Vec<u64> {
    for fp in fps.iter_mut() {
        *fp = dedup_key(*fp);
    }
    fps
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
        assert!(set.keys().windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(set.len(), 4100);
        assert_eq!(FingerprintSet::from_sorted_keys(set.keys()).keys(), set.keys());
        set = FingerprintSet::from_runs(vec![Vec::new()]);
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
        let edges = FingerprintSet::from_runs(vec![vec![0, u64::MAX]]);
        assert!(edges.contains(u64::MAX) && edges.contains(0));
        assert!(!edges.contains(1 << 20));
        // Merging keeps everything sorted and findable.
        let mut m = FingerprintSet::from_runs(vec![vec![5 << 16, 9 << 40]]);
        m.merge(&[1 << 16, 7 << 40, u64::MAX]);
        assert_eq!(m.keys(), vec![1, 5, 7 << 24, 9 << 24, u64::MAX >> 16]);
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
