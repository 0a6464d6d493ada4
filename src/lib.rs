//! auditstore: an embedded, append-only audit-log engine.
//!
//! Events are appended to CRC-framed segment files with group commit,
//! de-duplicated exactly by id, indexed by (organization, time), clamped to
//! each organization's retention on every read, and exported as CSV through
//! tracked, rate-limited requests.
//!
//! ```
//! use auditstore::{Event, Query, Store, Timestamp};
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//! let event = Event::from_json(r#"{"id":"8d5f2a3e-0b1c-4d2e-9f30-112233445566",
//!   "action":"context.create","actor":{"id":"u1","type":"user","name":"ann"},
//!   "target":{"id":"c1","type":"context"},"occurred_at":"2026-06-01T12:00:00Z",
//!   "success":true}"#)?;
//! let report = store.append_batch([("org-01", &event)])?;
//! assert_eq!(report.appended, 1);
//! let day = Query::new(
//!     "org-01",
//!     Timestamp::parse_rfc3339("2026-06-01T00:00:00Z")?,
//!     Timestamp::parse_rfc3339("2026-06-02T00:00:00Z")?,
//! )
//! .as_of(Timestamp::parse_rfc3339("2026-07-01T00:00:00Z")?);
//! let found: Vec<Event> = store.scan(&day)?.collect::<Result<_, _>>()?;
//! assert_eq!(found, vec![event]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod auth;
pub mod clock;
pub mod codec;
pub mod error;
pub mod event;
pub mod export;
mod group_commit;
mod hex;
pub mod index;
pub mod integrity;
pub mod io;
pub mod log;
pub mod meta;
pub mod org;
pub mod partitions;
pub mod repair;
pub mod sample;
pub mod scan;
mod sealer;
pub mod store;
pub mod time;
mod writeback;

pub use clock::{Clock, FixedClock, OffsetClock, SystemClock};
pub use error::{Error, Result};
pub use event::{Event, EventError};
pub use org::{OrgSettings, Plan};
pub use scan::{Query, Scan};
pub use store::{
    AppendOutcome, BackupReport, BatchReport, Durability, Options, Problem, RecoveryReport, RetentionReport,
    Stats, Store, VerifyReport, QUARANTINE_DIR,
};
pub use time::Timestamp;
#[cfg(feature = "cluster")]
pub mod cluster;
#[cfg(feature = "server")]
pub mod server;
