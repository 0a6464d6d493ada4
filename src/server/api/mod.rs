//! The JSON API under `/api/v1/` (http.md, "The API"), and `/checkpoint`
//! (integrity.md, "The server").

pub mod events;
pub mod exports;
pub mod integrity;
pub mod settings;

use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ApiResult};
use super::layers::PendingBody;
use super::state::AppState;

/// The routes of `/api/v1/`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/orgs/{org}/events",
            post(events::ingest).get(events::query),
        )
        .route("/api/v1/orgs/{org}/events/{id}", get(events::get))
        .route("/api/v1/orgs/{org}/events/{id}/proof", get(integrity::proof))
        .route("/checkpoint", get(integrity::checkpoint))
        .route("/api/v1/orgs/{org}/checkpoint", get(integrity::org_checkpoint))
        .route(
            "/api/v1/orgs/{org}/exports",
            post(exports::create).get(exports::list),
        )
        .route("/api/v1/orgs/{org}/exports/{id}", get(exports::get))
        .route("/api/v1/orgs/{org}/exports/{id}/download", get(exports::download))
        .route("/api/v1/orgs/{org}/exports/{id}/manifest", get(exports::manifest))
        .route("/api/v1/orgs/{org}/export/full", get(exports::full))
        .route(
            "/api/v1/orgs/{org}/settings",
            get(settings::get).put(settings::put),
        )
        .route("/api/v1/exports/process", post(exports::process))
}

/// The error object every refusal carries.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// `code`, `message`, and per code more fields (`next_allowed_at`, `id`,
/// `file`, `offset`, ...).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    code: String,
    message: String,
    next_allowed_at: Option<String>,
}

/// A page of events.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct EventPage {
    /// Events in the JSON shape of events.md, by `occurred_at` then `id`.
    events: Vec<serde_json::Value>,
    /// The next page's cursor; `null` on the page with the last match.
    next_cursor: Option<String>,
}

/// The query string's pairs; a repeated parameter is refused.
pub fn params(raw: Option<&str>) -> ApiResult<Vec<(String, String)>> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or_default())
        .map_err(|e| ApiError::bad_request(format!("the query string: {e}")))?;
    for (i, (k, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(seen, _)| seen == k) {
            return Err(ApiError::bad_request(format!(
                "query parameter `{k}` is given twice"
            )));
        }
    }
    Ok(pairs)
}

/// The request body, at most the configured limit (`413 too_large`
/// above it). Handlers read it after the caller's checks, so that `401`
/// and `403` come first.
pub async fn read_body(state: &AppState, body: &PendingBody) -> ApiResult<axum::body::Bytes> {
    use futures_util::StreamExt;
    let limit = state.config.body_limit;
    let Some(body) = body.take() else {
        return Ok(axum::body::Bytes::new());
    };
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.into())
}

/// A JSON object body of type `T`; anything else is `400`. An array is
/// refused before serde sees it: serde would read `[null, null]` as a
/// struct's fields in order.
pub fn json_body<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the body: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(format!("the body: {e}")))
}

/// An ingest body (`application/json`): an array of events, or one event.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum IngestBody {
    Many(Vec<serde_json::Map<String, serde_json::Value>>),
    One(serde_json::Map<String, serde_json::Value>),
}
