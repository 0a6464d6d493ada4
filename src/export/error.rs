//! Why an export operation was refused or failed.

use uuid::Uuid;

use crate::export::csv::CsvError;
use crate::export::policy::Date;
use crate::org::Plan;
use crate::time::Timestamp;

/// A refusal (with the admin tool's error code, [`ExportError::code`]) or a
/// failure of the store underneath.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The requester is not an admin of the organization.
    #[error(
        "{user:?} is not an admin of organization {org:?}: only organization admins can request exports"
    )]
    Forbidden { org: String, user: String },
    /// The organization's plan has no self-service exports (or no full export).
    #[error("organization {org:?} is on the {plan} plan, which {what}; please contact support")]
    PlanNotEligible {
        org: String,
        plan: Plan,
        what: &'static str,
    },
    /// The range is malformed (start after end, longer than allowed).
    #[error("invalid range: {0}")]
    InvalidRange(String),
    /// The start date is more than one year ago.
    #[error("the start date {from} is more than one year ago: the earliest allowed start is {earliest}")]
    RangeTooOld { from: Date, earliest: Date },
    /// The end date is after today.
    #[error("the end date {to} is in the future: the latest allowed end is today, {latest}")]
    RangeInFuture { to: Date, latest: Date },
    /// The plan's limit of requests per window is reached.
    #[error("organization {org:?} has made {made} export request(s) in the last {window_days} day(s), pending ones included; the {plan} plan allows {limit}; new requests can be made from {next_allowed_at}")]
    RateLimited {
        org: String,
        plan: Plan,
        /// Requests that count now (in the window, pending ones included).
        made: usize,
        limit: u32,
        window_days: u32,
        next_allowed_at: Timestamp,
    },
    /// No such request.
    #[error("no export request {0}")]
    NotFound(String),
    /// The request has not been processed yet.
    #[error("export request {id} is still being prepared (requested); it is processed at {processed_at}")]
    NotReady { id: Uuid, processed_at: Timestamp },
    /// The request failed.
    #[error("export request {id} failed: {reason}")]
    Failed { id: Uuid, reason: String },
    /// The download has expired.
    #[error("the download of export request {id} expired at {expires_at}")]
    Expired { id: Uuid, expires_at: Timestamp },
    /// The request succeeded but its window held no event: there is no file.
    #[error("export request {id} found no events in its timeframe: there is nothing to download")]
    NoData { id: Uuid },
    /// The file has no signed manifest (built before manifests existed, or
    /// by a store without the tamper-evidence tree).
    #[error("export request {id} has no manifest: it was built before manifests existed or by a store that keeps no tamper-evidence tree")]
    NoManifest { id: Uuid },
    /// The export policy (file or API) is invalid.
    #[error("invalid export policy: {0}")]
    Policy(String),
    /// A stored request record could not be read.
    #[error("export registry: {0}")]
    Registry(String),
    /// The store failed (I/O, corruption, metadata database).
    #[error(transparent)]
    Store(#[from] crate::Error),
    /// Writing CSV failed.
    #[error(transparent)]
    Csv(#[from] CsvError),
}

impl ExportError {
    /// The stable machine-readable code of `shared/spec/cli.md`.
    pub fn code(&self) -> &'static str {
        match self {
            ExportError::Forbidden { .. } => "forbidden",
            ExportError::PlanNotEligible { .. } => "plan_not_eligible",
            ExportError::InvalidRange(_) => "invalid_range",
            ExportError::RangeTooOld { .. } => "range_too_old",
            ExportError::RangeInFuture { .. } => "range_in_future",
            ExportError::RateLimited { .. } => "rate_limited",
            ExportError::NotFound(_) => "not_found",
            ExportError::NotReady { .. } => "not_ready",
            ExportError::Failed { .. } => "failed",
            ExportError::Expired { .. } => "expired",
            ExportError::NoData { .. } => "no_data",
            ExportError::NoManifest { .. } => "not_found",
            ExportError::Policy(_) => "invalid_policy",
            ExportError::Registry(_) => "corrupt",
            ExportError::Store(e) => e.code(),
            ExportError::Csv(CsvError::Dangerous { .. }) => "failed",
            ExportError::Csv(_) => "io",
        }
    }

    /// The fields the contract's error object carries beside `code` and
    /// `message` (the request's id, when it will be processed, ...).
    pub fn details(&self) -> Vec<(&'static str, String)> {
        match self {
            ExportError::RateLimited { next_allowed_at, .. } => {
                vec![("next_allowed_at", next_allowed_at.to_rfc3339())]
            }
            ExportError::NotReady { id, processed_at } => {
                vec![
                    ("id", id.to_string()),
                    ("processed_at", processed_at.to_rfc3339()),
                ]
            }
            ExportError::Expired { id, expires_at } => {
                vec![("id", id.to_string()), ("expires_at", expires_at.to_rfc3339())]
            }
            ExportError::Failed { id, reason } => vec![("id", id.to_string()), ("reason", reason.clone())],
            ExportError::NoData { id } | ExportError::NoManifest { id } => vec![("id", id.to_string())],
            _ => Vec::new(),
        }
    }

    /// When a `rate_limited` requester may try again.
    pub fn next_allowed_at(&self) -> Option<Timestamp> {
        match self {
            ExportError::RateLimited { next_allowed_at, .. } => Some(*next_allowed_at),
            _ => None,
        }
    }
}

/// An I/O error with the operation and file it happened on.
pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> ExportError {
    ExportError::Store(crate::Error::Io {
        context: context.into(),
        source,
    })
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for ExportError {
            fn from(e: $t) -> Self { ExportError::Store(e.into()) }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
