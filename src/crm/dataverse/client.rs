//! A Dataverse Web API v9.2 client: the OData headers on every call, a bearer token
//! (one retry with a fresh token after a 401), and typed errors. Waiting out a 429 is
//! the job queue's business: the error carries `Retry-After`.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::Value;

use super::auth::{EntraCredentials, TokenProvider};
use super::error::DataverseError;

/// `kaizala_bridge_dataverse_calls_total{crm,status}`.
pub const CALLS_TOTAL: &str = "kaizala_bridge_dataverse_calls_total";

/// An answer: status, headers, JSON body (null when empty).
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Its headers (`Retry-After` among them).
    pub headers: HeaderMap,
    /// Its body as JSON (`null` when empty).
    pub body: Value,
}

/// The Web API of one organisation.
pub struct WebApi {
    http: reqwest::Client,
    tokens: TokenProvider,
    base: String,
    crm: String,
    max_retry_after: Duration,
}

impl WebApi {
    /// A client for `organisation_url` (e.g. `https://contoso.crm.dynamics.com`), `crm`
    /// naming the source in metrics.
    pub fn new(
        crm: &str,
        organisation_url: &str,
        credentials: EntraCredentials,
        timeout: Duration,
    ) -> Result<Self, DataverseError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| DataverseError::Transport(e.to_string()))?;
        let tokens = TokenProvider::new(http.clone(), credentials, Duration::from_secs(300));
        let base = format!("{}/api/data/v9.2", organisation_url.trim_end_matches('/'));
        Ok(Self {
            http,
            tokens,
            base,
            crm: crm.to_string(),
            max_retry_after: crate::retry_after::DEFAULT_MAX,
        })
    }

    /// Believes a `Retry-After` of at most `max` (`crm[].max_retry_after`).
    pub fn with_max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// `{organisation}/api/data/v9.2`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request to `path` (relative to the base, or a full URL such as a
    /// next or delta link, used verbatim).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Answer, DataverseError> {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}/{path}", self.base)
        };
        let mut refreshed = false;
        loop {
            let token = self.tokens.token().await?;
            let mut request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token.expose_secret())
                .header("Accept", "application/json")
                .header("OData-MaxVersion", "4.0")
                .header("OData-Version", "4.0");
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await?;
            let status = response.status().as_u16();
            metrics::counter!(CALLS_TOTAL, "crm" => self.crm.clone(), "status" => status.to_string()).increment(1);
            if status == 401 && !refreshed {
                refreshed = true;
                self.tokens.refused(&token).await;
                continue;
            }
            let headers = response.headers().clone();
            let text = response.text().await?;
            if (200..300).contains(&status) {
                let body = if text.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text)
                        .map_err(|e| DataverseError::Protocol(e.to_string()))?
                };
                return Ok(Answer {
                    status,
                    headers,
                    body,
                });
            }
            let retry_after = crate::retry_after::from_headers(&headers, self.max_retry_after);
            if status == 429 {
                metrics::counter!("kaizala_bridge_dataverse_throttled_total", "crm" => self.crm.clone()).increment(1);
            }
            return Err(DataverseError::from_answer(status, retry_after, &text));
        }
    }
}
