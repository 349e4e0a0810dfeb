//! Dataverse's error answers: `{"error": {"code": "0x...", "message": "..."}}`, with
//! the status the documentation gives for each case.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answer of the Web API.
#[derive(Debug)]
pub struct DvError {
    /// HTTP status.
    pub status: StatusCode,
    /// The hexadecimal error code (may be empty, as Dataverse sometimes sends).
    pub code: &'static str,
    /// The message.
    pub message: String,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

impl DvError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 with code `0x0`, as for an unknown property or a bad query.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "0x0", message)
    }

    /// 400 with a specific code.
    pub fn bad_request_code(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 `0x80040217`: `{logical} With Id = {id} Does Not Exist`.
    pub fn missing(logical: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "0x80040217",
            format!("{logical} With Id = {id} Does Not Exist"),
        )
    }
}

impl IntoResponse for DvError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; odata.metadata=minimal"),
        );
        headers.insert("OData-Version", HeaderValue::from_static("4.0"));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
