//! The CRM side of the bridge. Each CRM lives in a folder of its own behind these
//! traits; `dataverse/` is the first.
//!
//! Never imports `kaizala/`: the two sides meet in `rules/` and `jobs/`.

pub mod dataverse;

use std::future::Future;
use std::pin::Pin;

use std::time::Duration;

use crate::model::{Activity, CrmEvent};

/// Where CRM events go, from polling or webhooks (the job queue; a channel in tests).
pub trait CrmEventSink: Send + Sync {
    /// Takes `event` durably, or fails so it is offered again.
    fn accept(
        &self,
        event: CrmEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

/// A CRM source the bridge reads changes from (Dataverse: change tracking of each
/// watched table). The poll loop knows only this: it never sees a vendor's errors.
pub trait CrmSource: Send + Sync {
    /// Reads what changed since the last pass and hands each change to `sink`,
    /// advancing the source's position only past what `sink` took. A throttled pass
    /// fails with [`CrmError::Throttled`], to be waited out.
    fn poll<'a>(
        &'a self,
        sink: &'a dyn CrmEventSink,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<TablePoll>, CrmError>> + Send + 'a>>;
}

/// What one pass read of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePoll {
    /// The table (entity set).
    pub table: String,
    /// Changes handed on.
    pub events: usize,
    /// Whether this pass took a baseline (the first, or after an expired position).
    pub baseline: bool,
    /// Whether the source's position had expired, forcing that baseline.
    pub expired: bool,
}

/// Where answers are written.
pub trait CrmSink: Send + Sync {
    /// Writes `activity` once: writing the same activity again changes nothing.
    fn write_activity<'a>(
        &'a self,
        activity: &'a Activity,
    ) -> Pin<Box<dyn Future<Output = Result<Written, CrmError>> + Send + 'a>>;
}

/// A CRM call failed; the job queue retries what is retryable.
#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    /// The CRM asked to slow down; retry no sooner than this.
    #[error("the CRM throttled the call; retry after {retry_after:?}")]
    Throttled {
        /// From `Retry-After`.
        retry_after: Duration,
    },
    /// Trying again later can succeed (5xx, timeout, connection).
    #[error("{0}")]
    Retryable(String),
    /// Trying again cannot succeed (bad request, credentials, missing record).
    #[error("{0}")]
    Permanent(String),
}

impl CrmError {
    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, CrmError::Permanent(_))
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The activity was created, with this id.
    Created(String),
    /// It existed already (an earlier attempt wrote it).
    AlreadyThere(String),
}
