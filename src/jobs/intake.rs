//! Where received events become jobs: a CRM change goes through the rules and each
//! action to send is queued as a `SendAction`; a Kaizala answer is queued as a
//! `RecordResponse`. Both answer their receiver only once the job is durable, so an
//! acknowledged event is never lost.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

use super::{Correlations, RecordResponse, SendAction, Turns};
use crate::crm::CrmEventSink;
use crate::kaizala::events::Answer;
use crate::kaizala::{Clients, EventData, EventSink, KaizalaEvent, SinkError};
use crate::model::time::rfc3339_from_ms;
use crate::model::{AnsweredQuestion, CrmEvent, ResponseEvent};
use crate::queue::Queue;
use crate::rules::{Decision, Rules};

/// `kaizala_bridge_kaizala_events_ignored_total{type}`: accepted events that need no
/// work (messages, membership changes, job status).
pub const IGNORED_TOTAL: &str = "kaizala_bridge_kaizala_events_ignored_total";

/// Turns events into jobs on the queue.
#[derive(Clone)]
pub struct Intake {
    queue: Queue,
    rules: Arc<Rules>,
    correlations: Option<Correlations>,
    turns: Option<(Arc<Turns>, Clients)>,
}

impl Intake {
    /// An intake pushing to `queue`, deciding CRM events with `rules`.
    pub fn new(queue: Queue, rules: Arc<Rules>) -> Self {
        Self {
            queue,
            rules,
            correlations: None,
            turns: None,
        }
    }

    /// Queues a survey straight for its turn when its connector's line in `turns`
    /// (the send handler's) is longer than a worker waits: a burst past the quota is
    /// then never fetched only to be put off. `clients` give each connector's pacing.
    pub fn with_turns(mut self, turns: Arc<Turns>, clients: Clients) -> Self {
        self.turns = Some((turns, clients));
        self
    }

    /// Queues `job`: for its turn behind its connector's line when that is long,
    /// due now otherwise.
    async fn queue_send(&self, job: SendAction) -> Result<(), String> {
        let turn = self.turns.as_ref().and_then(|(turns, clients)| {
            let connector = job.connector_ref();
            let pacing = clients.get(&connector)?.pacing();
            turns.behind_the_line(&connector, pacing)
        });
        let pushed = match turn {
            Some(turn_ms) => self.queue.push_for_turn(job, turn_ms).await,
            None => self.queue.push(job).await,
        };
        pushed.map(drop).map_err(|e| e.to_string())
    }

    /// Skips queueing an action whose key is already sent or being sent (the webhook
    /// and the poll usually both see a new record). Only a shortcut: the send itself
    /// stays exactly-once without it.
    pub fn with_correlations(mut self, correlations: Correlations) -> Self {
        self.correlations = Some(correlations);
        self
    }

    async fn crm_event(&self, event: CrmEvent) -> Result<(), String> {
        for decision in self.rules.decide(&event) {
            match decision {
                Decision::Send(job) => {
                    let key = job.idempotency_key.clone();
                    if let Some(correlations) = &self.correlations {
                        if correlations
                            .state(&key)
                            .await
                            .map_err(|e| e.to_string())?
                            .is_some()
                        {
                            tracing::debug!(%key, "already sent or being sent; not queued again");
                            continue;
                        }
                    }
                    self.queue_send(*job).await?;
                    tracing::debug!(%key, "survey queued");
                }
                Decision::Skip {
                    rule,
                    outcome,
                    detail,
                } => {
                    tracing::debug!(%rule, record = %event.record.id, outcome, %detail, "rule sends nothing for this record");
                }
            }
        }
        Ok(())
    }

    async fn kaizala_event(&self, tenant: &str, event: KaizalaEvent) -> Result<(), SinkError> {
        let Some((response, time)) = response_of(&event) else {
            let kind = crate::kaizala::events::type_label(&event.event_type);
            metrics::counter!(IGNORED_TOTAL, "type" => kind).increment(1);
            return Ok(());
        };
        let job = RecordResponse {
            tenant: tenant.into(),
            response,
            time,
        };
        self.queue
            .push(job)
            .await
            .map(|_| ())
            .map_err(|e| SinkError(e.to_string()))
    }
}

/// The answer an event carries, with when it was given (RFC 3339); `None` for events
/// that carry no answer to record.
pub fn response_of(event: &KaizalaEvent) -> Option<(ResponseEvent, String)> {
    let EventData::Response {
        action_id,
        group_id,
        response_id,
        responder,
        responder_name,
        is_update,
        answers,
        ..
    } = &event.data
    else {
        return None;
    };
    let given_ms = answers
        .iter()
        .find(|a| a.is_invisible && a.title == "ResponseTime")
        .and_then(|a| a.value.as_i64());
    // A time RFC 3339 cannot show (past the year 9999: a value in µs, say) is not
    // believed; the answer is recorded with the time it arrived.
    let time = given_ms.and_then(rfc3339_from_ms).unwrap_or_else(|| {
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
    });
    let response = ResponseEvent {
        action_id: action_id.clone(),
        group_id: group_id.into(),
        response_id: response_id.clone(),
        responder: responder.clone(),
        responder_name: responder_name.clone(),
        is_update: *is_update,
        answers: answers
            .iter()
            .filter(|a| !a.is_invisible)
            .map(|a| AnsweredQuestion {
                question: a.title.clone(),
                answer: answer_text(a),
            })
            .collect(),
    };
    Some((response, time))
}

/// An answer as text: options joined with ", ", numbers as written, a place as
/// `latitude, longitude`.
fn answer_text(answer: &Answer) -> String {
    fn text(value: &Value) -> String {
        match value {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
            Value::Object(map) => match (map.get("latitude"), map.get("longitude")) {
                (Some(lat), Some(long)) => format!("{lat}, {long}"),
                _ => value.to_string(),
            },
            other => other.to_string(),
        }
    }
    text(&answer.value)
}

impl CrmEventSink for Intake {
    fn accept(
        &self,
        event: CrmEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(self.crm_event(event))
    }
}

impl EventSink for Intake {
    fn accept(
        &self,
        tenant: &str,
        event: KaizalaEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + '_>> {
        let tenant = tenant.to_string();
        Box::pin(async move { self.kaizala_event(&tenant, event).await })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn answer(time: Value) -> KaizalaEvent {
        KaizalaEvent {
            event_id: "e".into(),
            event_type: "SurveyResponse".into(),
            object_id: "g".into(),
            object_type: "Group".into(),
            context: String::new(),
            from_user: "+1".into(),
            from_user_name: "Asha".into(),
            data: EventData::Response {
                action_id: "a".into(),
                group_id: "g".into(),
                response_id: "r".into(),
                responder: "+1".into(),
                responder_name: "Asha".into(),
                is_anonymous: false,
                is_update: false,
                answers: vec![
                    Answer {
                        title: "Budget?".into(),
                        kind: "MultiOption".into(),
                        value: json!(["Yes", "Later"]),
                        is_invisible: false,
                    },
                    Answer {
                        title: "ResponseTime".into(),
                        kind: "DateTime".into(),
                        value: time,
                        is_invisible: true,
                    },
                ],
            },
        }
    }

    #[test]
    fn an_answer_carries_its_visible_answers_as_text_and_its_time() {
        let (response, time) = response_of(&answer(json!(1_521_800_782_956_i64))).unwrap();
        assert_eq!(time, "2018-03-23T10:26:22Z");
        assert_eq!(
            response.answers.len(),
            1,
            "the invisible time is not an answer"
        );
        assert_eq!(response.answers[0].answer, "Yes, Later");
    }

    #[test]
    fn a_time_out_of_range_is_not_believed_and_does_not_panic() {
        for wild in [json!(1_700_000_000_000_000_i64), json!(-5)] {
            let (_, time) = response_of(&answer(wild)).unwrap();
            assert!(time.starts_with("20"), "{time}");
        }
    }
}
