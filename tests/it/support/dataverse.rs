//! The Dataverse emulator in-process, a raw Web API caller, and a webhook receiver
//! that records what Dataverse sends. Tests here use plain reqwest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use kaizala_bridge::sim::dataverse::{DataverseSim, Seed, SimOptions};
use serde_json::Value;

/// One application and one existing opportunity.
pub const SEED: &str = r#"
[[applications]]
tenant_id = "contoso"
client_id = "bridge"
client_secret = "bridge-secret"
[[opportunities]]
name = "Existing deal"
estimatedvalue = 5000
"#;

/// A started emulator.
pub struct Dv {
    /// The emulator.
    pub sim: DataverseSim,
    /// A plain client.
    pub http: reqwest::Client,
}

impl Dv {
    /// Starts from [`SEED`] with default options.
    pub async fn start() -> Self {
        Self::start_with(SimOptions::default()).await
    }

    /// Starts from [`SEED`] with `options`.
    pub async fn start_with(options: SimOptions) -> Self {
        let seed = Seed::parse(SEED).unwrap();
        let sim = DataverseSim::start(&seed, options, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        Self {
            sim,
            http: reqwest::Client::new(),
        }
    }

    /// POSTs a form to the token endpoint of `tenant`.
    pub async fn token_raw(&self, tenant: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .http
            .post(self.sim.token_url(tenant))
            .form(form)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// A Web API session of the seeded application.
    pub async fn api(&self) -> Api {
        let scope = format!("{}/.default", self.sim.base_url());
        let form = [
            ("client_id", "bridge"),
            ("client_secret", "bridge-secret"),
            ("grant_type", "client_credentials"),
            ("scope", scope.as_str()),
        ];
        let (status, body) = self.token_raw("contoso", &form).await;
        assert_eq!(status, 200, "{body}");
        Api {
            http: self.http.clone(),
            base: format!("{}/api/data/v9.2", self.sim.base_url()),
            token: body["access_token"].as_str().unwrap().to_string(),
        }
    }
}

/// Status, headers and JSON body (null when empty).
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body.
    pub body: Value,
}

/// A bearer token and the Web API base.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    /// `{org}/api/data/v9.2`.
    pub base: String,
    /// The bearer token.
    pub token: String,
}

impl Api {
    /// A request to `{base}/{path}` (or to `path` when it is a full URL).
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}/{path}", self.base)
        };
        self.http
            .request(method, url)
            .bearer_auth(&self.token)
            .header("Accept", "application/json")
            .header("OData-MaxVersion", "4.0")
            .header("OData-Version", "4.0")
    }

    /// Sends and reads the answer.
    pub async fn send(request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        Answer {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Answer {
        Self::send(self.request(reqwest::Method::GET, path)).await
    }

    /// POST JSON.
    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        Self::send(self.request(reqwest::Method::POST, path).json(body)).await
    }

    /// PATCH JSON with extra headers.
    pub async fn patch(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.request(reqwest::Method::PATCH, path).json(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Self::send(request).await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Answer {
        Self::send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// Creates an opportunity and returns its id.
    pub async fn create_opportunity(&self, body: &Value) -> String {
        let answer = self.post("opportunities", body).await;
        assert_eq!(answer.status, 204, "{}", answer.body);
        let entity = answer.headers["odata-entityid"].to_str().unwrap();
        entity
            .rsplit('(')
            .next()
            .unwrap()
            .trim_end_matches(')')
            .to_string()
    }
}

/// A call Dataverse made to a webhook.
#[derive(Clone, Debug)]
pub struct Call {
    /// Headers.
    pub headers: HeaderMap,
    /// Query parameters.
    pub query: HashMap<String, String>,
    /// The RemoteExecutionContext.
    pub body: Value,
}

#[derive(Clone)]
struct ReceiverState {
    status: Arc<Mutex<u16>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

/// A webhook receiver on a free loopback port that answers a chosen status.
pub struct Receiver {
    /// Its URL.
    pub url: String,
    state: ReceiverState,
}

impl Receiver {
    /// Starts a receiver answering `status`.
    pub async fn start(status: u16) -> Self {
        let state = ReceiverState {
            status: Arc::new(Mutex::new(status)),
            calls: Arc::default(),
        };
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    /// Calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// Waits for `n` calls (up to 10 s).
    pub async fn wait_for(&self, n: usize) -> Vec<Call> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let calls = self.calls();
            if calls.len() >= n {
                return calls;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} calls arrived",
                calls.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> StatusCode {
    state.calls.lock().unwrap().push(Call {
        headers,
        query,
        body,
    });
    StatusCode::from_u16(*state.status.lock().unwrap()).unwrap()
}
