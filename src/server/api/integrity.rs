//! Tamper evidence over HTTP (shared/spec/integrity.md, "The server"):
//! `GET /checkpoint`, `GET /api/v1/orgs/{org}/checkpoint` and
//! `GET /api/v1/orgs/{org}/events/{id}/proof`. The
//! export manifest is with the other export endpoints.
//!
//! A store kept without the tamper-evidence tree (`Options::integrity`
//! off) has neither: both answer `404 not_found` saying so.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::events::{event_to_read, no_event};
use super::ErrorBody;
use crate::server::caller::{Caller, READ};
use crate::server::error::{ApiError, ApiResult};
use crate::server::state::AppState;

/// The refusal of a store that keeps no tree.
fn no_tree() -> ApiError {
    ApiError::not_found(
        "this store keeps no tamper-evidence tree: it signs no checkpoints and proves no events",
    )
}

/// The latest signed checkpoint.
///
/// The one the store signed last: the store integrates acknowledged
/// events and signs a new checkpoint about once a second while the log
/// grows, so this is at most about a second behind the last ingest (a
/// proof signs a newer one at once when its event needs it). Serving the
/// last signed note, rather than signing one per request, keeps an
/// unauthenticated caller from making the store sign and sync at will.
/// Only a store that has never signed one signs it here.
#[utoipa::path(
    get,
    path = "/checkpoint",
    tag = "integrity",
    responses(
        (status = 200, description = "The signed note of the latest checkpoint (C2SP tlog-checkpoint), exactly as signed", content_type = "text/plain", body = String),
        (status = 404, description = "The store keeps no tamper-evidence tree", body = ErrorBody),
    )
)]
pub async fn checkpoint(State(state): State<AppState>) -> ApiResult<Response> {
    Ok(note_response(state.blocking(latest_note).await?))
}

/// The latest signed checkpoint of the log that holds one organization's
/// events.
///
/// Without a cluster, the store's (as `/checkpoint`). On a cluster node,
/// the checkpoint of the organization's partition, whose store every node
/// applying the partition keeps with the same tree: the same body (origin,
/// size, root) from each of them at the same size, each signed with that
/// node's key (docs/cluster.md, "Tamper evidence in a cluster").
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/checkpoint",
    tag = "integrity",
    params(("org" = String, Path, description = "The organization: 1 to 256 bytes without control characters", pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,256}$", example = "org-00")),
    responses(
        (status = 200, description = "The signed note of the latest checkpoint (C2SP tlog-checkpoint) of the log holding the organization's events", content_type = "text/plain", body = String),
        (status = 400, description = "A path organization that cannot be one", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Another organization, or the ingest role", body = ErrorBody),
        (status = 404, description = "A store that keeps no tree", body = ErrorBody),
        (status = 503, description = "Unavailable: shutting down, or (a cluster node) not caught up with the organization's partition in time", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn org_checkpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
) -> ApiResult<Response> {
    caller.may(&org, READ)?;
    state.before_read(&org).await?;
    Ok(note_response(state.blocking_for(org, latest_note).await?))
}

/// The latest signed checkpoint's note (one signed now if there is none).
fn latest_note(store: &crate::store::Store) -> ApiResult<String> {
    if !store.keeps_tree() {
        return Err(no_tree());
    }
    let cp = match store.latest_checkpoint()? {
        Some(cp) => cp,
        None => store.checkpoint()?,
    };
    Ok(cp.note)
}

fn note_response(note: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        note,
    )
        .into_response()
}

/// The inclusion proof of one event, as `auditstore prove ID` prints it.
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/events/{id}/proof",
    tag = "integrity",
    params(("org" = String, Path, description = "The organization: 1 to 256 bytes without control characters", pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,256}$", example = "org-00"), ("id" = String, Path, description = "The event id", example = "00000000-0000-0000-0000-000000000001")),
    responses(
        (status = 200, description = "`{org, event, leaf_index, tree_size, leaf_hash, inclusion, checkpoint}`: the RFC 9162 inclusion proof of the event's leaf in the signed checkpoint it carries (base64 hashes)", body = Object),
        (status = 400, description = "A path organization that cannot be one", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Another organization, or the ingest role", body = ErrorBody),
        (status = 404, description = "No such event in this organization (or past retention), or a store that keeps no tree", body = ErrorBody),
        (status = 503, description = "Unavailable: shutting down, or (a cluster node) not caught up with the organization's partition in time", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn proof(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let uuid = event_to_read(&state, &caller, &org, &id).await?;
    let now = state.now();
    let proof = state
        .blocking_for(org.clone(), move |store| {
            if !store.keeps_tree() {
                return Err(no_tree());
            }
            // The organization first, as `get` checks it: nothing about
            // another organization's event, not even a new checkpoint.
            match store.get_with_org(uuid, now)? {
                Some((stored_org, _)) if stored_org == org => {}
                _ => return Err(no_event(&org, &id)),
            }
            // Signs a newer checkpoint first when the event is not in the
            // latest one, as `auditstore prove` does.
            match store.prove(uuid)? {
                Some(proof) if proof.org == org => Ok(proof),
                _ => Err(no_event(&org, &id)),
            }
        })
        .await?;
    let body =
        serde_json::to_string(&proof).map_err(|e| ApiError::internal(format!("the proof as JSON: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
