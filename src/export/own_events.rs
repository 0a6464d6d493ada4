//! The export service's own audit events (events.md, "The store's own
//! actions"): `audit_log.requested`, `audit_log.processed`,
//! `audit_log.expired` and `audit_log.download_url.generated`, in the
//! requesting organization's log. Their ids are derived from the action,
//! so a retry never records one twice; `repair` rebuilds the request
//! registry from the `record` each request event carries.

use serde_json::{json, Value};

use crate::event::Event;
use crate::export::error::ExportError;
use crate::export::request::{self, ExportRequest, Status};
use crate::store::own_events::{own_event, own_event_id, Actor};
use crate::time::Timestamp;

pub const REQUESTED: &str = "audit_log.requested";
pub const PROCESSED: &str = "audit_log.processed";
pub const EXPIRED: &str = "audit_log.expired";
pub const DOWNLOAD_URL_GENERATED: &str = "audit_log.download_url.generated";
/// `target.type` of an export request, and of a full export.
pub const REQUEST_TARGET: &str = "audit_log_request";
pub const FULL_TARGET: &str = "audit_log_full";

/// What a request event says about the request, `record` being the
/// registry's stored form (what `repair` restores).
fn details(r: &ExportRequest) -> Result<Value, ExportError> {
    let record: Value = serde_json::from_str(&request::encode(r)?)
        .map_err(|e| ExportError::Registry(format!("request {}: {e}", r.id)))?;
    Ok(json!({
        "from": r.from.to_string(),
        "to": r.to.to_string(),
        "window_start": r.window_start.to_rfc3339(),
        "window_end": r.window_end.to_rfc3339(),
        "status": r.status.as_str(),
        "rows": r.rows,
        "bytes": r.bytes,
        "record": exact_numbers(record),
    }))
}

/// Integers a double cannot hold (the nanosecond timestamps of `record`)
/// as decimal strings: appends refuse numbers RFC 8785 would round
/// (docs/format.md, "Tree tiles"); `repair` reads them back.
fn exact_numbers(v: Value) -> Value {
    const EXACT: u64 = 1 << 53;
    match v {
        Value::Number(n)
            if n.as_i64().is_some_and(|i| i.unsigned_abs() > EXACT)
                || n.as_u64().is_some_and(|u| u > EXACT) =>
        {
            Value::String(n.to_string())
        }
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, exact_numbers(v))).collect()),
        Value::Array(items) => Value::Array(items.into_iter().map(exact_numbers).collect()),
        other => other,
    }
}

fn request_event(
    r: &ExportRequest,
    action: &str,
    at: Timestamp,
    actor: Actor<'_>,
) -> Result<Event, ExportError> {
    let key = r.id.hyphenated().to_string();
    let id = own_event_id(&[action, &key]);
    Ok(own_event(
        &r.org,
        action,
        id,
        at,
        actor,
        (&key, REQUEST_TARGET),
        details(r)?,
    )?)
}

/// `audit_log.requested`, by the requester, when the request is accepted.
pub(crate) fn requested(r: &ExportRequest) -> Result<Event, ExportError> {
    request_event(r, REQUESTED, r.created_at, Actor::user(&r.requested_by))
}

/// The lifecycle event of a transition from `before` to `after`, if any:
/// `audit_log.processed` (success or failure) or `audit_log.expired`.
pub(crate) fn lifecycle(
    before: Status,
    after: &ExportRequest,
    now: Timestamp,
) -> Result<Option<Event>, ExportError> {
    if before == after.status {
        return Ok(None);
    }
    let (action, at) = match after.status {
        Status::Success | Status::Failed => (PROCESSED, after.completed_at.unwrap_or(now)),
        Status::Expired => (EXPIRED, now),
        Status::Requested => return Ok(None),
    };
    request_event(after, action, at, Actor::SYSTEM).map(Some)
}

/// `audit_log.download_url.generated`: `user` was handed the file of `r`
/// at `now`.
pub(crate) fn downloaded(r: &ExportRequest, user: &str, now: Timestamp) -> Result<Event, ExportError> {
    let key = r.id.hyphenated().to_string();
    let nanos = now.as_nanos().to_string();
    let id = own_event_id(&[DOWNLOAD_URL_GENERATED, &key, user, &nanos]);
    let payload =
        json!({"rows": r.rows, "bytes": r.bytes, "from": r.from.to_string(), "to": r.to.to_string()});
    Ok(own_event(
        &r.org,
        DOWNLOAD_URL_GENERATED,
        id,
        now,
        Actor::user(user),
        (&key, REQUEST_TARGET),
        payload,
    )?)
}

/// `audit_log.download_url.generated` for a full export of `org`.
pub(crate) fn full_export(org: &str, user: &str, now: Timestamp) -> Result<Event, ExportError> {
    let nanos = now.as_nanos().to_string();
    let id = own_event_id(&[DOWNLOAD_URL_GENERATED, FULL_TARGET, org, user, &nanos]);
    Ok(own_event(
        org,
        DOWNLOAD_URL_GENERATED,
        id,
        now,
        Actor::user(user),
        (org, FULL_TARGET),
        json!({"full": true}),
    )?)
}
