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
        // The one shape hashed in practice (a `[u8; 16]` key), without the
        // variable-length copies of the general loop below.
        if let Some((lo, hi)) = bytes
            .first_chunk::<8>()
            .zip(bytes.get(8..).and_then(|rest| rest.first_chunk::<8>()))
            .filter(|_| bytes.len() == 16)
        {
            self.h = mix(u64::from_le_bytes(*lo) ^ self.k0 ^ mix(u64::from_le_bytes(*hi) ^ self.k1 ^ self.h));
            return;
        }
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
///
/// The entries live in memory, or (right after an open from the
/// checkpoint) in the mapped checkpoint file itself, which has this exact
/// layout: an open then costs a checksum, not a copy.
#[derive(Debug, Clone)]
pub struct FingerprintSet {
    mids: Mids,
    /// `starts[b]` is the first position of bucket `b`;
    /// `starts[BUCKETS]` is the number of entries.
    starts: Vec<u32>,
}

/// Read-only bytes shared with a set (a mapped checkpoint file).
pub type SharedBytes = std::sync::Arc<dyn AsRef<[u8]> + Send + Sync>;

#[derive(Clone)]
enum Mids {
    Owned(Vec<u32>),
    /// `len` little-endian u32 entries at byte `at` of `bytes`.
    Shared {
        bytes: SharedBytes,
        at: usize,
        len: usize,
    },
}

impl std::fmt::Debug for Mids {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mids::Owned(v) => write!(f, "Owned({} entries)", v.len()),
            Mids::Shared { len, .. } => write!(f, "Shared({len} entries)"),
        }
    }
}

fn le_u32(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

impl Mids {
    fn len(&self) -> usize {
        match self {
            Mids::Owned(v) => v.len(),
            Mids::Shared { len, .. } => *len,
        }
    }

    fn get(&self, i: usize) -> u32 {
        match self {
            Mids::Owned(v) => v[i],
            Mids::Shared { bytes, at, .. } => le_u32(&(**bytes).as_ref()[*at..], i),
        }
    }

    /// Is `mid` among entries `lo..hi` (sorted)?
    fn contains(&self, lo: usize, hi: usize, mid: u32) -> bool {
        match self {
            Mids::Owned(v) => v[lo..hi].binary_search(&mid).is_ok(),
            Mids::Shared { bytes, at, .. } => {
                let b = &(**bytes).as_ref()[at + 4 * lo..at + 4 * hi];
                let (mut lo, mut hi) = (0, hi - lo);
                while lo < hi {
                    let m = lo + (hi - lo) / 2;
                    match le_u32(b, m).cmp(&mid) {
                        std::cmp::Ordering::Less => lo = m + 1,
                        std::cmp::Ordering::Greater => hi = m,
                        std::cmp::Ordering::Equal => return true,
                    }
                }
                false
            }
        }
    }
}

impl Default for FingerprintSet {
    fn default() -> Self {
        Self::from_sorted_keys(Vec::new())
    }
}

fn split(key: u64) -> (usize, u32) {
    ((key >> 32) as usize & (BUCKETS - 1), key as u32)
}

/// Bits of a key that select its bucket, and the number of buckets (part
/// of the checkpoint format).
pub const FINGERPRINT_BUCKET_BITS: u32 = BUCKET_BITS;
pub const FINGERPRINT_BUCKETS: usize = BUCKETS;

impl FingerprintSet {
    /// Build from sorted dedup keys.
    pub fn from_sorted_keys(keys: Vec<u64>) -> Self {
        Self::from_sorted_key_iter(keys.into_iter())
    }

    fn from_sorted_key_iter(keys: impl ExactSizeIterator<Item = u64>) -> Self {
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
        FingerprintSet {
            mids: Mids::Owned(mids),
            starts,
        }
    }

    /// A set over entries already laid out in `bytes` (a checkpoint):
    /// `starts` is the bucket directory (`FINGERPRINT_BUCKETS + 1` positions,
    /// non-decreasing, from 0 to `len`), and `len` little-endian u32
    /// entries, sorted within each bucket, begin at byte `at`. The caller
    /// (the checkpoint decoder) has checked all of that.
    pub(crate) fn from_shared(starts: Vec<u32>, bytes: SharedBytes, at: usize, len: usize) -> Self {
        FingerprintSet {
            mids: Mids::Shared { bytes, at, len },
            starts,
        }
    }

    /// The bucket directory (for the checkpoint).
    pub(crate) fn bucket_starts(&self) -> &[u32] {
        &self.starts
    }

    /// The entries in order (for the checkpoint).
    pub(crate) fn entries(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.mids.len()).map(|i| self.mids.get(i))
    }

    /// Build from sorted runs of dedup keys (a checkpoint, and segments'
    /// fingerprints mapped through [`dedup_key`]), merging them pairwise:
    /// O(n log runs), cheaper than sorting from scratch.
    pub fn from_key_runs(runs: Vec<Vec<u64>>) -> Self {
        Self::from_sorted_keys(merge_runs(runs))
    }

    /// Build from sorted runs of fingerprints (one per sealed segment).
    pub fn from_runs(runs: Vec<Vec<u64>>) -> Self {
        Self::from_key_runs(runs.into_iter().map(keys_of).collect())
    }

    /// Add a sorted run of fingerprints.
    pub fn merge(&mut self, run: &[u64]) {
        *self = self.merged(run);
    }

    /// This set plus a sorted run of fingerprints, as a new set (the old one
    /// stays usable meanwhile: the store merges off the appending thread).
    pub fn merged(&self, run: &[u64]) -> Self {
        self.merged_keys(run.iter().map(|fp| dedup_key(*fp)))
    }

    /// Add sorted dedup keys.
    pub fn merge_keys(&mut self, run: impl ExactSizeIterator<Item = u64>) {
        *self = self.merged_keys(run);
    }

    /// This set plus sorted dedup keys. Builds the new layout straight from
    /// the merged stream, so the peak is the old set plus the new one (no
    /// array of 8-byte keys).
    fn merged_keys(&self, run: impl ExactSizeIterator<Item = u64>) -> Self {
        Self::from_sorted_key_iter(MergeSorted {
            left: self.len() + run.len(),
            a: self.keys_iter().peekable(),
            b: run.peekable(),
        })
    }

    fn keys_iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..BUCKETS).flat_map(move |b| {
            let (lo, hi) = (self.starts[b] as usize, self.starts[b + 1] as usize);
            (lo..hi).map(move |i| ((b as u64) << 32) | self.mids.get(i) as u64)
        })
    }

    /// Every key, sorted (for `verify`).
    pub fn keys(&self) -> Vec<u64> {
        self.keys_iter().collect()
    }

    /// Might an event with this fingerprint be stored? `false` is certain.
    pub fn contains(&self, fp: u64) -> bool {
        let (b, mid) = split(dedup_key(fp));
        let (lo, hi) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        self.mids.contains(lo, hi, mid)
    }

    /// [`contains`](Self::contains) for each of `fps`, faster than one by
    /// one: every bucket-directory read is issued first (independent loads
    /// the CPU overlaps), and each search touches the midpoint of the search
    /// a few places ahead, so a batch's memory misses are in flight together
    /// instead of queued one after another.
    pub fn contains_each(&self, fps: &[u64]) -> Vec<bool> {
        const AHEAD: usize = 8;
        let ranges: Vec<(usize, usize, u32)> = fps
            .iter()
            .map(|&fp| {
                let (b, mid) = split(dedup_key(fp));
                (self.starts[b] as usize, self.starts[b + 1] as usize, mid)
            })
            .collect();
        ranges
            .iter()
            .enumerate()
            .map(|(i, &(lo, hi, mid))| {
                if let Some(&(lo2, hi2, _)) = ranges.get(i + AHEAD).filter(|r| r.0 < r.1) {
                    std::hint::black_box(self.mids.get(lo2 + (hi2 - lo2) / 2));
                }
                self.mids.contains(lo, hi, mid)
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.mids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held: heap, or mapped file pages (resident once touched).
    pub fn memory_bytes(&self) -> usize {
        let mids = match &self.mids {
            Mids::Owned(v) => v.capacity(),
            Mids::Shared { len, .. } => *len,
        };
        mids * 4 + self.starts.capacity() * 4
    }
}

/// Two sorted streams as one (exact length known up front).
struct MergeSorted<A: Iterator<Item = u64>, B: Iterator<Item = u64>> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
    left: usize,
}

impl<A: Iterator<Item = u64>, B: Iterator<Item = u64>> Iterator for MergeSorted<A, B> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let next = match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if x <= y => self.a.next(),
            (_, Some(_)) => self.b.next(),
            _ => self.a.next(),
        };
        if next.is_some() {
            self.left = self.left.saturating_sub(1);
        }
        next
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<A: Iterator<Item = u64>, B: Iterator<Item = u64>> ExactSizeIterator for MergeSorted<A, B> {}

/// Merge sorted runs pairwise into one sorted run.
pub fn merge_runs(mut runs: Vec<Vec<u64>>) -> Vec<u64> {
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
    runs.pop().unwrap_or_default()
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
        let fps: Vec<u64> = ids.iter().map(fingerprint).collect();
        let each = set.contains_each(&fps);
        assert_eq!(each.len(), ids.len());
        assert!(each.iter().enumerate().all(|(i, &hit)| hit == (i < 4000)));
        assert!(FingerprintSet::default()
            .contains_each(&fps)
            .iter()
            .all(|&hit| !hit));
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
    fn id_hasher_fast_path_agrees_with_the_general_loop() {
        use std::hash::{BuildHasher, Hasher};
        let build = IdBuildHasher::default();
        let id: [u8; 16] = std::array::from_fn(|i| (i * 37 + 5) as u8);
        let mut fast = build.build_hasher();
        fast.write(&id);
        // Two writes of 8 take the general loop, chunk by chunk; one 16-byte
        // chunk there is the same computation with `hi` as the second half.
        let mut general = build.build_hasher();
        general.write(&id[..8]);
        let first_half_only = general.finish();
        assert_ne!(fast.finish(), first_half_only);
        let (lo, hi) = (
            u64::from_le_bytes(id[..8].try_into().unwrap()),
            u64::from_le_bytes(id[8..].try_into().unwrap()),
        );
        let expected = mix(lo ^ build.k0 ^ mix(hi ^ build.k1 ^ build.k0));
        assert_eq!(fast.finish(), expected);
        let mut odd = build.build_hasher();
        odd.write(&[id.as_slice(), &[9]].concat());
        assert_ne!(odd.finish(), fast.finish(), "17 bytes take the general loop");
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
