//! Group commit: appenders that need the same `fdatasync` share one.
//!
//! Every appender writes its records, then calls [`GroupCommit::wait`] with
//! the LSN it needs durable. One waiter at a time is the *leader*: it runs
//! the sync, which covers everything written before it started, and wakes
//! the others. A waiter whose LSN a finished sync covered returns at once,
//! even if the next round has already begun.
//!
//! **Gathering.** Appenders acknowledged by one round come back with their
//! next record a little later than the first of them, who would otherwise
//! start the next round almost alone; the rest would then wait for a round
//! and a half. So a new leader waits, briefly, until as many appenders are
//! waiting as the recent rounds covered: at most half of the last sync's
//! duration and never more than [`MAX_GATHER`]. A lone appender (recent
//! rounds of one) never waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::Result;

/// Upper bound of the wait for more appenders before a sync.
pub const MAX_GATHER: Duration = Duration::from_micros(500);

/// Rounds remembered to size the next one.
const RECENT: usize = 8;

#[derive(Debug, Default)]
struct State {
    /// A leader is gathering or syncing.
    syncing: bool,
    /// Appenders inside `wait` (the leader included).
    waiting: usize,
    /// Waiters covered by each of the last rounds.
    recent: [usize; RECENT],
    rounds: usize,
    last_sync: Duration,
    /// While a leader gathers: the number of waiters it waits for.
    gather_for: Option<usize>,
}

impl State {
    fn wanted(&self) -> usize {
        self.recent.iter().copied().max().unwrap_or(0)
    }
}

/// Coordination of group-commit rounds (the syncing itself is the caller's).
#[derive(Debug, Default)]
pub struct GroupCommit {
    state: Mutex<State>,
    /// A round ended.
    done: Condvar,
    /// A waiter arrived while the leader gathers.
    arrived: Condvar,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Block until `synced` reaches `target`, running `sync` as the leader
    /// when no one else is. `sync` must make durable everything written
    /// before it was called and advance `synced`; its error is returned to
    /// the leader only (the others find out on their own next round).
    pub fn wait(&self, target: u64, synced: &AtomicU64, mut sync: impl FnMut() -> Result<()>) -> Result<()> {
        let mut st = self.lock();
        st.waiting += 1;
        if st.gather_for.is_some_and(|n| st.waiting >= n) {
            self.arrived.notify_one();
        }
        let result = loop {
            if synced.load(Ordering::Acquire) >= target {
                break Ok(());
            }
            if st.syncing {
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st.syncing = true;
            st = self.gather(st);
            let covered = st.waiting;
            drop(st);
            let started = Instant::now();
            let outcome = sync();
            st = self.lock();
            st.syncing = false;
            st.last_sync = started.elapsed();
            let slot = st.rounds % RECENT;
            st.recent[slot] = covered;
            st.rounds += 1;
            self.done.notify_all();
            if let Err(e) = outcome {
                break Err(e);
            }
        };
        st.waiting -= 1;
        result
    }

    /// Wait (bounded) until as many appenders wait as recent rounds held.
    fn gather<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let want = st.wanted();
        if st.waiting >= want {
            return st;
        }
        let deadline = Instant::now() + (st.last_sync / 2).min(MAX_GATHER);
        st.gather_for = Some(want);
        while st.waiting < want {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .arrived
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        st.gather_for = None;
        st
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// Threads "write" by bumping `written`, then wait; the sync copies
    /// `written` to `synced` after a pause. Every waiter must return only
    /// once `synced` covers it, and rounds must be shared.
    #[test]
    fn waiters_return_only_when_covered_and_share_rounds() {
        let gc = Arc::new(GroupCommit::default());
        let written = Arc::new(AtomicU64::new(0));
        let synced = Arc::new(AtomicU64::new(0));
        let syncs = Arc::new(AtomicUsize::new(0));
        let threads = 8;
        let per_thread = 50;
        std::thread::scope(|s| {
            for _ in 0..threads {
                let (gc, written, synced, syncs) = (&gc, &written, &synced, &syncs);
                s.spawn(move || {
                    for _ in 0..per_thread {
                        let target = written.fetch_add(1, Ordering::AcqRel) + 1;
                        gc.wait(target, synced, || {
                            let upto = written.load(Ordering::Acquire);
                            std::thread::sleep(Duration::from_micros(300));
                            syncs.fetch_add(1, Ordering::Relaxed);
                            synced.fetch_max(upto, Ordering::AcqRel);
                            Ok(())
                        })
                        .expect("sync");
                        assert!(synced.load(Ordering::Acquire) >= target);
                    }
                });
            }
        });
        let rounds = syncs.load(Ordering::Relaxed);
        let total = threads * per_thread;
        assert!(
            rounds < total / 2,
            "{rounds} syncs for {total} appends: not grouped"
        );
    }

    #[test]
    fn a_failed_sync_is_the_leaders_error_and_the_next_leader_retries() {
        let gc = GroupCommit::default();
        let synced = AtomicU64::new(0);
        let err = gc.wait(1, &synced, || Err(crate::Error::Poisoned("injected".into())));
        assert!(err.is_err());
        gc.wait(1, &synced, || {
            synced.store(1, Ordering::Release);
            Ok(())
        })
        .expect("second round");
    }
}
