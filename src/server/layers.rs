//! The tower layers around every route, and the JSON shape of refusals
//! made outside the handlers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use super::error::ApiError;
use super::replication::ForwardLimits;
use super::state::AppState;

pub fn wrap(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    // The body limit is applied by the handlers as they read a body
    // (`api::read_body`), after the caller's checks: `401` and `403` come
    // before `413` as the contract orders.
    routes
        .fallback(|| async { ApiError::not_found("no such path") })
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            state.config.request_timeout,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("the server failed while answering this request").into_response()
        }))
        // Outside every layer that may refuse (the timeout, a caught
        // panic), so that their refusals are JSON too.
        .layer(middleware::from_fn_with_state(state.clone(), json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), hold_body))
        // Before the body is held aside: a forwarded request takes it along.
        .layer(middleware::from_fn_with_state(state.clone(), route))
        .layer(middleware::from_fn(record_metrics))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// Count and time every request by route and status.
async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("auditstore_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("auditstore_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// In a cluster, a request about an organization goes to a node that
/// serves the organization's partition (`Replication::forward`); every
/// other request is answered here.
async fn route(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(replication) = &state.replication else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    let org = match org_in_path(path) {
        Some(org) => Some(org.to_owned()),
        // The web page is about the signed-in user's organization.
        None if path == super::web::AUDIT_LOG_PATH => session_org(&state, request.headers()).await,
        None => None,
    };
    let Some(org) = org else {
        return next.run(request).await;
    };
    let limits = ForwardLimits {
        body_limit: state.config.body_limit,
        timeout: state.config.request_timeout,
    };
    match replication.forward(&org, request, limits) {
        Ok(answer) => answer.await,
        Err(request) => next.run(*request).await,
    }
}

/// The organization of the session a request's cookie names, if any (a
/// session that cannot be looked up is left to the handler to refuse).
async fn session_org(state: &AppState, headers: &axum::http::HeaderMap) -> Option<String> {
    let id = super::caller::cookie_in(headers, super::session::COOKIE)?;
    state.session(id).await.ok().flatten().map(|s| s.user.org)
}

/// The organization of an `/api/v1/orgs/{org}/...` path (as written: a
/// percent-encoded one is no valid name, and is refused where answered).
pub fn org_in_path(path: &str) -> Option<&str> {
    let org = path.strip_prefix("/api/v1/orgs/")?.split('/').next()?;
    (!org.is_empty() && !org.contains('%')).then_some(org)
}

/// The request body, held aside until a handler reads it (`api::read_body`,
/// after the caller's checks, so that `401` and `403` come before `413`).
#[derive(Clone)]
pub struct PendingBody(Arc<Mutex<Option<Body>>>);

impl PendingBody {
    pub fn take(&self) -> Option<Body> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Longest time spent reading the body of a refused request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Hold the body aside for the handler; after a refusal that left it
/// unread (`401`, `403`), read and drop what the client sends (up to the
/// body limit) so that a client still sending sees the answer instead of
/// a broken pipe; and close the connection after an error to a request
/// with a body, whose rest may be unread.
async fn hold_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    let (mut parts, body) = request.into_parts();
    let slot = PendingBody(Arc::new(Mutex::new(Some(body))));
    parts.extensions.insert(slot.clone());
    let mut response = next.run(Request::from_parts(parts, Body::empty())).await;
    let status = response.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        if let Some(body) = slot.take() {
            let limit = state.config.body_limit;
            let drain = async move {
                let mut stream = body.into_data_stream();
                let mut seen = 0usize;
                while let Some(Ok(chunk)) = futures_util::StreamExt::next(&mut stream).await {
                    seen += chunk.len();
                    if seen > limit {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
        }
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Refusals made by routing, extractors and layers (a method not allowed,
/// a body over the limit, a path that does not decode) in the contract's
/// JSON shape; the handlers' own refusals already are.
async fn json_errors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("application/json") || content_type.starts_with("text/html") {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let said = String::from_utf8_lossy(&text).trim().to_owned();
    let mut err = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(state.config.body_limit),
        StatusCode::UNAUTHORIZED => ApiError::unauthorized(said),
        StatusCode::FORBIDDEN => ApiError::forbidden(said),
        StatusCode::NOT_FOUND => ApiError::not_found(said),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => {
            ApiError::unavailable("the request took too long")
        }
        s if s.is_server_error() => ApiError::internal(said),
        _ => ApiError::bad_request(if said.is_empty() { status.to_string() } else { said }),
    };
    err.status = status;
    let mut fixed = err.into_response();
    for (name, value) in parts.headers.iter() {
        if name == header::ALLOW || name == "x-request-id" {
            fixed.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fixed
}
