//! Writing answers as activities regarding their record: a task (or a note), whose id
//! is derived from the answer's source key (UUID v5), created with a create-only
//! upsert (`PATCH` with `If-None-Match: *`), so a retry never makes a second one.

use std::future::Future;
use std::pin::Pin;

use reqwest::Method;
use serde_json::{json, Value};

use super::client::WebApi;
use super::error::DataverseError;
use crate::crm::{CrmError, CrmSink, Written};
use crate::model::{Activity, ActivityKind};

/// The namespace of the bridge's activity ids (UUID v5 over the source key).
const NAMESPACE: uuid::Uuid = uuid::uuid!("5c0f6a4e-8f1b-4c1e-9d8a-4b6e2f7c1a90");

/// `kaizala_bridge_dataverse_activities_written_total{crm,kind,outcome}`.
pub const ACTIVITIES_TOTAL: &str = "kaizala_bridge_dataverse_activities_written_total";

/// The id an activity with this source key always gets.
pub fn activity_id(source_key: &str) -> String {
    uuid::Uuid::new_v5(&NAMESPACE, source_key.as_bytes()).to_string()
}

/// Cuts `text` to `limit` characters, marking the cut.
fn fit(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(limit - 1).collect();
    cut.push('…');
    cut
}

/// The body of the activity, with the documented navigation property of its regarding
/// record; lengths held to the columns' limits.
pub fn body(activity: &Activity) -> Result<(&'static str, Value), DataverseError> {
    let (set, regarding) = (
        activity.regarding.entity_set.as_str(),
        &activity.regarding.id,
    );
    if set != "opportunities" {
        return Err(DataverseError::Rejected {
            status: 400,
            code: String::new(),
            message: format!("activities can be written regarding opportunities only, not {set}"),
        });
    }
    let target = format!("/opportunities({regarding})");
    Ok(match activity.kind {
        ActivityKind::Task => (
            "tasks",
            json!({
                "subject": fit(&activity.subject, 200),
                "description": fit(&activity.description, 2000),
                "regardingobjectid_opportunity_task@odata.bind": target,
            }),
        ),
        ActivityKind::Note => (
            "annotations",
            json!({
                "subject": fit(&activity.subject, 500),
                "notetext": fit(&activity.description, 100_000),
                "objectid_opportunity@odata.bind": target,
            }),
        ),
    })
}

/// The activity writer of one organisation.
pub struct DataverseSink {
    api: std::sync::Arc<WebApi>,
    crm: String,
}

impl DataverseSink {
    /// A sink writing through `api`.
    /// `api` may be shared (one token cache) with the source's poller.
    pub fn new(crm: &str, api: impl Into<std::sync::Arc<WebApi>>) -> Self {
        Self {
            api: api.into(),
            crm: crm.to_string(),
        }
    }

    async fn write(&self, activity: &Activity) -> Result<Written, DataverseError> {
        let (set, body) = body(activity)?;
        let id = activity_id(&activity.source_key);
        let kind = if set == "tasks" { "task" } else { "note" };
        let result = self
            .api
            .send(
                Method::PATCH,
                &format!("{set}({id})"),
                &[("If-None-Match", "*")],
                Some(&body),
            )
            .await;
        let outcome = match result {
            Ok(_) => Written::Created(id),
            Err(DataverseError::AlreadyExists) => Written::AlreadyThere(id),
            Err(error) => return Err(error),
        };
        let label = if matches!(outcome, Written::Created(_)) {
            "created"
        } else {
            "already_there"
        };
        metrics::counter!(ACTIVITIES_TOTAL, "crm" => self.crm.clone(), "kind" => kind, "outcome" => label).increment(1);
        Ok(outcome)
    }
}

impl CrmSink for DataverseSink {
    fn write_activity<'a>(
        &'a self,
        activity: &'a Activity,
    ) -> Pin<Box<dyn Future<Output = Result<Written, CrmError>> + Send + 'a>> {
        Box::pin(async move { self.write(activity).await.map_err(CrmError::from) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_source_key_gives_the_same_id_and_long_text_is_cut() {
        assert_eq!(activity_id("response-1"), activity_id("response-1"));
        assert_ne!(activity_id("response-1"), activity_id("response-2"));
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 4), "abc");
    }
}
