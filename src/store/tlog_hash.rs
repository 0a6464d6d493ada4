//! Hashing the log's records into leaf hashes for the integrator, on one
//! thread beside appends or on every core when a caller waits.

use std::path::Path;

use super::tlog::Tlog;
use super::tlog_read::{open_log, record_leaf, walk_bodies, walk_records};
use crate::integrity::Hash;
use crate::{Error, Result};

/// Hashing threads when a caller waits for the tree (a checkpoint on
/// demand, at close, before a proof or a manifest): every core (at most
/// 4), since the caller is waiting. The background integrator uses one,
/// beside appends: on every core it took CPU from the appends themselves
/// (the comparison harness, tree on ÷ off, fell from 1.01 to 0.76; it had
/// made `auditstore ingest` 6% faster).
pub(super) fn foreground_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
}

impl Tlog {
    /// Hashes up to `step` records of segment `seg` from `off`; returns the
    /// hashes, where it stopped, and whether the segment is done (the
    /// durable log goes on in the next one).
    pub(super) fn hash_step(
        &self,
        path: &Path,
        seg: u64,
        off: u64,
        limit: (u64, u64),
        step: u64,
        threads: usize,
    ) -> Result<(Vec<Hash>, u64, bool)> {
        let file = open_log(path)?;
        let to = (seg == limit.0).then_some(limit.1);
        if threads <= 1 {
            let mut hashes = Vec::new();
            let walked = walk_records(&file, path, off, to, step, |_, view| {
                hashes.push(record_leaf(view))
            })?;
            let done = seg < limit.0 && walked.count < step;
            return Ok((hashes, walked.end, done));
        }
        // The bodies read in order, then hashed on `threads` threads, each
        // a contiguous run of them.
        let mut arena = Vec::new();
        let mut records: Vec<(u64, usize, usize)> = Vec::new();
        let walked = walk_bodies(&file, path, off, to, step, |at, body| {
            records.push((at, arena.len(), arena.len() + body.len()));
            arena.extend_from_slice(body);
            Ok(())
        })?;
        let per = records.len().div_ceil(threads).max(1);
        let hashed: Vec<Result<Vec<Hash>>> = std::thread::scope(|s| {
            let workers: Vec<_> = records
                .chunks(per)
                .map(|run| {
                    let arena = &arena;
                    s.spawn(move || {
                        run.iter()
                            .map(|&(at, from, to)| {
                                let body = arena.get(from..to).unwrap_or_default();
                                crate::codec::decode(body)
                                    .map(|view| record_leaf(&view))
                                    .map_err(|e| Error::corrupt(path, at, format!("record body: {e}")))
                            })
                            .collect()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| Err(Error::Poisoned("a hashing thread panicked".into())))
                })
                .collect()
        });
        let mut hashes = Vec::with_capacity(records.len());
        for run in hashed {
            hashes.extend(run?);
        }
        let done = seg < limit.0 && walked.count < step;
        Ok((hashes, walked.end, done))
    }
}
