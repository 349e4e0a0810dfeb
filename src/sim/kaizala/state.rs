//! The emulator's world: tenants, connectors and their tokens, groups, actions and
//! responses, webhooks, and what happened (calls, throttling, deliveries).
//!
//! One `World` behind one mutex: the emulator serves tests and demos, where
//! simplicity and determinism matter more than parallelism.

use std::collections::{BTreeMap, HashMap, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};

use super::seed::Seed;

/// Milliseconds in a minute, the width of the quota windows.
pub const MINUTE_MS: i64 = 60_000;

/// A new random identifier in Kaizala's style (a GUID).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A sliding window of calls (a minute, as Kaizala's; a seed may shorten it), on the
/// emulator's clock.
#[derive(Debug)]
pub struct Window {
    calls: VecDeque<i64>,
    width_ms: i64,
}

impl Default for Window {
    fn default() -> Self {
        Self::new(MINUTE_MS)
    }
}

impl Window {
    /// An empty window `width_ms` wide.
    pub fn new(width_ms: i64) -> Self {
        Self {
            calls: VecDeque::new(),
            width_ms: width_ms.max(1),
        }
    }

    /// Seconds until one more call fits under `limit`, or `None` when it fits now.
    pub fn wait(&mut self, now: i64, limit: u32) -> Option<u64> {
        while self
            .calls
            .front()
            .is_some_and(|&t| t <= now - self.width_ms)
        {
            self.calls.pop_front();
        }
        if self.calls.len() < limit as usize {
            return None;
        }
        let oldest = *self.calls.front().expect("a full window has calls");
        let ms = oldest + self.width_ms - now;
        Some(((ms + 999) / 1000).max(1) as u64)
    }

    /// Counts a call.
    pub fn record(&mut self, now: i64) {
        self.calls.push_back(now);
    }
}

/// Calls and 429s in one minute (`epoch_ms / 60000`).
#[derive(Debug, Default, Clone, Serialize)]
pub struct MinuteStats {
    /// Calls answered.
    pub calls: u32,
    /// Calls refused with 429.
    pub throttled: u32,
}

/// A refresh token of a connector.
#[derive(Debug, Clone)]
pub struct RefreshToken {
    /// When it was issued (ms).
    pub issued_ms: i64,
    /// When it stops working (ms).
    pub expires_ms: i64,
    /// The token handed out once 90% of this one's validity passed.
    pub successor: Option<String>,
}

/// A tenant.
#[derive(Debug)]
pub struct Tenant {
    /// Its name.
    pub id: String,
    /// Calls per minute across its connectors.
    pub rate_limit: u32,
    /// Its calls in the last minute.
    pub window: Window,
}

/// A connector.
#[derive(Debug)]
pub struct Connector {
    /// Application id.
    pub application_id: String,
    /// Application secret.
    pub secret: String,
    /// Index of its tenant.
    pub tenant: usize,
    /// Calls per minute.
    pub rate_limit: u32,
    /// Groups it may use.
    pub groups: Vec<String>,
    /// The user it acts as.
    pub phone: String,
    /// Its endpoint (the path segment after `/ep/`).
    pub endpoint: String,
    /// Its refresh tokens, valid or expired.
    pub refresh_tokens: HashMap<String, RefreshToken>,
    /// PINs sent by generatePin: phone → (pin, expiry ms).
    pub pins: HashMap<String, (u32, i64)>,
    /// Its calls in the last minute.
    pub window: Window,
    /// Calls and 429s per minute.
    pub minutes: BTreeMap<i64, MinuteStats>,
    /// Access tokens issued so far.
    pub tokens_issued: u32,
}

/// An access token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// Index of the connector.
    pub connector: usize,
    /// When it stops working (ms).
    pub expires_ms: i64,
}

/// A member of a group.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Member id.
    pub id: String,
    /// Phone number.
    pub mobile_number: String,
    /// Display name (empty for members added by number only).
    pub name: String,
    /// `Admin` or `Member`.
    pub role: String,
}

/// A group.
#[derive(Debug, Clone)]
pub struct Group {
    /// Group id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Welcome message.
    pub welcome_message: String,
    /// `Group` or `ConnectGroup`.
    pub group_type: String,
    /// Members.
    pub members: Vec<Member>,
    /// Subscribers of a public group (phones).
    pub subscribers: Vec<String>,
    /// Ids of its sub-groups.
    pub sub_groups: Vec<String>,
    /// Ids of the groups it is a sub-group of.
    pub parents: Vec<String>,
    /// Its actions, oldest first.
    pub actions: Vec<Action>,
}

/// A posted action.
#[derive(Debug, Clone)]
pub struct Action {
    /// Action id.
    pub id: String,
    /// The referenceId returned when it was posted.
    pub reference_id: String,
    /// Survey, Job, Poll, Announcement, LetsMeet, Image, or Custom (an action package).
    pub action_type: String,
    /// The action package id, for Custom.
    pub package_id: Option<String>,
    /// Title (a poll's question).
    pub title: String,
    /// The body as posted.
    pub body: Value,
    /// Survey questions, as normalised when posted.
    pub questions: Vec<Question>,
    /// Job assignees.
    pub assigned_to: Vec<String>,
    /// Phone of the sender.
    pub sender: String,
    /// When it was posted (ms).
    pub sent_ms: i64,
    /// When it expires (ms).
    pub expiry_ms: i64,
    /// Whether one responder may answer more than once.
    pub accept_multiple: bool,
    /// Whether responses are anonymous.
    pub anonymous: bool,
    /// Its responses, oldest first.
    pub responses: Vec<ActionResponse>,
}

/// A survey question.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Question {
    /// Title.
    pub title: String,
    /// Question type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Option titles (SingleOption, MultiOption).
    pub options: Vec<String>,
    /// Hidden from people.
    pub is_invisible: bool,
}

/// A response to an action.
#[derive(Debug, Clone)]
pub struct ActionResponse {
    /// Response id.
    pub id: String,
    /// Responder's phone.
    pub responder: String,
    /// Responder's name.
    pub responder_name: String,
    /// When it was (last) given (ms).
    pub time_ms: i64,
    /// True once the responder changed it.
    pub is_update: bool,
    /// Answers, one per question by index (surveys) or `isCompleted` (jobs).
    pub answers: Vec<Value>,
    /// Optional response name.
    pub name: Option<String>,
    /// Optional location.
    pub location: Option<Value>,
}

/// A webhook subscription.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// Webhook id.
    pub id: String,
    /// Group, action or action-package id.
    pub object_id: String,
    /// `Group`, `Action` or `ActionPackage`.
    pub object_type: String,
    /// Subscribed event types.
    pub events: Vec<String>,
    /// Where events are POSTed.
    pub callback_url: String,
    /// Sent as `kz-callback-token`.
    pub callback_token: String,
    /// Sent as `context` in each event.
    pub callback_context: String,
    /// When it was created (ms).
    pub ts: i64,
    /// When it stops (ms).
    pub validity: i64,
    /// False once disabled after failing deliveries.
    pub active: bool,
    /// Application id of the connector that registered it.
    #[serde(skip)]
    pub owner: String,
    /// Bumped each time it is re-enabled, so a retry chain that began before
    /// cannot disable it again.
    #[serde(skip)]
    pub generation: u64,
}

/// One delivery attempt of an event to a webhook.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRecord {
    /// The webhook.
    pub webhook_id: String,
    /// The event.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// `delivered`, `failed`, `disabled` (the last failure disabled the webhook),
    /// or `skipped` (the webhook was inactive).
    pub outcome: String,
    /// The callback's status, when it answered.
    pub status: Option<u16>,
    /// Why it failed.
    pub error: Option<String>,
}

/// An event to deliver to one webhook.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The webhook.
    pub webhook_id: String,
    /// The event, in the documented schema.
    pub payload: Value,
    /// Its id.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
}

/// Who an event comes from.
pub struct Actor {
    /// Phone.
    pub phone: String,
    /// Name.
    pub name: String,
}

/// Everything the emulator holds.
pub struct World {
    /// Tenants.
    pub tenants: Vec<Tenant>,
    /// Connectors.
    pub connectors: Vec<Connector>,
    /// Issued access tokens.
    pub access_tokens: HashMap<String, AccessToken>,
    /// Groups by id.
    pub groups: BTreeMap<String, Group>,
    /// Webhooks, in creation order.
    pub webhooks: Vec<Webhook>,
    /// Delivery attempts, in order.
    pub deliveries: Vec<DeliveryRecord>,
    /// Events waiting for the deliverer.
    pub outbox: Vec<Delivery>,
    /// Endpoints handed out so far, for fresh names.
    pub endpoints_issued: u32,
    /// Randomness for PINs and faults, seeded for determinism.
    pub rng: StdRng,
}

impl World {
    /// The world a seed describes.
    pub fn from_seed(seed: &Seed, now: i64, refresh_lifetime_ms: i64, rng_seed: u64) -> Self {
        let mut world = World {
            tenants: Vec::new(),
            connectors: Vec::new(),
            access_tokens: HashMap::new(),
            groups: BTreeMap::new(),
            webhooks: Vec::new(),
            deliveries: Vec::new(),
            outbox: Vec::new(),
            endpoints_issued: 0,
            rng: StdRng::seed_from_u64(rng_seed),
        };
        for group in &seed.groups {
            let members = group
                .members
                .iter()
                .map(|m| Member {
                    id: new_id(),
                    mobile_number: m.phone.clone(),
                    name: m.name.clone(),
                    role: m.role.clone(),
                })
                .collect();
            world.groups.insert(
                group.id.clone(),
                Group {
                    id: group.id.clone(),
                    name: group.name.clone(),
                    welcome_message: String::new(),
                    group_type: group.group_type.clone(),
                    members,
                    subscribers: Vec::new(),
                    sub_groups: Vec::new(),
                    parents: Vec::new(),
                    actions: Vec::new(),
                },
            );
        }
        for (t, tenant) in seed.tenants.iter().enumerate() {
            world.tenants.push(Tenant {
                id: tenant.id.clone(),
                rate_limit: tenant.rate_limit_per_minute,
                window: Window::new(seed.quota_period_ms()),
            });
            for connector in &tenant.connectors {
                let endpoint = world.next_endpoint();
                let n = world.connectors.len() + 1;
                let refresh = RefreshToken {
                    issued_ms: now,
                    expires_ms: now + refresh_lifetime_ms,
                    successor: None,
                };
                world.connectors.push(Connector {
                    application_id: connector.application_id.clone(),
                    secret: connector.application_secret.clone(),
                    tenant: t,
                    rate_limit: connector.rate_limit_per_minute,
                    groups: connector.groups.clone(),
                    phone: connector
                        .phone
                        .clone()
                        .unwrap_or_else(|| format!("+1999000{n:04}")),
                    endpoint,
                    refresh_tokens: HashMap::from([(connector.refresh_token.clone(), refresh)]),
                    pins: HashMap::new(),
                    window: Window::new(seed.quota_period_ms()),
                    minutes: BTreeMap::new(),
                    tokens_issued: 0,
                });
            }
        }
        world
    }

    /// A fresh endpoint name.
    pub fn next_endpoint(&mut self) -> String {
        self.endpoints_issued += 1;
        format!("inc-{:03}", self.endpoints_issued)
    }

    /// The connector with this application id.
    pub fn connector_by_app(&self, application_id: &str) -> Option<usize> {
        self.connectors
            .iter()
            .position(|c| c.application_id == application_id)
    }

    /// A random secret-looking token.
    pub fn token(&mut self, prefix: &str) -> String {
        let bytes: [u8; 16] = self.rng.random();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("{prefix}-{hex}")
    }

    /// Queues `event_type` about `group_id` (and `action`, if any) for every active
    /// webhook that subscribed to it; inactive ones record a skipped delivery.
    pub fn emit(
        &mut self,
        event_type: &str,
        group_id: &str,
        action: Option<(&str, Option<&str>)>,
        actor: &Actor,
        data: Value,
        now: i64,
    ) {
        let event_id = new_id();
        let matching: Vec<Webhook> = self
            .webhooks
            .iter()
            .filter(|w| w.events.iter().any(|e| e == event_type) && w.validity > now)
            .filter(|w| match w.object_type.as_str() {
                "Group" => w.object_id == group_id,
                "Action" => action.is_some_and(|(id, _)| w.object_id == id),
                "ActionPackage" => action
                    .and_then(|(_, p)| p)
                    .is_some_and(|p| w.object_id == p),
                _ => false,
            })
            .cloned()
            .collect();
        for webhook in matching {
            if !webhook.active {
                self.deliveries.push(DeliveryRecord {
                    webhook_id: webhook.id.clone(),
                    event_id: event_id.clone(),
                    event_type: event_type.to_string(),
                    attempt: 0,
                    outcome: "skipped".into(),
                    status: None,
                    error: Some("webhook is disabled".into()),
                });
                continue;
            }
            let payload = json!({
                "objectId": webhook.object_id,
                "objectType": webhook.object_type,
                "eventType": event_type,
                "eventId": event_id,
                "data": data,
                "context": webhook.callback_context,
                "fromUser": actor.phone,
                "fromUserId": format!("user-{}", actor.phone.trim_start_matches('+')),
                "fromUserName": actor.name,
                "fromUserProfilePic": "",
            });
            self.outbox.push(Delivery {
                webhook_id: webhook.id.clone(),
                payload,
                event_id: event_id.clone(),
                event_type: event_type.to_string(),
            });
        }
    }

    /// The name of a group member, or empty.
    pub fn member_name(&self, group_id: &str, phone: &str) -> String {
        self.groups
            .get(group_id)
            .and_then(|g| g.members.iter().find(|m| m.mobile_number == phone))
            .map(|m| m.name.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_holds_limit_calls_per_minute_and_says_when_the_next_fits() {
        let mut window = Window::default();
        for i in 0..3 {
            assert_eq!(window.wait(i * 1000, 3), None);
            window.record(i * 1000);
        }
        assert_eq!(
            window.wait(10_000, 3),
            Some(50),
            "the call at 0 s leaves at 60 s"
        );
        assert_eq!(window.wait(60_000, 3), None);
    }
}
