//! Export requests, downloads, the full export and processing runs.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::{json_body, read_body, ErrorBody};
use crate::export::{parse_date, ExportError, ExportRequest, Exports};
use crate::server::caller::{Caller, ADMIN, OPERATOR};
use crate::server::error::{ApiError, ApiResult};
use crate::server::replication::{Command, Outcome};
use crate::server::state::AppState;
use crate::server::stream;

/// `POST .../exports` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewExport {
    /// First date, `YYYY-MM-DD` (UTC).
    #[schema(example = "2026-07-01", format = Date)]
    pub from: String,
    /// Last date, inclusive, `YYYY-MM-DD` (UTC).
    #[schema(example = "2026-07-05", format = Date)]
    pub to: String,
}

/// An export request (cli.md, `export request`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ExportRequestBody {
    id: String,
    org: String,
    requested_by: String,
    from: String,
    to: String,
    window_start: String,
    window_end: String,
    created_at: String,
    /// `requested`, `success`, `failed` or `expired`.
    status: String,
    expires_at: Option<String>,
    has_data: bool,
    rows: Option<u64>,
    bytes: Option<u64>,
}

/// `POST /api/v1/exports/process` answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ProcessAnswer {
    processed: Vec<String>,
    expired: Vec<String>,
}

fn exports(store: &crate::Store) -> ApiResult<Exports<'_>> {
    Ok(Exports::new(store)?)
}

/// The request `id` of `org`: another organization's is `404` like one
/// that does not exist.
fn own_request(exports: &Exports<'_>, org: &str, id: &str) -> ApiResult<ExportRequest> {
    let not_found = || ApiError::not_found(format!("no export request {id:?} in organization {org:?}"));
    let uuid = Uuid::parse_str(id).map_err(|_| not_found())?;
    match exports.get(uuid) {
        Ok(r) if r.org == org => Ok(r),
        Ok(_) | Err(ExportError::NotFound(_)) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

/// Request an export of a range of dates.
#[utoipa::path(
    post, path = "/api/v1/orgs/{org}/exports", tag = "exports",
    params(("org" = String, Path, description = "The organization: 1 to 256 bytes without control characters", pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,256}$", example = "org-00")),
    request_body = NewExport,
    responses(
        (status = 201, description = "The request", body = ExportRequestBody),
        (status = 400, description = "A malformed body or date", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not an admin of this organization, or a plan without exports", body = ErrorBody),
        (status = 413, description = "Body over the limit (the limit is in the message)", body = ErrorBody),
        (status = 422, description = "A range outside the rules", body = ErrorBody),
        (status = 429, description = "The plan's limit is reached", body = ErrorBody),
        (status = 503, description = "Unavailable: shutting down, or (a cluster node) the change was not acknowledged by the cluster's streams, or not applied by this node in time", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    axum::Extension(body): axum::Extension<crate::server::layers::PendingBody>,
) -> ApiResult<Response> {
    caller.may(&org, ADMIN)?;
    let body = read_body(&state, &body).await?;
    let new: NewExport = json_body(&body)?;
    let date = |k: &str, v: &str| parse_date(v).map_err(|e| ApiError::bad_request(format!("`{k}`: {e}")));
    let (from, to) = (date("from", &new.from)?, date("to", &new.to)?);
    let now = state.now();
    let role = caller.export_role();
    let command = Command::RequestExport {
        org: org.clone(),
        requested_by: caller.name.clone(),
        role,
        from,
        to,
    };
    if let Some(replicated) = state.replication.as_ref().and_then(|r| r.command(command)) {
        return match replicated.await.map_err(|e| e.retry_after_from(now))? {
            Outcome::Export(request) => Ok((StatusCode::CREATED, axum::Json(request)).into_response()),
            other => Err(ApiError::internal(format!(
                "an export request answered {other:?}"
            ))),
        };
    }
    let request = state
        .blocking_for(org.clone(), move |store| {
            Ok(exports(store)?.request(&org, &caller.name, role, from, to)?)
        })
        .await
        .map_err(|e| e.retry_after_from(now))?;
    Ok((StatusCode::CREATED, axum::Json(request)).into_response())
}

/// The organization's requests, newest first.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/exports", tag = "exports",
    params(("org" = String, Path, description = "The organization: 1 to 256 bytes without control characters", pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,256}$", example = "org-00")),
    responses(
        (status = 200, description = "The requests, newest first", body = Vec<ExportRequestBody>),
        (status = 400, description = "A path organization that cannot be one", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not an admin of this organization", body = ErrorBody),
        (status = 503, description = "Unavailable: shutting down, or (a cluster node) not caught up with the organization's partition in time", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
) -> ApiResult<Response> {
    caller.may(&org, ADMIN)?;
    state.before_read(&org).await?;
    let list = state
        .blocking_for(org.clone(), move |store| Ok(exports(store)?.list(&org)?))
        .await?;
    Ok(axum::Json(list).into_response())
}

/// One request.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/exports/{id}", tag = "exports",
    params(("org" = String, Path, description = "The organization: 1 to 256 bytes without control characters", pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,256}$", example = "org-00"), ("id" = String, Path, description = "The request id")),
    responses(
        (status = 200, description = "The request", body = ExportRequestBody),
        (status = 400, description = "A path organization that cannot be one", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not an admin of this organization", body = ErrorBody),
        (status = 404, description = "No such request in this organization", body = ErrorBody),
        (status = 503, description = "Unavailable: shutting down, or (a cluster node) not caught up with the organization's partition in time", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.may(&org, ADMIN)?;
    state.before_read(&org).await?;
    let request = state
        .blocking_for(org.clone(), move |store| own_request(&exports(store)?, &org, &id))
        .await?;
    Ok(axum::Json(request).into_response())
}

/// The name a request's file is downloaded as, with extension `ext`: its
/// file and its manifest share `audit-log-<org>-<from>-<to>`.
fn download_name(request: &ExportRequest, ext: &str) -> String {
    format!("audit-log-{}-{}-{}.{ext}", request.org, request.from, request.to)
}

/// `Content-Disposition` of a file named `name`: an ASCII `filename` (any
/// other byte as `_`) and the exact name in `filename*` (RFC 6266), so that
/// an organization's name never makes an invalid header (it made a `500`).
fn attachment(name: &str) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-._".contains(&b);
    let ascii: String = name
        .bytes()
        .map(|b| if plain(b) { b as char } else { '_' })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if plain(b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// The CSV of a finished request.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/exports/{id}/download", tag = "exports",
    params(("org" = String, Path, description = "The organization: 1 to 256 bytes without control characters", pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,256}$", example = "org-00"), ("id" = String, Path, description = "The request id")),
    responses(
        (status = 200, description = "The CSV file", content_type = "text/csv", body = String),
        (status = 400, description = "A path organization that cannot be one", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not an admin of this organization", body = ErrorBody),
        (status = 404, description = "No such request, or it found no data", body = ErrorBody),
        (status = 409, description = "Not processed yet, or failed", body = ErrorBody),
        (status = 410, description = "The download expired", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.may(&org, ADMIN)?;
    let (request, file) = state
        .blocking_for(org.clone(), move |store| {
            let exports = exports(store)?;
            let request = own_request(&exports, &org, &id)?;
            let download = exports.download_by(request.id, &caller.name)?;
            Ok((download.request().clone(), download.into_file()))
        })
        .await?;
    let len = file.metadata().map(|m| m.len()).ok();
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file)));
    let name = download_name(&request, "csv");
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, attachment(&name)),
        ],
        body,
    )
        .into_response();
    if let Some(len) = len {
        response.headers_mut().insert(header::CONTENT_LENGTH, len.into());
    }
    Ok(response)
}

/// The signed manifest of a finished request's file, as stored.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/exports/{id}/manifest", tag = "exports",
    params(("org" = String, Path, description = "The organization: 1 to 256 bytes without control characters", pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,256}$", example = "org-00"), ("id" = String, Path, description = "The request id")),
    responses(
        (status = 200, description = "The manifest's JSON bytes exactly as stored (docs/exports.md, \"Manifests\"); `auditstore export verify` checks the CSV against it", content_type = "application/json", body = Object),
        (status = 400, description = "A path organization that cannot be one", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not an admin of this organization", body = ErrorBody),
        (status = 404, description = "No such request, it found no data, or its file has no manifest", body = ErrorBody),
        (status = 409, description = "Not processed yet, or failed", body = ErrorBody),
        (status = 410, description = "The download expired", body = ErrorBody),
        (status = 500, description = "The stored manifest is not the one written (`corrupt`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn manifest(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.may(&org, ADMIN)?;
    let (request, bytes) = state
        .blocking_for(org.clone(), move |store| {
            let exports = exports(store)?;
            let request = own_request(&exports, &org, &id)?;
            let bytes = exports.manifest(request.id)?;
            Ok((request, bytes))
        })
        .await?;
    let name = download_name(&request, "manifest.json");
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, attachment(&name)),
        ],
        bytes,
    )
        .into_response())
}

/// Server plan only: the whole retained log as CSV, streamed.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/export/full", tag = "exports",
    params(("org" = String, Path, description = "The organization: 1 to 256 bytes without control characters", pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,256}$", example = "org-00")),
    responses(
        (status = 200, description = "The CSV of the whole retained log", content_type = "text/csv", body = String),
        (status = 400, description = "A path organization that cannot be one", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not an admin, or not the server plan", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn full(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
) -> ApiResult<Response> {
    caller.may(&org, ADMIN)?;
    let (writer, mut rx) = stream::channel();
    let role = caller.export_role();
    let org2 = org.clone();
    let state2 = state.clone();
    let task = async move {
        state2
            .blocking_for(org2.clone(), move |store| {
                let exports = exports(store)?;
                let mut writer = writer;
                match exports.full(&org2, &caller.name, role, &mut writer) {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        let err = ApiError::from(e);
                        writer.fail(err.message.clone());
                        Err(err)
                    }
                }
            })
            .await
    };
    let task = tokio::spawn(task);
    match rx.recv().await {
        Some(Ok(first)) => {
            let name = format!("audit-log-{org}-full.csv");
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (header::CONTENT_DISPOSITION, attachment(&name)),
                ],
                stream::body(first, rx),
            )
                .into_response())
        }
        _ => match task.await {
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => Err(ApiError::internal("the full export wrote nothing")),
            Err(e) => Err(ApiError::internal(format!("the full export task failed: {e}"))),
        },
    }
}

/// One processing run now, as `export process`.
#[utoipa::path(
    post, path = "/api/v1/exports/process", tag = "exports",
    responses(
        (status = 200, description = "The requests processed and expired", body = ProcessAnswer),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 503, description = "Unavailable: shutting down, or (a cluster node) a partition's processing was not acknowledged by the cluster's streams, or not applied by this node in time", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn process(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.may_globally(OPERATOR)?;
    let ids = |list: &[ExportRequest]| list.iter().map(|r| r.id.to_string()).collect();
    if let Some(replicated) = state
        .replication
        .as_ref()
        .and_then(|r| r.command(Command::Process))
    {
        return match replicated.await? {
            Outcome::Processed { processed, expired } => Ok(axum::Json(ProcessAnswer {
                processed: ids(&processed),
                expired: ids(&expired),
            })
            .into_response()),
            other => Err(ApiError::internal(format!("a processing run answered {other:?}"))),
        };
    }
    let report = state.blocking(|store| Ok(exports(store)?.process()?)).await?;
    Ok(axum::Json(ProcessAnswer {
        processed: ids(&report.processed),
        expired: ids(&report.expired),
    })
    .into_response())
}
