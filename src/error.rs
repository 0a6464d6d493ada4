//! Typed errors of the library.

use std::path::PathBuf;

use crate::event::EventError;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way a store operation can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O call failed; `context` names the operation and the file.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Stored bytes failed a check (checksum, magic, length, layout).
    #[error("corrupt data in {}: at byte offset {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A file was written by a newer (or unknown) format version.
    #[error("{}: unsupported format version {found} (this build reads version {supported})", path.display())]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// Another process (or another `Store` in this one) holds the store for writing.
    #[error("store {} is locked by another writer (lock file {})", dir.display(), lock.display())]
    Locked { dir: PathBuf, lock: PathBuf },
    /// The event failed validation.
    #[error(transparent)]
    InvalidEvent(#[from] EventError),
    /// An argument was out of its allowed range.
    #[error("invalid {what}: {reason}")]
    InvalidArgument { what: &'static str, reason: String },
    /// An earlier fsync failed (the page cache may have dropped our data), or
    /// a failed write could not be cut back: the store refuses writes until
    /// it is reopened and recovered from what is really on disk.
    #[error("store refuses writes after an unrecoverable write-path failure ({0}); reopen it to recover")]
    Poisoned(String),
    /// The metadata database (redb) failed.
    #[error("metadata database: {0}")]
    Metadata(String),
    /// The store is closed.
    #[error("store is closed")]
    Closed,
    /// A write to a store opened read-only (another process holds it for
    /// writing).
    #[error("read-only store: {0}")]
    ReadOnly(String),

    /// Where the store's own events go instead of its log (a cluster
    /// node's streams, `Store::send_own_events_to`) did not take one.
    #[error("the store's own event was not recorded: {0}")]
    Unavailable(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// Stable machine-readable code, as used by the admin tool's JSON errors.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Io { .. } | Error::Poisoned(_) | Error::Metadata(_) | Error::Closed => "io",
            Error::Corrupt { .. } | Error::UnsupportedVersion { .. } => "corrupt",
            Error::Locked { .. } | Error::ReadOnly(_) => "locked",
            Error::Unavailable(_) => "unavailable",
            Error::InvalidEvent(_) => "invalid_event",
            Error::InvalidArgument { .. } => "invalid_argument",
        }
    }
}

/// Helper to attach context to `std::io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}

/// redb's report of a damaged file is `Corrupt` naming `meta.redb`; its
/// other failures stay `Metadata`.
fn from_storage(e: redb::StorageError) -> Error {
    match e {
        redb::StorageError::Corrupted(reason) => {
            Error::corrupt(crate::meta::META_FILE, 0, format!("metadata database: {reason}"))
        }
        e => Error::Metadata(e.to_string()),
    }
}

impl From<redb::StorageError> for Error {
    fn from(e: redb::StorageError) -> Self {
        from_storage(e)
    }
}

macro_rules! impl_metadata_from {
    ($($t:ident),*) => {$(
        impl From<redb::$t> for Error {
            fn from(e: redb::$t) -> Self {
                match e {
                    redb::$t::Storage(s) => from_storage(s),
                    e => Error::Metadata(e.to_string()),
                }
            }
        }
    )*};
}
impl_metadata_from!(DatabaseError, TransactionError, TableError, CommitError);

impl From<redb::Error> for Error {
    fn from(e: redb::Error) -> Self {
        match e {
            redb::Error::Corrupted(reason) => {
                Error::corrupt(crate::meta::META_FILE, 0, format!("metadata database: {reason}"))
            }
            e => Error::Metadata(e.to_string()),
        }
    }
}
