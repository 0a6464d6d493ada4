//! The web page of http.md ("The web page"): sign-in, the Audit Log page
//! where admins request and download their audit logs, and its stylesheet.
//!
//! Invariants:
//! - Every state-changing form carries a CSRF token, compared in constant
//!   time: the session's token once signed in (derived from its id,
//!   `session::csrf_of`), a pre-session double-submit cookie for the
//!   sign-in form itself.
//! - Sessions are looked up through `AppState::session` (shared by a
//!   cluster's nodes); one that cannot be looked up is a `503` page, never
//!   taken for signed out.
//! - Every HTML answer carries a Content-Security-Policy without scripts,
//!   refuses framing and sends no referrer; askama escapes every value.
//! - Store calls and argon2 run off the async workers (`state.blocking`).
//! - Downloads go through the API routes, which accept a session for GET
//!   and record `audit_log.download_url.generated`.

mod forms;
pub mod limiter;
mod page;
mod signin;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use tower_http::set_header::SetResponseHeaderLayer;

use super::caller::cookie;
use super::session::{Session, COOKIE};
use super::state::AppState;

pub use limiter::{Limiter, Limits};

/// Where a signed-in user lands.
pub const AUDIT_LOG_PATH: &str = "/audit-log";

const STYLE: &str = include_str!("static/style.css");

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The routes of the web page.
pub fn routes() -> Router<AppState> {
    routes_with(Limits::default())
}

/// The routes with these sign-in limits (tests use small ones).
pub fn routes_with(limits: Limits) -> Router<AppState> {
    let headers = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    let mut router = Router::new()
        .route("/", get(signin::show))
        .route("/signin", post(signin::submit))
        .route("/signout", post(signin::sign_out))
        .route(AUDIT_LOG_PATH, get(page::show).post(page::request))
        .route("/static/style.css", get(style))
        .layer(Extension(Arc::new(Limiter::new(limits))));
    for (name, value) in headers {
        router = router.layer(SetResponseHeaderLayer::overriding(
            name,
            HeaderValue::from_static(value),
        ));
    }
    router
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

/// The signed-in session of a request, if any: (its id, the session).
/// When sessions are shared (a cluster) and cannot be looked up, the
/// request is answered [`unavailable_page`].
pub struct SignedIn(pub Option<(String, Session)>);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(id) = cookie(parts, COOKIE) else {
            return Ok(SignedIn(None));
        };
        match state.session(id).await {
            Ok(found) => Ok(SignedIn(found.map(|s| (id.to_owned(), s)))),
            Err(e) => {
                tracing::warn!(error = %e.message, "a web session could not be looked up");
                Err(unavailable_page(
                    "Your session cannot be checked right now. Please try again in a moment.",
                ))
            }
        }
    }
}

/// The client's address as the listener saw it ("unknown" when the app
/// runs without connection info, as in in-process tests). Behind a proxy
/// this is the proxy: the per-address limit then covers all its clients.
pub struct ClientAddr(pub String);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string()),
        ))
    }
}

/// A rendered page with `status`; pages are per user and never cached.
pub fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a web page failed to render");
            failure_page()
        }
    }
}

/// The answer when the server itself failed: no detail for the browser.
pub fn failure_page() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!doctype html><title>Error</title><p>Something went wrong on the server. Please try again.</p>",
    )
        .into_response()
}

/// `503` with `message` (fixed text, no detail of the failure) when what
/// the page needs from the deployment does not answer.
pub fn unavailable_page(message: &'static str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::RETRY_AFTER, "1"),
        ],
        format!("<!doctype html><title>Unavailable</title><p>{message}</p>"),
    )
        .into_response()
}

/// `303 See Other` to `to`, optionally setting cookies.
pub fn see_other(to: &str, cookies: &[String]) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response();
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// A `Set-Cookie` value: `HttpOnly`, `Path=/`, `SameSite` as given,
/// `Secure` behind TLS; `max_age` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, same_site: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; HttpOnly; SameSite={same_site}; Path=/; Max-Age={max_age}{secure}")
}

/// Append a `Set-Cookie` header to a response.
pub fn with_cookie(mut response: Response, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// Largest form body the pages accept, in bytes.
const FORM_LIMIT: usize = 64 * 1024;

/// A form's body: read from where the server's body layer holds it
/// (`layers::PendingBody`), at most [`FORM_LIMIT`] bytes; a body that
/// cannot be read, or a longer one, is an empty form (which every form
/// handler refuses for its missing CSRF token).
pub struct FormBody(pub axum::body::Bytes);

impl FromRequestParts<AppState> for FormBody {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(pending) = parts.extensions.get::<super::layers::PendingBody>().cloned() else {
            return Ok(FormBody(axum::body::Bytes::new()));
        };
        let limit = FORM_LIMIT.min(state.config.body_limit);
        let bytes = match pending.take() {
            Some(body) => axum::body::to_bytes(body, limit).await.unwrap_or_default(),
            None => axum::body::Bytes::new(),
        };
        Ok(FormBody(bytes))
    }
}
