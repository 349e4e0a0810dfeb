//! Writing an answer into the CRM exactly once: the activity's id is derived from the
//! answer (see `ResponseEvent::source_key`), and the sink's create-only write makes a
//! second write of it a no-op.

use std::collections::HashMap;
use std::sync::Arc;

use super::{crm_failure, store_failure, Correlation, Correlations, RecordResponse};
use crate::crm::CrmSink;
use crate::model::{Activity, ResponseEvent};
use crate::queue::{Handler, HandlerFuture, JobError};
use crate::rules::Rules;

/// `kaizala_bridge_responses_total{outcome}`: answers recorded, already there, or not
/// to an action of ours.
pub const RESPONSES_TOTAL: &str = "kaizala_bridge_responses_total";

/// Attempts to wait for an action's correlation before counting it as not ours: an
/// answer can race the write that follows the POST.
const NOT_OURS_AFTER: u32 = 3;

/// Handles `RecordResponse` jobs.
pub struct RecordResponseHandler {
    sinks: HashMap<String, Arc<dyn CrmSink>>,
    correlations: Correlations,
    rules: Option<Arc<Rules>>,
}

impl RecordResponseHandler {
    /// A handler writing through `sinks` (keyed by CRM source id).
    pub fn new(sinks: HashMap<String, Arc<dyn CrmSink>>, correlations: Correlations) -> Self {
        Self {
            sinks,
            correlations,
            rules: None,
        }
    }

    /// Writes activities with the rules' write-back templates (without, a plain
    /// summary).
    pub fn with_rules(mut self, rules: Arc<Rules>) -> Self {
        self.rules = Some(rules);
        self
    }

    async fn record(&self, job: &RecordResponse, attempt: u32) -> Result<(), JobError> {
        let response = &job.response;
        let Some(correlation) = self
            .correlations
            .action(&response.action_id)
            .await
            .map_err(store_failure)?
        else {
            if attempt < NOT_OURS_AFTER {
                return Err(JobError::retry(format!(
                    "action {} is not known (yet)",
                    response.action_id
                )));
            }
            tracing::info!(action_id = %response.action_id, "an answer to an action that is not ours; ignored");
            metrics::counter!(RESPONSES_TOTAL, "outcome" => "not_ours").increment(1);
            return Ok(());
        };
        let sink = self.sinks.get(&correlation.record.crm).ok_or_else(|| {
            JobError::Permanent(format!(
                "CRM source {} is not configured (crm[])",
                correlation.record.crm
            ))
        })?;
        let activity = match &self.rules {
            Some(rules) => rules.activity(&correlation, response, &job.time),
            None => default_activity(&correlation, response),
        };
        let written = sink.write_activity(&activity).await.map_err(crm_failure)?;
        let outcome = match written {
            crate::crm::Written::Created(_) => "recorded",
            crate::crm::Written::AlreadyThere(_) => "already_there",
        };
        metrics::counter!(RESPONSES_TOTAL, "outcome" => outcome).increment(1);
        Ok(())
    }
}

/// The activity of an answer: the responder and the action in the subject, every
/// question and answer in the description.
pub fn default_activity(correlation: &Correlation, response: &ResponseEvent) -> Activity {
    let who = if response.responder_name.is_empty() {
        "Someone"
    } else {
        &response.responder_name
    };
    let mut description = String::new();
    for answered in &response.answers {
        description.push_str(&format!("{}: {}\n", answered.question, answered.answer));
    }
    if !response.responder.is_empty() {
        description.push_str(&format!("\nAnswered by {who} ({})", response.responder));
    }
    Activity {
        kind: correlation.activity,
        regarding: correlation.record.clone(),
        subject: format!("{who} answered \"{}\"", correlation.title),
        description,
        source_key: response.source_key(),
    }
}

impl Handler<RecordResponse> for RecordResponseHandler {
    fn handle<'a>(&'a self, job: &'a RecordResponse, attempt: u32) -> HandlerFuture<'a> {
        Box::pin(self.record(job, attempt))
    }
}
