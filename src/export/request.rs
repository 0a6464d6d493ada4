//! Export requests: the model, its state machine, and the registry that
//! keeps them transactionally in the store's redb metadata database.
//!
//! ```text
//! requested --(processing tick)--> success (with data | without data) --(expires_at)--> expired
//!           \------------------> failed (with a reason)
//! ```
//!
//! Tables (registry format version [`REGISTRY_FORMAT_VERSION`], recorded in
//! `export_registry_meta`; every record also carries it as `"v"`):
//! - `export_requests`: id -> the request as JSON;
//! - `export_requests_by_org`: (org, created_at, id) -> () for listing and rate limits;
//! - `export_pending`: (created_at, id) -> () for the `requested` ones;
//! - `export_expiring`: (expires_at, id) -> () for the `success` ones.

use chrono::NaiveDate;
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::export::manifest_build::ManifestRef;

use crate::export::error::ExportError;
use crate::export::own_events;
use crate::export::policy::Date;
use crate::meta::Meta;
use crate::store::own_events::stage;
use crate::time::Timestamp;

/// Version of the registry's table layout and record format.
pub const REGISTRY_FORMAT_VERSION: u32 = 1;

const META: TableDefinition<&str, u32> = TableDefinition::new("export_registry_meta");
const REQUESTS: TableDefinition<&str, &str> = TableDefinition::new("export_requests");
const BY_ORG: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("export_requests_by_org");
const PENDING: TableDefinition<(i64, &str), ()> = TableDefinition::new("export_pending");
const EXPIRING: TableDefinition<(i64, &str), ()> = TableDefinition::new("export_expiring");

/// The requester's role in the organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            _ => Err(format!("unknown role {s:?} (expected admin or member)")),
        }
    }
}

/// A request's status as of an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for the next processing run.
    Requested,
    /// Built; downloadable until `expires_at` when it has data.
    Success,
    /// The build failed; the request does not count against the rate limit.
    Failed,
    /// Past `expires_at`: downloads are refused and the file is (or will be,
    /// at the next processing run) deleted.
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Success => "success",
            Status::Failed => "failed",
            Status::Expired => "expired",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One export request, with its status as of the instant it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    pub id: Uuid,
    pub org: String,
    pub requested_by: String,
    /// Requested start date (inclusive).
    pub from: Date,
    /// Requested end date (inclusive).
    pub to: Date,
    /// Padded window: events with `window_start <= occurred_at < window_end`
    /// (before retention clamping).
    pub window_start: Timestamp,
    pub window_end: Timestamp,
    pub created_at: Timestamp,
    pub status: Status,
    /// When the processing run handled it.
    pub completed_at: Option<Timestamp>,
    /// `completed_at` + the plan's download lifetime (successful requests).
    pub expires_at: Option<Timestamp>,
    /// A success whose window held at least one event (so it has a file).
    pub has_data: bool,
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
    /// CRC-32 of the file (a success with data, recorded since the field
    /// exists; older records have only `bytes`). Stored, never printed.
    pub crc32: Option<u32>,
    /// The signed manifest of the file (a success with data in a store
    /// that keeps the tamper-evidence tree): its hex SHA-256 and its
    /// sequence number among the organization's manifests. Stored, never
    /// printed; the next manifest links to it.
    pub manifest_sha256: Option<String>,
    pub manifest_seq: Option<u64>,
    pub failure_reason: Option<String>,
}

/// What a build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success {
        completed_at: Timestamp,
        expires_at: Timestamp,
        rows: u64,
        bytes: u64,
        crc32: u32,
        manifest: Option<ManifestRef>,
    },
    Failed {
        completed_at: Timestamp,
        reason: String,
    },
}

impl ExportRequest {
    pub(crate) fn new(
        id: Uuid,
        org: &str,
        requested_by: &str,
        from: Date,
        to: Date,
        window: (Timestamp, Timestamp),
        created_at: Timestamp,
    ) -> Self {
        ExportRequest {
            id,
            org: org.to_owned(),
            requested_by: requested_by.to_owned(),
            from,
            to,
            window_start: window.0,
            window_end: window.1,
            created_at,
            status: Status::Requested,
            completed_at: None,
            expires_at: None,
            has_data: false,
            rows: None,
            bytes: None,
            crc32: None,
            manifest_sha256: None,
            manifest_seq: None,
            failure_reason: None,
        }
    }

    /// The status as of `now`: a `success` at or past `expires_at` reads
    /// `expired` even before a processing run has deleted its file.
    pub fn status_at(&self, now: Timestamp) -> Status {
        match (self.status, self.expires_at) {
            (Status::Success, Some(exp)) if exp <= now => Status::Expired,
            (s, _) => s,
        }
    }

    /// This request with `status` evaluated as of `now`.
    pub fn as_of(mut self, now: Timestamp) -> Self {
        self.status = self.status_at(now);
        self
    }

    /// Is there a file to download (as of the status this value holds)?
    pub fn download_available(&self) -> bool {
        self.status == Status::Success && self.has_data
    }

    /// Is there a file to download as of `now` (a success with data, not
    /// yet past its expiry)? Its file must exist until then.
    pub fn downloadable_at(&self, now: Timestamp) -> bool {
        self.download_available() && self.status_at(now) == Status::Success
    }

    /// The state machine's only transitions out of `requested`.
    pub(crate) fn complete(&mut self, outcome: Outcome) -> Result<(), ExportError> {
        if self.status != Status::Requested {
            return Err(ExportError::Registry(format!(
                "request {} is {}, not requested: it cannot be completed again",
                self.id, self.status
            )));
        }
        match outcome {
            Outcome::Success {
                completed_at,
                expires_at,
                rows,
                bytes,
                crc32,
                manifest,
            } => {
                self.status = Status::Success;
                self.completed_at = Some(completed_at);
                self.expires_at = Some(expires_at);
                self.has_data = rows > 0;
                self.rows = Some(rows);
                self.bytes = Some(bytes);
                self.crc32 = (rows > 0).then_some(crc32);
                if let Some(m) = manifest {
                    self.manifest_sha256 = Some(m.sha256);
                    self.manifest_seq = Some(m.sequence);
                }
            }
            Outcome::Failed { completed_at, reason } => {
                self.status = Status::Failed;
                self.completed_at = Some(completed_at);
                self.failure_reason = Some(reason);
            }
        }
        Ok(())
    }

    /// `success` -> `expired`, once `expires_at` has come.
    pub(crate) fn expire(&mut self, now: Timestamp) -> Result<(), ExportError> {
        if self.status_at(now) != Status::Expired || self.status != Status::Success {
            return Err(ExportError::Registry(format!(
                "request {} is {} as of {now}: only an expired success can be marked expired",
                self.id,
                self.status_at(now)
            )));
        }
        self.status = Status::Expired;
        Ok(())
    }

    fn id_key(&self) -> String {
        self.id.hyphenated().to_string()
    }
}

/// The admin tool's JSON shape: `id, org, requested_by, from, to,
/// window_start, window_end, created_at, status, expires_at, has_data, rows,
/// bytes`, then `completed_at` and `failure_reason` (not `crc32`: it is
/// stored, not part of the contract).
impl Serialize for ExportRequest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            id: String,
            org: &'a str,
            requested_by: &'a str,
            from: String,
            to: String,
            window_start: Timestamp,
            window_end: Timestamp,
            created_at: Timestamp,
            status: Status,
            expires_at: Option<Timestamp>,
            has_data: bool,
            rows: Option<u64>,
            bytes: Option<u64>,
            completed_at: Option<Timestamp>,
            failure_reason: Option<&'a str>,
        }
        View {
            id: self.id_key(),
            org: &self.org,
            requested_by: &self.requested_by,
            from: self.from.to_string(),
            to: self.to.to_string(),
            window_start: self.window_start,
            window_end: self.window_end,
            created_at: self.created_at,
            status: self.status,
            expires_at: self.expires_at,
            has_data: self.has_data,
            rows: self.rows,
            bytes: self.bytes,
            completed_at: self.completed_at,
            failure_reason: self.failure_reason.as_deref(),
        }
        .serialize(s)
    }
}

/// How a request is stored (instants as nanoseconds, dates as `YYYY-MM-DD`).
/// `crc32` is written only for a success with data and may be absent
/// (records written before it existed: only the size is checked then).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    v: u32,
    id: String,
    org: String,
    requested_by: String,
    from: String,
    to: String,
    window_start: i64,
    window_end: i64,
    created_at: i64,
    status: Status,
    completed_at: Option<i64>,
    expires_at: Option<i64>,
    has_data: bool,
    rows: Option<u64>,
    bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crc32: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifest_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifest_seq: Option<u64>,
    failure_reason: Option<String>,
}

pub(crate) fn encode(r: &ExportRequest) -> Result<String, ExportError> {
    let rec = Record {
        v: REGISTRY_FORMAT_VERSION,
        id: r.id_key(),
        org: r.org.clone(),
        requested_by: r.requested_by.clone(),
        from: r.from.to_string(),
        to: r.to.to_string(),
        window_start: r.window_start.as_nanos(),
        window_end: r.window_end.as_nanos(),
        created_at: r.created_at.as_nanos(),
        status: r.status,
        completed_at: r.completed_at.map(Timestamp::as_nanos),
        expires_at: r.expires_at.map(Timestamp::as_nanos),
        has_data: r.has_data,
        rows: r.rows,
        bytes: r.bytes,
        crc32: r.crc32,
        manifest_sha256: r.manifest_sha256.clone(),
        manifest_seq: r.manifest_seq,
        failure_reason: r.failure_reason.clone(),
    };
    serde_json::to_string(&rec).map_err(|e| ExportError::Registry(format!("encoding request {}: {e}", r.id)))
}

pub(crate) fn decode(key: &str, text: &str) -> Result<ExportRequest, ExportError> {
    let bad = |why: String| ExportError::Registry(format!("stored request {key}: {why}"));
    let rec: Record = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    if rec.v != REGISTRY_FORMAT_VERSION {
        return Err(bad(format!(
            "unsupported record version {} (this build reads {REGISTRY_FORMAT_VERSION})",
            rec.v
        )));
    }
    let date =
        |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| bad(format!("date {s:?}: {e}")));
    let id = Uuid::parse_str(&rec.id).map_err(|e| bad(format!("id {:?}: {e}", rec.id)))?;
    Ok(ExportRequest {
        id,
        org: rec.org,
        requested_by: rec.requested_by,
        from: date(&rec.from)?,
        to: date(&rec.to)?,
        window_start: Timestamp::from_nanos(rec.window_start),
        window_end: Timestamp::from_nanos(rec.window_end),
        created_at: Timestamp::from_nanos(rec.created_at),
        status: rec.status,
        completed_at: rec.completed_at.map(Timestamp::from_nanos),
        expires_at: rec.expires_at.map(Timestamp::from_nanos),
        has_data: rec.has_data,
        rows: rec.rows,
        bytes: rec.bytes,
        crc32: rec.crc32,
        manifest_sha256: rec.manifest_sha256,
        manifest_seq: rec.manifest_seq,
        failure_reason: rec.failure_reason,
    })
}

fn unsupported_version(v: u32) -> ExportError {
    ExportError::Registry(format!(
        "unsupported registry format version {v} (this build reads {REGISTRY_FORMAT_VERSION})"
    ))
}

/// The request an index entry names (which must exist).
fn load_indexed(
    requests: &impl ReadableTable<&'static str, &'static str>,
    id: &str,
) -> Result<ExportRequest, ExportError> {
    match requests.get(id)? {
        Some(text) => decode(id, text.value()),
        None => Err(ExportError::Registry(format!(
            "index entry for missing request {id}"
        ))),
    }
}

/// The request registry over the store's metadata database.
pub(crate) struct Registry<'a> {
    meta: &'a Meta,
}

/// Open a table for reading; a table never written reads as empty (`None`).
macro_rules! read_table {
    ($tx:expr, $def:expr) => {
        match $tx.open_table($def) {
            Ok(t) => Some(t),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        }
    };
}

impl<'a> Registry<'a> {
    pub(crate) fn new(meta: &'a Meta) -> Self {
        Registry { meta }
    }

    /// Refuse a registry written by another format version.
    fn check_version(tx: &redb::ReadTransaction) -> Result<(), ExportError> {
        let Some(meta) = read_table!(tx, META) else {
            return Ok(());
        };
        let version = meta.get("format_version")?.map(|v| v.value());
        match version {
            Some(v) if v != REGISTRY_FORMAT_VERSION => Err(unsupported_version(v)),
            _ => Ok(()),
        }
    }

    /// Insert `request` if `admit` accepts the `created_at` of the
    /// organization's requests that count against the rate limit (all but
    /// `failed` ones, created after `since`), in one write transaction, so
    /// that two concurrent requests cannot both take the last slot.
    pub(crate) fn insert_if(
        &self,
        request: &ExportRequest,
        since: Timestamp,
        admit: impl FnOnce(&[Timestamp]) -> Result<(), ExportError>,
    ) -> Result<(), ExportError> {
        let event = own_events::requested(request)?;
        self.meta.write(|tx| {
            let mut meta = tx.open_table(META)?;
            let found = meta.get("format_version")?.map(|v| v.value());
            match found {
                None => {
                    meta.insert("format_version", REGISTRY_FORMAT_VERSION)?;
                }
                Some(v) if v != REGISTRY_FORMAT_VERSION => return Err(unsupported_version(v)),
                Some(_) => {}
            }
            let mut requests = tx.open_table(REQUESTS)?;
            let mut by_org = tx.open_table(BY_ORG)?;
            let mut counting = Vec::new();
            let lo = since.as_nanos().saturating_add(1);
            for item in by_org.range((request.org.as_str(), lo, "")..)? {
                let (k, _) = item?;
                let (org, created, id) = k.value();
                if org != request.org {
                    break;
                }
                if load_indexed(&requests, id)?.status != Status::Failed {
                    counting.push(Timestamp::from_nanos(created));
                }
            }
            admit(&counting)?;
            let key = request.id_key();
            requests.insert(key.as_str(), encode(request)?.as_str())?;
            by_org.insert(
                (request.org.as_str(), request.created_at.as_nanos(), key.as_str()),
                (),
            )?;
            let mut pending = tx.open_table(PENDING)?;
            pending.insert((request.created_at.as_nanos(), key.as_str()), ())?;
            stage(tx, &request.org, &event)?;
            Ok(())
        })
    }

    /// Store `requests` as they are (any status), with their index entries,
    /// in one transaction: how `repair` puts back requests rebuilt from the
    /// store's own events.
    pub(crate) fn restore(&self, requests: &[ExportRequest]) -> Result<(), ExportError> {
        self.meta.write(|tx| {
            let mut meta = tx.open_table(META)?;
            meta.insert("format_version", REGISTRY_FORMAT_VERSION)?;
            let mut stored = tx.open_table(REQUESTS)?;
            let mut by_org = tx.open_table(BY_ORG)?;
            let mut pending = tx.open_table(PENDING)?;
            let mut expiring = tx.open_table(EXPIRING)?;
            for request in requests {
                let key = request.id_key();
                stored.insert(key.as_str(), encode(request)?.as_str())?;
                by_org.insert(
                    (request.org.as_str(), request.created_at.as_nanos(), key.as_str()),
                    (),
                )?;
                if request.status == Status::Requested {
                    pending.insert((request.created_at.as_nanos(), key.as_str()), ())?;
                }
                if let (Status::Success, Some(exp)) = (request.status, request.expires_at) {
                    expiring.insert((exp.as_nanos(), key.as_str()), ())?;
                }
            }
            Ok(())
        })
    }

    /// The stored request (status as stored).
    pub(crate) fn get(&self, id: &Uuid) -> Result<Option<ExportRequest>, ExportError> {
        self.meta.read(|tx| {
            Self::check_version(tx)?;
            let Some(requests) = read_table!(tx, REQUESTS) else {
                return Ok(None);
            };
            let key = id.hyphenated().to_string();
            let found = requests.get(key.as_str())?;
            found.map(|v| decode(&key, v.value())).transpose()
        })
    }

    /// Every request of `org`, newest first (status as stored).
    pub(crate) fn list_org(&self, org: &str) -> Result<Vec<ExportRequest>, ExportError> {
        self.meta.read(|tx| {
            Self::check_version(tx)?;
            let (Some(requests), Some(by_org)) = (read_table!(tx, REQUESTS), read_table!(tx, BY_ORG)) else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for item in by_org.range((org, i64::MIN, "")..)? {
                let (k, _) = item?;
                let (o, _, id) = k.value();
                if o != org {
                    break;
                }
                out.push(load_indexed(&requests, id)?);
            }
            out.reverse();
            Ok(out)
        })
    }

    /// Every request (status as stored), in id order.
    pub(crate) fn all(&self) -> Result<Vec<ExportRequest>, ExportError> {
        self.meta.read(|tx| {
            Self::check_version(tx)?;
            let Some(requests) = read_table!(tx, REQUESTS) else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for item in requests.iter()? {
                let (k, v) = item?;
                out.push(decode(k.value(), v.value())?);
            }
            Ok(out)
        })
    }

    /// The `requested` ones created at or before `mark`, oldest first.
    pub(crate) fn pending_until(&self, mark: Timestamp) -> Result<Vec<ExportRequest>, ExportError> {
        self.indexed(PENDING, mark)
    }

    /// The `success` ones whose `expires_at` is at or before `now`.
    pub(crate) fn expiring_until(&self, now: Timestamp) -> Result<Vec<ExportRequest>, ExportError> {
        self.indexed(EXPIRING, now)
    }

    fn indexed(
        &self,
        def: TableDefinition<(i64, &str), ()>,
        until: Timestamp,
    ) -> Result<Vec<ExportRequest>, ExportError> {
        self.meta.read(|tx| {
            Self::check_version(tx)?;
            let (Some(requests), Some(index)) = (read_table!(tx, REQUESTS), read_table!(tx, def)) else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for item in index.iter()? {
                let (k, _) = item?;
                let (at, id) = k.value();
                if at > until.as_nanos() {
                    break;
                }
                out.push(load_indexed(&requests, id)?);
            }
            Ok(out)
        })
    }

    /// Store the transition of a request (re-read inside the transaction, so
    /// a request is completed or expired once), keeping the pending and
    /// expiring indexes in step. Returns the stored result.
    pub(crate) fn transition(
        &self,
        id: &Uuid,
        now: Timestamp,
        change: impl FnOnce(&mut ExportRequest) -> Result<(), ExportError>,
    ) -> Result<ExportRequest, ExportError> {
        let key = id.hyphenated().to_string();
        self.meta.write(|tx| {
            let mut requests = tx.open_table(REQUESTS)?;
            let current = match requests.get(key.as_str())? {
                Some(v) => decode(&key, v.value())?,
                None => return Err(ExportError::NotFound(key)),
            };
            let mut next = current.clone();
            change(&mut next)?;
            requests.insert(key.as_str(), encode(&next)?.as_str())?;
            let mut pending = tx.open_table(PENDING)?;
            let mut expiring = tx.open_table(EXPIRING)?;
            if current.status == Status::Requested && next.status != Status::Requested {
                pending.remove((current.created_at.as_nanos(), key.as_str()))?;
            }
            if let (Status::Success, Some(exp)) = (current.status, current.expires_at) {
                expiring.remove((exp.as_nanos(), key.as_str()))?;
            }
            if let (Status::Success, Some(exp)) = (next.status, next.expires_at) {
                expiring.insert((exp.as_nanos(), key.as_str()), ())?;
            }
            if let Some(event) = own_events::lifecycle(current.status, &next, now)? {
                stage(tx, &next.org, &event)?;
            }
            Ok(next)
        })
    }
}
