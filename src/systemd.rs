//! Telling systemd how the service is doing (`Type=notify`): READY=1 once the listener
//! is bound and everything is built, watchdog pings while the workers make progress,
//! STOPPING=1 when shutdown begins. Without `NOTIFY_SOCKET` (not under systemd) every
//! call does nothing.
//!
//! The watchdog is fed only while the job queue is not stalled, so a bridge whose
//! workers stopped making progress is restarted by systemd (`WatchdogSec=`); `run`
//! also stops itself after a minute stalled (see `app::run`), which restarts it under
//! Kubernetes too.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::readiness::Readiness;

/// Tells systemd the service is ready.
pub fn ready() {
    if let Err(error) = sd_notify::notify(&[NotifyState::Ready]) {
        tracing::warn!(%error, "cannot tell systemd the service is ready");
    }
}

/// Tells systemd the service is stopping.
pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}

/// The watchdog interval systemd asks for (`WatchdogSec=`), if any.
fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}

/// Pings the watchdog at half its interval until `shutdown`, skipping pings while the
/// queue is stalled.
pub async fn feed_watchdog(readiness: Arc<Readiness>, shutdown: CancellationToken) {
    let Some(interval) = watchdog_interval() else {
        return;
    };
    let mut tick = tokio::time::interval(interval / 2);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match readiness.stalled() {
            None => {
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            }
            Some(why) => {
                tracing::warn!(%why, "not feeding the systemd watchdog: the queue is stalled");
            }
        }
    }
}
