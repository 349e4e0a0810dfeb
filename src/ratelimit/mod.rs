//! The rate gate every Kaizala call passes: a permit from the connector's quota and
//! one from its tenant's, before the call.
//!
//! Quotas are enforced as a GCRA with no burst: calls on one key are spaced a full
//! interval apart (600 ms for 100 a minute), so no sliding minute can ever hold more
//! than the quota, which is what "stay under it on our own" needs; a burst allowance
//! would let a window see up to twice as many. The spacing leaves 1% of each quota
//! (at least 50 ms of each period) unused as slack for the network's jitter. A 429
//! pauses a key for its Retry-After for every caller. Waiting sleeps for the time the limiter names, per key, so it
//! neither spins nor holds up other connectors.
//!
//! [`LocalGate`] (governor) serves one process; [`RedisGate`] (an atomic GCRA in a Lua
//! script, Redis's clock) serves N replicas, which then share each quota.

mod local;
mod redis_gate;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::model::ConnectorRef;

pub use local::LocalGate;
pub use redis_gate::RedisGate;

/// `kaizala_bridge_rate_gate_wait_seconds{key}`: time spent waiting for permits.
pub const WAIT_SECONDS: &str = "kaizala_bridge_rate_gate_wait_seconds";

/// The least slack a quota's spacing leaves per period: a call that is late by a busy
/// host's scheduling (tens of milliseconds) must not meet the next window's calls.
/// Kaizala's minute leaves 600 ms anyway; short periods (the tests' 2 s, whose 1% is
/// 20 ms) drew a 429 beside a loaded suite.
pub const MIN_SLACK: Duration = Duration::from_millis(50);

/// A quota: a key and the calls it allows per period (Kaizala's period is a minute).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Quota {
    /// `connector:{tenant}/{connector}` or `tenant:{tenant}`.
    pub key: String,
    /// Calls per period.
    pub calls: u32,
    /// The period.
    pub period: Duration,
}

impl Quota {
    /// The quota of a connector.
    pub fn connector(connector: &ConnectorRef, calls: u32, period: Duration) -> Self {
        Self {
            key: format!("connector:{connector}"),
            calls,
            period,
        }
    }

    /// The quota of a tenant.
    pub fn tenant(tenant: &str, calls: u32, period: Duration) -> Self {
        Self {
            key: format!("tenant:{tenant}"),
            calls,
            period,
        }
    }

    /// The spacing between two calls: the period plus its slack, over the calls,
    /// rounded up to whole microseconds. The slack is for the network and the host: a
    /// call reaches Kaizala a little after its permit, by a varying delay, and strict
    /// spacing at the gate alone could let a sliding window at Kaizala see one call
    /// too many. A window sees its quota exceeded only when its first call is later
    /// than its last by more than the slack, so the slack is 1% of the period (600 ms
    /// of Kaizala's minute) and never under [`MIN_SLACK`].
    pub fn interval(&self) -> Duration {
        let slack = (self.period.as_nanos() / 100).max(MIN_SLACK.as_nanos());
        let nanos = (self.period.as_nanos() + slack) / u128::from(self.calls.max(1));
        Duration::from_micros(nanos.div_ceil(1000).max(1) as u64)
    }
}

/// The gate could not be used (Redis unreachable); the call should be retried later.
#[derive(Debug, thiserror::Error)]
#[error("the rate gate is unavailable: {0}")]
pub struct GateError(pub String);

/// Boxed future of a gate operation.
pub type GateFuture<'a, T = ()> = Pin<Box<dyn Future<Output = Result<T, GateError>> + Send + 'a>>;

/// Permits for Kaizala calls.
pub trait RateGate: Send + Sync {
    /// Waits until one call fits under every quota in `quotas` (a connector's and its
    /// tenant's), then takes a permit from each.
    fn acquire<'a>(&'a self, quotas: &'a [Quota]) -> GateFuture<'a>;
    /// Like [`RateGate::acquire`], waiting no longer than `within`: `None` once the
    /// permits are taken, or `Some(wait)` when they are further off, about how long
    /// until they are (at least `within`). A caller that is told to wait gives its
    /// place back instead of sleeping in it. A permit taken from the first quota
    /// before the second turned out too far is left unused (capacity lost, never a
    /// quota exceeded). A gate that cannot tell waits as long as it takes.
    fn acquire_within<'a>(
        &'a self,
        quotas: &'a [Quota],
        within: Duration,
    ) -> GateFuture<'a, Option<Duration>> {
        let _ = within;
        Box::pin(async move { self.acquire(quotas).await.map(|()| None) })
    }
    /// Holds every caller of `key` back for `duration` (Kaizala answered 429).
    fn pause<'a>(&'a self, key: &'a str, duration: Duration) -> GateFuture<'a>;
}

/// The gate for `backend`: shared in Redis when the queue is there (so replicas
/// together stay within the quotas), in this process otherwise, remembering its last
/// permits in `store` across restarts.
pub async fn for_backend(
    backend: &crate::backend::Backend,
    store: std::sync::Arc<dyn crate::store::Store>,
) -> Result<std::sync::Arc<dyn RateGate>, GateError> {
    use crate::backend::Backend;
    Ok(match backend {
        Backend::Sqlite(_) => std::sync::Arc::new(LocalGate::remembering(store).await?),
        Backend::Redis(redis) => std::sync::Arc::new(RedisGate::on(redis)),
    })
}
