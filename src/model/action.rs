//! The actions the bridge posts to Kaizala groups, typed: what a rule's template
//! renders, what a `SendAction` job carries, and what the Kaizala client posts. The
//! shapes are Kaizala's (`kaizala::api` re-exports them): each body serializes as
//! the swagger's request schema.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Question types of a survey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuestionType {
    /// One of the options.
    SingleOption,
    /// Several of the options.
    MultiOption,
    /// Free text.
    Text,
    /// A picture.
    Image,
    /// A number.
    Numeric,
    /// A date.
    Date,
    /// A date and time.
    DateTime,
    /// A place.
    Location,
    /// Files the responder attaches.
    AttachmentList,
}

/// An option of a choice question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionOption {
    /// The option's text.
    pub title: String,
}

/// A survey question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Question {
    /// The question.
    pub title: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: QuestionType,
    /// Options, for SingleOption and MultiOption.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<QuestionOption>,
    /// Hidden from people; the bridge carries its idempotency key in one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_invisible: bool,
}

/// The body of a Survey action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SurveyBody {
    /// The heading group members see.
    pub title: String,
    /// Hours until it expires.
    pub due_date: u32,
    /// Whether answers are anonymous.
    pub is_anonymous: bool,
    /// Whether only the sender sees the summary.
    pub is_sender_only: bool,
    /// Whether one person may answer more than once.
    pub accept_multiple_responses: bool,
    /// The questions.
    pub questions: Vec<Question>,
}

/// The body of a Job action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobBody {
    /// The heading group members see.
    pub title: String,
    /// Phone numbers of the assignees.
    pub assigned_to: Vec<String>,
    /// Hours until it is due.
    pub due_date: u32,
}

/// A choice of a poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollChoice {
    /// The choice's text.
    pub title: String,
}

/// The body of a Poll action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollBody {
    /// The question.
    pub question: String,
    /// The choices.
    pub choices: Vec<PollChoice>,
    /// Hours until it expires.
    pub expiry_in_hours: u32,
}

/// The body of an Announcement action, in the swagger's capitalisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnouncementBody {
    /// The heading group members see.
    pub title: String,
    /// The text.
    #[serde(rename = "Message")]
    pub message: String,
    /// Media resources from `/v1/media`; none from the bridge.
    #[serde(rename = "MediaResources")]
    pub media_resources: Vec<String>,
}

/// A property of an action-package instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageProperty {
    /// The property's name in the action package's definition.
    pub name: String,
    /// Text, Numeric, Location, DateTime, StringList, Attachment, StringSet or AttachmentList.
    #[serde(rename = "type")]
    pub kind: String,
    /// The value, as text.
    pub value: String,
}

/// The body of an action-package instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageBody {
    /// Its properties.
    pub properties: Vec<PackageProperty>,
}

/// An action to post to a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub enum Action {
    /// A survey.
    Survey(SurveyBody),
    /// A job.
    Job(JobBody),
    /// A poll.
    Poll(PollBody),
    /// An announcement.
    Announcement(AnnouncementBody),
    /// An instance of an action package.
    Package {
        /// The package id.
        id: String,
        /// Its properties.
        body: PackageBody,
    },
}

impl Action {
    /// The JSON body of `POST /groups/{g}/actions`.
    pub fn request_body(&self) -> Value {
        fn typed(kind: &str, body: &impl Serialize) -> Value {
            serde_json::json!({ "actionType": kind, "actionBody": body })
        }
        match self {
            Action::Survey(body) => typed("Survey", body),
            Action::Job(body) => typed("Job", body),
            Action::Poll(body) => typed("Poll", body),
            Action::Announcement(body) => typed("Announcement", body),
            Action::Package { id, body } => serde_json::json!({ "id": id, "actionBody": body }),
        }
    }

    /// The Kaizala `actionType` (`Package` for an action-package instance, which is
    /// posted by its package id instead).
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Survey(_) => "Survey",
            Action::Job(_) => "Job",
            Action::Poll(_) => "Poll",
            Action::Announcement(_) => "Announcement",
            Action::Package { .. } => "Package",
        }
    }

    /// The heading group members see (a poll's question), as the activity names it.
    pub fn title(&self) -> &str {
        match self {
            Action::Survey(body) => &body.title,
            Action::Job(body) => &body.title,
            Action::Poll(body) => &body.question,
            Action::Announcement(body) => &body.title,
            Action::Package { .. } => "",
        }
    }

    /// Hours it takes answers for (a survey's or job's `dueDate`, a poll's
    /// `expiryInHours`); `None` for what takes no answers.
    pub fn due_hours(&self) -> Option<u32> {
        match self {
            Action::Survey(body) => Some(body.due_date),
            Action::Job(body) => Some(body.due_date),
            Action::Poll(body) => Some(body.expiry_in_hours),
            Action::Announcement(_) | Action::Package { .. } => None,
        }
    }
}

/// A job payload keeps the request body's shape (`actionType` and `actionBody`), so
/// jobs queued before the action was typed read back unchanged.
impl From<Action> for Value {
    fn from(action: Action) -> Value {
        action.request_body()
    }
}

impl TryFrom<Value> for Action {
    type Error = String;

    fn try_from(mut value: Value) -> Result<Self, String> {
        let body = value
            .get_mut("actionBody")
            .map(Value::take)
            .ok_or("action: no actionBody")?;
        fn parse<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, String> {
            serde_json::from_value(body).map_err(|e| format!("action: actionBody: {e}"))
        }
        if let Some(id) = value.get("id").and_then(Value::as_str) {
            return Ok(Action::Package {
                id: id.to_string(),
                body: parse(body)?,
            });
        }
        match value.get("actionType").and_then(Value::as_str) {
            Some("Survey") => Ok(Action::Survey(parse(body)?)),
            Some("Job") => Ok(Action::Job(parse(body)?)),
            Some("Poll") => Ok(Action::Poll(parse(body)?)),
            Some("Announcement") => Ok(Action::Announcement(parse(body)?)),
            other => Err(format!("action: unknown actionType {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_is_queued_as_its_request_body_and_read_back_from_it() {
        // The shape jobs queued before the action was typed carry.
        let queued = serde_json::json!({
            "actionType": "Survey",
            "actionBody": {
                "title": "Qualify", "dueDate": 48, "isAnonymous": false,
                "isSenderOnly": false, "acceptMultipleResponses": false,
                "questions": [{ "title": "Budget?", "type": "SingleOption",
                                "options": [{ "title": "Yes" }, { "title": "No" }] }]
            }
        });
        let action: Action = serde_json::from_value(queued.clone()).unwrap();
        let Action::Survey(survey) = &action else {
            panic!("{action:?}")
        };
        assert_eq!(survey.questions[0].options[1].title, "No");
        assert_eq!(serde_json::to_value(&action).unwrap(), queued);
        assert_eq!((action.title(), action.due_hours()), ("Qualify", Some(48)));

        let announcement = serde_json::json!({ "actionType": "Announcement",
            "actionBody": { "title": "t", "Message": "m", "MediaResources": [] } });
        let action: Action = serde_json::from_value(announcement).unwrap();
        assert_eq!(action.kind(), "Announcement");
        assert_eq!(action.due_hours(), None);

        let unknown = serde_json::json!({ "actionType": "Quiz", "actionBody": {} });
        let error = serde_json::from_value::<Action>(unknown).unwrap_err();
        assert!(error.to_string().contains("unknown actionType"), "{error}");
    }
}
