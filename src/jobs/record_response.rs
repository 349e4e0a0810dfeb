//! Writing an answer into the CRM exactly once: the activity's id is derived from the
//! answer (see `ResponseEvent::source_key`), and the sink's create-only write makes a
//! second write of it a no-op.
//!
//! Only the tenant that reported an answer can have it recorded, and only on its own
//! action in the action's own group: an answer found under another tenant, or naming
//! another group than its action's, is dropped at once (a retry cannot make it
//! right), logged with both sides and counted.

use std::collections::HashMap;
use std::sync::Arc;

use super::{
    crm_failure, kaizala_failure, store_failure, Correlation, Correlations, PostState,
    RecordResponse,
};
use crate::crm::CrmSink;
use crate::kaizala::Clients;
use crate::model::{Activity, TenantId};
use crate::queue::{Handler, HandlerFuture, JobError};
use crate::rules::Rules;

/// `kaizala_bridge_responses_total{outcome}`: answers recorded, already there, or not
/// to an action of ours.
pub const RESPONSES_TOTAL: &str = "kaizala_bridge_responses_total";

/// `kaizala_bridge_events_rejected_total{reason}`: events that were not applied, by
/// why: `not_ours` (an answer to an action that provably is not the bridge's),
/// `tenant_mismatch` (reported for one tenant, about another tenant's action),
/// `group_mismatch` (about an action of the tenant, but naming another group).
pub const EVENTS_REJECTED_TOTAL: &str = "kaizala_bridge_events_rejected_total";

/// Handles `RecordResponse` jobs.
pub struct RecordResponseHandler {
    sinks: HashMap<String, Arc<dyn CrmSink>>,
    correlations: Correlations,
    rules: Option<Arc<Rules>>,
    /// Clients by `tenant/connector`, to read an unknown action's key question.
    kaizala: Clients,
}

/// Where an answer to an action without a correlation stands.
enum Unknown {
    /// The action is ours: its survey's key question names a post of ours, now
    /// recorded as this action.
    Ours(Box<Correlation>),
    /// The action carries no key of ours: it is someone else's.
    NotOurs,
}

impl RecordResponseHandler {
    /// A handler writing through `sinks` (keyed by CRM source id).
    pub fn new(sinks: HashMap<String, Arc<dyn CrmSink>>, correlations: Correlations) -> Self {
        Self {
            sinks,
            correlations,
            rules: None,
            kaizala: HashMap::new(),
        }
    }

    /// Reads an action the bridge has no correlation for through `clients` (keyed
    /// `tenant/connector`), to tell an early answer to our survey from someone else's.
    pub fn with_kaizala(mut self, clients: Clients) -> Self {
        self.kaizala = clients;
        self
    }

    /// An answer came for an action without a correlation: the POST's answer may not
    /// be recorded yet (lost, or still on its way). The survey itself says whose it
    /// is: its invisible question carries our key, and the key's post state what it
    /// was sent for. Recorded as sent here, so the answer lands now and the sending
    /// job finds it sent. A read that fails is retried; only an action whose
    /// questions carry no key of ours is not ours.
    async fn resolve_unknown(&self, job: &RecordResponse) -> Result<Unknown, JobError> {
        let response = &job.response;
        let Some(client) = self
            .kaizala
            .iter()
            .find(|(key, _)| key.tenant == job.tenant)
            .map(|(_, client)| client)
        else {
            return Ok(Unknown::NotOurs);
        };
        let details = client
            .action_details(&response.group_id, &response.action_id)
            .await
            .map_err(kaizala_failure)?;
        let Some(key) = details
            .action_details
            .questions
            .iter()
            .filter(|q| q.is_invisible)
            .find_map(|q| crate::idempotency::key_in_marker(&q.title))
        else {
            return Ok(Unknown::NotOurs);
        };
        let state = self.correlations.state(key).await.map_err(store_failure)?;
        let (correlation, posting) = match state {
            Some(PostState::Posting {
                correlation: Some(correlation),
                ..
            }) => (*correlation, true),
            Some(PostState::Sent { action_id }) if action_id != response.action_id => {
                // Our key, but another action was recorded for it: a second post of
                // the same survey. Its answers still belong to the record.
                match self
                    .correlations
                    .action(&job.tenant, &action_id)
                    .await
                    .map_err(store_failure)?
                {
                    Some(correlation) => (correlation, false),
                    None => return Ok(Unknown::NotOurs),
                }
            }
            // `sent` records the action before the key's state: a state naming this
            // action with no record of it is a write still under way.
            Some(PostState::Sent { .. }) => {
                return Err(JobError::retry("the action's correlation is being written"))
            }
            _ => return Ok(Unknown::NotOurs),
        };
        if correlation.tenant != job.tenant || correlation.group != response.group_id {
            return Ok(Unknown::NotOurs);
        }
        // The post's outcome is known now (the key is sent, as this action); a second
        // post's action is only recorded as ours, the key keeps naming the first.
        let recorded = match posting {
            true => {
                self.correlations
                    .sent(&response.action_id, &correlation)
                    .await
            }
            false => {
                self.correlations
                    .record_action(&response.action_id, &correlation)
                    .await
            }
        };
        recorded.map_err(store_failure)?;
        tracing::info!(action_id = %response.action_id, %key, "an answer came before its survey's post was recorded; resolved by the survey's key");
        Ok(Unknown::Ours(Box::new(correlation)))
    }

    /// Writes activities with the rules' write-back templates (without, a plain
    /// summary).
    pub fn with_rules(mut self, rules: Arc<Rules>) -> Self {
        self.rules = Some(rules);
        self
    }

    /// The tenant other than `job`'s that `job`'s action belongs to, if any: an
    /// answer reported for one tenant about another's action.
    async fn owner_elsewhere(&self, job: &RecordResponse) -> Result<Option<String>, JobError> {
        let mut tenants: Vec<&TenantId> = self
            .kaizala
            .keys()
            .map(|key| &key.tenant)
            .filter(|tenant| **tenant != job.tenant)
            .collect();
        tenants.sort_unstable();
        tenants.dedup();
        for tenant in tenants {
            let found = self
                .correlations
                .action(tenant, &job.response.action_id)
                .await
                .map_err(store_failure)?;
            if found.is_some() {
                return Ok(Some(tenant.to_string()));
            }
        }
        Ok(None)
    }

    /// What the answer's action was sent for, when the answer may be recorded:
    /// `None` (logged and counted) when it is another tenant's action, names another
    /// group than its action's, or is not ours at all.
    async fn correlation_of(
        &self,
        job: &RecordResponse,
        attempt: u32,
    ) -> Result<Option<Correlation>, JobError> {
        let response = &job.response;
        let known = self
            .correlations
            .action(&job.tenant, &response.action_id)
            .await
            .map_err(store_failure)?;
        match known {
            Some(correlation) if correlation.group != response.group_id => {
                tracing::warn!(tenant = %job.tenant, action_id = %response.action_id, group = %response.group_id, action_group = %correlation.group, "an answer naming another group than its action's; dropped");
                reject("group_mismatch");
                Ok(None)
            }
            Some(correlation) => Ok(Some(correlation)),
            None => {
                if let Some(owner) = self.owner_elsewhere(job).await? {
                    tracing::warn!(reported_for = %job.tenant, owner = %owner, action_id = %response.action_id, group = %response.group_id, "an answer reported for one tenant about another tenant's action; dropped");
                    reject("tenant_mismatch");
                    return Ok(None);
                }
                match self.resolve_unknown(job).await? {
                    Unknown::Ours(correlation) => Ok(Some(*correlation)),
                    Unknown::NotOurs => {
                        tracing::warn!(tenant = %job.tenant, action_id = %response.action_id, group = %response.group_id, attempt, "an answer to an action that is not ours; ignored");
                        metrics::counter!(RESPONSES_TOTAL, "outcome" => "not_ours").increment(1);
                        reject("not_ours");
                        Ok(None)
                    }
                }
            }
        }
    }

    async fn record(&self, job: &RecordResponse, attempt: u32) -> Result<(), JobError> {
        let response = &job.response;
        let Some(correlation) = self.correlation_of(job, attempt).await? else {
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
            None => Activity::summary(&correlation, response),
        };
        let written = sink.write_activity(&activity).await.map_err(crm_failure)?;
        let outcome = match written {
            crate::crm::Written::Created(_) => "recorded",
            crate::crm::Written::AlreadyThere(_) => "already_there",
        };
        metrics::counter!(RESPONSES_TOTAL, "outcome" => outcome).increment(1);
        let record = &correlation.record;
        tracing::info!(
            tenant = %job.tenant, action_id = %response.action_id,
            response_id = %response.response_id, crm = %record.crm,
            record = %format!("{}({})", record.entity_set, record.id), outcome,
            "answer recorded as a {:?} on its record", activity.kind
        );
        Ok(())
    }
}

/// Counts an event not applied, by why.
fn reject(reason: &'static str) {
    metrics::counter!(EVENTS_REJECTED_TOTAL, "reason" => reason).increment(1);
}

impl Handler<RecordResponse> for RecordResponseHandler {
    fn handle<'a>(&'a self, job: &'a RecordResponse, attempt: u32) -> HandlerFuture<'a> {
        Box::pin(self.record(job, attempt))
    }
}
