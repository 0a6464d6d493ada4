//! `POST|GET /api/v1/orgs/{org}/events`, `GET .../events/{id}`.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::{params, read_body};
use crate::event::Event;
use crate::scan::Query;
use crate::server::caller::{Caller, INGEST, READ};
use crate::server::cursor::Cursor;
use crate::server::error::{ApiError, ApiResult};
use crate::server::state::AppState;
use crate::time::Timestamp;

/// The ingest answer (http.md, "Ingest").
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct IngestReport {
    pub appended: u64,
    pub duplicates: u64,
    pub conflicts: u64,
    pub rejected: u64,
    pub errors: Vec<IngestError>,
}

/// One rejected or conflicting event of an ingest body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestError {
    /// The event's position in the body, from 0 (blank lines not counted).
    pub index: u64,
    /// `invalid_event` or `conflict`.
    pub code: &'static str,
    pub message: String,
}

/// The events of a body: each parsed, or why not.
fn parse_body(headers: &HeaderMap, body: &[u8]) -> ApiResult<Vec<Result<Event, String>>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if matches!(
        mime.as_str(),
        "application/x-ndjson" | "application/jsonl" | "application/json-lines"
    ) {
        return Ok(body
            .split(|&b| b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(|line| Event::from_json_bytes(line.trim_ascii()).map_err(|e| e.to_string()))
            .collect());
    }
    let text = body.trim_ascii();
    match text.first() {
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_slice(text)
                .map_err(|e| ApiError::bad_request(format!("the body is not a JSON array of events: {e}")))?;
            Ok(items
                .into_iter()
                .map(|raw| Event::from_json_bytes(raw.get().as_bytes()).map_err(|e| e.to_string()))
                .collect())
        }
        Some(b'{') => {
            // One event; the body must be one JSON value all the same.
            let raw: &RawValue = serde_json::from_slice(text)
                .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
            Ok(vec![
                Event::from_json_bytes(raw.get().as_bytes()).map_err(|e| e.to_string())
            ])
        }
        _ => Err(ApiError::bad_request(
            "the body is not JSON: send a JSON array of events, one event, or JSON Lines \
             (Content-Type: application/x-ndjson)",
        )),
    }
}

/// The body's events: the report of those rejected, and the good ones
/// with their index in the body.
fn split_body(headers: &HeaderMap, body: &[u8]) -> ApiResult<(IngestReport, Vec<(u64, Event)>)> {
    let parsed = parse_body(headers, body)?;
    let mut report = IngestReport::default();
    let mut good = Vec::with_capacity(parsed.len());
    for (index, item) in parsed.into_iter().enumerate() {
        match item {
            Ok(event) => good.push((index as u64, event)),
            Err(message) => {
                report.rejected += 1;
                report.errors.push(IngestError {
                    index: index as u64,
                    code: "invalid_event",
                    message,
                });
            }
        }
    }
    Ok((report, good))
}

impl IngestReport {
    /// Count the stored batch's outcomes for the good events.
    fn add(&mut self, good: &[(u64, Event)], appended: &crate::BatchReport) {
        self.add_ids(good.iter().map(|(i, e)| (*i, e.id())), appended)
    }

    /// Count the outcomes of the events with these (index, id), in order.
    fn add_ids(&mut self, good: impl Iterator<Item = (u64, Uuid)>, appended: &crate::BatchReport) {
        self.appended = appended.appended;
        self.duplicates = appended.duplicates;
        self.conflicts = appended.conflicts;
        for ((index, id), outcome) in good.zip(&appended.outcomes) {
            if *outcome == crate::AppendOutcome::Conflict {
                self.errors.push(IngestError {
                    index,
                    code: "conflict",
                    message: format!(
                        "an event with id {id} is already stored with different content; the first write wins"
                    ),
                });
            }
        }
        self.errors.sort_by_key(|e| e.index);
    }
}

/// Append events.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/events",
    tag = "events",
    params(("org" = String, Path, description = "The organization: 1 to 256 bytes without control characters", pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,256}$", example = "org-00")),
    request_body(
        content(
            (super::IngestBody = "application/json"),
            (String = "application/x-ndjson")
        ),
        description = "A JSON array of events, one event, or JSON Lines"
    ),
    responses(
        (status = 200, description = "What was stored; every appended event is durable", body = IngestReport),
        (status = 400, description = "Not JSON", body = super::ErrorBody),
        (status = 401, description = "No valid credential", body = super::ErrorBody),
        (status = 403, description = "Another organization, or a role that may not append", body = super::ErrorBody),
        (status = 413, description = "Body over the limit", body = super::ErrorBody),
        (status = 503, description = "Unavailable: shutting down, or (a cluster node) not every batch was acknowledged by the cluster's streams; a retry of the same body stores each event once", body = super::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn ingest(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    headers: HeaderMap,
    axum::Extension(body): axum::Extension<crate::server::layers::PendingBody>,
) -> ApiResult<axum::Json<IngestReport>> {
    caller.may(&org, INGEST)?;
    let body = read_body(&state, &body).await?;
    let report = match state.replication.clone() {
        None => {
            state
                .blocking_for(org.clone(), move |store| {
                    let (mut report, good) = split_body(&headers, &body)?;
                    let appended = store.append_batch(good.iter().map(|(_, e)| (org.as_str(), e)))?;
                    report.add(&good, &appended);
                    Ok(report)
                })
                .await?
        }
        Some(replication) => {
            let (mut report, good) = state.blocking(move |_| split_body(&headers, &body)).await?;
            let (indexes, events): (Vec<u64>, Vec<Event>) = good.into_iter().unzip();
            let ids: Vec<Uuid> = events.iter().map(Event::id).collect();
            let appended = replication.ingest(org, events).await?;
            report.add_ids(indexes.iter().copied().zip(ids), &appended);
            report
        }
    };
    metrics::counter!("auditstore_ingest_events_total", "outcome" => "appended").increment(report.appended);
    metrics::counter!("auditstore_ingest_events_total", "outcome" => "duplicate")
        .increment(report.duplicates);
    metrics::counter!("auditstore_ingest_events_total", "outcome" => "conflict").increment(report.conflicts);
    metrics::counter!("auditstore_ingest_events_total", "outcome" => "rejected").increment(report.rejected);
    Ok(axum::Json(report))
}

/// The query parameters of a range query.
#[derive(Debug, Default)]
struct RangeParams {
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    action: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    limit: usize,
    cursor: Option<Cursor>,
}

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

fn parse_range(pairs: &[(String, String)]) -> ApiResult<(Timestamp, Timestamp, RangeParams)> {
    let mut p = RangeParams {
        limit: DEFAULT_LIMIT,
        ..RangeParams::default()
    };
    let time = |k: &str, v: &str| {
        Timestamp::parse_instant_or_date_saturating(v)
            .map_err(|e| ApiError::bad_request(format!("query parameter `{k}`: {e}")))
    };
    for (k, v) in pairs {
        match k.as_str() {
            "from" => p.from = Some(time(k, v)?),
            "to" => p.to = Some(time(k, v)?),
            "action" => p.action = Some(v.clone()),
            "actor" => p.actor = Some(v.clone()),
            "target" => p.target = Some(v.clone()),
            "limit" => {
                p.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "query parameter `limit`: {v:?} is not a number from 1 to {MAX_LIMIT}"
                        ))
                    })?
            }
            "cursor" => {
                p.cursor = Some(Cursor::decode(v).ok_or_else(|| {
                    ApiError::bad_request("query parameter `cursor`: not a cursor of this API")
                })?)
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`"
                )))
            }
        }
    }
    let from = p
        .from
        .ok_or_else(|| ApiError::bad_request("query parameter `from` is required"))?;
    let to =
        p.to.ok_or_else(|| ApiError::bad_request("query parameter `to` is required"))?;
    if from > to {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_range",
            format!("`from` {from} is after `to` {to}"),
        ));
    }
    Ok((from, to, p))
}

/// A page of events: (the events' JSON texts, the next page's cursor).
fn page(
    store: &crate::Store,
    org: &str,
    from: Timestamp,
    to: Timestamp,
    p: RangeParams,
    now: Timestamp,
) -> ApiResult<(Vec<String>, Option<Cursor>)> {
    let start = match p.cursor {
        Some(c) if c.occurred_at > from => c.occurred_at,
        _ => from,
    };
    let mut q = Query::new(org, start, to).as_of(now);
    q.action = p.action;
    q.actor_id = p.actor;
    q.target_id = p.target;
    let mut events = Vec::with_capacity(p.limit.min(MAX_LIMIT));
    let mut last = None;
    for event in store.scan(&q)? {
        let event = event?;
        let at = Cursor {
            occurred_at: event.occurred_at(),
            id: event.id(),
        };
        if p.cursor.is_some_and(|c| at <= c) {
            continue;
        }
        if events.len() == p.limit {
            return Ok((events, last));
        }
        events.push(event.to_json());
        last = Some(at);
    }
    Ok((events, None))
}

/// The next page's URL: this request's, with the cursor replaced.
fn next_link(
    headers: &HeaderMap,
    path: &str,
    pairs: &[(String, String)],
    cursor: &Cursor,
) -> Option<HeaderValue> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let mut next: Vec<(&str, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "cursor")
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    next.push(("cursor", cursor.encode()));
    let query = serde_urlencoded::to_string(&next).ok()?;
    HeaderValue::from_str(&format!("<http://{host}{path}?{query}>; rel=\"next\"")).ok()
}

/// A page of the organization's events in `[from, to)`.
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/events",
    tag = "events",
    params(
        ("org" = String, Path, description = "The organization: 1 to 256 bytes without control characters", pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,256}$", example = "org-00"),
        ("from" = String, Query, description = "Inclusive start: RFC 3339 or YYYY-MM-DD", example = "2026-07-01"),
        ("to" = String, Query, description = "Exclusive end: RFC 3339 or YYYY-MM-DD", example = "2026-08-01"),
        ("action" = Option<String>, Query, description = "Exact action, or a prefix ending in `*`"),
        ("actor" = Option<String>, Query, description = "Actor id"),
        ("target" = Option<String>, Query, description = "Target id"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Events per page (default 100)"),
        ("cursor" = Option<String>, Query, pattern = "^c1[0-9a-f]{56}$", description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page; `Link: <URL>; rel=\"next\"` while more match", body = super::EventPage),
        (status = 400, description = "A bad or missing parameter", body = super::ErrorBody),
        (status = 401, description = "No valid credential", body = super::ErrorBody),
        (status = 403, description = "Another organization, or the ingest role", body = super::ErrorBody),
        (status = 422, description = "`from` after `to`", body = super::ErrorBody),
        (status = 503, description = "Unavailable: shutting down, or (a cluster node) not caught up with the organization's partition in time", body = super::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn query(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    caller.may(&org, READ)?;
    let pairs = params(raw.as_deref())?;
    let (from, to, p) = parse_range(&pairs)?;
    state.before_read(&org).await?;
    let now = state.now();
    let org2 = org.clone();
    let (events, next) = state
        .blocking_for(org2.clone(), move |store| page(store, &org2, from, to, p, now))
        .await?;
    let mut body = String::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 64);
    body.push_str("{\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(e);
    }
    body.push_str("],\"next_cursor\":");
    match &next {
        Some(c) => {
            body.push('"');
            body.push_str(&c.encode());
            body.push('"');
        }
        None => body.push_str("null"),
    }
    body.push('}');
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(link) = next
        .as_ref()
        .and_then(|c| next_link(&headers, uri.path(), &pairs, c))
    {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

/// One event.
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/events/{id}",
    tag = "events",
    params(("org" = String, Path, description = "The organization: 1 to 256 bytes without control characters", pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,256}$", example = "org-00"), ("id" = String, Path, description = "The event id", example = "00000000-0000-0000-0000-000000000001")),
    responses(
        (status = 200, description = "The event", body = Object),
        (status = 400, description = "A path organization that cannot be one", body = super::ErrorBody),
        (status = 401, description = "No valid credential", body = super::ErrorBody),
        (status = 403, description = "Another organization, or the ingest role", body = super::ErrorBody),
        (status = 404, description = "No such event in this organization (or past retention)", body = super::ErrorBody),
        (status = 503, description = "Unavailable: shutting down, or (a cluster node) not caught up with the organization's partition in time", body = super::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let uuid = event_to_read(&state, &caller, &org, &id).await?;
    let now = state.now();
    let found = state
        .blocking_for(org.clone(), move |store| Ok(store.get_with_org(uuid, now)?))
        .await?;
    match found {
        Some((stored_org, event)) if stored_org == org => {
            Ok(([(header::CONTENT_TYPE, "application/json")], event.to_json()).into_response())
        }
        _ => Err(no_event(&org, &id)),
    }
}

/// The id of the event `id` of `org` that `caller` asks to read (its
/// content or its proof): the caller's right first, then the id (a
/// malformed one is not found, as an unknown one is), then, on a cluster
/// node, the wait until the organization's partition is caught up.
pub(super) async fn event_to_read(state: &AppState, caller: &Caller, org: &str, id: &str) -> ApiResult<Uuid> {
    caller.may(org, READ)?;
    let uuid = Uuid::parse_str(id).map_err(|_| no_event(org, id))?;
    state.before_read(org).await?;
    Ok(uuid)
}

/// No event `id` in `org` (also one of another organization, or past
/// retention: nothing says which).
pub(super) fn no_event(org: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("no event {id:?} in organization {org:?}"))
}
