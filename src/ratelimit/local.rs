//! The gate of a single process, on governor's keyed limiters (one per call spacing,
//! since a keyed limiter has one quota for all its keys).
//!
//! With a store ([`LocalGate::remembering`]) the gate outlives the process: about once
//! a second per key it writes when it last gave a permit, and a new process (a
//! restart, or after a SIGKILL) gives a key's first permit no sooner than a second
//! and one interval after the last one written. Calls stay spaced across the
//! restart, so Kaizala's minute never sees the old process's calls and the new one's
//! add up past the quota.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, RateLimiter};

use super::{GateError, GateFuture, Quota, RateGate, WAIT_SECONDS};
use crate::store::{namespaces, Entry, Store};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Memory {
    fn lock_inherited(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.inherited.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How often, at most, a key's last permit is written to the store.
const REMEMBER_EVERY: Duration = Duration::from_secs(1);

/// A process-local [`RateGate`].
#[derive(Default)]
pub struct LocalGate {
    limiters: Mutex<HashMap<Duration, Arc<DefaultKeyedRateLimiter<String>>>>,
    /// The clock every limiter reads, and the waits are measured on.
    clock: DefaultClock,
    paused: Mutex<HashMap<String, Instant>>,
    memory: Option<Memory>,
}

/// What the gate keeps in the store, and what it found there at start.
struct Memory {
    store: Arc<dyn Store>,
    /// Per key, the epoch ms of the last permit an earlier process wrote; taken
    /// (removed) by the key's first acquire.
    inherited: Mutex<HashMap<String, i64>>,
    /// Per key, when this process last wrote.
    written: Mutex<HashMap<String, Instant>>,
}

impl LocalGate {
    /// An empty gate; limiters appear as quotas are used.
    pub fn new() -> Self {
        Self::default()
    }

    /// A gate that remembers its last permits in `store` and starts from what an
    /// earlier process there remembered.
    pub async fn remembering(store: Arc<dyn Store>) -> Result<Self, GateError> {
        let inherited = store
            .list(namespaces::GATE)
            .await
            .map_err(|e| GateError(e.to_string()))?
            .into_iter()
            .filter_map(|(key, at)| Some((key, at.parse::<i64>().ok()?)))
            .collect();
        Ok(Self {
            memory: Some(Memory {
                store,
                inherited: Mutex::new(inherited),
                written: Mutex::new(HashMap::new()),
            }),
            ..Self::default()
        })
    }

    /// Waits until an earlier process's last permit on `quota` is a second and an
    /// interval past (once per key: the first acquire takes the memory).
    async fn after_inherited(&self, quota: &Quota) {
        let Some(memory) = &self.memory else {
            return;
        };
        let last = memory.lock_inherited().remove(&quota.key);
        let Some(last_ms) = last else {
            return;
        };
        let spacing = (REMEMBER_EVERY + quota.interval()).as_millis() as i64;
        let wait_ms = last_ms.saturating_add(spacing) - now_ms();
        if wait_ms > 0 {
            // Never longer than the spacing itself, whatever the stored value says.
            let wait = Duration::from_millis(wait_ms as u64).min(REMEMBER_EVERY + quota.interval());
            tokio::time::sleep(wait).await;
        }
    }

    /// Writes when `quotas`' keys last gave a permit, each at most once a second, in
    /// one write (one fsync on the call path, not one per key); a failed write only
    /// makes the next restart's pacing start from an older time.
    async fn remember(&self, quotas: &[Quota]) {
        let Some(memory) = &self.memory else {
            return;
        };
        let due: Vec<&Quota> = {
            let mut written = memory.written.lock().unwrap_or_else(|e| e.into_inner());
            quotas
                .iter()
                .filter(|quota| {
                    let due = written
                        .get(&quota.key)
                        .is_none_or(|at| at.elapsed() >= REMEMBER_EVERY);
                    if due {
                        written.insert(quota.key.clone(), Instant::now());
                    }
                    due
                })
                .collect()
        };
        if due.is_empty() {
            return;
        }
        let now = now_ms().to_string();
        let entries: Vec<Entry<'_>> = due
            .iter()
            .map(|quota| Entry {
                namespace: namespaces::GATE,
                key: &quota.key,
                value: &now,
                ttl: Some(quota.period.max(REMEMBER_EVERY) * 2),
            })
            .collect();
        if let Err(error) = memory.store.put_all(&entries).await {
            tracing::debug!(%error, "cannot remember the rate gate's last permits");
        }
    }

    fn limiter(&self, interval: Duration) -> Arc<DefaultKeyedRateLimiter<String>> {
        let mut limiters = self.limiters.lock().unwrap();
        limiters
            .entry(interval)
            .or_insert_with(|| {
                let quota = governor::Quota::with_period(interval)
                    .expect("a non-zero interval")
                    .allow_burst(NonZeroU32::MIN);
                Arc::new(RateLimiter::dashmap_with_clock(quota, self.clock.clone()))
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
        Box::pin(async move { self.acquire_within(quotas, Duration::MAX).await.map(drop) })
    }

    fn acquire_within<'a>(
        &'a self,
        quotas: &'a [Quota],
        within: Duration,
    ) -> GateFuture<'a, Option<Duration>> {
        Box::pin(async move {
            let started = Instant::now();
            let left = || within.saturating_sub(started.elapsed());
            for quota in quotas {
                while let Some(pause) = self.pause_left(&quota.key) {
                    if pause > left() {
                        return Ok(Some(pause.max(within)));
                    }
                    tokio::time::sleep(pause).await;
                }
                self.after_inherited(quota).await;
                // Taking the connector's permit before waiting for the tenant's can only
                // leave capacity unused, never exceed a quota. The limiter says how
                // long until the key's next permit without taking one, so a caller
                // told to come back later is told at once.
                let limiter = self.limiter(quota.interval());
                while let Err(not_until) = limiter.check_key(&quota.key) {
                    let wait = not_until.wait_time_from(self.clock.now());
                    if wait > left() {
                        return Ok(Some(wait.max(within)));
                    }
                    tokio::time::sleep(wait).await;
                }
            }
            self.remember(quotas).await;
            if let Some(first) = quotas.first() {
                metrics::histogram!(WAIT_SECONDS, "key" => first.key.clone())
                    .record(started.elapsed().as_secs_f64());
            }
            Ok(None)
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
