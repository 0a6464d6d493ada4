//! Exports: the CSV format, and request-tracked, scheduled, rate-limited
//! CSV downloads (the rules are `shared/spec/exports.md`; the guide is
//! `docs/exports.md`).
//!
//! Every operation of [`Exports`] is evaluated as of its clock (by default
//! the store's, so a store opened with a [`crate::FixedClock`] fixes "now").
//!
//! ```
//! use auditstore::export::{Exports, Role, Status};
//! use auditstore::{Event, FixedClock, Options, Plan, Store, Timestamp};
//! use std::sync::Arc;
//! let dir = tempfile::tempdir()?;
//! let clock = Arc::new(FixedClock::new(Timestamp::parse_rfc3339("2026-08-10T09:31:00Z")?));
//! let store = Store::open_with(dir.path(), Options { clock: clock.clone(), ..Options::default() })?;
//! store.set_org("org-01", Some(Plan::Scale), None)?;
//! let event = Event::from_json(r#"{"id":"8d5f2a3e-0b1c-4d2e-9f30-112233445566",
//!   "action":"context.create","actor":{"id":"u1","type":"user"},
//!   "target":{"id":"c1","type":"context"},"occurred_at":"2026-08-03T12:00:00Z",
//!   "success":true}"#)?;
//! store.append("org-01", &event)?;
//!
//! let exports = Exports::new(&store)?;
//! let from = "2026-08-02".parse()?;
//! let to = "2026-08-05".parse()?;
//! let req = exports.request("org-01", "ann", Role::Admin, from, to)?;
//! assert_eq!(req.status, Status::Requested);
//! clock.set(Timestamp::parse_rfc3339("2026-08-10T10:30:00Z")?); // the next :30 run
//! let report = exports.process()?;
//! assert_eq!(report.processed_ids(), vec![req.id]);
//! let done = exports.get(req.id)?;
//! assert_eq!((done.status, done.rows), (Status::Success, Some(1)));
//! let csv = std::fs::read_to_string(exports.download(req.id)?.path())?;
//! assert!(csv.starts_with("id,action,actor,target,payload,occurred_at,metadata,version,scope,success,request\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod builder;
mod check;
pub mod csv;
pub mod error;
pub mod manifest;
pub(crate) mod manifest_build;
pub mod manifest_check;
pub mod own_events;
pub mod pipe;
pub mod policy;
pub mod request;
pub mod rows;
pub mod scheduler;

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

pub use builder::{Progress, ProgressFn, EXPORTS_DIR};
pub use error::ExportError;
pub use policy::{Date, ExportPolicy, PlanPolicy, Schedule, POLICY_FILE};
pub use request::{ExportRequest, Role, Status};
pub use scheduler::ProcessReport;

use crate::clock::Clock;
use crate::export::request::Registry;
use crate::scan::Query;
use crate::store::Store;
use crate::time::Timestamp;

/// Longest accepted requester name, in bytes.
pub const MAX_USER_LEN: usize = 256;

/// The export service of one store.
pub struct Exports<'s> {
    store: &'s Store,
    policy: ExportPolicy,
    clock: Arc<dyn Clock>,
    progress: Option<ProgressFn>,
    threads: usize,
    /// Count requests stamped after "now" against the rate limit
    /// ([`Exports::counting_later_requests`]).
    count_later: bool,
}

impl std::fmt::Debug for Exports<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exports")
            .field("store", &self.store)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// An open, finished export file.
#[derive(Debug)]
pub struct Download {
    request: ExportRequest,
    path: PathBuf,
    file: File,
}

impl Download {
    /// The request (status `success` as of the instant it was opened).
    pub fn request(&self) -> &ExportRequest {
        &self.request
    }
    /// Where the file is (it is deleted once the download expires; this
    /// handle stays readable).
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The open file.
    pub fn into_file(self) -> File {
        self.file
    }
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }
}

/// What a full export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FullExport {
    pub rows: u64,
}

impl<'s> Exports<'s> {
    /// The export service of `store`, with the policy of its
    /// `export-policy.json` (defaults without one) and the store's clock.
    pub fn new(store: &'s Store) -> Result<Self, ExportError> {
        Ok(Self::with_policy(store, ExportPolicy::load(store.policy_dir())?))
    }

    /// The export service of `store` with this policy.
    pub fn with_policy(store: &'s Store, policy: ExportPolicy) -> Self {
        Exports {
            store,
            policy,
            clock: store.clock().clone(),
            progress: None,
            threads: rows::default_threads(),
            count_later: false,
        }
    }

    /// Evaluate every rule with this clock instead of the store's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Count every stored request of the rate limit's window against the
    /// limit, also those stamped after this handle's "now". A replicated
    /// deployment applies requests in its log's order with instants from
    /// several nodes' clocks, not in that order: a request applied before
    /// this one must count, whatever its stamp, for the limit to hold
    /// across the deployment. (Alone, a request stamped after now exists
    /// only when a clock went back, and does not count.)
    pub fn counting_later_requests(mut self) -> Self {
        self.count_later = true;
        self
    }

    /// Report build progress to `f`.
    pub fn with_progress(mut self, f: ProgressFn) -> Self {
        self.progress = Some(f);
        self
    }

    /// Format long exports on up to `n` threads (default: the machine's
    /// cores, at most 4; 1 formats on the calling thread; at most
    /// [`rows::MAX_THREADS`]). The files are
    /// the same byte for byte whatever the number.
    pub fn with_threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    fn formatting(&self) -> builder::Formatting<'_> {
        builder::Formatting {
            progress: self.progress.as_ref(),
            threads: self.threads,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &ExportPolicy {
        &self.policy
    }

    /// Replace the policy (for this handle; [`ExportPolicy::save`] makes it
    /// the store's).
    pub fn set_policy(&mut self, policy: ExportPolicy) {
        self.policy = policy;
    }

    /// The instant operations are evaluated at.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The directory of export files.
    pub fn dir(&self) -> PathBuf {
        self.store.dir().join(EXPORTS_DIR)
    }

    fn registry(&self) -> Registry<'s> {
        Registry::new(self.store.meta())
    }

    /// Create a request for `org`'s events of the dates `from..=to` (UTC).
    ///
    /// Checks, in order: `forbidden` (not an admin), `plan_not_eligible`,
    /// the range (`range_too_old`, `range_in_future`, `invalid_range`), then
    /// `rate_limited` (with `next_allowed_at`). The rate limit is checked and
    /// the request stored in one transaction.
    pub fn request(
        &self,
        org: &str,
        user: &str,
        role: Role,
        from: Date,
        to: Date,
    ) -> Result<ExportRequest, ExportError> {
        self.request_with_id(Uuid::new_v4(), org, user, role, from, to)
    }

    /// [`Exports::request`] with the id chosen by the caller: a replicated
    /// deployment applies the same request, with the same id and (through
    /// [`Exports::with_clock`]) the same instant, on every replica, so that
    /// every one decides it alike. An id already stored answers that
    /// request as it is now (applying the same command twice changes
    /// nothing).
    pub fn request_with_id(
        &self,
        id: Uuid,
        org: &str,
        user: &str,
        role: Role,
        from: Date,
        to: Date,
    ) -> Result<ExportRequest, ExportError> {
        if let Some(existing) = self.registry().get(&id)? {
            return Ok(existing.as_of(self.now()));
        }
        crate::org::validate_org_name(org)?;
        validate_user(user)?;
        let now = self.now();
        if role != Role::Admin {
            return Err(ExportError::Forbidden {
                org: org.to_owned(),
                user: user.to_owned(),
            });
        }
        let plan = self.store.org_settings(org)?.plan;
        let rules = self.policy.plan(plan);
        if !rules.eligible {
            return Err(ExportError::PlanNotEligible {
                org: org.to_owned(),
                plan,
                what: "does not include self-service audit log exports",
            });
        }
        policy::check_range(from, to, now, &rules)?;
        let req = ExportRequest::new(id, org, user, from, to, policy::padded_window(from, to), now);
        let since = now.saturating_sub_days(rules.window_days);
        self.registry().insert_if(&req, since, |created| {
            let upto = if self.count_later { Timestamp::MAX } else { now };
            policy::check_rate_upto(created, now, upto, &rules).map_err(|(next_allowed_at, made)| {
                ExportError::RateLimited {
                    org: org.to_owned(),
                    plan,
                    made,
                    limit: rules.limit.unwrap_or(u32::MAX),
                    window_days: rules.window_days,
                    next_allowed_at,
                }
            })
        })?;
        self.store.record_staged_events()?;
        Ok(req)
    }

    /// Every request of `org`, newest first, with its status as of now.
    pub fn list(&self, org: &str) -> Result<Vec<ExportRequest>, ExportError> {
        let now = self.now();
        Ok(self
            .registry()
            .list_org(org)?
            .into_iter()
            .map(|r| r.as_of(now))
            .collect())
    }

    /// One request with its status as of now (`not_found` if none).
    pub fn get(&self, id: Uuid) -> Result<ExportRequest, ExportError> {
        match self.registry().get(&id)? {
            Some(r) => Ok(r.as_of(self.now())),
            None => Err(ExportError::NotFound(id.to_string())),
        }
    }

    /// When a request made at `created_at` is (or was) processed: the first
    /// schedule mark at or after it.
    pub fn processed_at(&self, created_at: Timestamp) -> Timestamp {
        self.policy.schedule().next_mark(created_at)
    }

    /// Run the scheduled processing as of now: remove leftovers of
    /// interrupted runs, build every `requested` request created at or
    /// before the most recent schedule mark, expire downloads.
    pub fn process(&self) -> Result<ProcessReport, ExportError> {
        self.process_where(&|_| true)
    }

    /// [`Exports::process`] for the requests of the organizations `orgs`
    /// accepts only (their builds and expiries; leftover files are swept
    /// whatever their organization): a replicated deployment processes
    /// each partition's organizations at that partition's position in its
    /// stream.
    pub fn process_where(&self, orgs: &dyn Fn(&str) -> bool) -> Result<ProcessReport, ExportError> {
        // Processing removes leftover files before it writes metadata: a
        // read-only store (another process holds it) must refuse first.
        self.store.refuse_if_read_only()?;
        let _one_run_at_a_time = self.store.processing_lock();
        // Every export run is made at a signed checkpoint (integrity.md).
        self.store.checkpoint_if_kept()?;
        let report = scheduler::process(self.store, &self.policy, self.now(), self.formatting(), orgs)?;
        self.store.record_staged_events()?;
        Ok(report)
    }

    /// [`Exports::download`] for `user`, recorded in the organization's log
    /// as `audit_log.download_url.generated` (durably, before the file is
    /// handed out).
    pub fn download_by(&self, id: Uuid, user: &str) -> Result<Download, ExportError> {
        validate_user(user)?;
        let download = self.download(id)?;
        let event = own_events::downloaded(download.request(), user, self.now())?;
        self.store.record_own_event(&download.request().org, &event)?;
        Ok(download)
    }

    /// Open the file of a finished request. Refused with `not_found`,
    /// `not_ready` (still `requested`), `failed`, `expired` or `no_data`;
    /// a file whose size or CRC-32 is not what was written is `corrupt`
    /// naming it (checking reads the file once before it is served).
    pub fn download(&self, id: Uuid) -> Result<Download, ExportError> {
        let request = self.with_file(id)?;
        let path = builder::final_path(&self.dir(), &id);
        let mut file = File::open(&path).map_err(|e| error::io(format!("open {}", path.display()), e))?;
        check::check_file(&path, &mut file, &request)?;
        Ok(Download { request, path, file })
    }

    /// The signed manifest of a finished request's file (JSON bytes,
    /// docs/exports.md "Manifests"). Refused as [`Exports::download`] is,
    /// and `not_found` for a file that has none; a manifest whose bytes are
    /// not those written is `corrupt` naming it.
    pub fn manifest(&self, id: Uuid) -> Result<Vec<u8>, ExportError> {
        let request = self.with_file(id)?;
        let Some(want) = request.manifest_sha256.as_deref() else {
            return Err(ExportError::NoManifest { id });
        };
        manifest_build::read_checked(&self.dir(), &request, want)
    }

    /// The request `id` if it has a file to serve, else the refusal.
    fn with_file(&self, id: Uuid) -> Result<ExportRequest, ExportError> {
        let request = self.get(id)?;
        match request.status {
            Status::Requested => Err(ExportError::NotReady {
                id,
                processed_at: self.processed_at(request.created_at),
            }),
            Status::Failed => Err(ExportError::Failed {
                id,
                reason: request.failure_reason.unwrap_or_default(),
            }),
            Status::Expired => Err(ExportError::Expired {
                id,
                expires_at: request.expires_at.unwrap_or(request.created_at),
            }),
            Status::Success if !request.has_data => Err(ExportError::NoData { id }),
            Status::Success => Ok(request),
        }
    }

    /// The complete retained log of `org` as CSV into `out`, at once: for
    /// admins (`forbidden`) of organizations whose plan allows it
    /// (`plan_not_eligible`; by default the server plan).
    pub fn full<W: Write>(
        &self,
        org: &str,
        user: &str,
        role: Role,
        out: W,
    ) -> Result<FullExport, ExportError> {
        crate::org::validate_org_name(org)?;
        validate_user(user)?;
        if role != Role::Admin {
            return Err(ExportError::Forbidden {
                org: org.to_owned(),
                user: user.to_owned(),
            });
        }
        let plan = self.store.org_settings(org)?.plan;
        if !self.policy.plan(plan).full_export {
            return Err(ExportError::PlanNotEligible {
                org: org.to_owned(),
                plan,
                what: "does not include full audit log exports (server plan only)",
            });
        }
        let now = self.now();
        let query = Query::new(org, Timestamp::MIN, Timestamp::MAX).as_of(now);
        // The scan sees the log as it was before this hand-out is recorded.
        let scan = self.store.scan(&query)?;
        self.store
            .record_own_event(org, &own_events::full_export(org, user, now)?)?;
        let rows = builder::stream_all(scan, out, org, self.formatting())?;
        Ok(FullExport { rows })
    }
}

/// A `YYYY-MM-DD` date (an RFC 3339 instant is taken as its UTC date), any
/// year 0000-9999: a date far out is the request's range error
/// (`range_too_old`, `range_in_future`), not a malformed date.
pub fn parse_date(s: &str) -> Result<Date, String> {
    let (year, month, day) = Timestamp::parse_utc_date(s).map_err(|e| e.to_string())?;
    i32::try_from(year)
        .ok()
        .and_then(|y| Date::from_ymd_opt(y, month, day))
        .ok_or_else(|| format!("{s:?}: no such date"))
}

/// A requester name: 1 to [`MAX_USER_LEN`] bytes without control characters.
pub fn validate_user(user: &str) -> Result<(), crate::Error> {
    if user.is_empty() || user.len() > MAX_USER_LEN || user.chars().any(char::is_control) {
        return Err(crate::Error::InvalidArgument {
            what: "user",
            reason: format!("{user:?}: must be 1 to {MAX_USER_LEN} bytes without control characters"),
        });
    }
    Ok(())
}
