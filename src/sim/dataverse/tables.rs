//! The three tables the bridge uses, with the columns the reference lists, and their
//! rows. Every write bumps a global row version; deletions are remembered with theirs,
//! which is what change tracking reads.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::error::DvError;

/// The shape of a table.
#[derive(Debug)]
pub struct Schema {
    /// Entity set name, e.g. `opportunities`.
    pub set: &'static str,
    /// Logical name, e.g. `opportunity`.
    pub logical: &'static str,
    /// Primary key column.
    pub key: &'static str,
    /// Columns a body may set (besides the key), with their maximum text length.
    pub columns: &'static [(&'static str, Option<usize>)],
    /// Columns required on create.
    pub required: &'static [&'static str],
    /// `nav@odata.bind` names accepted, and the lookup column each sets.
    pub binds: &'static [(&'static str, &'static str)],
    /// Columns a create may not set.
    pub not_on_create: &'static [&'static str],
}

/// The tables, by entity set.
pub const SCHEMAS: &[Schema] = &[
    Schema {
        set: "opportunities",
        logical: "opportunity",
        key: "opportunityid",
        columns: &[
            ("name", Some(300)),
            ("estimatedvalue", None),
            ("estimatedclosedate", None),
            ("closeprobability", None),
            ("description", Some(2000)),
            ("statecode", None),
            ("statuscode", None),
            ("_customerid_value", None),
            ("_ownerid_value", None),
            ("_owningbusinessunit_value", None),
        ],
        required: &["name"],
        binds: &[],
        not_on_create: &[],
    },
    Schema {
        set: "tasks",
        logical: "task",
        key: "activityid",
        columns: &[
            ("subject", Some(200)),
            ("description", Some(2000)),
            ("scheduledend", None),
            ("scheduledstart", None),
            ("actualend", None),
            ("prioritycode", None),
            ("percentcomplete", None),
            ("category", Some(250)),
            ("subcategory", Some(250)),
            ("statecode", None),
            ("statuscode", None),
        ],
        required: &["subject"],
        binds: &[
            (
                "regardingobjectid_opportunity_task",
                "_regardingobjectid_value",
            ),
            ("regardingobjectid_opportunity", "_regardingobjectid_value"),
        ],
        not_on_create: &["statecode"],
    },
    Schema {
        set: "annotations",
        logical: "annotation",
        key: "annotationid",
        columns: &[
            ("subject", Some(500)),
            ("notetext", Some(100_000)),
            ("isdocument", None),
            ("filename", Some(255)),
            ("mimetype", Some(256)),
            ("documentbody", None),
            ("objecttypecode", None),
        ],
        required: &["subject"],
        binds: &[("objectid_opportunity", "_objectid_value")],
        not_on_create: &[],
    },
];

/// The schema of an entity set (case-sensitive, as in Dataverse).
pub fn schema(set: &str) -> Result<&'static Schema, DvError> {
    SCHEMAS.iter().find(|s| s.set == set).ok_or_else(|| {
        DvError::new(
            StatusCode::NOT_FOUND,
            "0x8006088a",
            format!("Resource not found for the segment '{set}'."),
        )
    })
}

/// A row: its columns and the version of its last write.
#[derive(Debug, Clone)]
pub struct Row {
    /// Columns as the Web API returns them (key included).
    pub columns: Map<String, Value>,
    /// Version of the last write.
    pub version: u64,
}

/// The rows of one table and its deletions.
#[derive(Debug, Default)]
pub struct Table {
    /// Rows by id, in creation order of their ids.
    pub rows: BTreeMap<String, Row>,
    /// Deleted ids with the version of their deletion.
    pub deleted: Vec<(u64, String)>,
}

/// Checks a write body against the table and turns it into columns: binds become
/// lookup columns; unknown properties and undeclared binds are refused as Dataverse
/// refuses them. `creating` also checks required and not-on-create columns.
pub fn columns_of(
    schema: &Schema,
    body: &Map<String, Value>,
    creating: bool,
    rows: &BTreeMap<&str, &Table>,
) -> Result<Map<String, Value>, DvError> {
    let mut columns = Map::new();
    for (key, value) in body {
        if key.starts_with("@odata.") {
            continue;
        }
        if let Some(nav) = key.strip_suffix("@odata.bind") {
            let Some((_, lookup)) = schema.binds.iter().find(|(n, _)| *n == nav) else {
                return Err(DvError::new(
                    StatusCode::BAD_REQUEST,
                    "0x80048d19",
                    format!("An undeclared property '{nav}' which only has property annotations in the payload but no property value was found in the payload. In OData, only declared navigation properties and declared named streams can be represented as properties without values."),
                ));
            };
            let target = value.as_str().ok_or_else(|| {
                DvError::bad_request(format!(
                    "{key}: must be a string like /opportunities(<guid>)"
                ))
            })?;
            let (set, id) = parse_reference(target).ok_or_else(|| {
                DvError::bad_request(format!(
                    "{key}: {target:?} is not a reference like /opportunities(<guid>)"
                ))
            })?;
            let exists = rows.get(set).is_some_and(|t| t.rows.contains_key(&id));
            if !exists {
                return Err(DvError::missing(schema_logical(set), &id));
            }
            columns.insert(lookup.to_string(), Value::String(id));
            continue;
        }
        if key == schema.key {
            continue;
        }
        let Some((_, limit)) = schema.columns.iter().find(|(c, _)| *c == key) else {
            return Err(DvError::bad_request(format!(
                "Invalid property '{key}' was found in entity 'Microsoft.Dynamics.CRM.{}'.",
                schema.logical
            )));
        };
        if creating && schema.not_on_create.contains(&key.as_str()) {
            return Err(DvError::bad_request(format!(
                "'{key}' is not valid for create on entity '{}'; create the row, then set it.",
                schema.logical
            )));
        }
        if let (Some(limit), Some(text)) = (limit, value.as_str()) {
            if text.chars().count() > *limit {
                return Err(DvError::bad_request(format!("A validation error occurred. The length of the '{key}' attribute of the '{}' entity exceeded the maximum allowed length of '{limit}'.", schema.logical)));
            }
        }
        columns.insert(key.clone(), value.clone());
    }
    if creating {
        for required in schema.required {
            let present = columns
                .get(*required)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty());
            if !present {
                return Err(DvError::bad_request(format!(
                    "A required attribute '{required}' of entity '{}' is missing.",
                    schema.logical
                )));
            }
        }
    }
    Ok(columns)
}

fn schema_logical(set: &str) -> &'static str {
    SCHEMAS
        .iter()
        .find(|s| s.set == set)
        .map_or("entity", |s| s.logical)
}

/// `/opportunities(<guid>)`, `opportunities(<guid>)` or a full URL ending so.
pub fn parse_reference(text: &str) -> Option<(&str, String)> {
    let last = text.rsplit('/').next()?;
    let (set, rest) = last.split_once('(')?;
    let id = rest.strip_suffix(')')?;
    let id = uuid::Uuid::parse_str(id).ok()?;
    Some((set, id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_come_in_three_documented_forms() {
        let id = "00000000-0000-0000-0000-000000000001";
        for form in [
            format!("/opportunities({id})"),
            format!("opportunities({id})"),
            format!("https://x.crm.dynamics.com/api/data/v9.2/opportunities({id})"),
        ] {
            assert_eq!(
                parse_reference(&form),
                Some(("opportunities", id.to_string())),
                "{form}"
            );
        }
        assert_eq!(parse_reference("/opportunities(nope)"), None);
    }
}
