//! Actions: `POST /groups/{g}/actions` (Survey, Job, Poll, Announcement, LetsMeet,
//! Image, and action packages by `id`), `GET /groups/{g}/actions` (by `actionType`,
//! `fromDate`, `count`), `GET /groups/{g}/actions/{a}` (with `getDetails`), and
//! `POST /groups/{g}/actions/{a}/responses` (how a test plays a person answering).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::body::{self, Fields};
use super::error::{ApiError, ApiResult};
use super::groups::check_access;
use super::state::{new_id, Action, ActionResponse, Actor, Question, World};
use super::Shared;

/// Question types a survey may hold (the documented enum, plus `DateTime`, which
/// the documented samples use).
const QUESTION_TYPES: &[&str] = &[
    "SingleOption",
    "MultiOption",
    "Text",
    "Image",
    "Numeric",
    "Date",
    "DateTime",
    "Location",
    "AttachmentList",
];

/// Action types that can be posted by `actionType`.
const ACTION_TYPES: &[&str] = &["Survey", "Job", "Poll", "Announcement", "LetsMeet", "Image"];

const HOUR_MS: i64 = 3_600_000;

/// Longest lifetime an action can ask for (ten years); a larger number, however
/// absurd, is held to it rather than overflowing the clock.
const MAX_HOURS: i64 = 10 * 365 * 24;

/// Header a test sets to answer as a given group member; without it the
/// connector's own user answers.
pub const RESPONDER_HEADER: &str = "x-sim-responder";

/// What a posted body describes, before it becomes an [`Action`].
struct Posted {
    action_type: String,
    package_id: Option<String>,
    title: String,
    questions: Vec<Question>,
    assigned_to: Vec<String>,
    expiry_hours: i64,
    accept_multiple: bool,
    anonymous: bool,
}

fn posted(map: &Map<String, Value>) -> ApiResult<Posted> {
    let top = Fields::new(map, "");
    let action_type = top.opt_string("actionType")?;
    let package_id = top.opt_string("id")?;
    let body = top.object("actionBody")?;
    let fields = Fields::new(body, "actionBody");
    let mut p = Posted {
        action_type: String::new(),
        package_id: None,
        title: String::new(),
        questions: Vec::new(),
        assigned_to: Vec::new(),
        expiry_hours: 24,
        accept_multiple: false,
        anonymous: false,
    };
    let action_type = match (action_type, package_id) {
        (None, None) => {
            return Err(ApiError::bad_request(
                "actionType or id: one of them is required",
            ))
        }
        (None | Some("Custom"), Some(id)) => {
            posted_package(&fields, id, &mut p)?;
            return Ok(p);
        }
        (Some(action_type), _) => action_type,
    };
    p.action_type = action_type.to_string();
    match action_type {
        "Survey" => posted_survey(&fields, &mut p)?,
        "Job" => posted_job(&fields, &mut p)?,
        "Poll" => posted_poll(&fields, &mut p)?,
        "Announcement" => {
            let message = fields.string("message")?;
            p.title = fields.opt_string("title")?.unwrap_or(message).to_string();
            fields.opt_strings("mediaResources")?;
        }
        "LetsMeet" => posted_lets_meet(&fields, &mut p)?,
        "Image" => {
            fields.string("mediaResource")?;
            p.title = fields.opt_string("caption")?.unwrap_or("Image").to_string();
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "actionType: {other:?} is not one of {}",
                ACTION_TYPES.join(", ")
            )))
        }
    }
    Ok(p)
}

/// An action package instance: its fields are the package's own properties.
fn posted_package(fields: &Fields<'_>, id: &str, p: &mut Posted) -> ApiResult<()> {
    if id.trim().is_empty() {
        return Err(ApiError::bad_request("id: empty"));
    }
    p.action_type = "Custom".into();
    p.package_id = Some(id.to_string());
    p.title = fields.opt_string("title")?.unwrap_or(id).to_string();
    for (i, property) in fields
        .opt_array("properties")?
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Value::Object(property) = property else {
            return Err(ApiError::bad_request(format!(
                "actionBody.properties[{i}]: must be an object"
            )));
        };
        let path = format!("actionBody.properties[{i}]");
        let property = Fields::new(property, &path);
        property.string("name")?;
        property.string("type")?;
        if property.get("value").is_none() {
            return Err(ApiError::bad_request(format!("{path}.value: missing")));
        }
    }
    if let Some(hours) = fields.opt_number("validity")? {
        p.expiry_hours = hours as i64;
    }
    Ok(())
}

fn posted_survey(fields: &Fields<'_>, p: &mut Posted) -> ApiResult<()> {
    p.title = fields.string("title")?.to_string();
    p.expiry_hours = fields.opt_number("dueDate")?.map_or(24, |h| h as i64);
    p.accept_multiple = fields.opt_bool("acceptMultipleResponses")?.unwrap_or(false);
    p.anonymous = fields.opt_bool("isAnonymous")?.unwrap_or(false);
    fields.opt_bool("isSenderOnly")?;
    let questions = fields
        .opt_array("questions")?
        .ok_or_else(|| ApiError::bad_request("actionBody.questions: missing"))?;
    if questions.is_empty() {
        return Err(ApiError::bad_request(
            "actionBody.questions: at least one question is required",
        ));
    }
    for (i, question) in questions.iter().enumerate() {
        p.questions.push(parse_question(i, question)?);
    }
    Ok(())
}

fn posted_job(fields: &Fields<'_>, p: &mut Posted) -> ApiResult<()> {
    p.title = fields.string("title")?.to_string();
    let assigned = fields
        .opt_strings("assignedTo")?
        .ok_or_else(|| ApiError::bad_request("actionBody.assignedTo: missing"))?;
    if assigned.is_empty() {
        return Err(ApiError::bad_request(
            "actionBody.assignedTo: at least one assignee is required",
        ));
    }
    body::phones("actionBody.assignedTo", &assigned)?;
    p.assigned_to = assigned;
    p.expiry_hours = fields.opt_number("dueDate")?.map_or(24, |h| h as i64);
    Ok(())
}

fn posted_poll(fields: &Fields<'_>, p: &mut Posted) -> ApiResult<()> {
    p.title = fields.string("question")?.to_string();
    let choices = fields
        .opt_array("choices")?
        .ok_or_else(|| ApiError::bad_request("actionBody.choices: missing"))?;
    if choices.len() < 2 {
        return Err(ApiError::bad_request(
            "actionBody.choices: at least two choices are required",
        ));
    }
    for (i, choice) in choices.iter().enumerate() {
        let Value::Object(choice) = choice else {
            return Err(ApiError::bad_request(format!(
                "actionBody.choices[{i}]: must be an object"
            )));
        };
        let path = format!("actionBody.choices[{i}]");
        let title = Fields::new(choice, &path).string("title")?;
        p.questions.push(Question {
            title: title.into(),
            kind: "Choice".into(),
            options: Vec::new(),
            is_invisible: false,
        });
    }
    p.expiry_hours = fields
        .opt_number("expiryInHours")?
        .map_or(720, |h| h as i64);
    Ok(())
}

fn posted_lets_meet(fields: &Fields<'_>, p: &mut Posted) -> ApiResult<()> {
    p.title = fields.string("title")?.to_string();
    let starting = fields.string("startingTime")?;
    if starting.len() < 10 || !starting.as_bytes()[..4].iter().all(u8::is_ascii_digit) {
        return Err(ApiError::bad_request(format!(
            "actionBody.startingTime: {starting:?} is not a date-time like 2018-01-01T00:00:00Z"
        )));
    }
    let duration = fields
        .opt_number("durationInMins")?
        .or(fields.opt_number("duration")?);
    if duration.is_some_and(|d| d <= 0.0) {
        return Err(ApiError::bad_request(
            "actionBody.durationInMins: must be positive",
        ));
    }
    if let Some(Value::Object(place)) = fields.get("place") {
        let place = Fields::new(place, "actionBody.place");
        for key in ["latitude", "longitude"] {
            place
                .opt_number(key)?
                .ok_or_else(|| ApiError::bad_request(format!("actionBody.place.{key}: missing")))?;
        }
    }
    fields.opt_bool("isSenderOnly")?;
    Ok(())
}

fn parse_question(i: usize, question: &Value) -> ApiResult<Question> {
    let path = format!("actionBody.questions[{i}]");
    let Value::Object(question) = question else {
        return Err(ApiError::bad_request(format!("{path}: must be an object")));
    };
    let fields = Fields::new(question, &path);
    let title = fields.string("title")?.to_string();
    let kind = fields.string("type")?.to_string();
    if !QUESTION_TYPES.contains(&kind.as_str()) {
        return Err(ApiError::bad_request(format!(
            "{path}.type: {kind:?} is not one of {}",
            QUESTION_TYPES.join(", ")
        )));
    }
    let mut options = Vec::new();
    for (j, option) in fields
        .opt_array("options")?
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Value::Object(option) = option else {
            return Err(ApiError::bad_request(format!(
                "{path}.options[{j}]: must be an object with a title"
            )));
        };
        let option_path = format!("{path}.options[{j}]");
        options.push(
            Fields::new(option, &option_path)
                .string("title")?
                .to_string(),
        );
    }
    if matches!(kind.as_str(), "SingleOption" | "MultiOption") && options.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{path}.options: required for question type {kind}"
        )));
    }
    let is_invisible = fields.opt_bool("isInvisible")?.unwrap_or(false);
    Ok(Question {
        title,
        kind,
        options,
        is_invisible,
    })
}

fn created_event(action_type: &str) -> &'static str {
    match action_type {
        "Survey" => "SurveyCreated",
        "Job" => "JobCreated",
        "Announcement" => "Announcement",
        "Image" => "AttachmentCreated",
        _ => "ActionCreated",
    }
}

/// `POST /groups/{groupId}/actions`.
pub async fn post_action(
    State(shared): State<Arc<Shared>>,
    Path((ep, group_id)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let map = body::object(&bytes)?;
    let p = posted(&map)?;
    let now = shared.clock.now_ms();
    let mut world = shared.world.lock().unwrap();
    check_access(&world, &caller, &group_id)?;
    let action = Action {
        id: new_id(),
        reference_id: new_id(),
        action_type: p.action_type,
        package_id: p.package_id,
        title: p.title,
        body: map
            .get("actionBody")
            .or_else(|| Fields::new(&map, "").get("actionBody"))
            .cloned()
            .unwrap_or_default(),
        questions: p.questions,
        assigned_to: p.assigned_to,
        sender: caller.phone.clone(),
        sent_ms: now,
        expiry_ms: now + p.expiry_hours.clamp(1, MAX_HOURS) * HOUR_MS,
        accept_multiple: p.accept_multiple,
        anonymous: p.anonymous,
        responses: Vec::new(),
    };
    let answer = json!({ "referenceId": action.reference_id, "actionId": action.id });
    let data = created_data(&action, &group_id);
    let event = created_event(&action.action_type);
    let ids = (action.id.clone(), action.package_id.clone());
    world
        .groups
        .get_mut(&group_id)
        .expect("checked")
        .actions
        .push(action);
    let actor = Actor {
        phone: caller.phone.clone(),
        name: caller.application_id.clone(),
    };
    world.emit(
        event,
        &group_id,
        Some((&ids.0, ids.1.as_deref())),
        &actor,
        data,
        now,
    );
    drop(world);
    shared.deliverer.notify_one();
    Ok(Json(answer))
}

/// The `data` of a created event, in EventSchema.md's shape for its type.
fn created_data(action: &Action, group_id: &str) -> Value {
    match action.action_type.as_str() {
        "Announcement" => {
            let body = Fields::new(
                action
                    .body
                    .as_object()
                    .expect("an object, checked when posted"),
                "",
            );
            let text = body
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default();
            json!({ "title": action.title, "text": text, "media": [] })
        }
        "Job" => json!({ "actionId": action.id, "groupId": group_id, "title": action.title,
                         "assignedTo": action.assigned_to, "dueDate": rfc3339(action.expiry_ms) }),
        "Image" => {
            let caption = if action.title == "Image" {
                ""
            } else {
                action.title.as_str()
            };
            json!({ "actionType": "Image", "caption": caption, "media": [] })
        }
        _ => json!({ "actionId": action.id, "groupId": group_id, "actionType": action.action_type,
                     "title": action.title,
                     "questions": action.questions.iter().map(question_json).collect::<Vec<_>>() }),
    }
}

/// An action as it appears in the list: the documented fields for its type.
fn summary(action: &Action) -> Value {
    let expiry = rfc3339(action.expiry_ms);
    match action.action_type.as_str() {
        "Survey" => {
            json!({ "actionId": action.id, "title": action.title, "responseCount": action.responses.len(), "expiryDate": expiry })
        }
        "Job" => {
            let done = action
                .responses
                .iter()
                .filter(|r| r.answers.first() == Some(&Value::Bool(true)))
                .count();
            json!({ "actionId": action.id, "title": action.title, "assigneeCount": action.assigned_to.len(),
                    "responseCount": done, "isCompleted": done == action.assigned_to.len(), "dueDate": expiry })
        }
        "Poll" => {
            json!({ "actionId": action.id, "question": action.title, "isSenderOnly": false, "expiryDate": expiry,
                           "choices": action.questions.iter().map(|q| json!({ "title": q.title })).collect::<Vec<_>>() })
        }
        _ => {
            let mut body = action.body.clone();
            if let Value::Object(map) = &mut body {
                map.insert("actionId".into(), json!(action.id));
                map.insert("responseCount".into(), json!(action.responses.len()));
            }
            body
        }
    }
}

fn rfc3339(ms: i64) -> String {
    crate::sim::clock::rfc3339(ms)
}

/// Query of `GET /groups/{g}/actions`.
#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(rename = "actionType")]
    action_type: Option<String>,
    #[serde(rename = "fromDate")]
    from_date: Option<String>,
    count: Option<String>,
}

/// `GET /groups/{groupId}/actions?actionType=..&fromDate=..&count=..`: actions of
/// one type sent at or after `fromDate` (epoch seconds or milliseconds), oldest
/// first, at most `count` (default 30), with `hasMore` when more follow.
pub async fn list_actions(
    State(shared): State<Arc<Shared>>,
    Path((ep, group_id)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let action_type = query
        .action_type
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_request("actionType: missing query parameter"))?;
    let from_ms = match query.from_date.as_deref() {
        None | Some("") => 0,
        Some(text) => {
            let n: i64 = text.parse().ok().filter(|n| *n >= 0).ok_or_else(|| {
                ApiError::bad_request(format!("fromDate: {text:?} is not an epoch time"))
            })?;
            if n < 100_000_000_000 {
                n * 1000
            } else {
                n
            }
        }
    };
    let count = match query.count.as_deref() {
        None | Some("") => 30,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "count: {text:?} is not a positive number"
                )))
            }
        },
    };
    let world = shared.world.lock().unwrap();
    check_access(&world, &caller, &group_id)?;
    let matching: Vec<&Action> = world.groups[&group_id]
        .actions
        .iter()
        .filter(|a| {
            a.action_type.eq_ignore_ascii_case(&action_type)
                || a.package_id.as_deref() == Some(action_type.as_str())
        })
        .filter(|a| a.sent_ms >= from_ms)
        .collect();
    let actions: Vec<Value> = matching
        .iter()
        .take(count)
        .map(|a| {
            json!({
                "referenceId": a.reference_id,
                "actionType": a.action_type,
                "sender": a.sender,
                "sentAt": rfc3339(a.sent_ms),
                "creationTime": a.sent_ms / 1000,
                "actionBody": summary(a),
            })
        })
        .collect();
    Ok(Json(
        json!({ "actions": actions, "hasMore": matching.len() > count }),
    ))
}

/// Query of `GET /groups/{g}/actions/{a}`.
#[derive(Deserialize)]
pub struct DetailsQuery {
    #[serde(rename = "getDetails")]
    get_details: Option<String>,
}

/// `GET /groups/{groupId}/actions/{actionId}`: the action; with `getDetails=true`
/// also its questions and every response.
pub async fn action_details(
    State(shared): State<Arc<Shared>>,
    Path((ep, group_id, action_id)): Path<(String, String, String)>,
    Query(query): Query<DetailsQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let details = query
        .get_details
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let world = shared.world.lock().unwrap();
    check_access(&world, &caller, &group_id)?;
    let action = find_action(&world, &group_id, &action_id)?;
    let mut body = summary(action);
    if details {
        body["questions"] = json!(action
            .questions
            .iter()
            .map(question_json)
            .collect::<Vec<_>>());
        body["responses"] = json!(action
            .responses
            .iter()
            .map(|r| response_json(action, r))
            .collect::<Vec<_>>());
        if action.action_type == "Job" {
            body["status"] = body["isCompleted"].clone();
        }
    }
    Ok(Json(json!({
        "actionType": action.action_type,
        "actionDetails": body,
        "sender": action.sender,
        "sentAt": rfc3339(action.sent_ms),
    })))
}

/// A question in the shape it was posted in: options as `{"title"}` objects.
fn question_json(question: &Question) -> Value {
    let mut value = json!({
        "title": question.title,
        "type": question.kind,
        "options": question.options.iter().map(|o| json!({ "title": o })).collect::<Vec<_>>(),
    });
    if question.is_invisible {
        value["isInvisible"] = json!(true);
    }
    value
}

fn find_action<'a>(world: &'a World, group_id: &str, action_id: &str) -> ApiResult<&'a Action> {
    world.groups[group_id]
        .actions
        .iter()
        .find(|a| a.id == action_id)
        .ok_or_else(|| {
            ApiError::not_found(format!("action {action_id:?} is not in group {group_id:?}"))
        })
}

fn response_json(action: &Action, response: &ActionResponse) -> Value {
    let (responder, name) = if action.anonymous {
        (String::new(), String::new())
    } else {
        (response.responder.clone(), response.responder_name.clone())
    };
    let mut value = json!({
        "responseId": response.id,
        "responder": responder,
        "responderName": name,
        "responseTime": response.time_ms,
        "isUpdateResponse": response.is_update,
    });
    if action.action_type == "Job" {
        value["isCompleted"] = response.answers.first().cloned().unwrap_or(json!(false));
    } else {
        value["responseWithQuestions"] = json!(with_questions(action, response));
        if let Some(name) = &response.name {
            value["responseName"] = json!(name);
        }
        if let Some(location) = &response.location {
            value["responseLocation"] = location.clone();
        }
    }
    value
}

fn with_questions(action: &Action, response: &ActionResponse) -> Vec<Value> {
    if action.questions.is_empty() {
        // An action package's questions are its own; keep the answers by index.
        return response
            .answers
            .iter()
            .enumerate()
            .map(|(i, answer)| json!({ "title": format!("answer {}", i + 1), "type": "Text", "options": [], "answer": answer }))
            .collect();
    }
    action
        .questions
        .iter()
        .enumerate()
        .filter_map(|(i, q)| {
            let answer = response.answers.get(i).filter(|a| !a.is_null())?;
            let mut entry = question_json(q);
            entry["answer"] = answer.clone();
            Some(entry)
        })
        .collect()
}

/// Checks one answer against its question's type.
fn check_answer(i: usize, question: &Question, answer: &Value) -> ApiResult<()> {
    let path = format!("actionBody.answers[{i}]");
    let bad = |what: &str| {
        Err(ApiError::bad_request(format!(
            "{path}: {what} for {:?} question {:?}",
            question.kind, question.title
        )))
    };
    let is_option = |a: &Value| {
        a.as_str()
            .is_some_and(|s| question.options.iter().any(|o| o == s))
    };
    match (question.kind.as_str(), answer) {
        (_, Value::Null) => Ok(()),
        ("SingleOption", a) if is_option(a) => Ok(()),
        ("SingleOption", _) => bad("must be the title of one of its options"),
        ("MultiOption", Value::Array(items)) if items.iter().all(is_option) => Ok(()),
        ("MultiOption", _) => bad("must be an array of its options' titles"),
        ("Text" | "Image", Value::String(_)) => Ok(()),
        ("Text" | "Image", _) => bad("must be a string"),
        ("Numeric" | "Date" | "DateTime", Value::Number(_)) => Ok(()),
        ("Numeric" | "Date" | "DateTime", _) => bad("must be a number"),
        ("Location", Value::Object(_)) => Ok(()),
        ("Location", _) => bad("must be an object like {\"lt\": 1, \"lg\": 1, \"n\": \"name\"}"),
        ("AttachmentList", Value::Array(_)) => Ok(()),
        ("AttachmentList", _) => bad("must be an array"),
        _ => Ok(()),
    }
}

fn response_event(action_type: &str) -> &'static str {
    match action_type {
        "Survey" => "SurveyResponse",
        "Job" => "JobResponse",
        _ => "ActionResponse",
    }
}

/// `POST /groups/{groupId}/actions/{actionId}/responses`: a person answers. The
/// responder is the member named by the `x-sim-responder` header (a phone), or the
/// connector's own user.
pub async fn post_response(
    State(shared): State<Arc<Shared>>,
    Path((ep, group_id, action_id)): Path<(String, String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let map = body::object(&bytes)?;
    let top = Fields::new(&map, "");
    let body = top.object("actionBody")?;
    let fields = Fields::new(body, "actionBody");
    let update_of = top.opt_string("responseId")?.map(str::to_string);
    let responder = headers
        .get(RESPONDER_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| caller.phone.clone());
    let now = shared.clock.now_ms();
    let mut world = shared.world.lock().unwrap();
    check_access(&world, &caller, &group_id)?;
    let action = find_action(&world, &group_id, &action_id)?.clone();
    let in_group = world.groups[&group_id]
        .members
        .iter()
        .any(|m| m.mobile_number == responder);
    if !in_group && responder != caller.phone {
        return Err(ApiError::forbidden(format!(
            "{RESPONDER_HEADER}: {responder:?} is not a member of group {group_id:?}"
        )));
    }
    check_answerable(&action, top.opt_string("actionType")?, now)?;
    let answers = answers_of(&action, &responder, &fields)?;
    let responder_name = world.member_name(&group_id, &responder);
    let given = ActionResponse {
        id: new_id(),
        responder: responder.clone(),
        responder_name: responder_name.clone(),
        time_ms: now,
        is_update: false,
        answers,
        name: fields.opt_string("responseName")?.map(str::to_string),
        location: fields.get("responseLocation").cloned(),
    };
    let group = world.groups.get_mut(&group_id).expect("checked");
    let stored = (group.actions.iter_mut())
        .find(|a| a.id == action_id)
        .expect("found above");
    let response = record_response(stored, update_of.as_deref(), given)?;
    let stored = stored.clone();
    let data = response_data(&stored, &group_id, &response);
    let actor = Actor {
        phone: if stored.anonymous {
            String::new()
        } else {
            responder
        },
        name: if stored.anonymous {
            String::new()
        } else {
            responder_name
        },
    };
    world.emit(
        response_event(&stored.action_type),
        &group_id,
        Some((&stored.id, stored.package_id.as_deref())),
        &actor,
        data,
        now,
    );
    drop(world);
    shared.deliverer.notify_one();
    Ok(Json(json!({ "responseId": response.id })))
}

/// The action takes this answer now: of the kind the answer says (when it says),
/// and not yet expired.
fn check_answerable(action: &Action, kind: Option<&str>, now: i64) -> ApiResult<()> {
    if let Some(kind) = kind {
        if !kind.eq_ignore_ascii_case(&action.action_type)
            && action.package_id.as_deref() != Some(kind)
        {
            return Err(ApiError::bad_request(format!(
                "actionType: {kind:?} but action {:?} is a {}",
                action.id, action.action_type
            )));
        }
    }
    if now > action.expiry_ms {
        return Err(ApiError::bad_request(format!(
            "action {:?} expired at {}",
            action.id,
            rfc3339(action.expiry_ms)
        )));
    }
    Ok(())
}

/// The answers in the body: a job's assignee says done or not; anything else
/// answers its questions (a survey's checked against their types).
fn answers_of(action: &Action, responder: &str, fields: &Fields<'_>) -> ApiResult<Vec<Value>> {
    if action.action_type == "Job" {
        if !action.assigned_to.iter().any(|a| a == responder) {
            return Err(ApiError::forbidden(format!(
                "{responder:?} is not assigned this job"
            )));
        }
        let done = fields
            .opt_bool("isCompleted")?
            .ok_or_else(|| ApiError::bad_request("actionBody.isCompleted: missing"))?;
        return Ok(vec![json!(done)]);
    }
    let answers = fields
        .opt_array("answers")?
        .ok_or_else(|| ApiError::bad_request("actionBody.answers: missing"))?
        .clone();
    if !action.questions.is_empty() && answers.len() > action.questions.len() {
        return Err(ApiError::bad_request(format!(
            "actionBody.answers: {} answers for {} questions",
            answers.len(),
            action.questions.len()
        )));
    }
    if action.action_type == "Survey" {
        for (i, (question, answer)) in action.questions.iter().zip(&answers).enumerate() {
            check_answer(i, question, answer)?;
        }
    }
    Ok(answers)
}

/// Keeps `given` on `stored`: as a new response, or as an update of the one named by
/// `update_of` (or of the responder's only one, when the action takes one each).
fn record_response(
    stored: &mut Action,
    update_of: Option<&str>,
    given: ActionResponse,
) -> ApiResult<ActionResponse> {
    let mine = |r: &ActionResponse| r.responder == given.responder;
    let existing = match update_of {
        Some(id) => Some(
            (stored.responses.iter())
                .position(|r| r.id == id && mine(r))
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "responseId: no response {id:?} of {:?} to this action",
                        given.responder
                    ))
                })?,
        ),
        None if !stored.accept_multiple => stored.responses.iter().position(mine),
        None => None,
    };
    Ok(match existing {
        Some(i) => {
            let r = &mut stored.responses[i];
            r.answers = given.answers;
            r.time_ms = given.time_ms;
            r.is_update = true;
            r.name = given.name;
            r.location = given.location;
            r.clone()
        }
        None => {
            stored.responses.push(given.clone());
            given
        }
    })
}

/// The event's `data` for `response` to `stored`, as the reference shows it (an
/// anonymous survey's without who answered).
fn response_data(stored: &Action, group_id: &str, response: &ActionResponse) -> Value {
    let (responder, responder_name) = (&response.responder, &response.responder_name);
    if stored.action_type == "Job" {
        return json!({ "actionId": stored.id, "groupId": group_id, "responseId": response.id,
            "responseDetails": { "response": { "assignee": responder, "assigneeName": responder_name,
                                               "assigneeProfilePic": "", "isCompleted": response.answers[0] } } });
    }
    let hidden = |text: &str| {
        if stored.anonymous {
            String::new()
        } else {
            text.to_string()
        }
    };
    json!({ "actionId": stored.id, "groupId": group_id, "responseId": response.id,
            "isUpdateResponse": response.is_update, "responder": hidden(responder),
            "responderName": hidden(responder_name), "responderProfilePic": "",
            "isAnonymous": stored.anonymous,
            "responseDetails": { "responseWithQuestions": with_questions(stored, response) } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_513_758_831_000), "2017-12-20T08:33:51Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn a_survey_question_of_unknown_type_or_without_options_is_named() {
        let body = |questions: Value| json!({ "actionType": "Survey", "actionBody": { "title": "t", "questions": questions } });
        let err = posted(
            body(json!([{ "title": "q", "type": "Essay" }]))
                .as_object()
                .unwrap(),
        )
        .err()
        .unwrap();
        assert!(
            err.message()
                .starts_with("actionBody.questions[0].type: \"Essay\" is not one of"),
            "{}",
            err.message()
        );
        let err = posted(
            body(
                json!([{ "title": "q", "type": "Text" }, { "title": "p", "type": "SingleOption" }]),
            )
            .as_object()
            .unwrap(),
        )
        .err()
        .unwrap();
        assert_eq!(
            err.message(),
            "actionBody.questions[1].options: required for question type SingleOption"
        );
    }
}
