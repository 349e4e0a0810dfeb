//! Plain domain types both sides share: what a CRM record is, what changed, and the
//! activity an answer becomes. No I/O, no HTTP, nothing else of the crate.

pub mod action;
pub mod ids;
mod key;
mod payload;
pub mod time;

pub use ids::{ConnectorId, ConnectorRef, GroupId, TenantId};
pub use key::IdempotencyKey;
pub use payload::{Correlation, RecordResponse, SendAction};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A record in a CRM source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CrmRecordRef {
    /// Id of the `[[crm]]` source.
    pub crm: String,
    /// Entity set, e.g. `opportunities`.
    pub entity_set: String,
    /// The record's id (a GUID for Dataverse).
    pub id: String,
}

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// It was created.
    Created,
    /// It was changed.
    Updated,
    /// It was deleted.
    Deleted,
}

/// A change to a CRM record, from polling or a webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrmEvent {
    /// The record.
    pub record: CrmRecordRef,
    /// What happened.
    pub kind: ChangeKind,
    /// The record's columns as known (all selected ones when polled; the changed ones
    /// from a webhook); empty for a deletion.
    pub attributes: Map<String, Value>,
    /// True when `attributes` may leave out columns that have a value (a webhook's
    /// Update carries only the changed ones); false when an absent column is empty.
    #[serde(default)]
    pub partial: bool,
}

/// The kind of activity an answer becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActivityKind {
    /// A task regarding the record.
    Task,
    /// A note on the record.
    Note,
}

/// An activity to write regarding a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// Task or note.
    pub kind: ActivityKind,
    /// The record it is about.
    pub regarding: CrmRecordRef,
    /// Subject (a note's title).
    pub subject: String,
    /// Description (a note's text).
    pub description: String,
    /// What makes it unique, e.g. the Kaizala response id: the same key always gives
    /// the same activity, so writing it twice leaves one.
    pub source_key: String,
}

/// One answered question of a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnsweredQuestion {
    /// The question.
    pub question: String,
    /// The answer, as text (options joined with ", ").
    pub answer: String,
}

/// Someone answered an action, as a webhook or a poll reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseEvent {
    /// The action answered.
    pub action_id: String,
    /// Its group.
    pub group_id: GroupId,
    /// The response (stable across updates by the same person).
    pub response_id: String,
    /// The responder's phone (empty when anonymous).
    pub responder: String,
    /// The responder's name.
    pub responder_name: String,
    /// Whether this changes an earlier answer.
    pub is_update: bool,
    /// The visible questions and their answers.
    pub answers: Vec<AnsweredQuestion>,
}

impl ResponseEvent {
    /// What makes the activity of this answer unique: the response id and what it
    /// says, so a repeated delivery maps to the same activity and a changed answer to
    /// a new one.
    pub fn source_key(&self) -> String {
        let content = serde_json::to_vec(&self.answers).expect("plain data serializes");
        let digest = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &content);
        format!("{}#{}", self.response_id, digest.simple())
    }
}
