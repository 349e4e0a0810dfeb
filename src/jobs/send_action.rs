//! Posting an action exactly once.
//!
//! Before the POST the correlation store records that a post of the idempotency key
//! is under way; after it, which action it became. An attempt that finds a post under
//! way (the earlier one timed out, or its process died) first looks for the key among
//! the group's recent actions, where the survey carries it in an invisible question,
//! and only posts when it is not there.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::turns::{patience, Turns};
use super::{
    crm_failure, kaizala_failure, store_failure, Correlation, Correlations, PostState, SendAction,
};
use crate::crm::CrmSink;
use crate::idempotency::{key_marker, Holds};
use crate::kaizala::{Clients, KaizalaClient, Reservation};
use crate::model::action::{Action, Question, QuestionType};
use crate::queue::{now_ms, Handler, HandlerFuture, JobError};
use crate::rules::Rules;

/// How far before the first POST the search for an uncertain post starts (clocks
/// of Kaizala and the bridge differ a little).
const SEARCH_SLACK_MS: i64 = 5 * 60 * 1000;

/// `kaizala_bridge_actions_total{outcome}`: actions posted, found after an uncertain
/// outcome, or found already sent.
pub const ACTIONS_TOTAL: &str = "kaizala_bridge_actions_total";

/// `kaizala_bridge_actions_deferred_total`: jobs given back to the queue for their
/// turn because their connector's quota was taken further ahead than a worker waits.
pub const DEFERRED_TOTAL: &str = "kaizala_bridge_actions_deferred_total";

/// Handles `SendAction` jobs.
pub struct SendActionHandler {
    clients: Clients,
    correlations: Correlations,
    holds: Holds,
    crm: Option<SentActivities>,
    turns: Arc<Turns>,
}

/// Where "survey sent" activities are written (by CRM id), and the rules that say
/// what they hold.
type SentActivities = (HashMap<String, Arc<dyn CrmSink>>, Arc<Rules>);

/// How long a key is held when nothing says otherwise: Kaizala's default request
/// timeout plus a margin (see [`Holds`]).
const DEFAULT_HOLD: Duration = Duration::from_secs(65);

impl SendActionHandler {
    /// A handler posting through `clients`, holding keys
    /// under a process name of its own. That name is announced by no
    /// [`crate::store::Presence`]: on a store shared with other processes, give
    /// [`SendActionHandler::with_holds`] the announced name (as `run` does), or the
    /// others take its holds for a dead process's.
    pub fn new(clients: Clients, correlations: Correlations) -> Self {
        let holds = Holds::new(
            correlations.store(),
            crate::queue::process_name(),
            DEFAULT_HOLD,
        );
        Self {
            clients,
            correlations,
            holds,
            crm: None,
            turns: Arc::default(),
        }
    }

    /// Writes the rules' "survey sent" activities through `sinks` (keyed by CRM id).
    pub fn with_sent_activities(
        mut self,
        sinks: HashMap<String, Arc<dyn CrmSink>>,
        rules: Arc<Rules>,
    ) -> Self {
        self.crm = Some((sinks, rules));
        self
    }

    /// Puts surveys off to their turns in `turns`, the lines the intake also reads
    /// (so a survey queued behind a long line and one put off share one line).
    pub fn with_turns(mut self, turns: Arc<Turns>) -> Self {
        self.turns = turns;
        self
    }

    /// Holds keys through `holds` (this process's name, the hold's ttl).
    pub fn with_holds(mut self, holds: Holds) -> Self {
        self.holds = holds;
        self
    }

    /// Two jobs with one key (the CRM webhook and the poll saw the same record) must
    /// not post side by side: the key is held around the POST, after the rate-gate
    /// permit (waiting for a permit holds nothing), so one posts while the other
    /// waits a moment and then finds it sent. A permit further off than the
    /// [`patience`] puts the job off to its turn in its connector's line: a backlog
    /// waiting for one connector's quota never holds the workers other tenants need.
    async fn send(&self, job: &SendAction) -> Result<(), JobError> {
        let key = &job.idempotency_key;
        let client_key = job.connector_ref();
        let client = self.clients.get(&client_key).ok_or_else(|| {
            JobError::Permanent(format!(
                "connector {client_key} is not configured (tenants[].connectors[])"
            ))
        })?;
        let body = with_marker(&job.action, key);
        let correlation = correlation_of(job, &body);
        if let Some(PostState::Sent { action_id }) =
            self.correlations.state(key).await.map_err(store_failure)?
        {
            metrics::counter!(ACTIONS_TOTAL, "outcome" => "already_sent").increment(1);
            return self.announce(&action_id, &correlation).await;
        }
        let held = loop {
            if !self.holds.wait_free(key).await.map_err(store_failure)? {
                return Err(JobError::Retry {
                    reason: format!("another attempt is still posting {key}"),
                    after: Some(Duration::from_secs(1)),
                });
            }
            let pacing = client.pacing();
            let reservation = match client
                .reserve_within(patience(pacing))
                .await
                .map_err(kaizala_failure)?
            {
                Ok(reservation) => reservation,
                Err(wait) => {
                    let until_ms = self.turns.next(&client_key, wait, pacing);
                    metrics::counter!(DEFERRED_TOTAL).increment(1);
                    return Err(JobError::Defer { until_ms });
                }
            };
            // Taken right after the permit; losing the race to another attempt costs
            // that permit, which only happens when two attempts of one key meet.
            if let Some(held) = self.holds.try_take(key).await.map_err(store_failure)? {
                break (held, reservation);
            }
        };
        let (held, reservation) = held;
        let result = self
            .send_held(job, client, &body, &correlation, reservation)
            .await;
        held.release().await;
        let action_id = result?;
        self.announce(&action_id, &correlation).await
    }

    /// Posts (or finds) the action while holding its key; returns its id.
    async fn send_held(
        &self,
        job: &SendAction,
        client: &KaizalaClient,
        body: &Action,
        correlation: &Correlation,
        reservation: Reservation,
    ) -> Result<String, JobError> {
        let mut reservation = Some(reservation);
        let key = &job.idempotency_key;
        match self.correlations.state(key).await.map_err(store_failure)? {
            Some(PostState::Sent { action_id }) => {
                metrics::counter!(ACTIONS_TOTAL, "outcome" => "already_sent").increment(1);
                return Ok(action_id);
            }
            // Only a survey carries its key (in an invisible question) for a search to
            // find; other action types are posted again after an uncertain outcome.
            Some(PostState::Posting { started_ms, .. }) if matches!(body, Action::Survey(_)) => {
                // The search's calls took permits after this one: post on a new one.
                reservation = None;
                if let Some(action_id) = self
                    .find(client, job, body, &correlation.title, started_ms)
                    .await?
                {
                    tracing::info!(%key, %action_id, "an earlier attempt had posted the action");
                    self.correlations
                        .sent(&action_id, correlation)
                        .await
                        .map_err(store_failure)?;
                    metrics::counter!(ACTIONS_TOTAL, "outcome" => "found").increment(1);
                    return Ok(action_id);
                }
            }
            Some(PostState::Posting { .. }) => {
                tracing::warn!(%key, "the outcome of an earlier post is not known and this action type carries no key to look for; posting again");
            }
            None => {
                let started_ms = now_ms();
                let state = PostState::Posting {
                    started_ms,
                    correlation: Some(Box::new(correlation.clone())),
                };
                self.correlations
                    .set_state(key, &state)
                    .await
                    .map_err(store_failure)?;
            }
        }
        let posted = client
            .post_action_body_on(&job.group, &body.request_body(), reservation)
            .await
            .map_err(kaizala_failure)?;
        self.correlations
            .sent(&posted.action_id, correlation)
            .await
            .map_err(store_failure)?;
        metrics::counter!(ACTIONS_TOTAL, "outcome" => "posted").increment(1);
        tracing::info!(%key, action_id = %posted.action_id, group = %job.group, "action posted");
        Ok(posted.action_id)
    }

    /// The rule's "survey sent" activity, when it asks for one: written create-only
    /// with an id derived from the key, so every retry of the job (which lands in the
    /// `Sent` branch) writes it at most once.
    async fn announce(&self, action_id: &str, correlation: &Correlation) -> Result<(), JobError> {
        let Some((sinks, rules)) = &self.crm else {
            return Ok(());
        };
        let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let Some(activity) = rules.sent_activity(correlation, action_id, &time) else {
            return Ok(());
        };
        let sink = sinks.get(&correlation.record.crm).ok_or_else(|| {
            JobError::Permanent(format!(
                "CRM source {} is not configured (crm[])",
                correlation.record.crm
            ))
        })?;
        sink.write_activity(&activity).await.map_err(crm_failure)?;
        Ok(())
    }

    /// The action an earlier attempt posted for `job`, if it did: among the group's
    /// actions of the type since the first attempt, one with the same title whose
    /// invisible question carries the key.
    async fn find(
        &self,
        client: &KaizalaClient,
        job: &SendAction,
        body: &Action,
        title: &str,
        started_ms: i64,
    ) -> Result<Option<String>, JobError> {
        let listed = client
            .list_actions(
                &job.group,
                body.kind(),
                Some(started_ms - SEARCH_SLACK_MS),
                Some(200),
            )
            .await
            .map_err(kaizala_failure)?;
        let marker = key_marker(&job.idempotency_key);
        for summary in listed.actions {
            let Some(action_id) = summary.action_id() else {
                continue;
            };
            let listed_title = summary.action_body.get("title").and_then(Value::as_str);
            if listed_title.is_some_and(|t| t != title) {
                continue;
            }
            let details = client
                .action_details(&job.group, action_id)
                .await
                .map_err(kaizala_failure)?;
            if details
                .action_details
                .questions
                .iter()
                .any(|q| q.is_invisible && q.title == marker)
            {
                return Ok(Some(action_id.to_string()));
            }
        }
        Ok(None)
    }
}

/// What an action of `job` is sent for, as the correlation store records it.
fn correlation_of(job: &SendAction, body: &Action) -> Correlation {
    Correlation {
        key: job.idempotency_key.to_string(),
        rule: job.rule.clone(),
        tenant: job.tenant.clone(),
        connector: job.connector.clone(),
        group: job.group.clone(),
        title: body.title().to_string(),
        record: job.record.clone(),
        activity: job.activity,
        due_ms: body
            .due_hours()
            .map(|h| now_ms().saturating_add(i64::from(h).saturating_mul(3_600_000))),
        polled_out: false,
    }
}

/// The action with the key's invisible question added: a survey carries its key for
/// a search after an uncertain outcome to find; other kinds are posted as they are.
fn with_marker(action: &Action, key: &str) -> Action {
    let mut body = action.clone();
    if let Action::Survey(survey) = &mut body {
        let marker = key_marker(key);
        if !survey.questions.iter().any(|q| q.title == marker) {
            survey.questions.push(Question {
                title: marker,
                kind: QuestionType::Text,
                options: Vec::new(),
                is_invisible: true,
            });
        }
    }
    body
}

impl Handler<SendAction> for SendActionHandler {
    fn handle<'a>(&'a self, job: &'a SendAction, _attempt: u32) -> HandlerFuture<'a> {
        Box::pin(self.send(job))
    }
}
