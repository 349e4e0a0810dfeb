//! Groups, sub-groups, members, subscribers and text messages
//! (`/v1/groups[/{groupId}[/subGroups|/members|/subscribers|/messages]]`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::body::{self, Fields};
use super::error::{ApiError, ApiResult};
use super::state::{new_id, Actor, Group, Member, World};
use super::Shared;

/// Longest text message Kaizala accepts.
const MESSAGE_LIMIT: usize = 4000;

/// 404 for an unknown group, 403 for one the connector was not granted.
pub fn check_access(world: &World, caller: &Caller, group_id: &str) -> ApiResult<()> {
    if !world.groups.contains_key(group_id) {
        return Err(ApiError::not_found(format!(
            "group {group_id:?} does not exist"
        )));
    }
    if !world.connectors[caller.connector]
        .groups
        .iter()
        .any(|g| g == group_id)
    {
        return Err(ApiError::forbidden(format!(
            "group {group_id:?} is not granted to connector {:?}",
            caller.application_id
        )));
    }
    Ok(())
}

fn group_json(group: &Group) -> Value {
    json!({
        "groupName": group.name,
        "groupId": group.id,
        "groupImageUrl": "",
        "hasSubGroups": !group.sub_groups.is_empty(),
        "hasParentGroups": !group.parents.is_empty(),
        "isMappedToTenant": false,
        "groupType": group.group_type,
        "userCount": group.members.len(),
        "currentLevelUserCount": group.members.len(),
        "welcomeMessage": group.welcome_message,
    })
}

/// Query of `GET /groups`.
#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(rename = "fetchAllGroups", default)]
    fetch_all_groups: Option<String>,
}

/// `GET /groups`: the groups the connector may use (top-level ones unless
/// `fetchAllGroups=true`).
pub async fn list(
    State(shared): State<Arc<Shared>>,
    Path(ep): Path<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let all = query
        .fetch_all_groups
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let world = shared.world.lock().unwrap();
    let groups: Vec<Value> = world.connectors[caller.connector]
        .groups
        .iter()
        .filter_map(|id| world.groups.get(id))
        .filter(|g| all || g.parents.is_empty())
        .map(group_json)
        .collect();
    Ok(Json(json!({ "groups": groups })))
}

/// `GET /groups/{groupId}`: one group, in the documented `{"groups": [...]}` shape.
pub async fn details(
    State(shared): State<Arc<Shared>>,
    Path((ep, group_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let world = shared.world.lock().unwrap();
    check_access(&world, &caller, &group_id)?;
    Ok(Json(
        json!({ "groups": [group_json(&world.groups[&group_id])] }),
    ))
}

/// Reads a create-group body: name, welcomeMessage, members, groupType.
fn new_group(bytes: &[u8], caller: &Caller, world: &World) -> ApiResult<(Group, bool)> {
    let map = body::object(bytes)?;
    let fields = Fields::new(&map, "");
    let name = fields.string("name")?.to_string();
    let welcome = fields.string("welcomeMessage")?.to_string();
    let phones = fields.opt_strings("members")?.unwrap_or_default();
    body::phones("members", &phones)?;
    let group_type = fields
        .opt_string("groupType")?
        .unwrap_or("Group")
        .to_string();
    if !matches!(group_type.as_str(), "Group" | "ConnectGroup") {
        return Err(ApiError::bad_request(format!(
            "groupType: {group_type:?} is not Group or ConnectGroup"
        )));
    }
    let creator = Member {
        id: new_id(),
        mobile_number: caller.phone.clone(),
        name: world.connectors[caller.connector].application_id.clone(),
        role: "Admin".into(),
    };
    let mut members = vec![creator];
    for phone in phones {
        if !members.iter().any(|m| m.mobile_number == phone) {
            members.push(Member {
                id: new_id(),
                mobile_number: phone,
                name: String::new(),
                role: "Member".into(),
            });
        }
    }
    let group = Group {
        id: new_id(),
        name,
        welcome_message: welcome,
        group_type,
        members,
        subscribers: Vec::new(),
        sub_groups: Vec::new(),
        parents: Vec::new(),
        actions: Vec::new(),
    };
    Ok((group, true))
}

fn insert_group(world: &mut World, caller: &Caller, group: Group, parent: Option<&str>) -> Value {
    let mut group = group;
    if let Some(parent) = parent {
        group.parents.push(parent.to_string());
        world
            .groups
            .get_mut(parent)
            .expect("checked")
            .sub_groups
            .push(group.id.clone());
    }
    let answer = json!({ "groupName": group.name, "groupId": group.id, "membersAdded": true });
    world.connectors[caller.connector]
        .groups
        .push(group.id.clone());
    world.groups.insert(group.id.clone(), group);
    answer
}

/// `POST /groups`: creates a group; the connector's user is its admin and the
/// connector is granted it.
pub async fn create(
    State(shared): State<Arc<Shared>>,
    Path(ep): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let mut world = shared.world.lock().unwrap();
    let (group, _) = new_group(&bytes, &caller, &world)?;
    Ok(Json(insert_group(&mut world, &caller, group, None)))
}

/// `POST /groups/{groupId}/subgroups`: creates a group as a sub-group.
pub async fn create_sub_group(
    State(shared): State<Arc<Shared>>,
    Path((ep, group_id)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let mut world = shared.world.lock().unwrap();
    check_access(&world, &caller, &group_id)?;
    let (group, _) = new_group(&bytes, &caller, &world)?;
    Ok(Json(insert_group(
        &mut world,
        &caller,
        group,
        Some(&group_id),
    )))
}

/// `PUT /groups/{groupId}/subGroups`: makes existing groups sub-groups of this one.
pub async fn add_sub_groups(
    State(shared): State<Arc<Shared>>,
    Path((ep, group_id)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let map = body::object(&bytes)?;
    let subs = Fields::new(&map, "")
        .opt_strings("subGroups")?
        .ok_or_else(|| ApiError::bad_request("subGroups: missing"))?;
    let mut world = shared.world.lock().unwrap();
    check_access(&world, &caller, &group_id)?;
    for (i, sub) in subs.iter().enumerate() {
        if sub == &group_id {
            return Err(ApiError::bad_request(format!(
                "subGroups[{i}]: a group cannot be its own sub-group"
            )));
        }
        check_access(&world, &caller, sub)
            .map_err(|e| ApiError::bad_request(format!("subGroups[{i}]: {}", e.message())))?;
    }
    for sub in subs {
        let parent = world.groups.get_mut(&group_id).expect("checked");
        if !parent.sub_groups.contains(&sub) {
            parent.sub_groups.push(sub.clone());
            world
                .groups
                .get_mut(&sub)
                .expect("checked")
                .parents
                .push(group_id.clone());
        }
    }
    Ok(Json(json!({ "result": true })))
}

/// `GET /groups/{groupId}/subGroups`: the group with its sub-groups.
pub async fn sub_groups(
    State(shared): State<Arc<Shared>>,
    Path((ep, group_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let world = shared.world.lock().unwrap();
    check_access(&world, &caller, &group_id)?;
    let group = &world.groups[&group_id];
    let mut answer = group_json(group);
    let subs: Vec<Value> = group
        .sub_groups
        .iter()
        .filter_map(|id| world.groups.get(id))
        .map(|g| {
            let mut sub = group_json(g);
            sub["isDuplicate"] = json!(false);
            sub
        })
        .collect();
    answer["subGroups"] = json!(subs);
    Ok(Json(answer))
}

/// `DELETE /groups/{groupId}/subGroups/{subGroupId}`.
pub async fn remove_sub_group(
    State(shared): State<Arc<Shared>>,
    Path((ep, group_id, sub_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let mut world = shared.world.lock().unwrap();
    check_access(&world, &caller, &group_id)?;
    let parent = world.groups.get_mut(&group_id).expect("checked");
    let Some(i) = parent.sub_groups.iter().position(|s| s == &sub_id) else {
        return Err(ApiError::not_found(format!(
            "group {sub_id:?} is not a sub-group of {group_id:?}"
        )));
    };
    parent.sub_groups.remove(i);
    if let Some(sub) = world.groups.get_mut(&sub_id) {
        sub.parents.retain(|p| p != &group_id);
    }
    Ok(Json(json!({ "result": true })))
}

/// `GET /groups/{groupId}/members`.
pub async fn members(
    State(shared): State<Arc<Shared>>,
    Path((ep, group_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let world = shared.world.lock().unwrap();
    check_access(&world, &caller, &group_id)?;
    let members: Vec<Value> = world.groups[&group_id]
        .members
        .iter()
        .map(|m| {
            json!({ "id": m.id, "role": m.role, "mobileNumber": m.mobile_number, "name": m.name,
                    "isProvisioned": !m.name.is_empty() })
        })
        .collect();
    Ok(Json(json!({ "members": members })))
}

/// `PUT /groups/{groupId}/members`: adds members by phone number.
pub async fn add_members(
    State(shared): State<Arc<Shared>>,
    Path((ep, group_id)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let map = body::object(&bytes)?;
    let phones = Fields::new(&map, "")
        .opt_strings("members")?
        .ok_or_else(|| ApiError::bad_request("members: missing"))?;
    if phones.is_empty() {
        return Err(ApiError::bad_request("members: empty"));
    }
    body::phones("members", &phones)?;
    let now = shared.clock.now_ms();
    let mut world = shared.world.lock().unwrap();
    check_access(&world, &caller, &group_id)?;
    let actor = Actor {
        phone: caller.phone.clone(),
        name: caller.application_id.clone(),
    };
    for phone in phones {
        let group = world.groups.get_mut(&group_id).expect("checked");
        if group.members.iter().any(|m| m.mobile_number == phone) {
            continue;
        }
        group.members.push(Member {
            id: new_id(),
            mobile_number: phone.clone(),
            name: String::new(),
            role: "Member".into(),
        });
        let data =
            json!({ "member": phone, "memberName": "", "memberProfilePic": "", "type": "Member" });
        world.emit("MemberAdded", &group_id, None, &actor, data, now);
    }
    drop(world);
    shared.deliverer.notify_one();
    Ok(Json(json!({ "result": true })))
}

/// `DELETE /groups/{groupId}/members/{memberId}`.
pub async fn remove_member(
    State(shared): State<Arc<Shared>>,
    Path((ep, group_id, member_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let now = shared.clock.now_ms();
    let mut world = shared.world.lock().unwrap();
    check_access(&world, &caller, &group_id)?;
    let group = world.groups.get_mut(&group_id).expect("checked");
    let Some(i) = group
        .members
        .iter()
        .position(|m| m.id == member_id || m.mobile_number == member_id)
    else {
        return Err(ApiError::not_found(format!(
            "member {member_id:?} is not in group {group_id:?}"
        )));
    };
    let member = group.members.remove(i);
    let actor = Actor {
        phone: caller.phone.clone(),
        name: caller.application_id.clone(),
    };
    let data = json!({ "member": member.mobile_number, "memberName": member.name, "memberProfilePic": "", "type": member.role });
    world.emit("MemberRemoved", &group_id, None, &actor, data, now);
    drop(world);
    shared.deliverer.notify_one();
    Ok(Json(json!({ "result": true })))
}

fn public_group<'a>(world: &'a mut World, group_id: &str) -> ApiResult<&'a mut Group> {
    let group = world.groups.get_mut(group_id).expect("checked");
    if group.group_type != "ConnectGroup" {
        return Err(ApiError::bad_request(format!(
            "group {group_id:?} is not a public group (groupType ConnectGroup)"
        )));
    }
    Ok(group)
}

/// `POST /groups/{groupId}/subscribers`: a page of a public group's subscribers
/// (`count`, and the `cursor` of the previous page).
pub async fn subscribers(
    State(shared): State<Arc<Shared>>,
    Path((ep, group_id)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let map = body::object(&bytes)?;
    let fields = Fields::new(&map, "");
    let count = fields.opt_number("count")?.unwrap_or(30.0).max(1.0) as usize;
    let start = match fields.opt_string("cursor")? {
        None | Some("") => 0,
        Some(cursor) => cursor
            .parse()
            .map_err(|_| ApiError::bad_request("cursor: not a cursor from a previous page"))?,
    };
    let mut world = shared.world.lock().unwrap();
    check_access(&world, &caller, &group_id)?;
    let group = public_group(&mut world, &group_id)?;
    let page: Vec<Value> = group
        .subscribers
        .iter()
        .skip(start)
        .take(count)
        .map(|p| json!({ "mobileNumber": p }))
        .collect();
    let mut answer = json!({ "subscribers": page });
    let next = start.saturating_add(count);
    if next < group.subscribers.len() {
        answer["cursor"] = json!(next.to_string());
    }
    Ok(Json(answer))
}

/// `PUT /groups/{groupId}/subscribers/add` and `.../remove`.
pub async fn change_subscribers(
    State(shared): State<Arc<Shared>>,
    Path((ep, group_id, change)): Path<(String, String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let map = body::object(&bytes)?;
    let phones = Fields::new(&map, "")
        .opt_strings("subscribers")?
        .ok_or_else(|| ApiError::bad_request("subscribers: missing"))?;
    body::phones("subscribers", &phones)?;
    let mut world = shared.world.lock().unwrap();
    check_access(&world, &caller, &group_id)?;
    let group = public_group(&mut world, &group_id)?;
    match change.as_str() {
        "add" => {
            for phone in phones {
                if !group.subscribers.contains(&phone) {
                    group.subscribers.push(phone);
                }
            }
        }
        "remove" => group.subscribers.retain(|p| !phones.contains(p)),
        other => {
            return Err(ApiError::not_found(format!(
                "no subscribers operation {other:?} (add or remove)"
            )))
        }
    }
    Ok(Json(json!({ "result": true })))
}

/// `POST /groups/{groupId}/messages`: a text message to the group, or to chosen
/// subscribers of a public group.
pub async fn send_message(
    State(shared): State<Arc<Shared>>,
    Path((ep, group_id)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let map = body::object(&bytes)?;
    let fields = Fields::new(&map, "");
    let text = fields.string("message")?.to_string();
    if text.chars().count() > MESSAGE_LIMIT {
        return Err(ApiError::bad_request(format!(
            "message: longer than {MESSAGE_LIMIT} characters"
        )));
    }
    let subscribers = fields.opt_strings("subscribers")?.unwrap_or_default();
    body::phones("subscribers", &subscribers)?;
    let to_all = fields.opt_bool("sendToAllSubscribers")?.unwrap_or(false);
    let now = shared.clock.now_ms();
    let mut world = shared.world.lock().unwrap();
    check_access(&world, &caller, &group_id)?;
    if to_all || !subscribers.is_empty() {
        public_group(&mut world, &group_id)?;
    }
    let actor = Actor {
        phone: caller.phone.clone(),
        name: caller.application_id.clone(),
    };
    world.emit(
        "TextMessageCreated",
        &group_id,
        None,
        &actor,
        json!({ "text": text }),
        now,
    );
    drop(world);
    shared.deliverer.notify_one();
    Ok(Json(json!({ "referenceId": new_id() })))
}
