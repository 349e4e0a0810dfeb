//! The Web API under `/api/data/v9.2/{set}` and `/{set}({id})`: one entry point that
//! authenticates, applies service protection, and dispatches on method and segment.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::error::DvError;
use super::tables::{self, Row, Schema, Table};
use super::{webhooks, Shared, World};

/// The service-protection window (five minutes).
const WINDOW_MS: i64 = 300_000;

type Outcome = Result<Response, DvError>;

/// Every Web API request.
pub async fn handle(
    State(shared): State<Arc<Shared>>,
    Path(segment): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match dispatch(&shared, &segment, &query, &method, &headers, &body) {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

fn dispatch(
    shared: &Arc<Shared>,
    segment: &str,
    query: &HashMap<String, String>,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Outcome {
    authorize(shared, headers)?;
    let (set, id) = match segment.split_once('(') {
        Some((set, rest)) => {
            let id = rest
                .strip_suffix(')')
                .and_then(|id| uuid::Uuid::parse_str(id.trim_matches('\'')).ok());
            let id = id.ok_or_else(|| {
                DvError::bad_request(format!(
                    "Bad Request - Error in query syntax: {segment:?} is not {set}(<guid>)."
                ))
            })?;
            (set, Some(id.to_string()))
        }
        None => (segment, None),
    };
    let schema = tables::schema(set)?;
    let prefer = Prefer::parse(headers);
    match (method.clone(), id) {
        (Method::GET, None) => list(shared, schema, query, &prefer),
        (Method::GET, Some(id)) => retrieve(shared, schema, &id, query),
        (Method::POST, None) => create(shared, schema, None, body, &prefer),
        (Method::PATCH, Some(id)) => patch(shared, schema, &id, headers, body, &prefer),
        (Method::DELETE, Some(id)) => delete(shared, schema, &id),
        _ => Err(DvError::new(
            StatusCode::NOT_FOUND,
            "",
            format!(
                "No HTTP resource was found that matches the request URI '{segment}' for {method}."
            ),
        )),
    }
}

/// A bearer token from the token endpoint, unexpired; then the application's
/// request budget (a sliding five minutes).
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), DvError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            DvError::new(
                StatusCode::UNAUTHORIZED,
                "0x80040220",
                "Authorization: a Bearer token is required.",
            )
        })?;
    let now = shared.clock.now_ms();
    let mut world = shared.world.lock().unwrap();
    let (client, expires) = world.tokens.get(token).cloned().ok_or_else(|| {
        DvError::new(
            StatusCode::UNAUTHORIZED,
            "0x8004A101",
            "The access token is not valid.",
        )
    })?;
    if expires <= now {
        return Err(DvError::new(
            StatusCode::UNAUTHORIZED,
            "0x80041d52",
            "The OAuth token has expired",
        ));
    }
    let limit = shared.options.requests_per_window;
    let window = world.requests.entry(client.clone()).or_default();
    while window.front().is_some_and(|&t| t <= now - WINDOW_MS) {
        window.pop_front();
    }
    if window.len() >= limit {
        let oldest = *window.front().expect("a full window has requests");
        let retry_after = ((oldest + WINDOW_MS - now + 999) / 1000).max(1) as u64;
        *world.throttled.entry(client).or_default() += 1;
        let mut error = DvError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "0x80072322",
            format!(
                "Number of requests exceeded the limit of {limit} over time window of 300 seconds."
            ),
        );
        error.retry_after = Some(retry_after);
        return Err(error);
    }
    window.push_back(now);
    Ok(())
}

/// The `Prefer` header's values.
#[derive(Default)]
struct Prefer {
    representation: bool,
    track_changes: bool,
    max_page_size: Option<usize>,
}

impl Prefer {
    fn parse(headers: &HeaderMap) -> Self {
        let mut prefer = Prefer::default();
        for value in headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            for part in value.split(',').map(str::trim) {
                if part.eq_ignore_ascii_case("return=representation") {
                    prefer.representation = true;
                } else if part.eq_ignore_ascii_case("odata.track-changes") {
                    prefer.track_changes = true;
                } else if let Some(n) = part.strip_prefix("odata.maxpagesize=") {
                    prefer.max_page_size = n.trim().parse().ok().filter(|n| *n > 0);
                }
            }
        }
        prefer
    }
}

fn odata(status: StatusCode, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; odata.metadata=minimal"),
    );
    headers.insert("OData-Version", HeaderValue::from_static("4.0"));
    response
}

fn iso(ms: i64) -> String {
    crate::sim::clock::rfc3339(ms)
}

/// Adds a row (used by the seed and by creates); returns its id.
pub fn insert(
    world: &mut World,
    set: &'static str,
    id: Option<String>,
    mut columns: Map<String, Value>,
    now: i64,
) -> String {
    let schema = tables::schema(set).expect("a known table");
    let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    world.version += 1;
    columns.insert(schema.key.into(), json!(id));
    columns.insert("createdon".into(), json!(iso(now)));
    columns.insert("modifiedon".into(), json!(iso(now)));
    if schema.set == "tasks" {
        columns.entry("statecode").or_insert(json!(0));
        columns.entry("statuscode").or_insert(json!(2));
    }
    if schema.set == "opportunities" {
        columns.entry("statecode").or_insert(json!(0));
        columns.entry("statuscode").or_insert(json!(1));
    }
    columns.insert("versionnumber".into(), json!(world.version));
    let row = Row {
        columns,
        version: world.version,
    };
    world
        .tables
        .get_mut(set)
        .expect("a known table")
        .rows
        .insert(id.clone(), row);
    id
}

fn select(
    schema: &Schema,
    query: &HashMap<String, String>,
) -> Result<Option<Vec<String>>, DvError> {
    let Some(list) = query.get("$select") else {
        return Ok(None);
    };
    let mut columns = Vec::new();
    for column in list.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let known = column == schema.key
            || schema.columns.iter().any(|(c, _)| *c == column)
            || schema.binds.iter().any(|(_, lookup)| *lookup == column)
            || matches!(column, "createdon" | "modifiedon" | "versionnumber");
        if !known {
            return Err(DvError::bad_request(format!(
                "Could not find a property named '{column}' on type 'Microsoft.Dynamics.CRM.{}'.",
                schema.logical
            )));
        }
        columns.push(column.to_string());
    }
    Ok(Some(columns))
}

fn shape(schema: &Schema, row: &Row, columns: &Option<Vec<String>>) -> Value {
    let mut out = Map::new();
    out.insert(
        "@odata.etag".into(),
        json!(format!("W/\"{}\"", row.version)),
    );
    for (key, value) in &row.columns {
        let wanted = key == schema.key || columns.as_ref().is_none_or(|c| c.contains(key));
        if wanted {
            out.insert(key.clone(), value.clone());
        }
    }
    Value::Object(out)
}

fn context(
    shared: &Shared,
    schema: &Schema,
    columns: &Option<Vec<String>>,
    suffix: &str,
) -> String {
    let cols = columns
        .as_ref()
        .map(|c| format!("({})", c.join(",")))
        .unwrap_or_default();
    format!(
        "{}/api/data/v9.2/$metadata#{}{cols}{suffix}",
        shared.base_url, schema.set
    )
}

/// A next or delta link. Keys stay literal (`$select=...&$deltatoken=...`), as in
/// Dataverse's links; values are percent-encoded.
fn link(
    shared: &Shared,
    schema: &Schema,
    query: &HashMap<String, String>,
    extra: &[(&str, String)],
) -> String {
    let carried = ["$select", "$filter", "$top"]
        .into_iter()
        .filter_map(|key| query.get(key).map(|v| (key, v.clone())));
    let pairs: Vec<String> = carried
        .chain(extra.iter().map(|(k, v)| (*k, v.clone())))
        .map(|(key, value)| {
            format!(
                "{key}={}",
                url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()
            )
        })
        .collect();
    format!(
        "{}/api/data/v9.2/{}?{}",
        shared.base_url,
        schema.set,
        pairs.join("&")
    )
}

/// `col eq value` joined by `and`: the filters the bridge needs (lookups, names).
fn filter(text: &str) -> Result<Vec<(String, Value)>, DvError> {
    let unsupported = || {
        DvError::bad_request(format!("$filter: {text:?}: the emulator supports only \"<column> eq <value>\" joined by \"and\""))
    };
    text.split(" and ")
        .map(|clause| {
            let mut parts = clause.trim().splitn(3, ' ');
            let (Some(column), Some("eq"), Some(value)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(unsupported());
            };
            let value =
                if let Some(text) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                    json!(text.replace("''", "'"))
                } else if let Ok(n) = value.parse::<f64>() {
                    json!(n)
                } else if value == "null" {
                    Value::Null
                } else {
                    json!(value)
                };
            Ok((column.to_string(), value))
        })
        .collect()
}

fn matches(row: &Row, conditions: &[(String, Value)]) -> bool {
    conditions.iter().all(|(column, wanted)| {
        let have = row.columns.get(column).unwrap_or(&Value::Null);
        match (have, wanted) {
            (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
            (Value::String(a), Value::String(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        }
    })
}

fn list(
    shared: &Shared,
    schema: &Schema,
    query: &HashMap<String, String>,
    prefer: &Prefer,
) -> Outcome {
    let columns = select(schema, query)?;
    let page_size = prefer
        .max_page_size
        .unwrap_or(shared.options.max_page_size)
        .min(shared.options.max_page_size);
    if prefer.track_changes || query.contains_key("$deltatoken") {
        for forbidden in ["$filter", "$orderby", "$expand", "$top"] {
            if query.contains_key(forbidden) {
                return Err(DvError::bad_request(format!("The \"{forbidden}\" query parameter isn't supported when Change Tracking is enabled.")));
            }
        }
        return changes(shared, schema, query, &columns, page_size);
    }
    let conditions = query
        .get("$filter")
        .map(|f| filter(f))
        .transpose()?
        .unwrap_or_default();
    let top = query
        .get("$top")
        .map(|t| {
            t.parse::<usize>()
                .map_err(|_| DvError::bad_request(format!("$top: {t:?} is not a number")))
        })
        .transpose()?;
    let offset: usize = query
        .get("$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let world = shared.world.lock().unwrap();
    let table = &world.tables[schema.set];
    let mut rows: Vec<&Row> = table
        .rows
        .values()
        .filter(|r| matches(r, &conditions))
        .collect();
    rows.sort_by_key(|r| {
        r.columns
            .get("createdon")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    if let Some(top) = top {
        rows.truncate(top);
    }
    let page: Vec<Value> = rows
        .iter()
        .skip(offset)
        .take(page_size)
        .map(|r| shape(schema, r, &columns))
        .collect();
    let mut body =
        json!({ "@odata.context": context(shared, schema, &columns, ""), "value": page });
    if offset + page_size < rows.len() {
        body["@odata.nextLink"] = json!(link(
            shared,
            schema,
            query,
            &[("$skiptoken", (offset + page_size).to_string())]
        ));
    }
    Ok(odata(StatusCode::OK, body))
}

/// Change tracking: the first request pages through every row and ends with a
/// delta link; a delta link returns rows written since, then deletions.
fn changes(
    shared: &Shared,
    schema: &Schema,
    query: &HashMap<String, String>,
    columns: &Option<Vec<String>>,
    page_size: usize,
) -> Outcome {
    let now = shared.clock.now_ms();
    let world = shared.world.lock().unwrap();
    let table: &Table = &world.tables[schema.set];
    let delta_link = |version: u64| {
        link(
            shared,
            schema,
            query,
            &[("$deltatoken", format!("{version}!{now}"))],
        )
    };
    let response = match query.get("$deltatoken") {
        None => {
            // $skiptoken = "<offset>!<version when the snapshot began>"
            let (offset, since) = match query.get("$skiptoken").and_then(|s| s.split_once('!')) {
                Some((o, v)) => (o.parse().unwrap_or(0), v.parse().unwrap_or(world.version)),
                None => (0usize, world.version),
            };
            let rows: Vec<&Row> = table.rows.values().collect();
            let page: Vec<Value> = rows
                .iter()
                .skip(offset)
                .take(page_size)
                .map(|r| shape(schema, r, columns))
                .collect();
            let mut body =
                json!({ "@odata.context": context(shared, schema, columns, ""), "value": page });
            if offset + page_size < rows.len() {
                body["@odata.nextLink"] = json!(link(
                    shared,
                    schema,
                    query,
                    &[("$skiptoken", format!("{}!{since}", offset + page_size))]
                ));
            } else {
                body["@odata.deltaLink"] = json!(delta_link(since));
            }
            body
        }
        Some(token) => {
            let (version, issued) = token
                .split_once('!')
                .and_then(|(v, i)| Some((v.parse::<u64>().ok()?, i.parse::<i64>().ok()?)))
                .ok_or_else(|| {
                    DvError::bad_request(format!(
                        "$deltatoken: {token:?} is not a token this service issued"
                    ))
                })?;
            let retention = shared.options.change_tracking_retention.as_millis() as i64;
            if now - issued > retention || issued < world.delta_floor_ms {
                return Err(DvError::bad_request_code("0x80044352", "Version stamp associated with the client has expired. Please perform a full sync."));
            }
            let value = changed_since(shared, schema, table, version, columns);
            json!({ "@odata.context": context(shared, schema, columns, "/$delta"), "@odata.deltaLink": delta_link(world.version), "value": value })
        }
    };
    let mut answer = odata(StatusCode::OK, response);
    answer.headers_mut().insert(
        "Preference-Applied",
        HeaderValue::from_static("odata.track-changes"),
    );
    Ok(answer)
}

/// The rows of `table` written after `version`, oldest first, then the ids deleted
/// since, as a delta page lists them.
fn changed_since(
    shared: &Shared,
    schema: &Schema,
    table: &Table,
    version: u64,
    columns: &Option<Vec<String>>,
) -> Vec<Value> {
    let mut written: Vec<&Row> = table
        .rows
        .values()
        .filter(|r| r.version > version)
        .collect();
    written.sort_by_key(|r| r.version);
    let mut value: Vec<Value> = written.iter().map(|r| shape(schema, r, columns)).collect();
    for (_, id) in table.deleted.iter().filter(|(v, _)| *v > version) {
        value.push(json!({
            "@odata.context": format!("{}/api/data/v9.2/$metadata#{}/$deletedEntity", shared.base_url, schema.set),
            "id": id, "reason": "deleted",
        }));
    }
    value
}

fn retrieve(
    shared: &Shared,
    schema: &Schema,
    id: &str,
    query: &HashMap<String, String>,
) -> Outcome {
    let columns = select(schema, query)?;
    let world = shared.world.lock().unwrap();
    let row = world.tables[schema.set]
        .rows
        .get(id)
        .ok_or_else(|| DvError::missing(schema.logical, id))?;
    let mut body = shape(schema, row, &columns);
    body["@odata.context"] = json!(context(shared, schema, &columns, "/$entity"));
    Ok(odata(StatusCode::OK, body))
}

fn body_object(body: &[u8]) -> Result<Map<String, Value>, DvError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(DvError::new(
            StatusCode::BAD_REQUEST,
            "0x80048d19",
            "The request body is not a JSON object.",
        )),
    }
}

fn tables_view(world: &World) -> BTreeMap<&str, &Table> {
    world.tables.iter().map(|(k, v)| (*k, v)).collect()
}

fn entity_id(shared: &Shared, schema: &Schema, id: &str) -> String {
    format!("{}/api/data/v9.2/{}({id})", shared.base_url, schema.set)
}

/// Answers a write: 204 with `OData-EntityId`, or the record with `return=representation`.
fn written(
    shared: &Shared,
    schema: &Schema,
    id: &str,
    created: bool,
    prefer: &Prefer,
    with_entity_id: bool,
) -> Outcome {
    if prefer.representation {
        let world = shared.world.lock().unwrap();
        let row = &world.tables[schema.set].rows[id];
        let mut body = shape(schema, row, &None);
        body["@odata.context"] = json!(context(shared, schema, &None, "/$entity"));
        let mut response = odata(
            if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            body,
        );
        response.headers_mut().insert(
            "Preference-Applied",
            HeaderValue::from_static("return=representation"),
        );
        return Ok(response);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert("OData-Version", HeaderValue::from_static("4.0"));
    if with_entity_id {
        if let Ok(value) = HeaderValue::from_str(&entity_id(shared, schema, id)) {
            response.headers_mut().insert("OData-EntityId", value);
        }
    }
    Ok(response)
}

fn create(
    shared: &Arc<Shared>,
    schema: &'static Schema,
    forced_id: Option<String>,
    body: &[u8],
    prefer: &Prefer,
) -> Outcome {
    let map = body_object(body)?;
    let now = shared.clock.now_ms();
    let mut world = shared.world.lock().unwrap();
    let columns = tables::columns_of(schema, &map, true, &tables_view(&world))?;
    let id = match (forced_id, map.get(schema.key)) {
        (Some(id), _) => Some(id),
        (None, Some(value)) => {
            let text = value
                .as_str()
                .and_then(|s| uuid::Uuid::parse_str(s).ok())
                .ok_or_else(|| DvError::bad_request(format!("{}: not a GUID", schema.key)))?;
            Some(text.to_string())
        }
        (None, None) => None,
    };
    if let Some(id) = &id {
        if world.tables[schema.set].rows.contains_key(id) {
            return Err(DvError::new(
                StatusCode::PRECONDITION_FAILED,
                "0x80040237",
                "A record with matching key values already exists.",
            ));
        }
    }
    let id = insert(&mut world, schema.set, id, columns, now);
    let row = world.tables[schema.set].rows[&id].columns.clone();
    drop(world);
    webhooks::fire(shared, schema, "Create", &id, &row);
    written(shared, schema, &id, true, prefer, !prefer.representation)
}

fn patch(
    shared: &Arc<Shared>,
    schema: &'static Schema,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
    prefer: &Prefer,
) -> Outcome {
    let if_match = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .filter(|v| *v != "null")
        .map(str::to_string);
    let exists = shared.world.lock().unwrap().tables[schema.set]
        .rows
        .contains_key(id);
    match (exists, if_none_match.as_deref(), if_match.as_deref()) {
        (true, Some("*"), _) => {
            return Err(DvError::new(
                StatusCode::PRECONDITION_FAILED,
                "0x80040237",
                "A record with matching key values already exists.",
            ))
        }
        (false, _, Some(_)) => return Err(DvError::missing(schema.logical, id)),
        (false, _, None) => return upsert_create(shared, schema, id, body, prefer),
        _ => {}
    }
    let map = body_object(body)?;
    if schema.set == "opportunities" && map.contains_key("statecode") {
        return Err(DvError::bad_request_code("0x80100005", "The SetState message cannot be used to close an opportunity; use WinOpportunity or LoseOpportunity."));
    }
    let now = shared.clock.now_ms();
    let mut world = shared.world.lock().unwrap();
    if let Some(etag) = if_match.as_deref().filter(|e| *e != "*") {
        let current = format!("W/\"{}\"", world.tables[schema.set].rows[id].version);
        if etag != current {
            return Err(DvError::new(StatusCode::PRECONDITION_FAILED, "0x80060882", "The version of the existing record doesn't match the RowVersion property provided."));
        }
    }
    let changes = tables::columns_of(schema, &map, false, &tables_view(&world))?;
    world.version += 1;
    let version = world.version;
    let row = world
        .tables
        .get_mut(schema.set)
        .expect("known")
        .rows
        .get_mut(id)
        .expect("exists");
    for (key, value) in &changes {
        row.columns.insert(key.clone(), value.clone());
    }
    row.columns.insert("modifiedon".into(), json!(iso(now)));
    row.columns.insert("versionnumber".into(), json!(version));
    row.version = version;
    let mut changed = changes.clone();
    changed.insert(schema.key.into(), json!(id));
    changed.insert("modifiedon".into(), json!(iso(now)));
    drop(world);
    webhooks::fire(shared, schema, "Update", id, &changed);
    written(shared, schema, id, false, prefer, true)
}

/// A PATCH of a record that does not exist and no `If-Match`: an upsert, which
/// creates it under the key of the URL.
fn upsert_create(
    shared: &Arc<Shared>,
    schema: &'static Schema,
    id: &str,
    body: &[u8],
    prefer: &Prefer,
) -> Outcome {
    let map = body_object(body)?;
    if map.contains_key(schema.key) && map[schema.key] != json!(id) {
        return Err(DvError::bad_request(format!(
            "{}: differs from the key in the URL",
            schema.key
        )));
    }
    create(shared, schema, Some(id.to_string()), body, prefer).map(|mut r| {
        if r.status() == StatusCode::NO_CONTENT {
            if let Ok(value) = HeaderValue::from_str(&entity_id(shared, schema, id)) {
                r.headers_mut().insert("OData-EntityId", value);
            }
        }
        r
    })
}

fn delete(shared: &Arc<Shared>, schema: &'static Schema, id: &str) -> Outcome {
    let mut world = shared.world.lock().unwrap();
    if world
        .tables
        .get_mut(schema.set)
        .expect("known")
        .rows
        .remove(id)
        .is_none()
    {
        return Err(DvError::missing(schema.logical, id));
    }
    world.version += 1;
    let version = world.version;
    world
        .tables
        .get_mut(schema.set)
        .expect("known")
        .deleted
        .push((version, id.to_string()));
    drop(world);
    webhooks::fire(shared, schema, "Delete", id, &Map::new());
    Ok(StatusCode::NO_CONTENT.into_response())
}
