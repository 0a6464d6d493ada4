//! Byte layout of a sealed segment's index file (`<segment>.idx`), format
//! version [`INDEX_FORMAT_VERSION`]. Pure bytes: no file I/O here.
//!
//! ```text
//! header (64 bytes)
//!      0    8 magic          b"AUDITIDX"
//!      8    4 format_version u32 = 1
//!     12    4 header_len     u32 = 64
//!     16    8 segment_id     u64
//!     24    8 log_len        u64, length of the .log file this index describes
//!     32    8 event_count    u64
//!     40    4 org_count      u32
//!     44    4 org_table_len  u32, bytes
//!     48    8 min_ts         i64 (i64::MAX when empty)
//!     56    8 max_ts         i64 (i64::MIN when empty)
//! org table: org_count entries, sorted by name
//!           u16 name_len, name (UTF-8), u64 first_entry, u64 entry_count,
//!           i64 min_ts, i64 max_ts
//! time entries: event_count x 12 bytes: i64 occurred_at, u32 frame offset;
//!           grouped by org in org-table order, each group sorted by
//!           (occurred_at, id)
//! id entries: event_count x 12 bytes: u64 fingerprint, u32 frame offset;
//!           sorted by (fingerprint, offset)
//! footer (16 bytes): u32 CRC-32 of every preceding byte, u32 0, b"AUDITEND"
//! ```

use super::id::fingerprint;

pub const INDEX_MAGIC: [u8; 8] = *b"AUDITIDX";
pub const INDEX_FOOTER_MAGIC: [u8; 8] = *b"AUDITEND";
pub const INDEX_FORMAT_VERSION: u32 = 1;
pub const INDEX_HEADER_LEN: usize = 64;
pub const FOOTER_LEN: usize = 16;
pub const ENTRY_LEN: usize = 12;

/// One event as the index sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildEntry {
    pub org: u32,
    pub occurred_at: i64,
    pub id: [u8; 16],
    pub offset: u32,
}

/// One organization's slice of the time entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRange {
    pub name: String,
    pub first_entry: u64,
    pub entry_count: u64,
    pub min_ts: i64,
    pub max_ts: i64,
}

/// A parsed, checksum-verified index file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexLayout {
    pub segment_id: u64,
    pub log_len: u64,
    pub event_count: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub orgs: Vec<OrgRange>,
    /// Byte offset of the time entries.
    pub time_at: usize,
    /// Byte offset of the id entries.
    pub id_at: usize,
}

/// Serialize an index. `orgs[i]` names org number `i` of the entries; the
/// entries may come in any order.
pub fn build(segment_id: u64, log_len: u64, orgs: &[String], entries: &mut [BuildEntry]) -> Vec<u8> {
    // Group by org name (org table sorted by name), then time, then id.
    let mut order: Vec<u32> = (0..orgs.len() as u32).collect();
    order.sort_by(|a, b| orgs[*a as usize].cmp(&orgs[*b as usize]));
    let mut rank = vec![0u32; orgs.len()];
    for (r, o) in order.iter().enumerate() {
        rank[*o as usize] = r as u32;
    }
    sort_entries(entries, &rank);
    let mut org_table = Vec::new();
    let mut org_count = 0u32;
    let mut i = 0usize;
    while i < entries.len() {
        let org = entries[i].org;
        let start = i;
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        while i < entries.len() && entries[i].org == org {
            lo = lo.min(entries[i].occurred_at);
            hi = hi.max(entries[i].occurred_at);
            i += 1;
        }
        let name = orgs[org as usize].as_bytes();
        org_table.extend_from_slice(&(name.len() as u16).to_le_bytes());
        org_table.extend_from_slice(name);
        org_table.extend_from_slice(&(start as u64).to_le_bytes());
        org_table.extend_from_slice(&((i - start) as u64).to_le_bytes());
        org_table.extend_from_slice(&lo.to_le_bytes());
        org_table.extend_from_slice(&hi.to_le_bytes());
        org_count += 1;
    }
    let min_ts = entries.iter().map(|e| e.occurred_at).min().unwrap_or(i64::MAX);
    let max_ts = entries.iter().map(|e| e.occurred_at).max().unwrap_or(i64::MIN);
    let n = entries.len();
    let mut out = Vec::with_capacity(INDEX_HEADER_LEN + org_table.len() + 2 * n * ENTRY_LEN + FOOTER_LEN);
    out.extend_from_slice(&INDEX_MAGIC);
    out.extend_from_slice(&INDEX_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(INDEX_HEADER_LEN as u32).to_le_bytes());
    out.extend_from_slice(&segment_id.to_le_bytes());
    out.extend_from_slice(&log_len.to_le_bytes());
    out.extend_from_slice(&(n as u64).to_le_bytes());
    out.extend_from_slice(&org_count.to_le_bytes());
    out.extend_from_slice(&(org_table.len() as u32).to_le_bytes());
    out.extend_from_slice(&min_ts.to_le_bytes());
    out.extend_from_slice(&max_ts.to_le_bytes());
    out.extend_from_slice(&org_table);
    for e in entries.iter() {
        out.extend_from_slice(&e.occurred_at.to_le_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
    }
    let mut ids: Vec<(u64, u32)> = entries.iter().map(|e| (fingerprint(&e.id), e.offset)).collect();
    ids.sort_unstable();
    for (fp, off) in ids {
        out.extend_from_slice(&fp.to_le_bytes());
        out.extend_from_slice(&off.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&INDEX_FOOTER_MAGIC);
    out
}

/// Sort into (org rank, occurred_at, id) order. Rolls do this for every
/// sealed segment on the appending thread, so it avoids one comparison sort
/// over everything: a counting sort by org (entries usually arrive grouped
/// by org already), then a stable sort of each org's run, which is cheap on
/// the nearly time-ordered runs appends produce.
fn sort_entries(entries: &mut [BuildEntry], rank: &[u32]) {
    let mut starts = vec![0usize; rank.len() + 1];
    for e in entries.iter() {
        starts[rank[e.org as usize] as usize + 1] += 1;
    }
    for r in 1..starts.len() {
        starts[r] += starts[r - 1];
    }
    let mut next = starts.clone();
    let mut grouped = entries.to_vec();
    for e in entries.iter() {
        let r = rank[e.org as usize] as usize;
        grouped[next[r]] = *e;
        next[r] += 1;
    }
    for w in starts.windows(2) {
        grouped[w[0]..w[1]].sort_by_key(|e| (e.occurred_at, e.id));
    }
    entries.copy_from_slice(&grouped);
}

/// Why an index file was refused; `offset` is where in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexError {
    pub offset: u64,
    pub reason: String,
    /// The file is fine but of a format version this build does not read.
    pub unsupported_version: Option<u32>,
}

fn err(offset: usize, reason: impl Into<String>) -> IndexError {
    IndexError {
        offset: offset as u64,
        reason: reason.into(),
        unsupported_version: None,
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    u64_at(b, at) as i64
}

/// Parse and verify (checksum, magic, version, bounds) an index file for
/// segment `segment_id`.
pub fn parse(buf: &[u8], segment_id: u64) -> Result<IndexLayout, IndexError> {
    if buf.len() < INDEX_HEADER_LEN + FOOTER_LEN {
        return Err(err(0, format!("index file is {} bytes, too short", buf.len())));
    }
    if buf[0..8] != INDEX_MAGIC {
        return Err(err(0, "wrong magic number (not an auditstore index)"));
    }
    let foot = buf.len() - FOOTER_LEN;
    if buf[foot + 8..] != INDEX_FOOTER_MAGIC || u32_at(buf, foot + 4) != 0 {
        return Err(err(foot + 8, "missing footer magic (index file truncated?)"));
    }
    let stored = u32_at(buf, foot);
    let computed = crc32fast::hash(&buf[..foot]);
    if stored != computed {
        return Err(err(
            foot,
            format!("index checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"),
        ));
    }
    // Only a checksummed version is believed: a damaged version byte is just
    // damage (the index is rebuilt), not a file from the future.
    let version = u32_at(buf, 8);
    if version != INDEX_FORMAT_VERSION {
        return Err(IndexError {
            offset: 8,
            reason: format!("unsupported index format version {version}"),
            unsupported_version: Some(version),
        });
    }
    if u32_at(buf, 12) as usize != INDEX_HEADER_LEN {
        return Err(err(12, "unexpected header length"));
    }
    let found_id = u64_at(buf, 16);
    if found_id != segment_id {
        return Err(err(
            16,
            format!("index names segment {found_id}, expected {segment_id}"),
        ));
    }
    let log_len = u64_at(buf, 24);
    let event_count = u64_at(buf, 32);
    let org_count = u32_at(buf, 40) as usize;
    let org_table_len = u32_at(buf, 44) as usize;
    let time_at = INDEX_HEADER_LEN + org_table_len;
    let entries_len = (event_count as usize)
        .checked_mul(ENTRY_LEN)
        .ok_or_else(|| err(32, "event count overflows"))?;
    let expected = entries_len
        .checked_mul(2)
        .and_then(|both| time_at.checked_add(both))
        .and_then(|v| v.checked_add(FOOTER_LEN))
        .ok_or_else(|| err(32, "section lengths overflow"))?;
    if expected != buf.len() {
        return Err(err(
            32,
            format!(
                "sections add up to {expected} bytes but the file is {} bytes",
                buf.len()
            ),
        ));
    }
    // Each org entry takes at least 34 bytes: never trust the count for the
    // allocation.
    let mut orgs = Vec::with_capacity(org_count.min(org_table_len / 34));
    let mut at = INDEX_HEADER_LEN;
    let mut next_entry = 0u64;
    for _ in 0..org_count {
        if at + 2 > time_at {
            return Err(err(at, "org table overruns its length"));
        }
        let name_len = u16::from_le_bytes([buf[at], buf[at + 1]]) as usize;
        let rec_end = at + 2 + name_len + 32;
        if rec_end > time_at {
            return Err(err(at, "org table overruns its length"));
        }
        let name = std::str::from_utf8(&buf[at + 2..at + 2 + name_len])
            .map_err(|_| err(at + 2, "organization name is not UTF-8"))?
            .to_owned();
        let f = at + 2 + name_len;
        let first_entry = u64_at(buf, f);
        let entry_count = u64_at(buf, f + 8);
        if first_entry != next_entry || entry_count == 0 {
            return Err(err(f, "org table entries are not contiguous"));
        }
        next_entry = first_entry
            .checked_add(entry_count)
            .filter(|n| *n <= event_count)
            .ok_or_else(|| err(f + 8, "org entry count runs past the event count"))?;
        orgs.push(OrgRange {
            name,
            first_entry,
            entry_count,
            min_ts: i64_at(buf, f + 16),
            max_ts: i64_at(buf, f + 24),
        });
        at = rec_end;
    }
    if at != time_at || next_entry != event_count {
        return Err(err(at, "org table does not cover the entries exactly"));
    }
    Ok(IndexLayout {
        segment_id,
        log_len,
        event_count,
        min_ts: i64_at(buf, 48),
        max_ts: i64_at(buf, 56),
        orgs,
        time_at,
        id_at: time_at + entries_len,
    })
}

/// Time entry `i` (global index) as (occurred_at, frame offset).
pub fn time_entry(buf: &[u8], layout: &IndexLayout, i: u64) -> (i64, u32) {
    let at = layout.time_at + i as usize * ENTRY_LEN;
    (i64_at(buf, at), u32_at(buf, at + 8))
}

/// Id entry `i` as (fingerprint, frame offset).
pub fn id_entry(buf: &[u8], layout: &IndexLayout, i: u64) -> (u64, u32) {
    let at = layout.id_at + i as usize * ENTRY_LEN;
    (u64_at(buf, at), u32_at(buf, at + 8))
}

/// Frame offsets of every id entry whose fingerprint is `fp`.
pub fn offsets_with_fingerprint(buf: &[u8], layout: &IndexLayout, fp: u64) -> Vec<u32> {
    let (mut lo, mut hi) = (0u64, layout.event_count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if id_entry(buf, layout, mid).0 < fp {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let mut out = Vec::new();
    while lo < layout.event_count {
        let (f, off) = id_entry(buf, layout, lo);
        if f != fp {
            break;
        }
        out.push(off);
        lo += 1;
    }
    out
}

/// First entry in `[org.first_entry, org.first_entry + count)` with
/// `occurred_at >= ts`.
pub fn lower_bound(buf: &[u8], layout: &IndexLayout, org: &OrgRange, ts: i64) -> u64 {
    let (mut lo, mut hi) = (org.first_entry, org.first_entry + org.entry_count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if time_entry(buf, layout, mid).0 < ts {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<String>, Vec<BuildEntry>) {
        let orgs = vec!["zeta".to_string(), "alpha".to_string()];
        let mut entries = Vec::new();
        for i in 0..50u32 {
            entries.push(BuildEntry {
                org: i % 2,
                occurred_at: 1000 - i as i64 * 7,
                id: [i as u8; 16],
                offset: 32 + i * 100,
            });
        }
        (orgs, entries)
    }

    #[test]
    fn entry_sort_agrees_with_a_comparison_sort() {
        // A deterministic mix of orders: runs with stragglers, equal times
        // (ties broken by id), orgs interleaved, sizes from empty to
        // thousands.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for n in [0usize, 1, 2, 15, 16, 17, 33, 200, 5000] {
            let orgs = 1 + (n % 7);
            let rank: Vec<u32> = (0..orgs as u32).rev().collect();
            let mut entries: Vec<BuildEntry> = (0..n)
                .map(|i| BuildEntry {
                    org: (rnd() % orgs as u64) as u32,
                    occurred_at: if rnd() % 50 == 0 {
                        (rnd() % 100) as i64
                    } else {
                        i as i64 / 3
                    },
                    id: (rnd() as u128 | ((rnd() as u128) << 64)).to_le_bytes(),
                    offset: i as u32,
                })
                .collect();
            let mut expected = entries.clone();
            expected.sort_unstable_by(|a, b| {
                (rank[a.org as usize], a.occurred_at, a.id).cmp(&(rank[b.org as usize], b.occurred_at, b.id))
            });
            sort_entries(&mut entries, &rank);
            assert_eq!(entries, expected, "{n} entries");
        }
    }

    #[test]
    fn build_then_parse() {
        let (orgs, mut entries) = sample();
        let bytes = build(3, 9999, &orgs, &mut entries);
        let l = parse(&bytes, 3).unwrap();
        assert_eq!(l.event_count, 50);
        assert_eq!(l.log_len, 9999);
        assert_eq!(l.orgs.len(), 2);
        assert_eq!(l.orgs[0].name, "alpha");
        let a = &l.orgs[0];
        let mut prev = i64::MIN;
        for i in a.first_entry..a.first_entry + a.entry_count {
            let (ts, off) = time_entry(&bytes, &l, i);
            assert!(ts >= prev);
            prev = ts;
            assert_eq!((off - 32) / 100 % 2, 1, "alpha holds odd events");
        }
        let lb = lower_bound(&bytes, &l, a, 700);
        assert!(time_entry(&bytes, &l, lb).0 >= 700);
        assert!(time_entry(&bytes, &l, lb - 1).0 < 700);
        let fp = fingerprint(&[5u8; 16]);
        assert_eq!(offsets_with_fingerprint(&bytes, &l, fp), vec![32 + 500]);
        assert!(offsets_with_fingerprint(&bytes, &l, fp ^ 1).is_empty());
    }

    #[test]
    fn damage_is_detected() {
        let (orgs, mut entries) = sample();
        let bytes = build(3, 9999, &orgs, &mut entries);
        assert!(parse(&bytes, 4).is_err());
        for cut in [0, 10, 64, bytes.len() / 2, bytes.len() - 1] {
            assert!(parse(&bytes[..cut], 3).is_err());
        }
        for at in (0..bytes.len()).step_by(7) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(parse(&bad, 3).is_err(), "flip at {at} not detected");
        }
    }
}
