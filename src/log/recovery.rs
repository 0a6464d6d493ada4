//! Walking the frames of a segment: the one routine used by recovery (find
//! the valid prefix of the active segment), by index rebuilds and by
//! `verify`.

use super::frame;
use crate::codec::{self, RecordView};

/// Where and why a walk stopped before the end of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub offset: u64,
    pub reason: String,
    /// True when the remaining bytes are a frame cut short (a torn write);
    /// false when a complete frame failed its checksum or its body is bad.
    pub torn: bool,
}

/// Result of a walk: the end of the last valid frame, and the first problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walk {
    pub valid_end: u64,
    pub stop: Option<Stop>,
}

/// Visit every valid record of `buf` starting at `start`, in order, until the
/// end or the first invalid frame.
pub fn walk(buf: &[u8], start: usize, mut visit: impl FnMut(u64, &RecordView<'_>)) -> Walk {
    let mut at = start;
    while at < buf.len() {
        match frame::decode(&buf[at..]) {
            Ok((body, len)) => match codec::decode(body) {
                Ok(view) => {
                    visit(at as u64, &view);
                    at += len;
                }
                Err(e) => {
                    return Walk {
                        valid_end: at as u64,
                        stop: Some(Stop {
                            offset: at as u64,
                            reason: format!("record body: {e}"),
                            torn: false,
                        }),
                    }
                }
            },
            Err(e) => {
                let torn =
                    matches!(e, frame::FrameError::Truncated { .. }) || buf[at..].iter().all(|b| *b == 0);
                return Walk {
                    valid_end: at as u64,
                    stop: Some(Stop {
                        offset: at as u64,
                        reason: e.to_string(),
                        torn,
                    }),
                };
            }
        }
    }
    Walk {
        valid_end: at as u64,
        stop: None,
    }
}

/// Where the valid frames are in `buf[from..]`, where `from` is a damaged
/// frame's offset: the frames a walk stopped before. Every byte offset after
/// the damaged frame's first byte is tried until a frame and its record
/// decode, then frame after frame. (Not the damaged frame's own length: a
/// damaged length could land on a later frame and skip the ones between.)
/// The zeros after the last non-zero byte (space allocated ahead) are not
/// searched.
pub fn salvage(buf: &[u8], from: usize) -> Vec<std::ops::Range<usize>> {
    let mut found = Vec::new();
    let written_end = buf.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
    let mut at = from + 1;
    while let Some((start, len)) = next_frame(buf, at, written_end) {
        found.push(start..start + len);
        at = start + len;
    }
    found
}

/// A stretch of a segment where no record decodes: from the first invalid
/// frame at `offset` up to the next valid frame (or the end) at `end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub offset: u64,
    pub end: u64,
    /// Why the frame at `offset` is invalid.
    pub reason: String,
}

/// Visit every valid record of `buf` from `start` on, in order, carrying on
/// past damage: after an invalid frame the next valid one is searched byte
/// by byte, as [`salvage`] does. Returns the damaged stretches, in order
/// (`verify` reports each; a walk would stop at the first).
pub fn survey(buf: &[u8], start: usize, mut visit: impl FnMut(u64, &RecordView<'_>)) -> Vec<Damage> {
    let mut damage = Vec::new();
    let mut at = start;
    while at < buf.len() {
        let Some(stop) = walk(buf, at, &mut visit).stop else {
            break;
        };
        let from = stop.offset as usize;
        at = next_frame(buf, from + 1, buf.len()).map_or(buf.len(), |(next, _)| next);
        damage.push(Damage {
            offset: stop.offset,
            end: at as u64,
            reason: stop.reason,
        });
    }
    damage
}

/// The first offset in `from..before` where a frame and its record decode,
/// with the frame's length.
fn next_frame(buf: &[u8], from: usize, before: usize) -> Option<(usize, usize)> {
    (from..before).find_map(|at| {
        frame::decode(&buf[at..])
            .ok()
            .filter(|(body, _)| codec::decode(body).is_ok())
            .map(|(_, len)| (at, len))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn frames(n: usize) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
        let mut buf = vec![0u8; 16];
        let mut at = Vec::new();
        for i in 0..n {
            let e = Event::from_json(&format!(
                r#"{{"id":"00000000-0000-4000-8000-{i:012}","action":"a.b","actor":{{"id":"u","type":"user"}},
                "target":{{"id":"t","type":"x"}},"occurred_at":"2026-06-01T00:00:0{i}Z","success":true}}"#
            ))
            .unwrap();
            let start = frame::begin(&mut buf);
            codec::encode("org", &e, &mut buf);
            frame::seal_in_place(&mut buf, start);
            at.push(start..buf.len());
        }
        (buf, at)
    }

    #[test]
    fn salvage_finds_the_frames_after_a_damaged_body_or_length() {
        let (clean, at) = frames(5);
        // A flipped bit in the second record's body.
        let mut buf = clean.clone();
        buf[at[1].start + 20] ^= 0x10;
        let w = walk(&buf, 16, |_, _| {});
        assert_eq!(w.valid_end as usize, at[1].start);
        assert_eq!(salvage(&buf, at[1].start), at[2..].to_vec());
        // A damaged length: found again byte by byte.
        let mut buf = clean.clone();
        buf[at[1].start + 2] = 0x7f;
        assert_eq!(salvage(&buf, at[1].start), at[2..].to_vec());
        // A damaged length that points exactly at a later frame skips none.
        let mut buf = clean.clone();
        let skip_one = (at[3].start - at[1].start - frame::FRAME_HEADER_LEN) as u32;
        buf[at[1].start..at[1].start + 4].copy_from_slice(&skip_one.to_le_bytes());
        assert_eq!(salvage(&buf, at[1].start), at[2..].to_vec());
        // Zeros allocated ahead after the frames are not frames.
        let mut buf = clean.clone();
        buf[at[3].start + 9] ^= 1;
        buf.extend(std::iter::repeat_n(0u8, 4096));
        assert_eq!(salvage(&buf, at[3].start), vec![at[4].clone()]);
        // A damaged last frame: nothing after it.
        let mut buf = clean;
        buf[at[4].start + 9] ^= 1;
        assert!(salvage(&buf, at[4].start).is_empty());
    }

    #[test]
    fn a_survey_visits_every_valid_record_and_reports_every_damaged_stretch() {
        let (clean, at) = frames(6);
        let offsets = |buf: &[u8]| {
            let mut seen = Vec::new();
            let damage = survey(buf, 16, |off, _| seen.push(off as usize));
            (seen, damage)
        };
        let (seen, damage) = offsets(&clean);
        assert_eq!(seen, at.iter().map(|r| r.start).collect::<Vec<_>>());
        assert!(damage.is_empty());
        // Two damaged records (a body, then a length), and a cut last one.
        let mut buf = clean.clone();
        buf[at[1].start + 20] ^= 0x10;
        buf[at[3].start + 1] ^= 0x40;
        buf.truncate(at[5].end - 3);
        let (seen, damage) = offsets(&buf);
        assert_eq!(seen, vec![at[0].start, at[2].start, at[4].start]);
        let stretches: Vec<(usize, usize)> = damage
            .iter()
            .map(|d| (d.offset as usize, d.end as usize))
            .collect();
        assert_eq!(
            stretches,
            vec![
                (at[1].start, at[2].start),
                (at[3].start, at[4].start),
                (at[5].start, buf.len())
            ]
        );
        assert!(damage[0].reason.contains("checksum"), "{}", damage[0].reason);
    }
}
