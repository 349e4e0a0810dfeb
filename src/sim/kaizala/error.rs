//! Error answers of the emulated API: a status and a JSON body
//! `{"code": "...", "message": "..."}` whose message names the field or resource.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
    location: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            location: None,
        }
    }

    /// What went wrong, as the body's `message` says.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// 400: the request is malformed; `message` names the field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 401: missing, unknown or expired credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    /// 403: the connector may not touch this resource.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    /// 404: no such resource.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    /// 429 with `Retry-After` seconds.
    pub fn throttled(message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut error = Self::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message);
        error.retry_after = Some(retry_after_secs);
        error
    }

    /// 308: the connector's endpoint moved to `location`.
    pub fn moved(location: String) -> Self {
        let mut error = Self::new(
            StatusCode::PERMANENT_REDIRECT,
            "EndpointMoved",
            format!("this connector's endpoint is now {location}"),
        );
        error.location = Some(location);
        error
    }

    /// An injected fault (500 or 503).
    pub fn injected(status: StatusCode) -> Self {
        Self::new(status, "InjectedFault", "fault injected by the emulator")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code, "message": self.message });
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, location);
        }
        response
    }
}

/// What handlers return.
pub type ApiResult<T> = Result<T, ApiError>;
