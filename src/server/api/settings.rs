//! `GET|PUT /api/v1/orgs/{org}/settings`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{json_body, read_body, ErrorBody};
use crate::org::{OrgSettings, Plan};
use crate::server::caller::{Caller, ADMIN, OPERATOR};
use crate::server::error::{ApiError, ApiResult};
use crate::server::replication::{Command, Outcome};
use crate::server::state::AppState;

/// An organization's settings.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SettingsBody {
    org: String,
    /// `server`, `scale`, `performance` or `free`.
    plan: String,
    retention_days: u32,
}

impl From<OrgSettings> for SettingsBody {
    fn from(s: OrgSettings) -> Self {
        SettingsBody {
            org: s.org,
            plan: s.plan.as_str().to_owned(),
            retention_days: s.retention_days,
        }
    }
}

/// `PUT .../settings` body: what to change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    /// `server`, `scale`, `performance` or `free`.
    #[schema(pattern = "^(server|scale|performance|free)$")]
    pub plan: Option<String>,
    /// 1 to 3650.
    #[schema(minimum = 1, maximum = 3650)]
    pub retention_days: Option<u32>,
}

/// The organization's settings.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}/settings", tag = "settings",
    params(("org" = String, Path, description = "The organization: 1 to 256 bytes without control characters", pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,256}$", example = "org-00")),
    responses(
        (status = 200, description = "The settings", body = SettingsBody),
        (status = 400, description = "A path organization that cannot be one", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not an admin of this organization", body = ErrorBody),
        (status = 503, description = "Unavailable: shutting down, or (a cluster node) not caught up with the organization's partition in time", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
) -> ApiResult<Response> {
    caller.may(&org, ADMIN)?;
    state.before_read(&org).await?;
    let settings = state
        .blocking_for(org.clone(), move |store| Ok(store.org_settings(&org)?))
        .await?;
    Ok(axum::Json(SettingsBody::from(settings)).into_response())
}

/// Change an organization's settings (operators).
#[utoipa::path(
    put, path = "/api/v1/orgs/{org}/settings", tag = "settings",
    params(("org" = String, Path, description = "The organization: 1 to 256 bytes without control characters", pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,256}$", example = "org-00")),
    request_body = SettingsChange,
    responses(
        (status = 200, description = "The settings now", body = SettingsBody),
        (status = 400, description = "An unknown field or a bad value", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 413, description = "Body over the limit (the limit is in the message)", body = ErrorBody),
        (status = 503, description = "Unavailable: shutting down, or (a cluster node) the change was not acknowledged by the cluster's streams, or not applied by this node in time", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    axum::Extension(body): axum::Extension<crate::server::layers::PendingBody>,
) -> ApiResult<Response> {
    caller.may(&org, OPERATOR)?;
    let body = read_body(&state, &body).await?;
    let change: SettingsChange = json_body(&body)?;
    let plan = change
        .plan
        .as_deref()
        .map(str::parse::<Plan>)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("`plan`: {e}")))?;
    if let Some(days) = change.retention_days {
        if !(1..=3650).contains(&days) {
            return Err(ApiError::bad_request(format!(
                "`retention_days`: {days} is outside 1..=3650"
            )));
        }
    }
    let command = Command::SetOrg {
        org: org.clone(),
        by: caller.name.clone(),
        plan,
        retention_days: change.retention_days,
    };
    if let Some(replicated) = state.replication.as_ref().and_then(|r| r.command(command)) {
        return match replicated.await? {
            Outcome::Settings(settings) => Ok(axum::Json(SettingsBody::from(settings)).into_response()),
            other => Err(ApiError::internal(format!(
                "a settings change answered {other:?}"
            ))),
        };
    }
    let settings = state
        .blocking_for(org.clone(), move |store| {
            Ok(store.set_org_as(&caller.name, &org, plan, change.retention_days)?)
        })
        .await?;
    Ok(axum::Json(SettingsBody::from(settings)).into_response())
}
