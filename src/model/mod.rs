//! Plain domain types both sides share: what a CRM record is, what changed, and the
//! activity an answer becomes. No I/O, no HTTP, nothing else of the crate.

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
