//! The gate shared by replicas: a calendar of reserved call times per key in Redis,
//! consulted and extended by one Lua script for all the keys of a call (so both
//! permits are taken, or neither), on Redis's clock (so replicas' clocks do not
//! matter). Any two calls on a key are at least its interval apart, as with a GCRA
//! without burst. A 429 sets a pause key that the same script honours.

use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::Script;

use super::{GateError, GateFuture, Quota, RateGate, WAIT_SECONDS};

/// KEYS: for each quota its calendar (a sorted set of reserved call times, µs on
/// Redis's clock) then its pause key. ARGV: each quota's interval in µs (a millisecond
/// is too coarse for short test periods), then the longest the caller will wait in µs
/// (0: as long as it takes), which shortens the horizon to it.
///
/// Returns `{0, wait}` while a key is paused (a 429): nothing is reserved, ask again
/// after `wait` µs. Otherwise it finds, in every calendar at once, the earliest time
/// at least one interval away from every other reservation of each key. When that time
/// is within the horizon (a grid interval, at least 250 ms) it reserves it and returns
/// `{1, wait}`: the call may go in `wait` µs, without asking again. When it is further
/// off it reserves nothing and returns `{0, wait}` to ask again when it is near, so
/// that only slots about to be used are ever held by a caller that may die.
///
/// A calendar rather than one "next free time" per key: a call held back by its
/// connector's quota must not push the tenant's next free time past slots that other
/// connectors' calls can still use, or the tenant's quota is left idle. Times are
/// taken on the grid of the last key's interval (the tenant's, which every call of the
/// tenant shares), so its slots pack without gaps too narrow to use. Candidates are
/// now and the end of every reservation's interval, put on the grid; reservations
/// older than an interval can no longer conflict and are dropped.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS / 2
local limit = tonumber(ARGV[n + 1] or '0')
local pause = 0
for i = 1, n do
  local left = redis.call('PTTL', KEYS[2 * i]) * 1000
  if left > pause then pause = left end
end
if pause > 0 then return {0, pause} end
local grid = tonumber(ARGV[n])
-- How far ahead a slot is reserved: a tenant interval, and never less than 250 ms,
-- so the reservation's round trip (late on a loaded host) never makes the call late
-- for its slot; a late call and an on-time one a window later could meet in
-- Kaizala's window.
local horizon = math.max(grid, 250000)
if limit > 0 and limit < horizon then horizon = limit end
local function snap(at)
  return math.ceil(at / grid) * grid
end
local candidates = {snap(now)}
for i = 1, n do
  local interval = tonumber(ARGV[i])
  redis.call('ZREMRANGEBYSCORE', KEYS[2 * i - 1], '-inf', '(' .. string.format('%.0f', now - interval))
  local slots = redis.call('ZRANGE', KEYS[2 * i - 1], 0, -1, 'WITHSCORES')
  for j = 2, #slots, 2 do
    candidates[#candidates + 1] = snap(tonumber(slots[j]) + interval)
  end
end
table.sort(candidates)
for _, at in ipairs(candidates) do
  if at >= now then
    local free = true
    for i = 1, n do
      local interval = tonumber(ARGV[i])
      local low = '(' .. string.format('%.0f', at - interval)
      local high = '(' .. string.format('%.0f', at + interval)
      if redis.call('ZCOUNT', KEYS[2 * i - 1], low, high) > 0 then
        free = false
        break
      end
    end
    if free and at - now > horizon then
      -- Not due within the horizon: reserve nothing yet and ask again when it is. A
      -- slot reserved long ahead is lost if its caller dies while it waits (a replica
      -- killed with attempts waiting), which leaves the quota idle.
      return {0, at - now - horizon}
    end
    if free then
      local member = string.format('%.0f', at)
      for i = 1, n do
        redis.call('ZADD', KEYS[2 * i - 1], member, member)
        -- Kept a minute past its latest reservation (not this one's: an earlier slot
        -- must not shorten the life of later ones).
        local last = redis.call('ZRANGE', KEYS[2 * i - 1], -1, -1, 'WITHSCORES')
        redis.call('PEXPIRE', KEYS[2 * i - 1], math.ceil((tonumber(last[2]) - now) / 1000) + 60000)
      end
      return {1, at - now}
    end
  end
end
return {0, 1000}
"#;

/// A [`RateGate`] shared through Redis.
pub struct RedisGate {
    connection: ConnectionManager,
    script: Script,
    prefix: String,
}

impl RedisGate {
    /// A gate on `url` on a connection of its own, with keys under `prefix` (e.g.
    /// `kaizala-bridge`): for tools and tests; the bridge shares the backend's
    /// connection ([`Self::on`]).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, GateError> {
        let handle = crate::backend::RedisHandle::connect(url, prefix)
            .await
            .map_err(|e| GateError(e.0))?;
        Ok(Self::on(&handle))
    }

    /// The gate on `redis`'s shared connection, under its prefix.
    pub fn on(redis: &crate::backend::RedisHandle) -> Self {
        Self {
            connection: redis.connection(),
            script: Script::new(SCRIPT),
            prefix: redis.prefix().to_string(),
        }
    }

    fn calendar_key(&self, key: &str) -> String {
        format!("{}:calendar:{key}", self.prefix)
    }

    fn pause_key(&self, key: &str) -> String {
        format!("{}:pause:{key}", self.prefix)
    }
}

impl RateGate for RedisGate {
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
            loop {
                let left = within.saturating_sub(started.elapsed());
                // As the script reckons it: a slot further off than this is not
                // reserved (and none further than the caller will wait).
                let horizon = quotas
                    .last()
                    .map_or(Duration::ZERO, Quota::interval)
                    .max(Duration::from_millis(250))
                    .min(left);
                let mut invocation = self.script.prepare_invoke();
                for quota in quotas {
                    invocation
                        .key(self.calendar_key(&quota.key))
                        .key(self.pause_key(&quota.key));
                    invocation.arg(quota.interval().as_micros().max(1) as u64);
                }
                let limit = if within == Duration::MAX {
                    0
                } else {
                    left.as_micros().clamp(1, u64::MAX as u128) as u64
                };
                invocation.arg(limit);
                let mut connection = self.connection.clone();
                let (reserved, wait): (u8, u64) = invocation
                    .invoke_async(&mut connection)
                    .await
                    .map_err(|e| GateError(e.to_string()))?;
                let wait = Duration::from_micros(wait);
                if reserved == 0 {
                    // Paused, or the next free slot is past the horizon: it is about
                    // `wait` plus the horizon away.
                    let until_free = wait.saturating_add(horizon);
                    if until_free > left {
                        return Ok(Some(until_free.max(within)));
                    }
                }
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                if reserved == 1 {
                    break;
                }
            }
            if let Some(first) = quotas.first() {
                metrics::histogram!(WAIT_SECONDS, "key" => first.key.clone())
                    .record(started.elapsed().as_secs_f64());
            }
            Ok(None)
        })
    }

    fn pause<'a>(&'a self, key: &'a str, duration: Duration) -> GateFuture<'a> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let ms = duration.as_millis().max(1) as u64;
            // Only ever lengthen a pause: PX with GT keeps the later expiry.
            let key = self.pause_key(key);
            let current: i64 = redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .map_err(|e| GateError(e.to_string()))?;
            if current < ms as i64 {
                let _: () = redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("PX")
                    .arg(ms)
                    .query_async(&mut connection)
                    .await
                    .map_err(|e| GateError(e.to_string()))?;
            }
            Ok(())
        })
    }
}
