//! What the jobs carry, and what an action of ours was sent for: plain data the
//! rules produce and the job handlers consume, so neither imports the other.

use serde::{Deserialize, Serialize};

use super::action::Action;
use super::ids::{ConnectorId, ConnectorRef, GroupId, TenantId};
use super::{Activity, ActivityKind, CrmRecordRef, IdempotencyKey, ResponseEvent};

/// Post an action to a Kaizala group for a CRM record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendAction {
    /// The rule that produced it.
    pub rule: String,
    /// Kaizala tenant.
    pub tenant: TenantId,
    /// Connector within the tenant.
    pub connector: ConnectorId,
    /// The group to post to.
    pub group: GroupId,
    /// The rendered action (queued as its request body, `actionType` and
    /// `actionBody`).
    pub action: Action,
    /// Unique per (rule, record, event): the survey carries it in an invisible
    /// question and the correlation store is keyed by it.
    pub idempotency_key: IdempotencyKey,
    /// The CRM record it is about.
    pub record: CrmRecordRef,
    /// What each answer becomes in the CRM.
    pub activity: ActivityKind,
}

/// Write an answer into the CRM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordResponse {
    /// Kaizala tenant whose webhook or poll reported it.
    pub tenant: TenantId,
    /// The answer.
    pub response: ResponseEvent,
    /// When it was given (RFC 3339), for the activity's templates.
    #[serde(default)]
    pub time: String,
}

/// What an action of ours was sent for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correlation {
    /// The idempotency key.
    pub key: String,
    /// The rule.
    pub rule: String,
    /// The Kaizala tenant it was sent in: only that tenant's answers reach it.
    pub tenant: TenantId,
    /// The connector (within the tenant) that posted it, and reads its answers.
    pub connector: ConnectorId,
    /// The group.
    pub group: GroupId,
    /// The action's title, for the activity.
    pub title: String,
    /// The record.
    pub record: CrmRecordRef,
    /// What answers become.
    pub activity: ActivityKind,
    /// When the action stops taking answers (epoch ms), when known: response polling
    /// reads it until then plus a grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_ms: Option<i64>,
    /// Response polling is done with it (past due and grace).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub polled_out: bool,
}

impl SendAction {
    /// The connector that posts it.
    pub fn connector_ref(&self) -> ConnectorRef {
        ConnectorRef::new(self.tenant.clone(), self.connector.clone())
    }
}

impl Correlation {
    /// The connector that posted the action (and reads its answers).
    pub fn connector_ref(&self) -> ConnectorRef {
        ConnectorRef::new(self.tenant.clone(), self.connector.clone())
    }
}

impl Activity {
    /// The activity of an answer: the responder and the action in the subject, every
    /// question and answer in the description.
    pub fn summary(correlation: &Correlation, response: &ResponseEvent) -> Activity {
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
}
