//! Who is asking: a bearer token, or a signed-in web session; and whether
//! they may do what they ask (http.md, "Who may do what"). The order of
//! checks is the contract's: `401`, then `403`, then the request itself.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method};

use super::error::{ApiError, ApiResult};
use super::session::{same_secret, COOKIE};
use super::state::AppState;
use crate::auth::{Auth, Role};

/// The header a session's unsafe API calls carry its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `None` for an operator.
    pub org: Option<String>,
    pub role: Role,
    /// Who the store's records name: the user, or the token's name (its
    /// id when it has none).
    pub name: String,
}

/// Roles that may append events.
pub const INGEST: &[Role] = &[Role::Ingest, Role::Operator];
/// Roles that may read events.
pub const READ: &[Role] = &[Role::Member, Role::Admin, Role::Operator];
/// Roles that may use exports and read settings.
pub const ADMIN: &[Role] = &[Role::Admin, Role::Operator];
/// Operators only.
pub const OPERATOR: &[Role] = &[Role::Operator];

impl Caller {
    /// `403` unless this caller may act on `org` with one of `roles`;
    /// then `400` for a path organization that cannot be one (only an
    /// operator gets that far with one: anyone else's organization is a
    /// valid name), in the order the contract gives.
    pub fn may(&self, org: &str, roles: &[Role]) -> ApiResult<()> {
        let own_org = self.role == Role::Operator || self.org.as_deref() == Some(org);
        if !own_org {
            return Err(ApiError::forbidden(
                "this credential does not belong to the organization in the path",
            ));
        }
        self.may_globally(roles)?;
        crate::org::validate_org_name(org)
            .map_err(|e| ApiError::bad_request(format!("organization {org:?}: {e}")))
    }

    /// `403` unless this caller has one of `roles` (store-wide actions).
    pub fn may_globally(&self, roles: &[Role]) -> ApiResult<()> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "the {} role may not do this",
                self.role
            )))
        }
    }

    /// The role for the export rules (`admin` or `member`).
    pub fn export_role(&self) -> crate::export::Role {
        match self.role {
            Role::Admin | Role::Operator => crate::export::Role::Admin,
            _ => crate::export::Role::Member,
        }
    }
}

/// The value of cookie `name` in a request.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    cookie_in(&parts.headers, name)
}

/// The value of cookie `name` in `headers`.
pub fn cookie_in<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Caller> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|t| t.trim().to_owned())
                .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer TOKEN`"))?;
            let info = state
                .blocking(move |store| Ok(Auth::new(store).authenticate(&token)?))
                .await?;
            return Ok(Caller {
                name: info.display_name().to_owned(),
                org: info.org,
                role: info.role,
            });
        }
        let session = match cookie(parts, COOKIE) {
            Some(id) => state.session(id).await?,
            None => None,
        };
        if let Some(session) = session {
            let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
            if !safe {
                let sent = parts
                    .headers
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if !same_secret(sent, &session.csrf) {
                    return Err(ApiError::forbidden(format!(
                        "a signed-in session's {} request needs its CSRF token in {CSRF_HEADER}",
                        parts.method
                    )));
                }
            }
            return Ok(Caller {
                org: Some(session.user.org.clone()),
                role: session.role(),
                name: session.user.user,
            });
        }
        Err(ApiError::unauthorized(
            "a bearer token (Authorization: Bearer TOKEN) or a signed-in session is required",
        ))
    }
}
