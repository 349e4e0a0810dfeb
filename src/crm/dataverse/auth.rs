//! Access tokens from Microsoft Entra ID (OAuth 2.0 client credentials) for one
//! Dataverse organisation: fetched on first use, cached, refreshed ahead of expiry,
//! fetched once however many callers wait, and dropped after a 401.

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use super::error::DataverseError;
use crate::config::Secret;

/// How to get tokens for one organisation.
#[derive(Debug, Clone)]
pub struct EntraCredentials {
    /// `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token` or an emulator's.
    pub token_url: String,
    /// The app registration's client id.
    pub client_id: String,
    /// Its secret.
    pub client_secret: Secret,
    /// `{organisation url}/.default`.
    pub scope: String,
}

/// The token of one organisation.
pub struct TokenProvider {
    http: reqwest::Client,
    credentials: EntraCredentials,
    margin: Duration,
    cached: Mutex<Option<(SecretString, Instant)>>,
}

impl TokenProvider {
    /// A provider that refreshes `margin` before expiry.
    pub fn new(http: reqwest::Client, credentials: EntraCredentials, margin: Duration) -> Self {
        Self {
            http,
            credentials,
            margin,
            cached: Mutex::new(None),
        }
    }

    /// A valid token.
    pub async fn token(&self) -> Result<SecretString, DataverseError> {
        let result = self.token_or_fetch().await;
        if result.is_err() {
            metrics::counter!("kaizala_bridge_dataverse_token_refresh_failures_total").increment(1);
        }
        result
    }

    async fn token_or_fetch(&self) -> Result<SecretString, DataverseError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, expires)) = cached.as_ref() {
            if Instant::now() + self.margin < *expires {
                return Ok(token.clone());
            }
        }
        let form = [
            ("client_id", self.credentials.client_id.as_str()),
            ("client_secret", self.credentials.client_secret.expose()),
            ("grant_type", "client_credentials"),
            ("scope", self.credentials.scope.as_str()),
        ];
        let response = self
            .http
            .post(&self.credentials.token_url)
            .form(&form)
            .send()
            .await?;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if status != 200 {
            let error = body["error"].as_str().unwrap_or_default();
            // Entra's description starts with the AADSTS code; it never holds the secret.
            let description = body["error_description"]
                .as_str()
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            return Err(match (status, error) {
                (
                    400 | 401,
                    "invalid_client" | "unauthorized_client" | "invalid_scope" | "invalid_request",
                ) => DataverseError::Credentials(format!("{error}: {description}")),
                (500..=599, _) => DataverseError::Server {
                    status,
                    code: error.into(),
                    message: description,
                },
                _ => DataverseError::Rejected {
                    status,
                    code: error.into(),
                    message: description,
                },
            });
        }
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| DataverseError::Protocol("token answer without access_token".into()))?;
        // Entra says seconds, about an hour; a value past a day is not believed (an
        // Instant cannot hold u64::MAX seconds from now).
        let lifetime = body["expires_in"].as_u64().unwrap_or(3599).min(86_400);
        let token = SecretString::from(token.to_string());
        *cached = Some((
            token.clone(),
            Instant::now() + Duration::from_secs(lifetime),
        ));
        metrics::counter!("kaizala_bridge_dataverse_token_refreshes_total").increment(1);
        Ok(token)
    }

    /// Forgets `used` if it is still cached (a call was refused with 401).
    pub async fn refused(&self, used: &SecretString) {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|(t, _)| t.expose_secret() == used.expose_secret())
        {
            *cached = None;
        }
    }
}
