//! The gate of a single process, on governor's keyed limiters (one per call spacing,
//! since a keyed limiter has one quota for all its keys).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, RateLimiter};

use super::{GateFuture, Quota, RateGate, WAIT_SECONDS};

/// A process-local [`RateGate`].
#[derive(Default)]
pub struct LocalGate {
    limiters: Mutex<HashMap<Duration, Arc<DefaultKeyedRateLimiter<String>>>>,
    paused: Mutex<HashMap<String, Instant>>,
}

impl LocalGate {
    /// An empty gate; limiters appear as quotas are used.
    pub fn new() -> Self {
        Self::default()
    }

    fn limiter(&self, interval: Duration) -> Arc<DefaultKeyedRateLimiter<String>> {
        let mut limiters = self.limiters.lock().unwrap();
        limiters
            .entry(interval)
            .or_insert_with(|| {
                let quota = governor::Quota::with_period(interval)
                    .expect("a non-zero interval")
                    .allow_burst(NonZeroU32::MIN);
                Arc::new(RateLimiter::keyed(quota))
            })
            .clone()
    }

    fn pause_left(&self, key: &str) -> Option<Duration> {
        let paused = self.paused.lock().unwrap();
        paused
            .get(key)
            .and_then(|until| until.checked_duration_since(Instant::now()))
    }
}

impl RateGate for LocalGate {
    fn acquire<'a>(&'a self, quotas: &'a [Quota]) -> GateFuture<'a> {
        Box::pin(async move {
            let started = Instant::now();
            for quota in quotas {
                while let Some(left) = self.pause_left(&quota.key) {
                    tokio::time::sleep(left).await;
                }
                // Taking the connector's permit before waiting for the tenant's can only
                // leave capacity unused, never exceed a quota.
                self.limiter(quota.interval())
                    .until_key_ready(&quota.key)
                    .await;
            }
            if let Some(first) = quotas.first() {
                metrics::histogram!(WAIT_SECONDS, "key" => first.key.clone())
                    .record(started.elapsed().as_secs_f64());
            }
            Ok(())
        })
    }

    fn pause<'a>(&'a self, key: &'a str, duration: Duration) -> GateFuture<'a> {
        Box::pin(async move {
            // The duration comes from a server's Retry-After: capped where it is read,
            // and still never trusted to fit in an Instant.
            let now = Instant::now();
            let until = now
                .checked_add(duration)
                .unwrap_or_else(|| now + Duration::from_secs(24 * 3600));
            let mut paused = self.paused.lock().unwrap();
            let entry = paused.entry(key.to_string()).or_insert(until);
            *entry = (*entry).max(until);
            Ok(())
        })
    }
}
