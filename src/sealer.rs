//! Sealing rolled segments off the appending thread.
//!
//! A roll makes the active segment durable (trimmed and `fdatasync`ed) and
//! hands it here as a [`Sealing`]: its log file plus the in-memory index it
//! had while active. Until the sealer thread has built and written its
//! `.idx`, mapped it, and merged its fingerprints into a new dedup set, the
//! store keeps serving the segment from that in-memory index (scans,
//! `get`, de-duplication), so nothing about it is invisible in between.
//! The store installs finished work under its writer lock whenever it takes
//! that lock (see `Store::install_sealed`), so the sealer itself never
//! takes a store lock.
//!
//! Appenders thus no longer wait for the index build and write of every
//! roll (tens of milliseconds per segment, plus a dedup-set merge that grows
//! with the store). A crash before the `.idx` is written loses nothing: the
//! log is already durable, and an open re-indexes a sealed segment that has
//! no index (docs/format.md, recovery).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;

use crate::error::Result;
use crate::index::file as idxfile;
use crate::index::id::FingerprintSet;
use crate::index::time::ActiveIndex;
use crate::io::Io;
use crate::log::segment::{self, SealedSegment};

/// A rolled segment whose index file is being built. Its log is complete
/// and durable; `index` describes every record in it.
#[derive(Debug)]
pub(crate) struct Sealing {
    pub id: u64,
    pub path: PathBuf,
    pub file: Arc<File>,
    /// Length of the log (header included).
    pub len: u64,
    /// Never changes: readers and the sealer share it without a lock.
    pub index: ActiveIndex,
}

/// Finished work for the store to install.
pub(crate) struct Sealed {
    pub sealing: Arc<Sealing>,
    /// The mapped segment, and the dedup set with its fingerprints merged
    /// in, computed from `base` (install it only if the store's set is
    /// still `base`; otherwise merge again).
    pub result: Result<SealResult>,
}

struct Job {
    sealing: Arc<Sealing>,
    /// The store's dedup set when the segment rolled.
    fps: Arc<FingerprintSet>,
    /// Sealed segments whose resident pages to release once done (see
    /// `SealedSegment::release_resident_pages`): done here, because
    /// unmapping what queries faulted in can take milliseconds.
    release: Arc<Vec<Arc<SealedSegment>>>,
}

pub(crate) struct Sealer {
    jobs: Option<Sender<Job>>,
    done: Mutex<Receiver<Sealed>>,
    thread: Option<JoinHandle<()>>,
}

impl Sealer {
    pub(crate) fn start(dir: PathBuf, io: Arc<dyn Io>) -> std::io::Result<Self> {
        let (jobs, job_rx) = channel::<Job>();
        let (done_tx, done) = channel::<Sealed>();
        let thread = std::thread::Builder::new()
            .name("auditstore-sealer".into())
            .spawn(move || {
                // (the set a job was based on, the set it produced): a job
                // queued before the previous one was installed builds on
                // the previous result instead of on a set about to be
                // replaced. The input is only compared by address, so it is
                // held weakly: holding it would keep a whole old copy of
                // the set (4 bytes per stored event) alive between rolls.
                let mut last: Option<(Weak<FingerprintSet>, Weak<FingerprintSet>)> = None;
                for job in job_rx {
                    let base = last
                        .as_ref()
                        .filter(|(input, _)| std::ptr::eq(input.as_ptr(), Arc::as_ptr(&job.fps)))
                        .and_then(|(_, output)| output.upgrade())
                        .unwrap_or_else(|| job.fps.clone());
                    let result = seal(&dir, &*io, &job.sealing, &base);
                    for seg in job.release.iter() {
                        seg.release_resident_pages();
                    }
                    last = match &result {
                        Ok((_, merged, _)) => Some((Arc::downgrade(&job.fps), Arc::downgrade(merged))),
                        Err(_) => None,
                    };
                    let sealed = Sealed {
                        sealing: job.sealing,
                        result,
                    };
                    if done_tx.send(sealed).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Sealer {
            jobs: Some(jobs),
            done: Mutex::new(done),
            thread: Some(thread),
        })
    }

    /// Queue a segment; `fps` is the store's dedup set now, `release` the
    /// sealed segments whose resident pages to give back afterwards.
    pub(crate) fn submit(
        &self,
        sealing: Arc<Sealing>,
        fps: Arc<FingerprintSet>,
        release: Arc<Vec<Arc<SealedSegment>>>,
    ) -> bool {
        self.jobs.as_ref().is_some_and(|jobs| {
            jobs.send(Job {
                sealing,
                fps,
                release,
            })
            .is_ok()
        })
    }

    /// Finished work, without waiting.
    pub(crate) fn finished(&self) -> Vec<Sealed> {
        let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        done.try_iter().collect()
    }

    /// The next finished work, waiting for it (`None` if the thread is gone).
    pub(crate) fn wait(&self) -> Option<Sealed> {
        self.done.lock().unwrap_or_else(|p| p.into_inner()).recv().ok()
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        // Closing the queue ends the thread after the work already queued.
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The mapped segment, the merged dedup set, and the set it was merged into.
pub(crate) type SealResult = (SealedSegment, Arc<FingerprintSet>, Arc<FingerprintSet>);

pub(crate) fn seal(
    dir: &Path,
    io: &dyn Io,
    sealing: &Sealing,
    base: &Arc<FingerprintSet>,
) -> Result<SealResult> {
    let (names, mut entries) = sealing.index.to_build();
    let bytes = idxfile::build(sealing.id, sealing.len, &names, &mut entries);
    drop(entries);
    let idx_path = segment::idx_path(dir, sealing.id);
    if let Err(e) = segment::write_atomically_via(io, &idx_path, &bytes) {
        let _ = std::fs::remove_file(&idx_path);
        return Err(e);
    }
    let seg = SealedSegment::open(dir, sealing.id)?;
    let merged = Arc::new(base.merged(&seg.fingerprints()));
    Ok((seg, merged, base.clone()))
}
