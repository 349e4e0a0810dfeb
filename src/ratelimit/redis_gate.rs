//! The gate shared by replicas: a GCRA per key in Redis, checked and advanced by one
//! Lua script for all the keys of a call (so both permits are taken, or neither), on
//! Redis's clock (so replicas' clocks do not matter). A 429 sets a pause key that the
//! same script honours.

use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::Script;

use super::{GateError, GateFuture, Quota, RateGate, WAIT_SECONDS};

/// KEYS: for each quota its TAT key then its pause key. ARGV: each quota's interval in
/// microseconds (a millisecond is too coarse for short test periods). Returns 0 when
/// the permits were taken, else the microseconds to wait.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait = 0
local n = #ARGV
for i = 1, n do
  local pause = redis.call('PTTL', KEYS[2 * i]) * 1000
  if pause > wait then wait = pause end
  local tat = tonumber(redis.call('GET', KEYS[2 * i - 1]) or now)
  if tat > now and tat - now > wait then wait = tat - now end
end
if wait > 0 then return wait end
for i = 1, n do
  local interval = tonumber(ARGV[i])
  local tat = tonumber(redis.call('GET', KEYS[2 * i - 1]) or now)
  if tat < now then tat = now end
  redis.call('SET', KEYS[2 * i - 1], string.format('%.0f', tat + interval), 'PX', math.ceil(interval / 1000) + 60000)
end
return 0
"#;

/// A [`RateGate`] shared through Redis.
pub struct RedisGate {
    connection: ConnectionManager,
    script: Script,
    prefix: String,
}

impl RedisGate {
    /// A gate on `url`, with keys under `prefix` (e.g. `kaizala-bridge`).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, GateError> {
        let client = redis::Client::open(url)
            .map_err(|e| GateError(format!("the Redis URL is not valid: {e}")))?;
        let connection = client
            .get_connection_manager()
            .await
            .map_err(|e| GateError(e.to_string()))?;
        Ok(Self {
            connection,
            script: Script::new(SCRIPT),
            prefix: prefix.to_string(),
        })
    }

    fn tat_key(&self, key: &str) -> String {
        format!("{}:rate:{key}", self.prefix)
    }

    fn pause_key(&self, key: &str) -> String {
        format!("{}:pause:{key}", self.prefix)
    }
}

impl RateGate for RedisGate {
    fn acquire<'a>(&'a self, quotas: &'a [Quota]) -> GateFuture<'a> {
        Box::pin(async move {
            let started = Instant::now();
            loop {
                let mut invocation = self.script.prepare_invoke();
                for quota in quotas {
                    invocation
                        .key(self.tat_key(&quota.key))
                        .key(self.pause_key(&quota.key));
                    invocation.arg(quota.interval().as_micros().max(1) as u64);
                }
                let mut connection = self.connection.clone();
                let wait: u64 = invocation
                    .invoke_async(&mut connection)
                    .await
                    .map_err(|e| GateError(e.to_string()))?;
                if wait == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_micros(wait)).await;
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
