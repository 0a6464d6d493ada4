//! Where "now" comes from. Every time-dependent rule (retention, export
//! date limits, rate limits, schedule, expiry) asks a [`Clock`], so tests
//! and the admin tool's `--as-of` can fix the instant.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::time::Timestamp;

/// A source of the current instant.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that says what it is told; for tests and `--as-of`.
#[derive(Debug)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    pub fn new(at: Timestamp) -> Self {
        FixedClock(AtomicI64::new(at.as_nanos()))
    }

    pub fn set(&self, at: Timestamp) {
        self.0.store(at.as_nanos(), Ordering::SeqCst);
    }

    pub fn advance_secs(&self, secs: i64) {
        self.0
            .fetch_add(secs.saturating_mul(1_000_000_000), Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos(self.0.load(Ordering::SeqCst))
    }
}

/// A clock that read `at` when it was made and runs forward in real time
/// from there: the server's `--as-of` (every rule, the export schedule
/// included, follows it).
#[derive(Debug)]
pub struct OffsetClock {
    at: Timestamp,
    started: std::time::Instant,
}

impl OffsetClock {
    pub fn new(at: Timestamp) -> Self {
        OffsetClock {
            at,
            started: std::time::Instant::now(),
        }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        let elapsed = i64::try_from(self.started.elapsed().as_nanos()).unwrap_or(i64::MAX);
        Timestamp::from_nanos(self.at.as_nanos().saturating_add(elapsed))
    }
}
