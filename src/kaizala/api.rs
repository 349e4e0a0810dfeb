//! Wire types of the Kaizala connector API, as the bridge uses it.
//!
//! Request bodies are shaped to validate against the request schemas of Kaizala's
//! swagger (a test checks them); response types keep only what the bridge reads and
//! tolerate fields they do not know.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::token::Token;

/// `GET /v1/accessToken`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessTokenResponse {
    /// The token for the `accessToken` header.
    pub access_token: Token,
    /// Base URL of every other call.
    pub endpoint_url: String,
    /// When the token expires, epoch milliseconds.
    pub access_token_expiry: i64,
    /// A new refresh token once 90% of the current one's validity has passed;
    /// empty or absent otherwise.
    #[serde(default)]
    pub refresh_token: Option<Token>,
}

/// A group, as listed.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// Group id.
    pub group_id: String,
    /// Group name.
    pub group_name: String,
    /// `Group` or `ConnectGroup`.
    #[serde(default)]
    pub group_type: Option<String>,
}

/// `GET /v1/groups` and `GET /v1/groups/{id}`.
#[derive(Debug, Clone, Deserialize)]
pub struct GroupList {
    /// The groups.
    pub groups: Vec<Group>,
}

pub use crate::model::action::{
    Action, AnnouncementBody, JobBody, PackageBody, PackageProperty, PollBody, PollChoice,
    Question, QuestionOption, QuestionType, SurveyBody,
};

/// `POST /groups/{g}/actions`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostedAction {
    /// Request id.
    pub reference_id: String,
    /// The action's id.
    pub action_id: String,
}

/// One action in a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionSummary {
    /// Request id.
    #[serde(default)]
    pub reference_id: String,
    /// Its type.
    pub action_type: String,
    /// Type-specific fields (`actionId`, `title`, `responseCount`...).
    #[serde(default)]
    pub action_body: Value,
}

impl ActionSummary {
    /// The action's id, when the list carries it.
    pub fn action_id(&self) -> Option<&str> {
        self.action_body.get("actionId").and_then(Value::as_str)
    }
}

/// `GET /groups/{g}/actions`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionList {
    /// The actions.
    pub actions: Vec<ActionSummary>,
    /// True when more follow.
    #[serde(default)]
    pub has_more: bool,
}

/// An answer to one question.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnsweredQuestion {
    /// The question.
    pub title: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The answer: text, number, option title(s), or an object.
    pub answer: Value,
    /// Whether the question was hidden.
    #[serde(default)]
    pub is_invisible: bool,
}

/// A response to an action, from its details.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionResponse {
    /// Response id (stable across updates by the same person).
    pub response_id: String,
    /// Responder's phone (empty when anonymous).
    #[serde(default)]
    pub responder: String,
    /// Responder's name.
    #[serde(default)]
    pub responder_name: String,
    /// When it was given, epoch milliseconds.
    #[serde(default)]
    pub response_time: i64,
    /// True when the responder changed an earlier answer.
    #[serde(default)]
    pub is_update_response: bool,
    /// Questions and answers (surveys).
    #[serde(default)]
    pub response_with_questions: Vec<AnsweredQuestion>,
}

/// `actionDetails` of `GET /groups/{g}/actions/{a}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionDetailsBody {
    /// Title, when the type has one.
    #[serde(default)]
    pub title: Option<String>,
    /// The questions (with `getDetails`).
    #[serde(default)]
    pub questions: Vec<Question>,
    /// The responses (with `getDetails`).
    #[serde(default)]
    pub responses: Vec<ActionResponse>,
}

/// `GET /groups/{g}/actions/{a}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionDetails {
    /// Its type.
    pub action_type: String,
    /// The details.
    pub action_details: ActionDetailsBody,
}

/// A webhook subscription to create or change.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookRequest {
    /// The group id.
    pub object_id: String,
    /// `Group`.
    pub object_type: String,
    /// Subscribed events.
    pub event_types: Vec<String>,
    /// Where events go.
    pub call_back_url: String,
    /// Sent back as `kz-callback-token`.
    pub call_back_token: Token,
    /// Sent back as `context`.
    pub call_back_context: String,
}

/// A webhook as listed.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// Webhook id.
    pub id: String,
    /// Object id.
    pub object_id: String,
    /// Object type.
    pub object_type: String,
    /// Subscribed events.
    #[serde(default)]
    pub events: Vec<String>,
    /// Callback URL.
    #[serde(default)]
    pub callback_url: String,
    /// Callback context.
    #[serde(default)]
    pub callback_context: String,
    /// Callback token, when Kaizala shows it.
    #[serde(default)]
    pub callback_token: Option<Token>,
    /// False once Kaizala disabled it.
    #[serde(default)]
    pub active: bool,
}

/// `GET /v1/webhook`.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookList {
    /// The webhooks.
    pub webhooks: Vec<Webhook>,
}

/// `POST /v1/webhook`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedWebhook {
    /// The new webhook's id.
    pub webhook_id: String,
}

/// `POST /groups/{g}/messages`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SentMessage {
    /// Request id.
    pub reference_id: String,
}
