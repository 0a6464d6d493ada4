//! The active segment's in-memory index: per organization, its events'
//! (occurred_at, id, frame offset), plus the id -> offset map used for
//! de-duplication. Rebuilt from the active segment on open; turned into an
//! `.idx` file when the segment is sealed.

use std::collections::HashMap;

use super::file::BuildEntry;
use super::id::IdMap;

/// One indexed event of the active segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ActiveEntry {
    pub occurred_at: i64,
    pub id: [u8; 16],
    pub offset: u32,
}

#[derive(Debug, Default)]
struct OrgEntries {
    entries: Vec<ActiveEntry>,
    sorted: bool,
}

/// In-memory index of the active segment.
#[derive(Debug, Default)]
pub struct ActiveIndex {
    orgs: HashMap<String, OrgEntries>,
    ids: IdMap<u32>,
    min_ts: i64,
    max_ts: i64,
}

impl ActiveIndex {
    pub fn new() -> Self {
        ActiveIndex {
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            ..Default::default()
        }
    }

    /// An empty index with room for about `events` entries.
    pub fn with_capacity(events: usize) -> Self {
        let mut index = Self::new();
        index.ids.reserve(events);
        index
    }

    pub fn insert(&mut self, org: &str, entry: ActiveEntry) {
        let list = match self.orgs.get_mut(org) {
            Some(l) => l,
            None => self.orgs.entry(org.to_owned()).or_insert(OrgEntries {
                entries: Vec::new(),
                sorted: true,
            }),
        };
        if let Some(last) = list.entries.last() {
            if (last.occurred_at, last.id) > (entry.occurred_at, entry.id) {
                list.sorted = false;
            }
        }
        list.entries.push(entry);
        self.ids.insert(entry.id, entry.offset);
        self.min_ts = self.min_ts.min(entry.occurred_at);
        self.max_ts = self.max_ts.max(entry.occurred_at);
    }

    /// Forget every entry at `offset` or after (their write failed).
    pub fn discard_from(&mut self, offset: u32) {
        for list in self.orgs.values_mut() {
            list.entries.retain(|e| e.offset < offset);
        }
        self.ids.retain(|_, off| *off < offset);
        self.min_ts = i64::MAX;
        self.max_ts = i64::MIN;
        for e in self.orgs.values().flat_map(|l| l.entries.iter()) {
            self.min_ts = self.min_ts.min(e.occurred_at);
            self.max_ts = self.max_ts.max(e.occurred_at);
        }
    }

    /// Offset of the event with this id, if the active segment holds it.
    pub fn offset_of(&self, id: &[u8; 16]) -> Option<u32> {
        self.ids.get(id).copied()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Entries whose frame starts before `end`.
    pub fn count_below(&self, end: u64) -> usize {
        self.orgs
            .values()
            .map(|l| l.entries.iter().filter(|e| u64::from(e.offset) < end).count())
            .sum()
    }

    pub fn org_names(&self) -> impl Iterator<Item = &str> {
        self.orgs.keys().map(String::as_str)
    }

    pub fn time_bounds(&self) -> Option<(i64, i64)> {
        (!self.is_empty()).then_some((self.min_ts, self.max_ts))
    }

    /// Entries of `org` with `from <= occurred_at < to` and
    /// `offset < visible_end`, sorted by (occurred_at, id).
    /// Sorts the organization's entries in place once, so that this and
    /// later calls take the binary search of [`range_shared`](Self::range_shared).
    pub fn range(&mut self, org: &str, from: i64, to: i64, visible_end: u64) -> Vec<ActiveEntry> {
        if let Some(list) = self.orgs.get_mut(org).filter(|l| !l.sorted) {
            list.entries.sort_unstable();
            list.sorted = true;
        }
        let mut entries = self.range_shared(org, from, to);
        entries.retain(|e| (e.offset as u64) < visible_end);
        entries
    }

    /// [`range`](Self::range) without sorting in place, for an index that
    /// no longer changes and is shared (a segment being sealed): an
    /// unsorted organization's matching entries are copied, then sorted.
    pub fn range_shared(&self, org: &str, from: i64, to: i64) -> Vec<ActiveEntry> {
        let Some(list) = self.orgs.get(org) else {
            return Vec::new();
        };
        if list.sorted {
            let lo = list.entries.partition_point(|e| e.occurred_at < from);
            let hi = list.entries.partition_point(|e| e.occurred_at < to);
            return list.entries[lo..hi.max(lo)].to_vec();
        }
        let mut out: Vec<ActiveEntry> = list
            .entries
            .iter()
            .filter(|e| from <= e.occurred_at && e.occurred_at < to)
            .copied()
            .collect();
        out.sort_unstable();
        out
    }

    /// Heap bytes held, roughly.
    pub fn memory_bytes(&self) -> usize {
        let entries: usize = self
            .orgs
            .values()
            .map(|l| l.entries.capacity() * std::mem::size_of::<ActiveEntry>())
            .sum();
        entries + self.ids.capacity() * (16 + 4 + 1)
    }

    /// Everything, for writing the segment's `.idx` file.
    pub fn to_build(&self) -> (Vec<String>, Vec<BuildEntry>) {
        let mut names = Vec::with_capacity(self.orgs.len());
        let mut entries = Vec::with_capacity(self.ids.len());
        for (i, (name, list)) in self.orgs.iter().enumerate() {
            names.push(name.clone());
            entries.extend(list.entries.iter().map(|e| BuildEntry {
                org: i as u32,
                occurred_at: e.occurred_at,
                id: e.id,
                offset: e.offset,
            }));
        }
        (names, entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Event `i` at `times[i]`, offset `100 * i`, id `[9 - i; 16]`; all of
    /// org "a" except the fifth, of org "b".
    fn index_of(times: &[i64]) -> ActiveIndex {
        let mut idx = ActiveIndex::new();
        for (i, ts) in times.iter().enumerate() {
            idx.insert(
                if i == 4 { "b" } else { "a" },
                ActiveEntry {
                    occurred_at: *ts,
                    id: [9 - i as u8; 16],
                    offset: 100 * i as u32,
                },
            );
        }
        idx
    }

    #[test]
    fn range_shared_agrees_with_range() {
        let mut idx = index_of(&[50, 10, 30, 30, 70, 20]);
        for (org, from, to) in [
            ("a", 0, 100),
            ("a", 20, 50),
            ("a", 30, 31),
            ("b", 0, 70),
            ("c", 0, 100),
        ] {
            let shared = idx.range_shared(org, from, to);
            assert_eq!(shared, idx.range(org, from, to, u64::MAX), "{org} {from}..{to}");
            // Once sorted in place, the shared path takes the binary search.
            assert_eq!(shared, idx.range_shared(org, from, to));
        }
        assert_eq!(idx.range_shared("a", 0, 100).len(), 5);
    }

    #[test]
    fn range_sorts_filters_and_hides_invisible() {
        let mut idx = index_of(&[50, 10, 30, 30, 70]);
        let r = idx.range("a", 10, 50, u64::MAX);
        let ts: Vec<i64> = r.iter().map(|e| e.occurred_at).collect();
        assert_eq!(ts, vec![10, 30, 30]);
        assert!(r[1].id < r[2].id, "ties ordered by id");
        assert_eq!(idx.range("a", 0, 100, 250).len(), 3);
        assert!(idx.range("c", 0, 100, u64::MAX).is_empty());
        assert_eq!(idx.offset_of(&[5u8; 16]), Some(400));
        assert_eq!(idx.time_bounds(), Some((10, 70)));
    }
}
