//! Access tokens for one connector: fetched on first use, cached, refreshed ahead of
//! expiry, fetched once however many callers wait (single-flight), and dropped when a
//! call is refused with 401. A refresh token Kaizala rotates is saved at once and
//! preferred over the configured one from then on, across restarts.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use super::api::AccessTokenResponse;
use super::credentials::{Credentials, Learned};
use super::error::KaizalaError;
use crate::config::Secret;

/// Time as the token manager sees it; tests substitute their own.
pub trait Clock: Send + Sync {
    /// Now, in epoch milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map_or(0, |d| d.as_millis() as i64)
    }
}

/// A connector's configured credentials.
#[derive(Debug, Clone)]
pub struct ConnectorCredentials {
    /// `tenant/connector`, the key of what is learned about it.
    pub key: String,
    /// Application id.
    pub application_id: String,
    /// Application secret.
    pub application_secret: Secret,
    /// The refresh token from the configuration.
    pub refresh_token: Secret,
    /// Where access tokens come from.
    pub api_root: url::Url,
}

/// An access token and where to use it.
#[derive(Clone)]
pub struct Lease {
    /// The `accessToken` header's value.
    pub token: SecretString,
    /// The endpoint URL calls go to.
    pub endpoint: String,
}

struct State {
    learned: Option<Learned>,
    access: Option<(SecretString, i64)>,
    token_endpoint: Option<String>,
}

/// The access token of one connector.
pub struct TokenManager {
    http: reqwest::Client,
    credentials: ConnectorCredentials,
    store: Credentials,
    clock: Arc<dyn Clock>,
    margin: Duration,
    max_retry_after: Duration,
    state: Mutex<State>,
}

impl TokenManager {
    /// A manager that refreshes a token `margin` before it expires and believes a
    /// `Retry-After` of at most `max_retry_after`.
    pub fn new(
        http: reqwest::Client,
        credentials: ConnectorCredentials,
        store: Credentials,
        clock: Arc<dyn Clock>,
        margin: Duration,
        max_retry_after: Duration,
    ) -> Self {
        let state = State {
            learned: None,
            access: None,
            token_endpoint: None,
        };
        Self {
            http,
            credentials,
            store,
            clock,
            margin,
            max_retry_after,
            state: Mutex::new(state),
        }
    }

    /// A valid token and its endpoint, fetching one when none is cached or the cached
    /// one expires within the margin. Concurrent callers wait for one fetch.
    pub async fn lease(&self) -> Result<Lease, KaizalaError> {
        let mut state = self.state.lock().await;
        if state.learned.is_none() {
            state.learned = Some(self.store.load(&self.credentials.key).await?);
        }
        let refresh_at = self.clock.now_ms() + self.margin.as_millis() as i64;
        let fresh = state
            .access
            .as_ref()
            .is_some_and(|(_, expiry)| refresh_at < *expiry);
        if !fresh {
            if let Err(error) = self.fetch(&mut state).await {
                metrics::counter!(TOKEN_REFRESH_FAILURES_TOTAL, "connector" => self.credentials.key.clone())
                    .increment(1);
                return Err(error);
            }
        }
        let (token, _) = state.access.clone().expect("fetched above");
        let learned = state.learned.as_ref().expect("loaded above");
        let endpoint = learned
            .endpoint_url
            .clone()
            .or(state.token_endpoint.clone())
            .expect("set by fetch");
        Ok(Lease { token, endpoint })
    }

    /// Forgets `used` if it is still the cached token (a call was refused with 401),
    /// so the next lease fetches a new one; a token already replaced is left alone.
    pub async fn refused(&self, used: &SecretString) {
        let mut state = self.state.lock().await;
        if state
            .access
            .as_ref()
            .is_some_and(|(token, _)| token.expose_secret() == used.expose_secret())
        {
            state.access = None;
        }
    }

    /// Records that the connector's endpoint moved (a 308), durably.
    pub async fn moved(&self, endpoint: String) -> Result<(), KaizalaError> {
        let mut state = self.state.lock().await;
        let mut learned = state.learned.clone().unwrap_or_default();
        learned.endpoint_url = Some(endpoint);
        self.store.save(&self.credentials.key, &learned).await?;
        state.learned = Some(learned);
        Ok(())
    }

    /// The endpoint calls go to now, if known.
    pub async fn endpoint(&self) -> Result<Option<String>, KaizalaError> {
        let mut state = self.state.lock().await;
        if state.learned.is_none() {
            state.learned = Some(self.store.load(&self.credentials.key).await?);
        }
        Ok(state
            .learned
            .as_ref()
            .and_then(|l| l.endpoint_url.clone())
            .or(state.token_endpoint.clone()))
    }

    async fn fetch(&self, state: &mut State) -> Result<(), KaizalaError> {
        let learned = state.learned.clone().unwrap_or_default();
        let refresh = learned
            .refresh_token
            .clone()
            .unwrap_or_else(|| self.credentials.refresh_token.expose().into());
        let mut url = self.credentials.api_root.clone();
        url.path_segments_mut()
            .map_err(|()| KaizalaError::Credentials("api_root cannot be a base URL".into()))?
            .pop_if_empty()
            .extend(["v1", "accessToken"]);
        let response = self
            .http
            .get(url)
            .header("applicationId", &self.credentials.application_id)
            .header(
                "applicationSecret",
                self.credentials.application_secret.expose(),
            )
            .header("refreshToken", refresh.expose())
            .send()
            .await?;
        if response.status().as_u16() != 200 {
            return Err(KaizalaError::from_response(response, self.max_retry_after).await);
        }
        let answer: AccessTokenResponse = response.json().await?;
        metrics::counter!(TOKEN_REFRESHES_TOTAL, "connector" => self.credentials.key.clone())
            .increment(1);
        if let Some(rotated) = answer
            .refresh_token
            .filter(|t| !t.is_empty() && *t != refresh)
        {
            let mut learned = learned;
            learned.refresh_token = Some(rotated);
            // Saved before use: the old token stops working within weeks, so losing
            // the new one would silently stop the connector.
            self.store.save(&self.credentials.key, &learned).await?;
            tracing::info!(connector = %self.credentials.key, "Kaizala rotated the refresh token; saved it");
            state.learned = Some(learned);
        }
        state.token_endpoint = Some(answer.endpoint_url);
        state.access = Some((
            SecretString::from(answer.access_token.expose()),
            answer.access_token_expiry,
        ));
        Ok(())
    }
}

/// `kaizala_bridge_kaizala_token_refreshes_total{connector}`.
pub const TOKEN_REFRESHES_TOTAL: &str = "kaizala_bridge_kaizala_token_refreshes_total";
/// `kaizala_bridge_kaizala_token_refresh_failures_total{connector}`: access tokens
/// that could not be had (a revoked refresh token, a wrong secret, Kaizala down).
pub const TOKEN_REFRESH_FAILURES_TOTAL: &str =
    "kaizala_bridge_kaizala_token_refresh_failures_total";
