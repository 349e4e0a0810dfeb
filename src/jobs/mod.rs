//! The two jobs and their handlers, where the Kaizala side and the CRM side meet:
//! `SendAction` posts a rendered action once, `RecordResponse` writes an answer into
//! the CRM once. Both are idempotent, so the queue's at-least-once delivery adds up to
//! exactly-once effects (DESIGN.md, Delivery guarantees).

pub mod intake;
pub mod record_response;
pub mod send_action;
pub mod turns;

use crate::queue::{Job, JobError, JobKind};

pub use crate::idempotency::{Correlations, Holds, PostState};
pub use crate::model::{Correlation, RecordResponse, SendAction};
pub use intake::Intake;
pub use record_response::RecordResponseHandler;
pub use send_action::SendActionHandler;
pub use turns::Turns;

impl Job for SendAction {
    const KIND: JobKind = JobKind::SendAction;
}

impl Job for RecordResponse {
    const KIND: JobKind = JobKind::RecordResponse;
}

/// A Kaizala error as the queue sees it.
pub(crate) fn kaizala_failure(error: crate::kaizala::KaizalaError) -> JobError {
    if error.is_retryable() {
        JobError::Retry {
            after: error.retry_after(),
            reason: error.to_string(),
        }
    } else {
        JobError::Permanent(error.to_string())
    }
}

/// A CRM error as the queue sees it.
pub(crate) fn crm_failure(error: crate::crm::CrmError) -> JobError {
    match error {
        crate::crm::CrmError::Throttled { retry_after } => JobError::Retry {
            reason: error.to_string(),
            after: Some(retry_after),
        },
        crate::crm::CrmError::Retryable(reason) => JobError::retry(reason),
        crate::crm::CrmError::Permanent(reason) => JobError::Permanent(reason),
    }
}

/// A store error: the state store is unreachable, which passes.
pub(crate) fn store_failure(error: crate::store::StoreError) -> JobError {
    JobError::retry(error.to_string())
}
