//! Thinning the `checkpoints` file (docs/format.md, "Checkpoints file"):
//! the store signs a checkpoint every second while appends arrive, some
//! 86,000 entries (19 MB) a day; kept for ever they would outgrow the tree
//! many times over and slow every open. Older checkpoints are thinned out:
//!
//! - every entry of the last hour;
//! - the last checkpoint of each minute of the last 24 hours;
//! - the last checkpoint of each hour before that;
//! - every retention entry, and the last entry, always.
//!
//! Nothing is lost for verification: every checkpoint ever given out is
//! consistent with the current tree, which anyone holding it can check
//! with a consistency proof from its size (`prove --consistency`), whether
//! or not the store kept it. The rewrite is crash-safe: the kept entries'
//! frames, byte for byte, go to a temporary file, synced, then renamed over
//! the file; a crash leaves the old file or the new one.

use std::fs::OpenOptions;
use std::io::{Seek, Write};
use std::path::Path;

use super::log::{header, io, parse, sync_parent, CheckpointLog, EntryKind, LogError};

const NANOS_PER_SEC: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * NANOS_PER_SEC;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// Fewer droppable entries than this: the rewrite is not worth it.
pub const MIN_DROPPED: u64 = 32;

/// What a thinning did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thinned {
    pub kept: u64,
    pub dropped: u64,
    /// Bytes of the file before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Which of the entries, given as (is a retention entry, written at in Unix
/// ns) in file order, a thinned file keeps at `now` (see the module).
pub fn keep_mask(entries: &[(bool, i64)], now: i64) -> Vec<bool> {
    let bucket = |at: i64| -> Option<i64> {
        match now.saturating_sub(at) {
            age if age < HOUR => None,
            age if age < DAY => Some(at.div_euclid(MINUTE)),
            _ => Some(at.div_euclid(HOUR) * 60 + 1_000_000_000_000),
        }
    };
    let n = entries.len();
    (0..n)
        .map(|i| {
            let (retention, at) = entries[i];
            if retention || i + 1 == n {
                return true;
            }
            match bucket(at) {
                None => true,
                // The last checkpoint of its bucket: the next checkpoint
                // (retention entries aside) is in another one.
                Some(b) => entries[i + 1..]
                    .iter()
                    .find(|(r, _)| !r)
                    .is_none_or(|&(_, next)| bucket(next) != Some(b)),
            }
        })
        .collect()
}

/// Thins the checkpoints file at `path` as of `now` (Unix ns), returning
/// the file open for appending (the renamed new file's handle) and what was
/// done; `None` if there is nothing worth dropping or the file ends in a
/// torn entry (left to the next open to cut). The caller must hold off
/// appends to `path` meanwhile, and append afterwards only through the
/// returned log.
pub fn thin(path: &Path, now: i64) -> Result<Option<(CheckpointLog, Thinned)>, LogError> {
    let bytes = std::fs::read(path).map_err(io("reading", path))?;
    let contents = parse(path, &bytes)?;
    if contents.bad_tail.is_some() {
        return Ok(None);
    }
    let entries = &contents.entries;
    let kinds: Vec<(bool, i64)> = entries
        .iter()
        .map(|e| (matches!(e.kind, EntryKind::Retention { .. }), e.at))
        .collect();
    let keep = keep_mask(&kinds, now);
    let dropped = keep.iter().filter(|k| !**k).count() as u64;
    if dropped < MIN_DROPPED {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&header());
    for (i, e) in entries.iter().enumerate() {
        if !keep[i] {
            continue;
        }
        let end = entries.get(i + 1).map_or(contents.valid_len, |next| next.offset);
        let frame = bytes
            .get(e.offset as usize..end as usize)
            .ok_or_else(|| LogError::Corrupt {
                path: path.to_owned(),
                offset: e.offset,
                reason: "an entry's frame is outside the file".into(),
            })?;
        out.extend_from_slice(frame);
    }
    let tmp = path.with_extension("thinning");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io("creating", &tmp))?;
    file.write_all(&out)
        .and_then(|()| file.sync_all())
        .map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("renaming over", path))?;
    sync_parent(path)?;
    file.seek(std::io::SeekFrom::End(0))
        .map_err(io("seeking in", path))?;
    let thinned = Thinned {
        kept: entries.len() as u64 - dropped,
        dropped,
        bytes_before: bytes.len() as u64,
        bytes_after: out.len() as u64,
    };
    Ok(Some((
        CheckpointLog {
            path: path.to_owned(),
            file,
        },
        thinned,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrity::log::read;

    #[test]
    fn keeps_the_last_hour_then_a_checkpoint_a_minute_then_one_an_hour() {
        let now = 10 * DAY;
        // One checkpoint every 10 s over three days, a retention entry two
        // days ago.
        let mut entries: Vec<(bool, i64)> = (0..(3 * DAY / (10 * NANOS_PER_SEC)))
            .map(|k| (false, now - 3 * DAY + k * 10 * NANOS_PER_SEC))
            .collect();
        let retention_at = entries.len() / 3;
        entries[retention_at].0 = true;
        let keep = keep_mask(&entries, now);
        let kept = |from: i64, to: i64| {
            entries
                .iter()
                .zip(&keep)
                .filter(|((_, at), k)| **k && *at >= now - from && *at < now - to)
                .count()
        };
        assert_eq!(kept(HOUR, 0), 360, "every one of the last hour");
        // (The one exactly a day old is in an hour's bucket.)
        assert_eq!(kept(DAY - NANOS_PER_SEC, HOUR), 23 * 60, "one a minute");
        // Two days before: one an hour (49 hours begin in [now - 3 days,
        // now - 1 day]), and the retention entry.
        assert_eq!(kept(3 * DAY, DAY - NANOS_PER_SEC), 49 + 1);
        assert!(keep[retention_at] && keep[entries.len() - 1]);
        // The one kept of a minute is its last.
        let first_of_day = entries
            .iter()
            .position(|(_, at)| *at >= now - DAY + MINUTE)
            .unwrap_or(0);
        assert!(!keep[first_of_day] && keep[first_of_day + 5]);
    }

    #[test]
    fn a_thinned_file_holds_the_kept_entries_byte_for_byte_and_takes_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints");
        let mut log = CheckpointLog::create(&path).unwrap();
        let now = 5 * DAY;
        for k in 0..400i64 {
            let kind = if k == 100 {
                EntryKind::Retention {
                    first_leaf: 7,
                    first_segment: 2,
                    before: vec![[9u8; 32]; 3],
                }
            } else {
                EntryKind::Checkpoint
            };
            // Every 5 minutes up to the last one, a minute ago.
            log.append(
                &kind,
                now - MINUTE - (399 - k) * 5 * MINUTE,
                &format!("note {k}\n"),
            )
            .unwrap();
        }
        drop(log);
        let before = read(&path).unwrap().unwrap().entries;
        let (mut log, thinned) = thin(&path, now).unwrap().unwrap();
        let after = read(&path).unwrap().unwrap().entries;
        assert_eq!(thinned.kept, after.len() as u64);
        assert_eq!(thinned.kept + thinned.dropped, 400);
        assert!(thinned.bytes_after < thinned.bytes_before);
        assert!(thinned.dropped >= MIN_DROPPED, "{thinned:?}");
        // Kept entries are unchanged, in order; the retention entry and the
        // last are among them.
        let notes: Vec<&str> = after.iter().map(|e| e.note.as_str()).collect();
        let mut previous = 0;
        for e in &after {
            let same = before.iter().find(|b| b.note == e.note).unwrap();
            assert_eq!((&same.kind, same.at), (&e.kind, e.at));
            assert!(same.offset >= previous);
            previous = same.offset;
        }
        assert!(notes.contains(&"note 100\n") && notes.last() == Some(&"note 399\n"));
        // Appends go to the new file.
        log.append(&EntryKind::Checkpoint, now, "note 400\n").unwrap();
        let again = read(&path).unwrap().unwrap();
        assert_eq!(again.entries.last().unwrap().note, "note 400\n");
        assert!(again.bad_tail.is_none());
        // Nothing more to drop now.
        assert!(thin(&path, now).unwrap().is_none());
        assert!(!path.with_extension("thinning").exists());
    }
}
