//! What a job is to the queue: a kind with a queue name, an envelope that carries the
//! job across attempts, and the outcome a handler reports.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The kinds of job, one queue each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobKind {
    /// Post a Kaizala action for a CRM record.
    SendAction,
    /// Write a Kaizala answer into the CRM.
    RecordResponse,
}

impl JobKind {
    /// Every kind.
    pub const ALL: [JobKind; 2] = [JobKind::SendAction, JobKind::RecordResponse];

    /// The queue name, set explicitly: apalis would otherwise use the Rust type name,
    /// and renaming a type would silently strand every waiting job.
    pub fn queue(self) -> &'static str {
        match self {
            JobKind::SendAction => "send-action",
            JobKind::RecordResponse => "record-response",
        }
    }

    /// The kind of a queue name, as written by [`JobKind::queue`] (CLI and admin).
    pub fn from_queue(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.queue() == name)
    }
}

/// A job type the queue carries.
pub trait Job:
    Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + Unpin + 'static
{
    /// Its kind (and so its queue).
    const KIND: JobKind;
}

/// A job with what the queue keeps about it between attempts. A retry is a new task
/// with the same envelope id and the next attempt number, so neither backend's own
/// retry bookkeeping (which differs between them in apalis 1.0) is relied on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<J> {
    /// Stable across attempts; the dead-letter id.
    pub id: String,
    /// The attempt this run is, from 1.
    pub attempt: u32,
    /// When the job was first queued (epoch ms).
    pub enqueued_ms: i64,
    /// When this run became due (epoch ms): the age of a ready job counts from here.
    pub ready_ms: i64,
    /// What went wrong in the previous attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The job itself.
    pub job: J,
}

impl<J> Envelope<J> {
    /// A first attempt of `job`, due at once.
    pub fn new(job: J) -> Self {
        let now = now_ms();
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            attempt: 1,
            enqueued_ms: now,
            ready_ms: now,
            last_error: None,
            job,
        }
    }
}

/// Why an attempt did not succeed, as the handler classifies it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Trying again later can succeed (429, 5xx, timeout, connection); `after` is the
    /// server's `Retry-After`, which the next attempt never precedes.
    #[error("{reason}")]
    Retry {
        /// What went wrong.
        reason: String,
        /// The earliest sensible retry, when the server named one.
        after: Option<Duration>,
    },
    /// Trying again cannot succeed (400, 404, validation): straight to dead letters.
    #[error("{0}")]
    Permanent(String),
    /// Not a failure: the job waits for its turn (its connector's quota is taken
    /// further ahead than is worth holding a worker for). It is queued again for
    /// the start of `until_ms`'s second (epoch ms; a job back a little early waits
    /// for its permit, one back late would miss its slot) with its attempt
    /// unchanged, and its worker is free.
    #[error("put off until its turn at epoch ms {until_ms}")]
    Defer {
        /// When its turn comes.
        until_ms: i64,
    },
}

impl JobError {
    /// A retryable failure with no server-named delay.
    pub fn retry(reason: impl Into<String>) -> Self {
        JobError::Retry {
            reason: reason.into(),
            after: None,
        }
    }
}

/// Boxed future of a handler.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send + 'a>>;

/// Does the work of one job type. Handlers are idempotent: a job may run more than
/// once (a crash after the work, before the acknowledgement), never with a second
/// effect.
pub trait Handler<J>: Send + Sync + 'static {
    /// Runs attempt `attempt` (from 1) of `job`.
    fn handle<'a>(&'a self, job: &'a J, attempt: u32) -> HandlerFuture<'a>;
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
