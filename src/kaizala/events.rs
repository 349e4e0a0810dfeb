//! Webhook events, parsed from the documented schema (EventSchema.md) into types.
//!
//! An event type the bridge does not know is kept as [`EventData::Unknown`], so it can
//! be acknowledged and counted rather than refused. A known type with a missing or
//! mistyped field is an error that names the field.

use serde_json::{Map, Value};

/// One answered question of a survey response.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The question.
    pub title: String,
    /// Its type.
    pub kind: String,
    /// The answer as sent: text, number, option title(s), or an object.
    pub value: Value,
    /// Whether the question was hidden from people.
    pub is_invisible: bool,
}

/// What happened, by event type.
#[derive(Debug, Clone, PartialEq)]
pub enum EventData {
    /// A text message was posted.
    TextMessageCreated {
        /// The text.
        text: String,
    },
    /// A picture or file was posted.
    AttachmentCreated {
        /// Its caption.
        caption: String,
    },
    /// An announcement was posted.
    Announcement {
        /// Its heading (empty when Kaizala sent none).
        title: String,
        /// Its message.
        text: String,
    },
    /// A survey or another action was posted (`SurveyCreated`, `ActionCreated`).
    ActionCreated {
        /// The action.
        action_id: String,
    },
    /// A job was posted.
    JobCreated {
        /// The action.
        action_id: String,
        /// What the job asks for (empty when Kaizala sent none).
        title: String,
        /// Phones of the assignees.
        assigned_to: Vec<String>,
    },
    /// Someone answered a survey or another action (`SurveyResponse`, `ActionResponse`).
    Response {
        /// The action answered.
        action_id: String,
        /// The group it is in.
        group_id: String,
        /// The response (stable across updates by the same person).
        response_id: String,
        /// The responder's phone (empty when anonymous).
        responder: String,
        /// The responder's name.
        responder_name: String,
        /// Whether the survey is anonymous.
        is_anonymous: bool,
        /// Whether this changes an earlier answer.
        is_update: bool,
        /// The answers.
        answers: Vec<Answer>,
    },
    /// An assignee marked a job.
    JobResponse {
        /// The job.
        action_id: String,
        /// The group.
        group_id: String,
        /// The response.
        response_id: String,
        /// The assignee's phone.
        assignee: String,
        /// Whether the job is done.
        is_completed: bool,
    },
    /// A member joined or left (`MemberAdded`, `MemberRemoved`).
    Membership {
        /// The member's phone.
        member: String,
        /// The member's name.
        member_name: String,
        /// True when added, false when removed.
        added: bool,
    },
    /// A group was linked or unlinked (`GroupAdded`, `GroupRemoved`).
    GroupChanged {
        /// The payload as sent.
        raw: Value,
    },
    /// An event type the bridge does not know.
    Unknown {
        /// The payload as sent.
        raw: Value,
    },
}

/// A webhook event.
#[derive(Debug, Clone, PartialEq)]
pub struct KaizalaEvent {
    /// The event's id; Kaizala may deliver the same one more than once.
    pub event_id: String,
    /// Its type as sent, e.g. `SurveyResponse`.
    pub event_type: String,
    /// The group, action or package the webhook watches.
    pub object_id: String,
    /// `Group`, `Action` or `ActionPackage`.
    pub object_type: String,
    /// The `callBackContext` the webhook was registered with.
    pub context: String,
    /// Phone of who caused it.
    pub from_user: String,
    /// Name of who caused it.
    pub from_user_name: String,
    /// What happened.
    pub data: EventData,
}

impl KaizalaEvent {
    /// Parses an event body; the error names the missing or mistyped field.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("body: not valid JSON ({e})"))?;
        let top = value.as_object().ok_or("body: must be a JSON object")?;
        let event_type = text(top, "", "eventType")?;
        let data = match top.get("data") {
            Some(Value::Object(map)) => map.clone(),
            Some(Value::Null) | None => Map::new(),
            Some(_) => return Err("data: must be an object".into()),
        };
        let data = parse_data(&event_type, &data, &value)?;
        Ok(KaizalaEvent {
            event_id: id(top, "", "eventId")?,
            object_id: id(top, "", "objectId")?,
            object_type: text(top, "", "objectType")?,
            context: optional_text(top, "context"),
            from_user: optional_text(top, "fromUser"),
            from_user_name: optional_text(top, "fromUserName"),
            event_type,
            data,
        })
    }
}

fn text(map: &Map<String, Value>, path: &str, key: &str) -> Result<String, String> {
    match map.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(format!("{path}{key}: missing")),
        Some(_) => Err(format!("{path}{key}: must be a string")),
    }
}

/// A Kaizala id: present, a string, and of the shape ids have.
fn id(map: &Map<String, Value>, path: &str, key: &str) -> Result<String, String> {
    let value = text(map, path, key)?;
    crate::model::ids::kaizala_id(&format!("{path}{key}"), &value)?;
    Ok(value)
}

/// The `type` label of an event: its type when the bridge knows it, else `other`
/// (the type is the sender's text; a label per invented type would grow without
/// bound).
pub fn type_label(event_type: &str) -> &'static str {
    const KNOWN: [&str; 14] = [
        "TextMessageCreated",
        "AttachmentCreated",
        "Announcement",
        "ActionCreated",
        "SurveyCreated",
        "JobCreated",
        "SurveyResponse",
        "ActionResponse",
        "JobResponse",
        "MemberAdded",
        "MemberRemoved",
        "GroupAdded",
        "GroupRemoved",
        "ReactionAdded",
    ];
    KNOWN
        .iter()
        .find(|known| **known == event_type)
        .copied()
        .unwrap_or("other")
}

fn optional_text(map: &Map<String, Value>, key: &str) -> String {
    map.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn flag(map: &Map<String, Value>, key: &str) -> bool {
    map.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn parse_data(
    event_type: &str,
    data: &Map<String, Value>,
    raw: &Value,
) -> Result<EventData, String> {
    let d = "data.";
    Ok(match event_type {
        "TextMessageCreated" => EventData::TextMessageCreated {
            text: text(data, d, "text")?,
        },
        "AttachmentCreated" => EventData::AttachmentCreated {
            caption: optional_text(data, "caption"),
        },
        "Announcement" => EventData::Announcement {
            title: optional_text(data, "title"),
            text: optional_text(data, "text"),
        },
        "ActionCreated" | "SurveyCreated" => EventData::ActionCreated {
            action_id: id(data, d, "actionId")?,
        },
        "JobCreated" => EventData::JobCreated {
            action_id: id(data, d, "actionId")?,
            title: optional_text(data, "title"),
            assigned_to: (data.get("assignedTo").and_then(Value::as_array))
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        },
        "SurveyResponse" | "ActionResponse" => parse_response(data)?,
        "JobResponse" => parse_job_response(data)?,
        "MemberAdded" | "MemberRemoved" => EventData::Membership {
            member: text(data, d, "member")?,
            member_name: optional_text(data, "memberName"),
            added: event_type == "MemberAdded",
        },
        "GroupAdded" | "GroupRemoved" => EventData::GroupChanged { raw: raw.clone() },
        _ => EventData::Unknown { raw: raw.clone() },
    })
}

/// An answer to a survey or an action package: every question with its answer.
fn parse_response(data: &Map<String, Value>) -> Result<EventData, String> {
    let d = "data.";
    let details = match data.get("responseDetails") {
        Some(Value::Object(details)) => details,
        _ => return Err("data.responseDetails: missing".into()),
    };
    let questions = details
        .get("responseWithQuestions")
        .and_then(Value::as_array)
        .ok_or("data.responseDetails.responseWithQuestions: missing")?;
    let mut answers = Vec::with_capacity(questions.len());
    for (i, question) in questions.iter().enumerate() {
        let path = format!("data.responseDetails.responseWithQuestions[{i}].");
        let q = question
            .as_object()
            .ok_or_else(|| format!("{path}: must be an object"))?;
        answers.push(Answer {
            title: text(q, &path, "title")?,
            kind: optional_text(q, "type"),
            value: q.get("answer").cloned().unwrap_or(Value::Null),
            is_invisible: flag(q, "isInvisible"),
        });
    }
    Ok(EventData::Response {
        action_id: id(data, d, "actionId")?,
        group_id: id(data, d, "groupId")?,
        response_id: id(data, d, "responseId")?,
        responder: optional_text(data, "responder"),
        responder_name: optional_text(data, "responderName"),
        is_anonymous: flag(data, "isAnonymous"),
        is_update: flag(data, "isUpdateResponse"),
        answers,
    })
}

/// An assignee's answer to a job: done or not.
fn parse_job_response(data: &Map<String, Value>) -> Result<EventData, String> {
    let d = "data.";
    let response = data
        .get("responseDetails")
        .and_then(|r| r.get("response"))
        .and_then(Value::as_object)
        .ok_or("data.responseDetails.response: missing")?;
    Ok(EventData::JobResponse {
        action_id: id(data, d, "actionId")?,
        group_id: id(data, d, "groupId")?,
        response_id: id(data, d, "responseId")?,
        assignee: optional_text(response, "assignee"),
        is_completed: flag(response, "isCompleted"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_survey_response_sample_parses() {
        let sample = br#"{
          "objectId": "8c2950-9be8", "objectType": "Group", "eventType": "SurveyResponse",
          "eventId": "3e49b367", "context": "ctx", "fromUser": "+91xxxxxxxx", "fromUserName": "Robin Richard",
          "data": { "actionId": "920f9802", "groupId": "8c291050", "responseId": "420e9ef0",
            "isUpdateResponse": false, "responder": "+91xxxxxxxxx", "responderName": "Robin Richard",
            "isAnonymous": false,
            "responseDetails": { "responseWithQuestions": [
              { "title": "1", "type": "Text", "options": [], "answer": "1" },
              { "isInvisible": true, "title": "ResponseTime", "type": "DateTime", "options": [], "answer": 1521800782956 } ] } } }"#;
        let event = KaizalaEvent::parse(sample).unwrap();
        assert_eq!(event.event_id, "3e49b367");
        let EventData::Response {
            response_id,
            answers,
            responder_name,
            ..
        } = event.data
        else {
            panic!("{:?}", event.data)
        };
        assert_eq!(
            (response_id.as_str(), responder_name.as_str()),
            ("420e9ef0", "Robin Richard")
        );
        assert_eq!(answers[1].value, serde_json::json!(1521800782956_i64));
        assert!(answers[1].is_invisible);
    }

    #[test]
    fn a_missing_field_is_named_and_unknown_types_are_kept() {
        let err = KaizalaEvent::parse(br#"{"eventType":"SurveyResponse","eventId":"e","objectId":"g","objectType":"Group","data":{"actionId":"a","groupId":"g","responseDetails":{"responseWithQuestions":[]}}}"#).unwrap_err();
        assert_eq!(err, "data.responseId: missing");
        let err = KaizalaEvent::parse(br#"{"eventType":"TextMessageCreated","objectId":"g","objectType":"Group","data":{"text":"x"}}"#).unwrap_err();
        assert_eq!(err, "eventId: missing");
        let event = KaizalaEvent::parse(
            br#"{"eventType":"ReactionAdded","eventId":"e","objectId":"g","objectType":"Group"}"#,
        )
        .unwrap();
        assert!(matches!(event.data, EventData::Unknown { .. }));
        assert_eq!(
            KaizalaEvent::parse(b"[1]").unwrap_err(),
            "body: must be a JSON object"
        );
    }

    #[test]
    fn an_id_of_another_shape_is_refused_by_name() {
        let err = KaizalaEvent::parse(br#"{"eventType":"SurveyResponse","eventId":"e","objectId":"g","objectType":"Group","data":{"actionId":"../a","groupId":"g","responseId":"r","responseDetails":{"responseWithQuestions":[]}}}"#).unwrap_err();
        assert!(err.starts_with("data.actionId: must be"), "{err}");
        assert_eq!(type_label("SurveyResponse"), "SurveyResponse");
        assert_eq!(type_label("Invented\u{202e}"), "other");
    }
}
