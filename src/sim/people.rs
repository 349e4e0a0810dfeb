//! The people around the emulators, driven over HTTP as they would act: a sales rep
//! creating opportunities through the Dataverse Web API, and group members answering
//! surveys in Kaizala. Used by the demo and the end-to-end tests; a call the
//! emulators' faults refuse with a 5xx is tapped again, as a person would.

use std::time::Duration;

use serde_json::{json, Value};

/// Who acts, and where.
#[derive(Debug, Clone)]
pub struct Cast {
    /// The Kaizala emulator's API root.
    pub kaizala: String,
    /// The connector whose session answers are posted through (`x-sim-responder`
    /// names the member): application id, secret, refresh token.
    pub connector: (String, String, String),
    /// The Dataverse emulator's organisation URL.
    pub dataverse: String,
    /// The sales rep's application: directory (tenant) id, client id, secret.
    pub rep: (String, String, String),
}

/// A connected cast.
pub struct People {
    http: reqwest::Client,
    dataverse: String,
    dataverse_token: String,
    kaizala_endpoint: String,
    kaizala_token: String,
}

fn failed(what: &str) -> impl Fn(reqwest::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl People {
    /// Signs the rep in to Dataverse and opens the connector's Kaizala session.
    pub async fn connect(cast: &Cast) -> Result<Self, String> {
        let http = reqwest::Client::new();
        let (directory, client_id, secret) = &cast.rep;
        let scope = format!("{}/.default", cast.dataverse);
        let token: Value = http
            .post(format!("{}/{directory}/oauth2/v2.0/token", cast.dataverse))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id.as_str()),
                ("client_secret", secret.as_str()),
                ("scope", scope.as_str()),
            ])
            .send()
            .await
            .map_err(failed("the Dataverse emulator"))?
            .json()
            .await
            .map_err(failed("the Dataverse emulator"))?;
        let (application, secret, refresh) = &cast.connector;
        let session: Value = http
            .get(format!("{}/v1/accessToken", cast.kaizala))
            .header("applicationId", application)
            .header("applicationSecret", secret)
            .header("refreshToken", refresh)
            .send()
            .await
            .map_err(failed("the Kaizala emulator"))?
            .json()
            .await
            .map_err(failed("the Kaizala emulator"))?;
        let text = |v: &Value, k: &str| -> Result<String, String> {
            v[k].as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("no {k} in {v}"))
        };
        Ok(Self {
            http,
            dataverse: cast.dataverse.clone(),
            dataverse_token: text(&token, "access_token")?,
            kaizala_endpoint: text(&session, "endpointUrl")?,
            kaizala_token: text(&session, "accessToken")?,
        })
    }

    /// Sends what `request` builds until it is not a 5xx (at most 50 tries).
    async fn tap(
        &self,
        what: &str,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Value, String> {
        for _ in 0..50 {
            let response = request().send().await.map_err(failed(what))?;
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(body);
            }
            if !status.is_server_error() {
                return Err(format!("{what}: {status} {body}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("{what}: still failing after 50 tries"))
    }

    /// Creates an opportunity with these columns; returns its id.
    pub async fn create_opportunity(&self, columns: &Value) -> Result<String, String> {
        let created = self
            .tap("creating an opportunity", || {
                self.http
                    .post(format!("{}/api/data/v9.2/opportunities", self.dataverse))
                    .bearer_auth(&self.dataverse_token)
                    .header("Prefer", "return=representation")
                    .json(columns)
            })
            .await?;
        created["opportunityid"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("creating an opportunity: no id in {created}"))
    }

    /// The member with `phone` answers survey `action` in `group`, question by question.
    pub async fn answer(
        &self,
        group: &str,
        action: &str,
        phone: &str,
        answers: &Value,
    ) -> Result<(), String> {
        let body = json!({ "actionType": "Survey", "actionBody": { "answers": answers } });
        self.tap("answering a survey", || {
            self.http
                .post(format!(
                    "{}/v1/groups/{group}/actions/{action}/responses",
                    self.kaizala_endpoint
                ))
                .header("accessToken", &self.kaizala_token)
                .header("x-sim-responder", phone)
                .json(&body)
        })
        .await
        .map(drop)
    }
}
