//! The shared backend: apalis-redis, queues named `{prefix}:{queue}`.
//!
//! Finished tasks are removed by our own script: apalis's `vacuum` leaves the ids in
//! the done and dead sets, which then grow without end.

use std::time::Duration;

use apalis::prelude::TaskBuilder;
use apalis_redis::ConnectionManager;
use redis::Script;

use super::job::{now_ms, JobKind};
use super::{Depth, QueueError};

fn failed(error: impl std::fmt::Display) -> QueueError {
    QueueError::Backend(error.to_string())
}

/// KEYS: done set, dead set, data hash, meta prefix. ARGV: cutoff (epoch s), batch.
/// Removes up to `batch` finished tasks whose `done_at` is at or before the cutoff;
/// returns how many.
const VACUUM: &str = r#"
local removed = 0
for s = 1, 2 do
  local ids = redis.call('SRANDMEMBER', KEYS[s], tonumber(ARGV[2]))
  for _, id in ipairs(ids) do
    local meta = KEYS[4] .. ':' .. id
    local done_at = tonumber(redis.call('HGET', meta, 'done_at') or '0')
    if done_at <= tonumber(ARGV[1]) then
      redis.call('SREM', KEYS[s], id)
      redis.call('HDEL', KEYS[3], id)
      redis.call('HDEL', KEYS[4] .. ':result', id)
      redis.call('DEL', meta)
      removed = removed + 1
    end
  end
end
return removed
"#;

/// KEYS: scheduled set, active list, signal list. ARGV: now (epoch s), batch.
/// Moves every due scheduled task to the end of the active list, oldest first (as
/// apalis's fetch would), `batch` at a time so that no `unpack` takes more values than
/// Lua allows (about 8,000); returns how many.
const PROMOTE: &str = r#"
local batch = tonumber(ARGV[2])
local moved = 0
while true do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, batch)
  if #ids == 0 then break end
  redis.call('RPUSH', KEYS[2], unpack(ids))
  redis.call('ZREM', KEYS[1], unpack(ids))
  moved = moved + #ids
end
if moved > 0 then
  redis.call('DEL', KEYS[3])
  redis.call('LPUSH', KEYS[3], 1)
end
return moved
"#;

/// Due tasks moved per `unpack` of [`PROMOTE`]: well under Lua's limit.
const PROMOTE_BATCH: u64 = 1000;

/// A connection that sends a PUBLISH in the same round trip as each command it
/// carries (a script that Redis had to load first is sent again, and announced
/// again: a wake-up is a hint, a second one costs a look).
struct WithPublish {
    inner: ConnectionManager,
    publish: redis::Cmd,
}

impl redis::aio::ConnectionLike for WithPublish {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.add_command(cmd.clone())
                .add_command(self.publish.clone());
            let mut replies = self.inner.req_packed_commands(&pipe, 0, 2).await?;
            if replies.is_empty() {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "no reply to the push",
                )));
            }
            replies.swap_remove(0).extract_error()
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        self.inner.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

/// Heartbeats a worker may miss before its jobs are handed to another: three, so a
/// short pause (a busy runtime, a little clock skew between replicas) is not taken
/// for a death.
pub(crate) const MISSED_HEARTBEATS: usize = 3;

/// The Redis side of the queue.
#[derive(Clone)]
pub struct RedisBackend {
    client: redis::Client,
    connection: ConnectionManager,
    prefix: String,
}

impl RedisBackend {
    /// Connects to `url` on a connection of its own, queues under `prefix`: for tools
    /// and tests; the bridge shares the backend's connection ([`Self::on`]).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, QueueError> {
        let handle = crate::backend::RedisHandle::connect(url, prefix)
            .await
            .map_err(failed)?;
        Ok(Self::on(&handle))
    }

    /// The queue on `redis`'s client and shared connection, under its prefix.
    pub fn on(redis: &crate::backend::RedisHandle) -> Self {
        Self {
            client: redis.client().clone(),
            connection: redis.connection(),
            prefix: redis.prefix().to_string(),
        }
    }

    /// The client, for connections of their own (the pub/sub subscription).
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The name of `kind`'s queue in Redis (apalis prefixes its keys with it).
    pub(crate) fn queue_name(&self, kind: JobKind) -> String {
        format!("{}:{}", self.prefix, kind.queue())
    }

    /// Writes `job` (an envelope, as JSON) into `kind`'s queue to run at `run_at`
    /// (epoch seconds), and tells every replica with `wake` (see `wake.rs`), in one
    /// round trip: apalis's push script and the PUBLISH go out as one pipeline, the
    /// PUBLISH after the push, so no replica is woken before the job is there.
    /// Durable (as Redis is) when it returns; a failed PUBLISH only leaves replicas
    /// to their next poll.
    pub(crate) async fn push(
        &self,
        kind: JobKind,
        job: Vec<u8>,
        run_at: u64,
        wake: String,
    ) -> Result<(), QueueError> {
        let task: apalis_redis::RedisTask = TaskBuilder::new(job).run_at_timestamp(run_at).build();
        let mut publish = redis::cmd("PUBLISH");
        publish
            .arg(super::wake::channel(&self.queue_name(kind)))
            .arg(wake);
        let mut connection = WithPublish {
            inner: self.connection.clone(),
            publish,
        };
        apalis_redis::queries::push_tasks(&mut connection, &self.keys(kind), &[task])
            .await
            .map(drop)
            .map_err(failed)
    }

    /// The connection every queue shares.
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// apalis's configuration for `kind`'s queue, which also names its keys.
    fn keys(&self, kind: JobKind) -> apalis_redis::Config {
        apalis_redis::Config::default().queue(self.queue_name(kind))
    }

    /// apalis's configuration for `kind`'s queue.
    pub fn config(&self, kind: JobKind, heartbeat: Duration) -> apalis_redis::Config {
        self.keys(kind)
            .heartbeat_interval(heartbeat)
            .missed_heartbeats(MISSED_HEARTBEATS)
            // apalis sends heartbeats only while no fetched task waits for a free
            // slot: with a batch larger than one, a saturated worker falls silent,
            // another replica's sweep counts it dead and hands its running jobs out
            // again. One task per fetch keeps the heartbeat going.
            .batch_size(1)
            // Nobody listens to apalis's pub/sub events (ours are in `wake.rs`);
            // publishing them costs a call.
            .emit_events(false)
    }

    /// Ready and scheduled jobs of `kind`, and the oldest ready one's due time.
    pub async fn depth(&self, kind: JobKind) -> Result<Depth, QueueError> {
        let config = self.keys(kind);
        let now = now_ms() / 1000;
        let mut connection = self.connection.clone();
        let (active, due, scheduled, head, first): (
            u64,
            u64,
            u64,
            Option<String>,
            Vec<(String, f64)>,
        ) = redis::pipe()
            .cmd("LLEN")
            .arg(config.active_jobs_list())
            .cmd("ZCOUNT")
            .arg(config.scheduled_jobs_set())
            .arg("-inf")
            .arg(now)
            .cmd("ZCARD")
            .arg(config.scheduled_jobs_set())
            .cmd("LINDEX")
            .arg(config.active_jobs_list())
            .arg(0)
            .cmd("ZRANGE")
            .arg(config.scheduled_jobs_set())
            .arg(0)
            .arg(0)
            .arg("WITHSCORES")
            .query_async(&mut connection)
            .await
            .map_err(failed)?;
        let mut oldest: Option<i64> = first
            .first()
            .map(|(_, score)| *score as i64)
            .filter(|at| *at <= now)
            .map(|at| at * 1000);
        if let Some(id) = head {
            // The head of the active list is the oldest job already promoted; its
            // envelope says since when it has been due.
            let data: Option<Vec<u8>> = redis::cmd("HGET")
                .arg(config.job_data_hash())
                .arg(&id)
                .query_async(&mut connection)
                .await
                .map_err(failed)?;
            let ready = data
                .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
                .and_then(|v| v.get("ready_ms").and_then(|r| r.as_i64()));
            if let Some(ready) = ready {
                oldest = Some(oldest.map_or(ready, |o| o.min(ready)));
            }
        }
        Ok(Depth {
            ready: active + due,
            scheduled: scheduled - due,
            oldest_ready_ms: oldest,
        })
    }

    /// Moves `kind`'s due scheduled tasks to the active list; returns how many.
    ///
    /// apalis-redis 1.0's fetch moves every due scheduled task in one `unpack`, which
    /// Lua refuses past about 8,000 values ("too many results to unpack"): with that
    /// many due at once (a backlog pushed in a burst, or a process back after its
    /// queue's turns came due) every fetch failed, the worker restarted in a loop and
    /// the stall check ended the process. Moving them in batches first leaves that
    /// fetch only the few that came due since.
    pub async fn promote_due(&self, kind: JobKind) -> Result<u64, QueueError> {
        let config = self.keys(kind);
        let mut connection = self.connection.clone();
        Script::new(PROMOTE)
            .key(config.scheduled_jobs_set())
            .key(config.active_jobs_list())
            .key(config.signal_list())
            .arg(now_ms() / 1000)
            .arg(PROMOTE_BATCH)
            .invoke_async(&mut connection)
            .await
            .map_err(failed)
    }

    /// Deletes `kind`'s tasks that finished more than `keep` ago.
    pub async fn vacuum(&self, kind: JobKind, keep: Duration) -> Result<u64, QueueError> {
        let config = self.keys(kind);
        let cutoff = now_ms() / 1000 - keep.as_secs() as i64;
        let script = Script::new(VACUUM);
        let mut total = 0;
        loop {
            let mut connection = self.connection.clone();
            let removed: u64 = script
                .key(config.done_jobs_set())
                .key(config.dead_jobs_set())
                .key(config.job_data_hash())
                .key(config.job_meta_hash())
                .arg(cutoff)
                .arg(500)
                .invoke_async(&mut connection)
                .await
                .map_err(failed)?;
            total += removed;
            // A sample of 500 per set with nothing old enough means the rest are young.
            if removed == 0 {
                return Ok(total);
            }
        }
    }
}
