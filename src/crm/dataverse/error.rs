//! What can go wrong talking to Dataverse and Entra, each case marked retryable or
//! permanent.

use std::time::Duration;

use crate::crm::CrmError;

/// A failed Dataverse or Entra call.
#[derive(Debug, thiserror::Error)]
pub enum DataverseError {
    /// 429 service protection; retry no sooner than `retry_after`.
    #[error("Dataverse throttled the call ({code}); retry after {retry_after:?}")]
    Throttled {
        /// From `Retry-After` (the doc's policy falls back to a few seconds).
        retry_after: Duration,
        /// The error code, e.g. `0x80072322`.
        code: String,
    },
    /// Entra refused the app's credentials (`invalid_client`, unknown app): fix the configuration.
    #[error("Microsoft Entra refused the credentials: {0}")]
    Credentials(String),
    /// 401 from the Web API even with a fresh token.
    #[error("Dataverse refused the token: {0}")]
    Unauthorized(String),
    /// 404, e.g. `0x80040217` "... Does Not Exist".
    #[error("not found in Dataverse ({code}): {message}")]
    NotFound {
        /// The error code.
        code: String,
        /// The message.
        message: String,
    },
    /// 412 `0x80040237`: a record with this key exists already.
    #[error("a record with this key exists already")]
    AlreadyExists,
    /// An expired delta token (`0x80044352`): take a fresh baseline.
    #[error("the delta token expired; a full sync is needed")]
    DeltaExpired,
    /// Any other 4xx: the request is wrong.
    #[error("Dataverse rejected the request ({status}, {code}): {message}")]
    Rejected {
        /// The status.
        status: u16,
        /// The error code.
        code: String,
        /// The message.
        message: String,
    },
    /// 5xx.
    #[error("Dataverse failed with {status} ({code}): {message}")]
    Server {
        /// The status.
        status: u16,
        /// The error code.
        code: String,
        /// The message.
        message: String,
    },
    /// No answer in time.
    #[error("Dataverse did not answer in time")]
    Timeout,
    /// The connection failed.
    #[error("cannot reach Dataverse: {0}")]
    Transport(String),
    /// The answer was not what the API documents.
    #[error("unexpected answer from Dataverse: {0}")]
    Protocol(String),
}

impl DataverseError {
    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Throttled { .. } | Self::Server { .. } | Self::Timeout | Self::Transport(_)
        )
    }

    /// The error for a Web API answer with `status`, `Retry-After` and body `text`
    /// (`{"error":{"code","message"}}`, where the code may be empty).
    pub fn from_answer(status: u16, retry_after: Option<Duration>, text: &str) -> Self {
        let body: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let message = body["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| text.chars().take(500).collect());
        match (status, code.as_str()) {
            (429, _) => Self::Throttled {
                retry_after: retry_after.unwrap_or(Duration::from_secs(5)),
                code,
            },
            (_, "0x80040237") => Self::AlreadyExists,
            (_, "0x80044352") => Self::DeltaExpired,
            (401, _) => Self::Unauthorized(message),
            (404, _) => Self::NotFound { code, message },
            (500..=599, _) => Self::Server {
                status,
                code,
                message,
            },
            _ => Self::Rejected {
                status,
                code,
                message,
            },
        }
    }
}

impl From<reqwest::Error> for DataverseError {
    fn from(error: reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout
        } else if error.is_decode() {
            Self::Protocol(error.to_string())
        } else {
            Self::Transport(error.to_string())
        }
    }
}

impl From<DataverseError> for CrmError {
    fn from(error: DataverseError) -> Self {
        match error {
            DataverseError::Throttled { retry_after, .. } => CrmError::Throttled { retry_after },
            e if e.is_retryable() => CrmError::Retryable(e.to_string()),
            e => CrmError::Permanent(e.to_string()),
        }
    }
}
