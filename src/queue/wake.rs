//! Waking a worker when there is work, instead of at its next poll.
//!
//! apalis fetches whenever its worker is polled; a [`WakeStream`] given to the worker
//! as a poll strategy (beside the interval, which stays as the safety net) decides
//! when that is. A push signals its kind's stream once the job is committed, and a
//! job pushed for later arms the stream's timer for its due time, so a retry after a
//! one-second backoff runs after one second, not at the next poll.
//!
//! Why not apalis's own wake-ups: SQLite's update hook fires during the INSERT, before
//! the commit a fetch on another connection must see, and its one receiver is shared
//! by every worker of the pool; apalis-redis publishes `available` only for jobs
//! pushed with no time at all (each of ours has one), and its factory parses queue
//! names with a `:` (ours, `kb:send-action`) into the wrong namespace.
//!
//! Replicas on Redis learn of each other's pushes through [`listen`], a pub/sub
//! subscription per queue; a message names its sender, so a process does not fetch
//! twice for its own push.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_core::Stream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::job::{now_ms, JobKind};

/// A second look this long after a wake-up: a fetch already under way when the push
/// committed may have missed the job, and nothing else would wake the worker.
const ECHO: Duration = Duration::from_millis(15);

/// The most a timer is armed ahead: a due time from another replica's clock, or one
/// days away, is looked at again by then (the interval poll covers it anyway).
const LONGEST_TIMER: Duration = Duration::from_secs(3600);

#[derive(Default)]
struct State {
    /// A push happened since the worker last looked.
    pending: bool,
    /// The earliest due time of a job pushed for later.
    due: Option<Instant>,
    waker: Option<Waker>,
}

#[derive(Default)]
struct Signal(Mutex<State>);

impl Signal {
    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut state = self.0.lock().unwrap();
        change(&mut state);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

/// The wake-up signals of one queue's kinds, shared by its pushes and its workers.
#[derive(Clone)]
pub(crate) struct Wakeups {
    kinds: Arc<[Signal; 2]>,
    /// Who this process is in the messages replicas exchange.
    origin: Arc<str>,
}

impl Default for Wakeups {
    fn default() -> Self {
        Self {
            kinds: Arc::new([Signal::default(), Signal::default()]),
            origin: format!("{:016x}", rand::random::<u64>()).into(),
        }
    }
}

fn index(kind: JobKind) -> usize {
    match kind {
        JobKind::SendAction => 0,
        JobKind::RecordResponse => 1,
    }
}

impl Wakeups {
    /// A job of `kind` due at `ready_ms` (epoch ms) was committed: wake the worker now
    /// when it is due, or at its time.
    pub(crate) fn pushed(&self, kind: JobKind, ready_ms: i64) {
        let wait = ready_ms - now_ms();
        self.kinds[index(kind)].update(|state| {
            if wait <= 0 {
                state.pending = true;
            } else {
                let wait = Duration::from_millis(wait as u64).min(LONGEST_TIMER);
                let at = Instant::now() + wait;
                state.due = Some(state.due.map_or(at, |due| due.min(at)));
            }
        });
    }

    /// Wakes `kind`'s worker to look (after a reconnect, work may have been missed).
    pub(crate) fn look(&self, kind: JobKind) {
        self.kinds[index(kind)].update(|state| state.pending = true);
    }

    /// The stream that wakes `kind`'s worker; one worker per kind takes it.
    pub(crate) fn stream(&self, kind: JobKind) -> WakeStream {
        WakeStream {
            wakeups: self.clone(),
            kind,
            echo: None,
            timer: None,
        }
    }

    /// The message telling replicas of a push: who pushed, and when the job is due.
    pub(crate) fn message(&self, ready_ms: i64) -> String {
        format!("{} {ready_ms}", self.origin)
    }

    /// Acts on a replica's message; one of our own is ignored (the push woke us).
    pub(crate) fn received(&self, kind: JobKind, message: &str) {
        let mut parts = message.split(' ');
        if parts.next() == Some(&*self.origin) {
            return;
        }
        match parts.next().and_then(|due| due.parse::<i64>().ok()) {
            Some(ready_ms) => self.pushed(kind, ready_ms),
            None => self.look(kind),
        }
    }
}

/// Yields whenever the worker should fetch: after a push, a moment later once more
/// ([`ECHO`]), and when a job pushed for later comes due.
pub(crate) struct WakeStream {
    wakeups: Wakeups,
    kind: JobKind,
    echo: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl WakeStream {
    /// Whether a wake-up is due now; registers `cx` for the next one otherwise.
    fn due(&mut self, cx: &mut Context<'_>) -> bool {
        let now = Instant::now();
        let deadline = {
            let mut state = self.wakeups.kinds[index(self.kind)].0.lock().unwrap();
            if std::mem::take(&mut state.pending) {
                self.echo = Some(now + ECHO);
                return true;
            }
            if state.due.is_some_and(|due| due <= now) {
                state.due = None;
                return true;
            }
            state.waker = Some(cx.waker().clone());
            [self.echo, state.due].into_iter().flatten().min()
        };
        if self.echo.is_some_and(|echo| echo <= now) {
            self.echo = None;
            return true;
        }
        let Some(deadline) = deadline else {
            return false;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_ready() {
            self.timer = None;
            // The echo or the due time passed; the next call clears whichever it was.
            cx.waker().wake_by_ref();
        }
        false
    }
}

impl Stream for WakeStream {
    type Item = ();

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        if self.due(cx) {
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}

/// The pub/sub channel on which pushes to `queue` are announced.
pub(crate) fn channel(queue: &str) -> String {
    format!("{queue}:pushed")
}

/// Listens for replicas' pushes to `kind`'s queue (named `queue`) on `client` until
/// `shutdown`, waking the worker for each. Reconnects after a lost connection with
/// a pause that grows to a few seconds; after each reconnect the worker looks once,
/// since pushes made while we were away were not heard.
pub(crate) async fn listen(
    client: redis::Client,
    queue: String,
    kind: JobKind,
    wakeups: Wakeups,
    shutdown: CancellationToken,
) {
    let channel = channel(&queue);
    let mut pause = Duration::from_millis(250);
    while !shutdown.is_cancelled() {
        let heard = tokio::select! {
            _ = shutdown.cancelled() => return,
            heard = subscribe_and_hear(&client, &channel, kind, &wakeups) => heard,
        };
        if let Err(error) = heard {
            tracing::debug!(%error, %queue, "not hearing other replicas' pushes; reconnecting");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(4));
    }
}

async fn subscribe_and_hear(
    client: &redis::Client,
    channel: &str,
    kind: JobKind,
    wakeups: &Wakeups,
) -> redis::RedisResult<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    wakeups.look(kind);
    let mut messages = std::pin::pin!(pubsub.on_message());
    while let Some(message) = std::future::poll_fn(|cx| messages.as_mut().poll_next(cx)).await {
        let text: String = message.get_payload().unwrap_or_default();
        wakeups.received(kind, &text);
    }
    Err(redis::RedisError::from((
        redis::ErrorKind::Io,
        "the subscription ended",
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn woken(stream: &mut WakeStream, within: Duration) -> bool {
        let next = std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx));
        tokio::time::timeout(within, next).await.is_ok()
    }

    #[tokio::test]
    async fn a_push_wakes_now_then_once_more_and_a_later_job_at_its_time() {
        let wakeups = Wakeups::default();
        let mut stream = wakeups.stream(JobKind::SendAction);
        assert!(!woken(&mut stream, Duration::from_millis(50)).await);
        wakeups.pushed(JobKind::SendAction, now_ms());
        assert!(woken(&mut stream, Duration::from_millis(5)).await);
        assert!(woken(&mut stream, ECHO * 3).await, "the echo");
        assert!(!woken(&mut stream, Duration::from_millis(50)).await);
        let started = Instant::now();
        wakeups.pushed(JobKind::SendAction, now_ms() + 200);
        assert!(woken(&mut stream, Duration::from_secs(1)).await);
        assert!(started.elapsed() >= Duration::from_millis(190));
    }

    #[tokio::test]
    async fn kinds_are_apart_and_our_own_messages_are_ignored() {
        let wakeups = Wakeups::default();
        let mut record = wakeups.stream(JobKind::RecordResponse);
        wakeups.pushed(JobKind::SendAction, now_ms());
        assert!(!woken(&mut record, Duration::from_millis(30)).await);
        wakeups.received(JobKind::RecordResponse, &wakeups.message(now_ms()));
        assert!(!woken(&mut record, Duration::from_millis(30)).await);
        let replica = Wakeups::default();
        wakeups.received(JobKind::RecordResponse, &replica.message(now_ms()));
        assert!(woken(&mut record, Duration::from_millis(5)).await);
    }
}
