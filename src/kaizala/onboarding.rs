//! Onboarding a connector by PIN: `generatePin` sends a PIN to a phone, and
//! `loginWithPinAndApplicationId` trades it for a refresh token, which is saved
//! as the connector's learned refresh token (preferred over the configured one).

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::credentials::{Credentials, Learned};
use super::error::KaizalaError;

/// The answer of a login.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Login {
    /// The new refresh token.
    pub refresh_token: super::token::Token,
    /// When it expires, epoch milliseconds.
    pub refresh_token_expiry: i64,
    /// Granted scopes.
    #[serde(default)]
    pub granted_scope: String,
}

fn url(api_root: &url::Url, call: &str) -> Result<url::Url, KaizalaError> {
    let mut url = api_root.clone();
    url.path_segments_mut()
        .map_err(|()| KaizalaError::Credentials("api_root cannot be a base URL".into()))?
        .pop_if_empty()
        .extend(["v1", call]);
    Ok(url)
}

async fn post(
    api_root: &url::Url,
    call: &str,
    body: serde_json::Value,
) -> Result<String, KaizalaError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| KaizalaError::Transport(e.to_string()))?;
    let response = http.post(url(api_root, call)?).json(&body).send().await?;
    let status = response.status().as_u16();
    // An operator runs onboarding by hand: the default cap is all it needs.
    let retry_after =
        crate::retry_after::from_headers(response.headers(), crate::retry_after::DEFAULT_MAX);
    let text = response.text().await?;
    if status == 200 {
        Ok(text)
    } else {
        Err(KaizalaError::from_status(status, retry_after, &text))
    }
}

/// Asks Kaizala to send a PIN to `phone` for the connector `application_id`.
pub async fn generate_pin(
    api_root: &url::Url,
    application_id: &str,
    phone: &str,
) -> Result<(), KaizalaError> {
    post(
        api_root,
        "generatePin",
        json!({ "mobileNumber": phone, "applicationId": application_id }),
    )
    .await
    .map(drop)
}

/// Trades a PIN for a refresh token and saves it for the connector `key`.
pub async fn login(
    api_root: &url::Url,
    application_id: &str,
    phone: &str,
    pin: u32,
    store: &Credentials,
    key: &str,
) -> Result<Login, KaizalaError> {
    let body = json!({ "mobileNumber": phone, "applicationId": application_id, "pin": pin });
    let text = post(api_root, "loginWithPinAndApplicationId", body).await?;
    let login: Login = serde_json::from_str(&text)
        .map_err(|e| KaizalaError::Protocol(format!("login answer: {e}")))?;
    let mut learned: Learned = store.load(key).await?;
    learned.refresh_token = Some(login.refresh_token.clone());
    store.save(key, &learned).await?;
    Ok(login)
}
