//! Every refusal and failure as the contract's JSON:
//! `{"error": {"code", "message", ...}}` with the status of http.md.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::auth::AuthError;
use crate::export::ExportError;
use crate::time::Timestamp;

/// A refusal or failure of one request.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub extra: Box<Map<String, Value>>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
    /// When a rate-limited caller may try again.
    pub next_allowed_at: Option<Timestamp>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: Box::default(),
            retry_after: None,
            next_allowed_at: None,
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// Set `Retry-After` from `next_allowed_at` as seen at `now` (the
    /// server's clock, which `--as-of` may have set).
    pub fn retry_after_from(mut self, now: Timestamp) -> Self {
        if let Some(next) = self.next_allowed_at {
            self.retry_after = Some(retry_after_secs(next, now));
        }
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is over the limit of {limit} bytes"),
        )
        .with("limit", limit as u64)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// A failure of the server itself (a panic caught, a task lost).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "io", message)
    }

    /// The status of a contract error code.
    pub fn status_of(code: &str) -> StatusCode {
        match code {
            "invalid_request" | "invalid_event" | "invalid_argument" | "invalid_policy" | "conflict" => {
                StatusCode::BAD_REQUEST
            }
            "unauthorized" => StatusCode::UNAUTHORIZED,
            "forbidden" | "plan_not_eligible" => StatusCode::FORBIDDEN,
            "not_found" | "no_data" => StatusCode::NOT_FOUND,
            "not_ready" | "failed" => StatusCode::CONFLICT,
            "expired" => StatusCode::GONE,
            "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_range" | "range_too_old" | "range_in_future" => StatusCode::UNPROCESSABLE_ENTITY,
            "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
            "unavailable" | "locked" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        let code = match e.code() {
            "invalid_argument" => "invalid_request",
            "locked" => "unavailable",
            other => other,
        };
        let mut err = ApiError::new(ApiError::status_of(code), code, e.to_string());
        if let crate::Error::Corrupt { path, offset, .. } = &e {
            err = err
                .with("file", path.display().to_string())
                .with("offset", *offset);
        }
        err
    }
}

impl From<ExportError> for ApiError {
    fn from(e: ExportError) -> Self {
        if let ExportError::Store(inner) = e {
            return inner.into();
        }
        let code = match e.code() {
            // A damaged policy file is the store's data, not the request.
            "invalid_policy" => "corrupt",
            other => other,
        };
        let mut err = ApiError::new(ApiError::status_of(code), code, e.to_string());
        for (key, value) in e.details() {
            err = err.with(key, value);
        }
        err.next_allowed_at = e.next_allowed_at();
        err
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Store(inner) => inner.into(),
            AuthError::Unauthorized(_) => ApiError::unauthorized("a valid token is required"),
            other => ApiError::new(ApiError::status_of(other.code()), other.code(), other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("code".into(), json!(self.code));
        body.insert("message".into(), json!(self.message));
        body.extend(*self.extra);
        let mut response = (self.status, axum::Json(json!({ "error": Value::Object(body) }))).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

/// A `Retry-After` in whole seconds (at least 1) from `now` until `until`.
pub fn retry_after_secs(until: Timestamp, now: Timestamp) -> u64 {
    let wait = until.as_nanos().saturating_sub(now.as_nanos()).max(0) as u64;
    wait.div_ceil(1_000_000_000).max(1)
}
