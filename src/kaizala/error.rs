//! What can go wrong talking to Kaizala, each case marked retryable or permanent so
//! the job queue knows whether to try again.

use std::time::Duration;

/// A failed Kaizala call.
#[derive(Debug, thiserror::Error)]
pub enum KaizalaError {
    /// 429: a quota is used up; retry no sooner than `retry_after`.
    #[error("Kaizala throttled the call; retry after {retry_after:?}")]
    Throttled {
        /// From the `Retry-After` header (60 s when absent).
        retry_after: Duration,
    },
    /// 401 even after a fresh access token: the credentials are wrong or revoked.
    #[error("Kaizala refused the credentials: {0}")]
    Unauthorized(String),
    /// 403: the connector may not use this group or resource.
    #[error("Kaizala forbids it: {0}")]
    Forbidden(String),
    /// 404.
    #[error("not found in Kaizala: {0}")]
    NotFound(String),
    /// 400: the request is wrong; the message says which field.
    #[error("Kaizala rejected the request: {0}")]
    BadRequest(String),
    /// 5xx.
    #[error("Kaizala failed with {status}: {message}")]
    Server {
        /// The status code.
        status: u16,
        /// What it said.
        message: String,
    },
    /// No answer within the timeout.
    #[error("Kaizala did not answer in time")]
    Timeout,
    /// The connection failed.
    #[error("cannot reach Kaizala: {0}")]
    Transport(String),
    /// The answer was not what the API documents.
    #[error("unexpected answer from Kaizala: {0}")]
    Protocol(String),
    /// Credentials could not be read or stored.
    #[error("connector credentials: {0}")]
    Credentials(String),
}

impl KaizalaError {
    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            KaizalaError::Throttled { .. }
                | KaizalaError::Server { .. }
                | KaizalaError::Timeout
                | KaizalaError::Transport(_)
        )
    }

    /// The earliest moment a retry makes sense, when the server said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            KaizalaError::Throttled { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// The error for a failed answer, read whole: its status, its `Retry-After`
    /// (believed up to `max_retry_after`) and its body's message. The one place an
    /// unsuccessful Kaizala answer becomes an error, for the client and the token
    /// fetch alike.
    pub async fn from_response(response: reqwest::Response, max_retry_after: Duration) -> Self {
        let status = response.status().as_u16();
        let retry_after = crate::retry_after::from_headers(response.headers(), max_retry_after);
        let text = response.text().await.unwrap_or_default();
        Self::from_status(status, retry_after, &text)
    }

    /// The error for an answer with `status` and body `text`.
    pub fn from_status(status: u16, retry_after: Option<Duration>, text: &str) -> Self {
        let message = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| text.chars().take(500).collect());
        match status {
            429 => KaizalaError::Throttled {
                retry_after: retry_after.unwrap_or(Duration::from_secs(60)),
            },
            401 => KaizalaError::Unauthorized(message),
            403 => KaizalaError::Forbidden(message),
            404 => KaizalaError::NotFound(message),
            500..=599 => KaizalaError::Server { status, message },
            _ => KaizalaError::BadRequest(format!("{status}: {message}")),
        }
    }
}

impl From<reqwest::Error> for KaizalaError {
    fn from(error: reqwest::Error) -> Self {
        if error.is_timeout() {
            KaizalaError::Timeout
        } else if error.is_decode() {
            KaizalaError::Protocol(error.to_string())
        } else {
            // reqwest's message names the URL, never headers, so no token leaks here.
            KaizalaError::Transport(error.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_classes_with_the_servers_message() {
        let e = KaizalaError::from_status(
            400,
            None,
            r#"{"code":"BadRequest","message":"actionBody.title: missing"}"#,
        );
        assert_eq!(
            e.to_string(),
            "Kaizala rejected the request: 400: actionBody.title: missing"
        );
        assert!(!e.is_retryable());
        let e = KaizalaError::from_status(429, Some(Duration::from_secs(7)), "");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(e.is_retryable());
        assert!(KaizalaError::from_status(503, None, "busy").is_retryable());
        assert!(!KaizalaError::from_status(404, None, "{}").is_retryable());
        assert!(!KaizalaError::from_status(401, None, "{}").is_retryable());
        assert!(KaizalaError::Timeout.is_retryable());
    }
}
