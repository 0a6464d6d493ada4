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
