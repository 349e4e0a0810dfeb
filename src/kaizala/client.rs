//! The Kaizala API client of one connector: typed calls, an access token on each,
//! one retry with a fresh token after a 401, and 308s followed and remembered.
//! Retrying after 429 or 5xx is the job queue's business, not the client's: the
//! error says whether and when.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::LOCATION;
use reqwest::Method;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::api::*;
use super::auth::{Clock, ConnectorCredentials, SystemClock, TokenManager};
use super::credentials::Credentials;
use super::error::KaizalaError;
use crate::model::ConnectorRef;
use crate::ratelimit::{Quota, RateGate};

/// `kaizala_bridge_kaizala_calls_total{connector,endpoint,status}`.
pub const CALLS_TOTAL: &str = "kaizala_bridge_kaizala_calls_total";
/// `kaizala_bridge_kaizala_throttled_total{connector}`: 429 answers from Kaizala; the
/// rate gate exists so that this stays at zero.
pub const THROTTLED_TOTAL: &str = "kaizala_bridge_kaizala_throttled_total";

/// Settings of a client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Longest wait for an answer (Kaizala suggests one minute).
    pub timeout: Duration,
    /// Refresh an access token this long before it expires.
    pub refresh_margin: Duration,
    /// The longest `Retry-After` believed; a longer one is cut to this.
    pub max_retry_after: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            refresh_margin: Duration::from_secs(300),
            max_retry_after: crate::retry_after::DEFAULT_MAX,
        }
    }
}

/// How many 308s one call follows before giving up.
const MAX_MOVES: usize = 3;

/// How long after [`KaizalaClient::reserve`] its permit may still be used.
const RESERVATION_FRESH_FOR: Duration = Duration::from_millis(50);

/// A permit from every quota of one client, taken by [`KaizalaClient::reserve`] for
/// one call; not `Clone`, so it is spent once.
#[derive(Debug)]
pub struct Reservation {
    at: std::time::Instant,
}

/// A client for one connector.
pub struct KaizalaClient {
    http: reqwest::Client,
    tokens: TokenManager,
    key: String,
    gate: Option<(Arc<dyn RateGate>, Vec<Quota>)>,
    max_retry_after: Duration,
    /// Callers of [`KaizalaClient::reserve_within`] waiting for a permit now.
    waiting: std::sync::atomic::AtomicUsize,
}

/// Counts a caller among the waiting while it lives (dropped with its future too).
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl KaizalaClient {
    /// A client with the system clock.
    pub fn new(
        credentials: ConnectorCredentials,
        store: Credentials,
        options: &ClientOptions,
    ) -> Result<Self, KaizalaError> {
        Self::with_clock(credentials, store, options, Arc::new(SystemClock))
    }

    /// A client whose token manager reads `clock`.
    pub fn with_clock(
        credentials: ConnectorCredentials,
        store: Credentials,
        options: &ClientOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, KaizalaError> {
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| KaizalaError::Transport(e.to_string()))?;
        let key = credentials.key.clone();
        let tokens = TokenManager::new(
            http.clone(),
            credentials,
            store,
            clock,
            options.refresh_margin,
            options.max_retry_after,
        );
        Ok(Self {
            http,
            tokens,
            key,
            gate: None,
            waiting: std::sync::atomic::AtomicUsize::new(0),
            max_retry_after: options.max_retry_after,
        })
    }

    /// Makes every call first take a permit from each of `quotas` (the connector's,
    /// then its tenant's), and a 429 pause the first one (the connector) for its
    /// Retry-After, for every caller of the gate.
    pub fn with_gate(mut self, gate: Arc<dyn RateGate>, quotas: Vec<Quota>) -> Self {
        self.gate = Some((gate, quotas));
        self
    }

    /// The endpoint calls go to now, if known.
    pub async fn endpoint(&self) -> Result<Option<String>, KaizalaError> {
        self.tokens.endpoint().await
    }

    /// The groups the connector may use.
    pub async fn groups(&self) -> Result<Vec<Group>, KaizalaError> {
        Ok(self
            .call::<GroupList>(Method::GET, "groups.list", &["groups"], &[], None)
            .await?
            .groups)
    }

    /// One group.
    pub async fn group(&self, group_id: &str) -> Result<Group, KaizalaError> {
        let list: GroupList = self
            .call(Method::GET, "groups.get", &["groups", group_id], &[], None)
            .await?;
        list.groups
            .into_iter()
            .next()
            .ok_or_else(|| KaizalaError::Protocol(format!("group {group_id} came back empty")))
    }

    /// Posts an action to a group.
    pub async fn post_action(
        &self,
        group_id: &str,
        action: &Action,
    ) -> Result<PostedAction, KaizalaError> {
        self.post_action_body(group_id, &action.request_body())
            .await
    }

    /// Posts an action given as its request body (`actionType` and `actionBody`, as
    /// [`Action::request_body`] makes it), e.g. one rendered by a rule and queued.
    pub async fn post_action_body(
        &self,
        group_id: &str,
        body: &Value,
    ) -> Result<PostedAction, KaizalaError> {
        self.post_action_body_on(group_id, body, None).await
    }

    /// Takes a permit from every quota of the client now (waiting for it), for one
    /// call made at once with [`KaizalaClient::post_action_body_on`]: a caller that
    /// must hold something only around the call itself waits for its slot first.
    pub async fn reserve(&self) -> Result<Reservation, KaizalaError> {
        if let Some((gate, quotas)) = &self.gate {
            gate.acquire(quotas)
                .await
                .map_err(|e| KaizalaError::Transport(e.to_string()))?;
        }
        Ok(Reservation {
            at: std::time::Instant::now(),
        })
    }

    /// Like [`KaizalaClient::reserve`], waiting no longer than `within`: `Err(wait)`
    /// when the permits are further off, about how long until they are, so that the
    /// caller can come back then instead of holding its place while it waits.
    ///
    /// Callers already waiting on this connector each hold one spacing of the wait:
    /// one that would queue behind more than `within` of them is told at once,
    /// without asking the gate (every caller seeing the same next permit would
    /// otherwise wait, lose it to one of them, and wait again until its patience ran
    /// out).
    pub async fn reserve_within(
        &self,
        within: Duration,
    ) -> Result<Result<Reservation, Duration>, KaizalaError> {
        if let Some((gate, quotas)) = &self.gate {
            use std::sync::atomic::Ordering;
            let ahead = self.waiting.fetch_add(1, Ordering::SeqCst);
            let _waiting = Waiting(&self.waiting);
            let behind = self.pacing().saturating_mul(ahead as u32 + 1);
            if behind > within {
                return Ok(Err(behind));
            }
            let later = gate
                .acquire_within(quotas, within)
                .await
                .map_err(|e| KaizalaError::Transport(e.to_string()))?;
            if let Some(wait) = later {
                return Ok(Err(wait));
            }
        }
        Ok(Ok(Reservation {
            at: std::time::Instant::now(),
        }))
    }

    /// The spacing of this client's calls: its slowest quota's interval (zero without
    /// a gate).
    pub fn pacing(&self) -> Duration {
        self.gate.as_ref().map_or(Duration::ZERO, |(_, quotas)| {
            quotas.iter().map(Quota::interval).max().unwrap_or_default()
        })
    }

    /// [`KaizalaClient::post_action_body`] on `reservation`, when it is still fresh
    /// (a permit is a slot in time: one used late would bunch this call with the
    /// next); otherwise, and for a 308 or 401 repeat, on a new permit.
    pub async fn post_action_body_on(
        &self,
        group_id: &str,
        body: &Value,
        reservation: Option<Reservation>,
    ) -> Result<PostedAction, KaizalaError> {
        let reserved = reservation.is_some_and(|r| r.at.elapsed() <= RESERVATION_FRESH_FOR);
        self.call_with(
            Method::POST,
            "actions.post",
            &["groups", group_id, "actions"],
            &[],
            Some(body),
            reserved,
        )
        .await
    }

    /// Actions of `action_type` in a group, sent at or after `from_ms`.
    pub async fn list_actions(
        &self,
        group_id: &str,
        action_type: &str,
        from_ms: Option<i64>,
        count: Option<u32>,
    ) -> Result<ActionList, KaizalaError> {
        let mut query = vec![("actionType", action_type.to_string())];
        query.extend(from_ms.map(|f| ("fromDate", f.to_string())));
        query.extend(count.map(|c| ("count", c.to_string())));
        self.call(
            Method::GET,
            "actions.list",
            &["groups", group_id, "actions"],
            &query,
            None,
        )
        .await
    }

    /// An action with its questions and every response.
    pub async fn action_details(
        &self,
        group_id: &str,
        action_id: &str,
    ) -> Result<ActionDetails, KaizalaError> {
        let query = [("getDetails", "true".to_string())];
        self.call(
            Method::GET,
            "actions.get",
            &["groups", group_id, "actions", action_id],
            &query,
            None,
        )
        .await
    }

    /// Sends a text message to a group.
    pub async fn send_message(
        &self,
        group_id: &str,
        text: &str,
    ) -> Result<SentMessage, KaizalaError> {
        let body = json!({ "message": text });
        self.call(
            Method::POST,
            "messages.post",
            &["groups", group_id, "messages"],
            &[],
            Some(&body),
        )
        .await
    }

    /// Registers a webhook (Kaizala validates the callback first).
    pub async fn create_webhook(
        &self,
        webhook: &WebhookRequest,
    ) -> Result<CreatedWebhook, KaizalaError> {
        let body = serde_json::to_value(webhook).expect("plain data serializes");
        self.call(
            Method::POST,
            "webhooks.create",
            &["webhook"],
            &[],
            Some(&body),
        )
        .await
    }

    /// The webhooks on an object, whoever registered them.
    pub async fn list_webhooks(
        &self,
        object_id: &str,
        object_type: &str,
    ) -> Result<Vec<Webhook>, KaizalaError> {
        let query = [
            ("objectId", object_id.to_string()),
            ("objectType", object_type.to_string()),
        ];
        Ok(self
            .call::<WebhookList>(Method::GET, "webhooks.list", &["webhook"], &query, None)
            .await?
            .webhooks)
    }

    /// Changes a webhook: `changes` holds the fields to change (e.g. `{"Active": true}`).
    pub async fn update_webhook(
        &self,
        webhook_id: &str,
        changes: &Value,
    ) -> Result<(), KaizalaError> {
        self.call::<Value>(
            Method::PUT,
            "webhooks.update",
            &["webhook", webhook_id],
            &[],
            Some(changes),
        )
        .await
        .map(drop)
    }

    /// Deletes a webhook.
    pub async fn delete_webhook(&self, webhook_id: &str) -> Result<(), KaizalaError> {
        self.call::<Value>(
            Method::DELETE,
            "webhooks.delete",
            &["webhook", webhook_id],
            &[],
            None,
        )
        .await
        .map(drop)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        label: &'static str,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<T, KaizalaError> {
        self.call_with(method, label, segments, query, body, false)
            .await
    }

    /// One call; `reserved` when the caller took the first permit itself.
    async fn call_with<T: DeserializeOwned>(
        &self,
        method: Method,
        label: &'static str,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
        reserved: bool,
    ) -> Result<T, KaizalaError> {
        let mut refreshed = false;
        let mut moves = 0;
        let mut permit_taken = reserved;
        loop {
            if !std::mem::take(&mut permit_taken) {
                self.reserve().await?;
            }
            let lease = self.tokens.lease().await?;
            let url = endpoint_url(&lease.endpoint, segments, query)?;
            let mut request = self
                .http
                .request(method.clone(), url)
                .header("accessToken", lease.token.expose_secret());
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) => {
                    self.count(label, "error");
                    return Err(error.into());
                }
            };
            let status = response.status().as_u16();
            self.count(label, &status.to_string());
            match status {
                308 if moves < MAX_MOVES => {
                    moves += 1;
                    let location = response
                        .headers()
                        .get(LOCATION)
                        .and_then(|l| l.to_str().ok())
                        .map(str::to_string);
                    let location = location
                        .ok_or_else(|| KaizalaError::Protocol("308 without a Location".into()))?;
                    tracing::info!(connector = %self.key, endpoint = %location, "Kaizala moved the connector's endpoint");
                    self.tokens.moved(location).await?;
                }
                401 if !refreshed => {
                    refreshed = true;
                    self.tokens.refused(&lease.token).await;
                }
                200..=299 => return parsed(label, &response.text().await?),
                _ => return Err(self.refused(status, response).await),
            }
        }
    }

    /// The error of an answer that is neither a success nor a redirect or a stale
    /// token; one that says when to come back (429, 503) holds back every caller of
    /// this connector, not only this one.
    async fn refused(&self, status: u16, response: reqwest::Response) -> KaizalaError {
        let error = KaizalaError::from_response(response, self.max_retry_after).await;
        if status == 429 {
            metrics::counter!(THROTTLED_TOTAL, "connector" => self.key.clone()).increment(1);
        }
        if let (Some((gate, quotas)), Some(wait)) = (&self.gate, error.retry_after()) {
            if let Some(connector) = quotas.first() {
                let _ = gate.pause(&connector.key, wait).await;
            }
        }
        error
    }

    fn count(&self, endpoint: &str, status: &str) {
        let labels = [
            ("connector", self.key.clone()),
            ("endpoint", endpoint.to_string()),
            ("status", status.to_string()),
        ];
        metrics::counter!(CALLS_TOTAL, &labels).increment(1);
    }
}

/// `endpoint/v1/segments...?query`: the connector's endpoint (which Kaizala may move)
/// with the call's path and query.
fn endpoint_url(
    endpoint: &str,
    segments: &[&str],
    query: &[(&str, String)],
) -> Result<url::Url, KaizalaError> {
    let mut url = url::Url::parse(endpoint)
        .map_err(|e| KaizalaError::Protocol(format!("endpoint {endpoint:?} is not a URL: {e}")))?;
    url.path_segments_mut()
        .map_err(|()| KaizalaError::Protocol(format!("endpoint {endpoint:?} cannot be a base")))?
        .pop_if_empty()
        .push("v1")
        .extend(segments);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url)
}

/// A success's body as `T` (an empty body reads as `null`).
fn parsed<T: DeserializeOwned>(label: &str, text: &str) -> Result<T, KaizalaError> {
    let text = if text.trim().is_empty() { "null" } else { text };
    serde_json::from_str(text).map_err(|e| KaizalaError::Protocol(format!("{label}: {e}")))
}

/// A Kaizala client per connector of a tenant.
pub type Clients = std::collections::HashMap<ConnectorRef, Arc<KaizalaClient>>;

/// A client for every connector of `config`, learning and
/// keeping credentials in `store`; with `gate`, every call takes permits from the
/// connector's quota and its tenant's first.
pub fn clients(
    config: &crate::config::Config,
    store: Arc<dyn crate::store::Store>,
    gate: Option<Arc<dyn RateGate>>,
) -> Result<Clients, KaizalaError> {
    let learned = super::credentials::Credentials::new(store);
    let options = ClientOptions {
        timeout: config.kaizala.request_timeout,
        refresh_margin: config.kaizala.token_refresh_margin,
        max_retry_after: config.kaizala.max_retry_after,
    };
    let period = config.kaizala.quota_period;
    let mut clients = std::collections::HashMap::new();
    for tenant in &config.tenants {
        for connector in &tenant.connectors {
            let key = ConnectorRef::new(&tenant.id, &connector.id);
            let credentials = ConnectorCredentials {
                key: key.to_string(),
                application_id: connector.application_id.clone(),
                application_secret: connector.application_secret.clone(),
                refresh_token: connector.refresh_token.clone(),
                api_root: connector.api_root.clone(),
            };
            let client = KaizalaClient::new(credentials, learned.clone(), &options)?;
            let client = match &gate {
                Some(gate) => client.with_gate(
                    gate.clone(),
                    vec![
                        Quota::connector(&key, connector.rate_limit_per_minute, period),
                        Quota::tenant(&tenant.id, tenant.rate_limit_per_minute, period),
                    ],
                ),
                None => client,
            };
            clients.insert(key, Arc::new(client));
        }
    }
    Ok(clients)
}
