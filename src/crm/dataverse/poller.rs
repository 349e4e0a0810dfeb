//! Change tracking: finding new, changed and deleted records by polling.
//!
//! The first poll takes a baseline (all rows, paged) and keeps its delta link; later
//! polls read what changed since. Events are handed on first and the new delta link
//! is saved in the durable store only after, so a crash in between re-reads the same changes (which the
//! idempotency keys make harmless) and never skips one. An expired delta token leads
//! to a fresh baseline.

use reqwest::Method;
use serde_json::{Map, Value};

use super::client::WebApi;
use super::error::DataverseError;
pub use crate::crm::CrmEventSink;
use crate::model::{ChangeKind, CrmEvent, CrmRecordRef};
use crate::store::{namespaces, Store};

/// What the first poll of a source does with the records that already exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// Treat them as new (each fires its rules once).
    ExistingAsNew,
    /// Only changes from now on.
    ChangesOnly,
}

/// One entity set of one source.
#[derive(Debug, Clone)]
pub struct Watch {
    /// The `[[crm]]` id.
    pub crm: String,
    /// The entity set.
    pub entity_set: String,
    /// Columns to read (`$select`).
    pub select: Vec<String>,
    /// What the first poll does.
    pub baseline: Baseline,
}

impl Watch {
    fn key(&self) -> String {
        format!("{}/{}", self.crm, self.entity_set)
    }
}

/// What one poll did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PollReport {
    /// Events handed on.
    pub events: usize,
    /// Whether this poll took a baseline.
    pub baseline: bool,
    /// Whether an expired delta token forced that baseline.
    pub expired: bool,
}

/// Why a poll stopped.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// Dataverse could not be read.
    #[error(transparent)]
    Dataverse(#[from] DataverseError),
    /// The delta link could not be read or kept.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The sink refused an event; the delta link was not advanced.
    #[error("an event could not be handed on: {0}")]
    Sink(String),
}

/// Polls one entity set once.
pub async fn poll_once(
    api: &WebApi,
    links: &dyn Store,
    sink: &dyn CrmEventSink,
    watch: &Watch,
) -> Result<PollReport, PollError> {
    metrics::counter!("kaizala_bridge_dataverse_delta_polls_total", "crm" => watch.crm.clone())
        .increment(1);
    let mut report = PollReport::default();
    let saved = links
        .get(namespaces::DELTA_LINKS, &watch.key())
        .await?
        .map(|text| Saved::parse(&text));
    let (rows, next_link, seen) = match saved {
        Some(saved) => match read_all(api, &saved.link).await {
            Ok((rows, link)) => (rows, link, saved.seen),
            Err(DataverseError::DeltaExpired) => {
                tracing::warn!(crm = %watch.crm, entity_set = %watch.entity_set, "the delta token expired; taking a fresh baseline");
                links.delete(namespaces::DELTA_LINKS, &watch.key()).await?;
                report.expired = true;
                return baseline(api, links, sink, watch, report).await;
            }
            Err(error) => return Err(error.into()),
        },
        None => return baseline(api, links, sink, watch, report).await,
    };
    let latest = latest_modified(&rows, seen.latest());
    for row in rows {
        if let Some(event) = event_of(watch, row, &seen) {
            sink.accept(event).await.map_err(PollError::Sink)?;
            report.events += 1;
        }
    }
    let saved = Saved {
        link: next_link,
        seen: Seen::Until(latest),
    };
    links
        .put(namespaces::DELTA_LINKS, &watch.key(), &saved.text(), None)
        .await?;
    count(watch, report.events);
    Ok(report)
}

/// What is kept per watch: the delta link, and the latest `modifiedon` read so far.
/// A row created after every row read before is new, whatever it went through since
/// (a record edited right after its creation arrives with `modifiedon` past its
/// `createdon`, and must still fire the rules of new records).
struct Saved {
    link: String,
    seen: Seen,
}

/// How far the reads of a watch have come.
enum Seen {
    /// Saved by a version that kept only the link: tell new rows by
    /// `createdon == modifiedon`.
    Unknown,
    /// Every row read so far was modified at or before this (None: no row yet).
    Until(Option<String>),
}

impl Seen {
    fn latest(&self) -> Option<&str> {
        match self {
            Seen::Until(latest) => latest.as_deref(),
            Seen::Unknown => None,
        }
    }
}

impl Saved {
    fn parse(text: &str) -> Self {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(saved)) => Saved {
                link: saved
                    .get("link")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                seen: Seen::Until(
                    saved
                        .get("seen_until")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                ),
            },
            _ => Saved {
                link: text.to_string(),
                seen: Seen::Unknown,
            },
        }
    }

    fn text(&self) -> String {
        serde_json::json!({ "link": self.link, "seen_until": self.seen.latest() }).to_string()
    }
}

/// The latest `modifiedon` among `rows` and `before` (ISO 8601 in UTC, as Dataverse
/// writes them, compare as text).
fn latest_modified(rows: &[Map<String, Value>], before: Option<&str>) -> Option<String> {
    rows.iter()
        .filter_map(|r| r.get("modifiedon").and_then(Value::as_str))
        .chain(before)
        .max()
        .map(str::to_string)
}

async fn baseline(
    api: &WebApi,
    links: &dyn Store,
    sink: &dyn CrmEventSink,
    watch: &Watch,
    mut report: PollReport,
) -> Result<PollReport, PollError> {
    report.baseline = true;
    // createdon and modifiedon tell new rows from changed ones in later deltas.
    let mut select = watch.select.clone();
    for column in ["createdon", "modifiedon"] {
        if !select.iter().any(|c| c == column) {
            select.push(column.to_string());
        }
    }
    let first = format!("{}?$select={}", watch.entity_set, select.join(","));
    let (rows, link) = read_all(api, &first).await?;
    let latest = latest_modified(&rows, None);
    if watch.baseline == Baseline::ExistingAsNew {
        for row in rows {
            if let Some(mut event) = event_of(watch, row, &Seen::Unknown) {
                event.kind = ChangeKind::Created;
                sink.accept(event).await.map_err(PollError::Sink)?;
                report.events += 1;
            }
        }
    }
    let saved = Saved {
        link,
        seen: Seen::Until(latest),
    };
    links
        .put(namespaces::DELTA_LINKS, &watch.key(), &saved.text(), None)
        .await?;
    count(watch, report.events);
    Ok(report)
}

fn count(watch: &Watch, events: usize) {
    metrics::counter!("kaizala_bridge_dataverse_records_seen_total", "crm" => watch.crm.clone(), "entity_set" => watch.entity_set.clone()).increment(events as u64);
}

/// Reads a change-tracking request page by page; returns the rows and the delta link.
async fn read_all(
    api: &WebApi,
    first: &str,
) -> Result<(Vec<Map<String, Value>>, String), DataverseError> {
    let mut rows = Vec::new();
    let mut next = first.to_string();
    loop {
        let answer = api
            .send(
                Method::GET,
                &next,
                &[("Prefer", "odata.track-changes,odata.maxpagesize=1000")],
                None,
            )
            .await?;
        let value = answer.body["value"].as_array().ok_or_else(|| {
            DataverseError::Protocol("a change-tracking page without value".into())
        })?;
        rows.extend(value.iter().filter_map(|v| v.as_object().cloned()));
        if let Some(link) = answer.body["@odata.nextLink"].as_str() {
            next = link.to_string();
        } else if let Some(link) = answer.body["@odata.deltaLink"].as_str() {
            return Ok((rows, link.to_string()));
        } else {
            return Err(DataverseError::Protocol(
                "a change-tracking answer with neither nextLink nor deltaLink".into(),
            ));
        }
    }
}

/// A row of a delta as an event: deletions carry `reason: deleted`; new and changed
/// rows look alike, so a row is new when it was never modified after its creation,
/// or was created after the latest modification read before (a record edited right
/// after its creation is still new). Timestamps have whole seconds: a row created in
/// the very second of that latest modification, after it was read, and edited before
/// the next poll, counts as changed; the webhook is there for it.
fn event_of(watch: &Watch, row: Map<String, Value>, seen: &Seen) -> Option<CrmEvent> {
    let record = |id: String| CrmRecordRef {
        crm: watch.crm.clone(),
        entity_set: watch.entity_set.clone(),
        id,
    };
    if row.get("reason").and_then(Value::as_str) == Some("deleted") {
        let id = row.get("id")?.as_str()?.to_string();
        return Some(CrmEvent {
            record: record(id),
            kind: ChangeKind::Deleted,
            attributes: Map::new(),
            partial: false,
        });
    }
    let key = primary_key(&watch.entity_set);
    let id = row.get(&key)?.as_str()?.to_string();
    let created = row.get("createdon").and_then(Value::as_str);
    let modified = row.get("modifiedon").and_then(Value::as_str);
    let kind = match (seen, created, modified) {
        // Nothing existed at the baseline: whatever appears since is new.
        (Seen::Until(None), _, _) => ChangeKind::Created,
        (_, Some(c), Some(m)) if c == m => ChangeKind::Created,
        (Seen::Until(Some(latest)), Some(c), _) if c > latest.as_str() => ChangeKind::Created,
        (_, Some(_), Some(_)) => ChangeKind::Updated,
        _ => ChangeKind::Created,
    };
    let attributes = row
        .into_iter()
        .filter(|(k, _)| !k.starts_with('@'))
        .collect();
    Some(CrmEvent {
        record: record(id),
        kind,
        attributes,
        partial: false,
    })
}

/// The primary key column of an entity set (activities share `activityid`).
pub fn primary_key(entity_set: &str) -> String {
    match entity_set {
        "tasks" | "phonecalls" | "emails" | "appointments" => "activityid".into(),
        "opportunities" => "opportunityid".into(),
        "annotations" => "annotationid".into(),
        other => format!(
            "{}id",
            other
                .strip_suffix("ies")
                .map(|s| format!("{s}y"))
                .unwrap_or_else(|| other.trim_end_matches('s').to_string())
        ),
    }
}
