//! The HTTP server loop, on hyper-util's connection builder rather than `axum::serve`,
//! because a port that faces the internet needs limits `axum::serve` does not set:
//! how long a client may take to send its request head, how long an idle keep-alive
//! connection is kept, how many connections are open at once, and how large a head
//! may be.
//!
//! The two timeouts are kept here rather than left to hyper's `header_read_timeout`,
//! which starts whenever a connection waits for a head, idle or not, so it cannot
//! tell a slow head from an idle keep-alive connection. Here a connection's
//! [`Activity`] is updated by its socket (bytes read) and by its service (a request
//! started, an answer given), and a watchdog closes it when either limit is passed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;

/// `kaizala_bridge_http_connections_refused_total`: connections turned away because
/// `server.max_connections` were open.
pub const CONNECTIONS_REFUSED_TOTAL: &str = "kaizala_bridge_http_connections_refused_total";
/// `kaizala_bridge_http_connections_closed_total{reason}`: connections the server
/// closed for a limit (`header_timeout`, `idle_timeout`).
pub const CONNECTIONS_CLOSED_TOTAL: &str = "kaizala_bridge_http_connections_closed_total";

/// The limits every connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From a request's first byte to its whole head.
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in flight and no bytes coming.
    pub idle_timeout: Duration,
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// The largest request head (request line and headers); larger gets 431.
    pub max_header_bytes: usize,
}

impl Limits {
    /// The limits `server` configures.
    pub fn of(server: &ServerConfig) -> Self {
        Self {
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            max_connections: server.max_connections,
            max_header_bytes: server.max_header_bytes,
        }
    }
}

/// The answer to a connection over the limit: written once without waiting (the
/// socket's buffer is empty, so it fits), then the connection is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
content-length: 40\r\nretry-after: 1\r\nconnection: close\r\n\r\n\
too many connections; try again shortly\n";

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting
/// and waits for open connections to finish their requests (the caller bounds that
/// wait with the shutdown grace).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let builder = builder(&limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before it was
                    // taken: the listener itself is fine; pause so a full table can
                    // drain instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!(CONNECTIONS_REFUSED_TOTAL).increment(1);
            let _ = stream.try_write(BUSY);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
        });
        let service = Tracked {
            inner: router.clone(),
            activity: activity.clone(),
        };
        let connection = builder
            .serve_connection_with_upgrades(
                io,
                hyper_util::service::TowerToHyperService::new(service),
            )
            .into_owned();
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            tokio::select! {
                _ = connection => {}
                reason = activity.expired(limits) => {
                    metrics::counter!(CONNECTIONS_CLOSED_TOTAL, "reason" => reason).increment(1);
                    tracing::debug!(reason, "closed a connection for a limit");
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    connections.close();
    graceful.shutdown().await;
    connections.wait().await;
    Ok(())
}

/// HTTP/1.1 and HTTP/2 (cleartext, prior knowledge), as `axum::serve` speaks, with
/// the head limit. hyper's own head timer is left off (no timer given): the watchdog
/// keeps both timeouts.
fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A head that does not fit the read buffer is answered 431: the buffer's limit is
    // the head's (hyper's smallest is 8 KiB; bodies stream through it in pieces).
    builder
        .http1()
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .max_header_list_size(limits.max_header_bytes.min(u32::MAX as usize) as u32);
    builder
}

/// What a connection is doing, for its watchdog: requests in flight, when the
/// current head began arriving (0: none), and when it last went idle, in ms since
/// `opened`.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    head_started_ms: AtomicU64,
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            head_started_ms: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    /// Ms since the connection opened, never 0 (0 means "no head under way").
    fn now_ms(&self) -> u64 {
        (self.opened.elapsed().as_millis() as u64).max(1)
    }

    /// Bytes arrived: with no request in flight they are a new head.
    fn read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self.head_started_ms.compare_exchange(
                0,
                self.now_ms(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started_ms.store(0, Ordering::Release);
    }

    fn request_ended(&self) {
        self.idle_since_ms.store(self.now_ms(), Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Resolves, with the reason, once the connection has passed a limit: a head
    /// arriving for longer than the header timeout (a connection opens expecting
    /// one), or idle with no bytes for the idle timeout. Runs while the connection
    /// lives and checks a few times per limit.
    async fn expired(&self, limits: Limits) -> &'static str {
        let tick = limits.header_read_timeout.min(limits.idle_timeout) / 4;
        let tick = tick.clamp(Duration::from_millis(10), Duration::from_secs(1));
        let header_ms = limits.header_read_timeout.as_millis() as u64;
        let idle_ms = limits.idle_timeout.as_millis() as u64;
        loop {
            tokio::time::sleep(tick).await;
            if self.in_flight.load(Ordering::Acquire) > 0 {
                continue;
            }
            let now = self.now_ms();
            let head = self.head_started_ms.load(Ordering::Acquire);
            let idle = self.idle_since_ms.load(Ordering::Acquire);
            if head != 0 && now.saturating_sub(head) > header_ms {
                return "header_timeout";
            }
            // A fresh connection owes a head at once; a kept-alive one may wait.
            let fresh = idle == 0;
            if head == 0 && fresh && now > header_ms {
                return "header_timeout";
            }
            if head == 0 && !fresh && now.saturating_sub(idle) > idle_ms {
                return "idle_timeout";
            }
        }
    }
}

/// A socket that tells its [`Activity`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The router, telling its connection's [`Activity`] when a request starts and when
/// its answer is ready.
#[derive(Clone)]
struct Tracked {
    inner: Router,
    activity: Arc<Activity>,
}

impl tower::Service<axum::extract::Request<hyper::body::Incoming>> for Tracked {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::extract::Request<hyper::body::Incoming>) -> Self::Future {
        let activity = self.activity.clone();
        activity.request_started();
        let ended = RequestEnded(activity);
        let answer =
            tower::ServiceExt::oneshot(self.inner.clone(), request.map(axum::body::Body::new));
        Box::pin(async move {
            let response = answer.await;
            drop(ended);
            response
        })
    }
}

/// Ends the request in its connection's [`Activity`] however the answer's future
/// ends (answered, or dropped with the connection).
struct RequestEnded(Arc<Activity>);

impl Drop for RequestEnded {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}
