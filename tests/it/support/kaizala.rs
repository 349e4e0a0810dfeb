//! The Kaizala emulator in-process, and a raw-HTTP caller for it. Tests here talk
//! to the emulator with plain reqwest, never through the bridge's own client.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use kaizala_bridge::sim::kaizala::{KaizalaSim, Seed, SimOptions};
use serde_json::Value;

/// A tenant `contoso` (300/min) with connector `app-1` (100/min, group `g-sales`)
/// and `app-2` (group `g-ops`); tenant `fabrikam` with `app-3`.
pub const SEED: &str = r#"
[[tenants]]
id = "contoso"
rate_limit_per_minute = 300
[[tenants.connectors]]
application_id = "app-1"
application_secret = "secret-1"
refresh_token = "rt-1"
groups = ["g-sales", "g-public"]
phone = "+15550000"
[[tenants.connectors]]
application_id = "app-2"
application_secret = "secret-2"
refresh_token = "rt-2"
groups = ["g-ops"]
[[tenants.connectors]]
application_id = "app-3"
application_secret = "secret-3"
refresh_token = "rt-3"
groups = ["g-ops"]
[[tenants.connectors]]
application_id = "app-4"
application_secret = "secret-4"
refresh_token = "rt-4"
groups = ["g-ops"]

[[tenants]]
id = "fabrikam"
[[tenants.connectors]]
application_id = "app-9"
application_secret = "secret-9"
refresh_token = "rt-9"
groups = ["g-other"]

[[groups]]
id = "g-sales"
name = "Sales West"
members = [
  { phone = "+15550000", name = "Bridge Bot", role = "Admin" },
  { phone = "+15550001", name = "Asha" },
  { phone = "+15550002", name = "Ben" },
]
[[groups]]
id = "g-ops"
name = "Operations"
[[groups]]
id = "g-public"
name = "Contoso News"
group_type = "ConnectGroup"
[[groups]]
id = "g-other"
name = "Fabrikam"
"#;

/// A started emulator with a client.
pub struct Sim {
    /// The emulator.
    pub sim: KaizalaSim,
    /// A plain HTTP client that does not follow redirects.
    pub http: reqwest::Client,
}

impl Sim {
    /// Starts the emulator from [`SEED`] with the fast delivery schedule.
    pub async fn start() -> Self {
        Self::start_with(SEED, SimOptions::fast()).await
    }

    /// Starts the emulator from `seed` with `options`.
    pub async fn start_with(seed: &str, options: SimOptions) -> Self {
        let seed = Seed::parse(seed).expect("the test seed is valid");
        let sim = KaizalaSim::start(&seed, options, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("the emulator starts");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self { sim, http }
    }

    /// `GET /v1/accessToken` with these credentials, raw.
    pub async fn access_token_raw(
        &self,
        app: &str,
        secret: &str,
        refresh: &str,
    ) -> reqwest::Response {
        self.http
            .get(format!("{}/v1/accessToken", self.sim.base_url()))
            .header("applicationId", app)
            .header("applicationSecret", secret)
            .header("refreshToken", refresh)
            .send()
            .await
            .unwrap()
    }

    /// A session of the seeded connector `app-N`.
    pub async fn session(&self, n: u32) -> Session {
        let response = self
            .access_token_raw(
                &format!("app-{n}"),
                &format!("secret-{n}"),
                &format!("rt-{n}"),
            )
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        Session {
            http: self.http.clone(),
            token: body["accessToken"].as_str().unwrap().to_string(),
            endpoint: body["endpointUrl"].as_str().unwrap().to_string(),
        }
    }

    /// `POST` to a `/_sim/` control route.
    pub async fn control(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/_sim/{path}", self.sim.base_url()))
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

/// An access token and the endpoint it goes to.
#[derive(Clone)]
pub struct Session {
    http: reqwest::Client,
    /// The access token.
    pub token: String,
    /// The connector's endpoint URL.
    pub endpoint: String,
}

impl Session {
    /// A request to `{endpoint}/v1{path}` with the access token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/v1{path}", self.endpoint))
            .header("accessToken", &self.token)
    }

    /// GET, answering status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        answer(
            self.request(reqwest::Method::GET, path)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// POST JSON, answering status and JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        answer(
            self.request(reqwest::Method::POST, path)
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// PUT JSON, answering status and JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        answer(
            self.request(reqwest::Method::PUT, path)
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// DELETE, answering status and JSON body.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        answer(
            self.request(reqwest::Method::DELETE, path)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// POSTs a response to an action as the member with `phone`.
    pub async fn respond(
        &self,
        group: &str,
        action: &str,
        phone: &str,
        body: &Value,
    ) -> (u16, Value) {
        let request = self
            .request(
                reqwest::Method::POST,
                &format!("/groups/{group}/actions/{action}/responses"),
            )
            .header("x-sim-responder", phone)
            .json(body);
        answer(request.send().await.unwrap()).await
    }
}

/// Status and JSON body (null when the body is empty or not JSON).
pub async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// How the test callback behaves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Echo the validation token and accept events.
    Good,
    /// Answer the handshake with something else.
    WrongEcho,
    /// Echo the token but answer events with 500.
    FailEvents,
}

/// An event received by the test callback.
#[derive(Clone, Debug)]
pub struct Received {
    /// The `kz-callback-token` header.
    pub token: Option<String>,
    /// The body.
    pub body: Value,
}

#[derive(Clone)]
struct CallbackState {
    mode: Arc<Mutex<Mode>>,
    received: Arc<Mutex<Vec<Received>>>,
}

/// A webhook receiver on a free loopback port.
pub struct Callback {
    /// Its URL.
    pub url: String,
    state: CallbackState,
}

impl Callback {
    /// Starts a receiver that behaves as `mode`.
    pub async fn start(mode: Mode) -> Self {
        let state = CallbackState {
            mode: Arc::new(Mutex::new(mode)),
            received: Arc::default(),
        };
        let app = Router::new()
            .route("/hook", get(validate).post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{address}/hook"),
            state,
        }
    }

    /// Changes how it behaves.
    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Events received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits until `n` events have arrived (up to 10 s) and returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} events arrived: {received:#?}",
                received.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

#[derive(serde::Deserialize)]
struct Validation {
    #[serde(rename = "validationToken")]
    validation_token: String,
}

async fn validate(State(state): State<CallbackState>, Query(query): Query<Validation>) -> String {
    match *state.mode.lock().unwrap() {
        Mode::WrongEcho => "not-the-token".to_string(),
        _ => query.validation_token,
    }
}

async fn receive(
    State(state): State<CallbackState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    let token = headers
        .get("kz-callback-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    state
        .received
        .lock()
        .unwrap()
        .push(Received { token, body });
    match *state.mode.lock().unwrap() {
        Mode::FailEvents => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::OK,
    }
}
