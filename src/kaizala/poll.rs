//! Reading responses by polling, for deployments Kaizala cannot call back: each
//! outstanding action of ours is read with its responses, and every new or changed
//! response is handed on once, through the same dedup and sink as webhook events.
//! An action is finished once its due date plus a grace period has passed.

use std::time::Duration;

use super::api::ActionDetails;
use super::client::KaizalaClient;
use super::error::KaizalaError;
use super::events::{Answer, EventData, KaizalaEvent};
use super::webhook::{ReceiveError, Received, Receiver};

/// An action of ours that may still get answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outstanding {
    /// Its group.
    pub group_id: String,
    /// The action.
    pub action_id: String,
    /// When it stops taking answers, epoch milliseconds.
    pub due_ms: i64,
}

/// What one pass found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PollReport {
    /// Responses handed on.
    pub handed_on: usize,
    /// Actions past their due date plus the grace period: stop polling them.
    pub finished: Vec<String>,
}

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// Kaizala could not be read.
    #[error(transparent)]
    Kaizala(#[from] KaizalaError),
    /// The sink could not take a response; the next pass offers it again.
    #[error(transparent)]
    Sink(#[from] ReceiveError),
}

/// Reads each outstanding action once and hands on responses not seen before.
pub async fn poll_once(
    client: &KaizalaClient,
    receiver: &Receiver,
    tenant: &str,
    actions: &[Outstanding],
    now_ms: i64,
    grace: Duration,
) -> Result<PollReport, PollError> {
    let mut report = PollReport::default();
    for action in actions {
        let details = client
            .action_details(&action.group_id, &action.action_id)
            .await?;
        for event in events(action, &details) {
            if receiver.hand_on(tenant, event).await? == Received::Accepted {
                report.handed_on += 1;
            }
        }
        if now_ms > action.due_ms + grace.as_millis() as i64 {
            report.finished.push(action.action_id.clone());
        }
    }
    Ok(report)
}

/// The responses of an action as events. The id names the response and when it was
/// given, so a changed answer is a new event and an unchanged one a duplicate.
fn events(action: &Outstanding, details: &ActionDetails) -> Vec<KaizalaEvent> {
    let event_type = match details.action_type.as_str() {
        "Survey" => "SurveyResponse",
        "Job" => "JobResponse",
        _ => "ActionResponse",
    };
    details
        .action_details
        .responses
        .iter()
        .map(|r| KaizalaEvent {
            event_id: format!("poll:{}:{}", r.response_id, r.response_time),
            event_type: event_type.to_string(),
            object_id: action.group_id.clone(),
            object_type: "Group".into(),
            context: String::new(),
            from_user: r.responder.clone(),
            from_user_name: r.responder_name.clone(),
            data: EventData::Response {
                action_id: action.action_id.clone(),
                group_id: action.group_id.clone(),
                response_id: r.response_id.clone(),
                responder: r.responder.clone(),
                responder_name: r.responder_name.clone(),
                is_anonymous: r.responder.is_empty(),
                is_update: r.is_update_response,
                answers: r
                    .response_with_questions
                    .iter()
                    .map(|q| Answer {
                        title: q.title.clone(),
                        kind: q.kind.clone(),
                        value: q.answer.clone(),
                        is_invisible: q.is_invisible,
                    })
                    .collect(),
            },
        })
        .collect()
}
