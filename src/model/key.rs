//! The idempotency key: what makes a CRM change become at most one Kaizala action.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

use super::{ChangeKind, CrmRecordRef};

/// Unique per (rule, record, change): the survey carries it in an invisible
/// question, and the post state, the hold and the correlation are kept under it. It
/// begins with the rule's id, and a rule sends for one CRM source to one tenant, so
/// keys of different tenants or sources never meet. Serialized as the plain string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key of `rule` acting on `kind` of `record`:
    /// `{rule}/{crm}/{entity_set}/{id}/{created|updated|deleted}`.
    pub fn for_change(rule: &str, record: &CrmRecordRef, kind: ChangeKind) -> Self {
        let kind = match kind {
            ChangeKind::Created => "created",
            ChangeKind::Updated => "updated",
            ChangeKind::Deleted => "deleted",
        };
        Self(format!(
            "{rule}/{}/{}/{}/{kind}",
            record.crm, record.entity_set, record.id
        ))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key read back (a stored job, a survey's marker, a test's fixture).
impl From<String> for IdempotencyKey {
    fn from(key: String) -> Self {
        Self(key)
    }
}

impl From<&str> for IdempotencyKey {
    fn from(key: &str) -> Self {
        Self(key.to_string())
    }
}

/// Read as the text it is wherever a store key or a marker is made of it.
impl Deref for IdempotencyKey {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<&str> for IdempotencyKey {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}
