//! Logs and metrics for the whole process.
//!
//! Logs go to stderr through `tracing`, as human-readable lines or one JSON object
//! per line. Every line emitted while a request is served sits inside that request's
//! span, so it carries the request's id. Metrics are recorded with the `metrics` facade
//! into one process-wide Prometheus recorder, rendered on `GET /metrics`.

mod escape;
pub mod help;

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Instant;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// `kaizala_bridge_build_info{version}`: always 1; the labels say what is running.
pub const BUILD_INFO: &str = "kaizala_bridge_build_info";
/// `kaizala_bridge_uptime_seconds`: time since the process started.
pub const UPTIME_SECONDS: &str = "kaizala_bridge_uptime_seconds";

/// Histogram buckets for latencies, in seconds: 1 ms to 60 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Histogram buckets for waits for a quota's permit, in seconds: none (a free slot)
/// to a minute (a 429's pause), finest where a paced call's wait falls (under a
/// connector's 600 ms spacing).
const WAIT_BUCKETS: &[f64] = &[
    0.0005, 0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.6, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `log.level` is not a valid filter (validation normally catches this first).
    #[error("log.level: invalid filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// Another global subscriber was installed first.
    #[error("a global log subscriber is already installed: {0}")]
    AlreadyInstalled(#[from] tracing::subscriber::SetGlobalDefaultError),
}

/// Log lines waiting for stderr before new ones are dropped (a few MiB at most).
const LOG_BUFFER_LINES: usize = 16_384;

/// The thread that writes log lines to stderr, kept until [`flush_logs`].
static LOG_WRITER: std::sync::Mutex<Option<tracing_appender::non_blocking::WorkerGuard>> =
    std::sync::Mutex::new(None);

/// stderr that never fails: a write to a closed pipe (EPIPE) or a broken terminal is
/// dropped and reported as written, so neither the log thread nor tracing-subscriber
/// ever reports (with `eprintln!`, which panics on the same closed stream) or retries.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Installs the process-wide log subscriber, writing to stderr from a thread of its
/// own through a bounded buffer: a stderr nobody reads (full) or nobody holds (closed)
/// costs log lines, never a blocked runtime thread, a panic or a spinning process.
/// Call [`flush_logs`] before the process exits so the last lines are written.
pub fn init_logging(config: &LogConfig) -> Result<(), TelemetryError> {
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_BUFFER_LINES)
        .thread_name("log-writer")
        .finish(LossyStderr);
    let subscriber = log_subscriber(config, writer, ansi)?;
    tracing::subscriber::set_global_default(subscriber)?;
    *LOG_WRITER.lock().unwrap_or_else(|e| e.into_inner()) = Some(guard);
    Ok(())
}

/// Writes out the log lines still buffered (waiting a moment at most) and stops the
/// log thread; lines logged afterwards are lost.
pub fn flush_logs() {
    let guard = LOG_WRITER.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(guard);
}

/// A subscriber for `config` that writes to `writer`; tests capture logs with it.
pub fn log_subscriber<W>(
    config: &LogConfig,
    writer: W,
    ansi: bool,
) -> Result<Box<dyn Subscriber + Send + Sync>, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&config.level)?;
    // tracing-subscriber reports a failed write with `eprintln!`, which panics when
    // stderr is the stream that failed: never report, lose the line.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false);
    Ok(match config.format {
        // Lines for people: escaped, so quoted outside text cannot forge or disguise
        // one. JSON escapes control characters itself.
        LogFormat::Pretty => Box::new(
            builder
                .with_writer(escape::Escaping(writer))
                .with_ansi(ansi)
                .finish(),
        ),
        LogFormat::Json => Box::new(
            builder
                .with_writer(writer)
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .flatten_event(true)
                .finish(),
        ),
    })
}

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();
static STARTED: OnceLock<Instant> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use.
///
/// Installing it once per process (not per [`crate::app::Application`]) lets tests run
/// several applications in one process; their metrics share the recorder.
pub fn metrics() -> &'static PrometheusHandle {
    METRICS.get_or_init(|| {
        STARTED.get_or_init(Instant::now);
        // Histograms (not summaries) for every time: quantiles come from the
        // buckets, and buckets add up across replicas where summaries cannot.
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), LATENCY_BUCKETS)
            .expect("latency buckets are not empty")
            .set_buckets_for_metric(Matcher::Suffix("_wait_seconds".into()), WAIT_BUCKETS)
            .expect("wait buckets are not empty")
            .install_recorder()
            .expect("no other metrics recorder is installed in this process");
        help::describe_all();
        metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

/// Renders every metric in the Prometheus text format, with the uptime brought up to date.
pub fn render_metrics() -> String {
    let handle = metrics();
    let started = STARTED.get_or_init(Instant::now);
    metrics::gauge!(UPTIME_SECONDS).set(started.elapsed().as_secs_f64());
    handle.run_upkeep();
    handle.render()
}
