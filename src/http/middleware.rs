//! What every request gets, whatever its route: an id, a span, a time limit, a body
//! limit, and a place in the request metrics.
//!
//! Order, outermost first: the request id is set (or a caller's `x-request-id` kept),
//! the trace span opens with that id so every log line of the request carries it, the
//! id is copied to the response, the request is counted and timed, then the timeout
//! and the body limit apply. Counting sits outside the limits so that a 408 or a 413
//! is counted too; the route label comes from the router through a slot in the
//! request, since routing happens further in.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{header, HeaderValue, Method, Response, StatusCode};
use axum::middleware::{from_fn, Next};
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::{Level, Span};

use crate::config::ServerConfig;

/// `kaizala_bridge_http_requests_total{method,route,status}`.
pub const REQUESTS_TOTAL: &str = "kaizala_bridge_http_requests_total";
/// `kaizala_bridge_http_request_duration_seconds{method,route,status}`, a histogram.
pub const REQUEST_DURATION_SECONDS: &str = "kaizala_bridge_http_request_duration_seconds";

/// The `route` label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Paths probed every few seconds; their requests are logged at debug, not info.
const PROBE_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// Applies the common middleware to `routes`; call it once all routes are added.
pub fn apply(routes: Router, server: &ServerConfig) -> Router {
    describe_metrics();
    // Innermost first: each `Router::layer` converts the response back to axum's
    // types, which `from_fn` needs after the tower-http layers have changed them.
    routes
        .route_layer(from_fn(name_route))
        .layer(DefaultBodyLimit::max(server.body_limit_bytes))
        .layer(RequestBodyLimitLayer::new(server.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            server.request_timeout,
        ))
        .layer(from_fn(count))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(log_response)
                // The default failure hook logs 5xx at ERROR outside the request's
                // span, without its id; log_response covers them, at the span's level.
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        // Every answer: a browser must never guess a type, so an echoed validation
        // token or an error message can never run as a page.
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
}

/// The `method` label: the standard methods by name, anything else (any client can
/// invent one, and each would be a new series) as `other`.
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    STANDARD
        .iter()
        .find(|standard| *standard == method)
        .map_or("other", Method::as_str)
}

fn describe_metrics() {
    metrics::describe_counter!(
        REQUESTS_TOTAL,
        "HTTP requests answered, by method, route and status."
    );
    metrics::describe_histogram!(
        REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by method, route and status."
    );
}

fn request_span<B>(request: &axum::http::Request<B>) -> Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let method = request.method();
    let path = request.uri().path();
    if PROBE_PATHS.contains(&path) {
        tracing::debug_span!("request", request_id = %id, %method, %path)
    } else {
        tracing::info_span!("request", request_id = %id, %method, %path)
    }
}

fn log_response<B>(response: &Response<B>, latency: Duration, span: &Span) {
    let status = response.status().as_u16();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    // A disabled span still carries its metadata: ask whether it is on.
    if span.is_disabled() {
        return;
    }
    match span.metadata().map(|m| *m.level()) {
        Some(Level::DEBUG) => tracing::debug!(status, latency_ms, "request answered"),
        Some(_) if response.status().is_server_error() => {
            tracing::warn!(status, latency_ms, "request answered")
        }
        _ => tracing::info!(status, latency_ms, "request answered"),
    }
}

/// Where the router writes the route it matched, for [`count`] to read.
#[derive(Clone, Default)]
struct RouteSlot(Arc<OnceLock<String>>);

async fn name_route(request: Request, next: Next) -> axum::response::Response {
    let extensions = request.extensions();
    if let (Some(route), Some(slot)) = (
        extensions.get::<MatchedPath>(),
        extensions.get::<RouteSlot>(),
    ) {
        let _ = slot.0.set(route.as_str().to_owned());
    }
    next.run(request).await
}

async fn count(mut request: Request, next: Next) -> axum::response::Response {
    let slot = RouteSlot::default();
    request.extensions_mut().insert(slot.clone());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let route = slot
        .0
        .get()
        .cloned()
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_string());
    let labels = [
        ("method", method.to_string()),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!(REQUESTS_TOTAL, &labels).increment(1);
    metrics::histogram!(REQUEST_DURATION_SECONDS, &labels).record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    use super::*;
    use crate::config::Config;
    use crate::telemetry;

    fn server(timeout_ms: u64, body_limit: usize) -> ServerConfig {
        let mut server = Config::load(None, &Default::default()).unwrap().server;
        server.request_timeout = Duration::from_millis(timeout_ms);
        server.body_limit_bytes = body_limit;
        server
    }

    fn app() -> Router {
        telemetry::metrics();
        let routes = Router::new()
            .route(
                "/mw-test/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route("/mw-test/echo", post(|body: String| async move { body }));
        apply(routes, &server(100, 16))
    }

    fn count_of(route: &str, method: &str, status: u16) -> f64 {
        let wanted = format!(
            "{REQUESTS_TOTAL}{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} "
        );
        telemetry::render_metrics()
            .lines()
            .find_map(|line| line.strip_prefix(&wanted))
            .map_or(0.0, |n| n.parse().unwrap())
    }

    #[tokio::test]
    async fn a_slow_request_gets_408_and_is_counted_under_its_route() {
        let before = count_of("/mw-test/slow", "GET", 408);
        let request = Request::get("/mw-test/slow").body(Body::empty()).unwrap();
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(count_of("/mw-test/slow", "GET", 408), before + 1.0);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_gets_413_and_one_within_passes() {
        let request = Request::post("/mw-test/echo")
            .body(Body::from("x".repeat(17)))
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

        let request = Request::post("/mw-test/echo")
            .body(Body::from("x".repeat(16)))
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(count_of("/mw-test/echo", "POST", 413) >= 1.0);
    }

    #[tokio::test]
    async fn request_ids_are_made_or_kept_and_returned() {
        let request = Request::post("/mw-test/echo")
            .body(Body::from("hi"))
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        let made = response.headers()["x-request-id"].to_str().unwrap();
        assert_eq!(made.len(), 36, "a UUID: {made}");

        let request = Request::post("/mw-test/echo")
            .header("x-request-id", "caller-chosen-42")
            .body(Body::from("hi"))
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.headers()["x-request-id"], "caller-chosen-42");
    }

    #[tokio::test]
    async fn requests_to_no_route_are_counted_as_unmatched() {
        let before = count_of(UNMATCHED_ROUTE, "GET", 404);
        let request = Request::get("/mw-test/nowhere")
            .body(Body::empty())
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(count_of(UNMATCHED_ROUTE, "GET", 404) >= before + 1.0);
    }
}
