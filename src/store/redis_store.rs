//! The store in Redis, shared by every replica: a key per entry, `{prefix}:{namespace}:{key}`,
//! with Redis's own expiry. Run Redis with append-only persistence for durability.

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::{Entry, Store, StoreError, StoreFuture};

fn failed(error: redis::RedisError) -> StoreError {
    StoreError(error.to_string())
}

/// KEYS: the key. ARGV: the value it must hold. Deletes it only then; 1 when deleted.
const DELETE_IF: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// A [`Store`] in Redis.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
}

impl RedisStore {
    /// Connects to `url` on a connection of its own, keys under `prefix`: for tools
    /// and tests; the bridge shares the backend's connection ([`RedisStore::on`]).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let handle = crate::backend::RedisHandle::connect(url, prefix)
            .await
            .map_err(|e| StoreError(e.0))?;
        Ok(Self::on(&handle))
    }

    /// The store on `redis`'s shared connection, under its prefix.
    pub fn on(redis: &crate::backend::RedisHandle) -> Self {
        Self {
            connection: redis.connection(),
            prefix: redis.prefix().to_string(),
        }
    }

    fn key(&self, namespace: &str, key: &str) -> String {
        format!("{}:{namespace}:{key}", self.prefix)
    }

    fn set(
        &self,
        namespace: &str,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
        only_new: bool,
    ) -> redis::Cmd {
        let mut command = redis::cmd("SET");
        command.arg(self.key(namespace, key)).arg(value);
        if only_new {
            command.arg("NX");
        }
        if let Some(ttl) = ttl {
            command.arg("PX").arg(ttl.as_millis().max(1) as u64);
        }
        command
    }
}

impl Store for RedisStore {
    fn purge_expired(&self) -> StoreFuture<'_, u64> {
        // Redis expires keys itself.
        Box::pin(async { Ok(0) })
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn get<'a>(&'a self, namespace: &'a str, key: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            redis::cmd("GET")
                .arg(self.key(namespace, key))
                .query_async(&mut connection)
                .await
                .map_err(failed)
        })
    }

    fn put<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        value: &'a str,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            self.set(namespace, key, value, ttl, false)
                .query_async::<()>(&mut connection)
                .await
                .map_err(failed)
        })
    }

    fn put_all<'a>(&'a self, entries: &'a [Entry<'a>]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let mut pipe = redis::pipe();
            pipe.atomic();
            for entry in entries {
                pipe.add_command(self.set(
                    entry.namespace,
                    entry.key,
                    entry.value,
                    entry.ttl,
                    false,
                ))
                .ignore();
            }
            pipe.query_async::<()>(&mut connection)
                .await
                .map_err(failed)
        })
    }

    fn put_if_absent<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        value: &'a str,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let set: Option<String> = self
                .set(namespace, key, value, ttl, true)
                .query_async(&mut connection)
                .await
                .map_err(failed)?;
            Ok(set.is_some())
        })
    }

    fn delete<'a>(&'a self, namespace: &'a str, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            redis::cmd("DEL")
                .arg(self.key(namespace, key))
                .query_async::<()>(&mut connection)
                .await
                .map_err(failed)
        })
    }

    fn delete_if<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        value: &'a str,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let removed: i64 = redis::Script::new(DELETE_IF)
                .key(self.key(namespace, key))
                .arg(value)
                .invoke_async(&mut connection)
                .await
                .map_err(failed)?;
            Ok(removed == 1)
        })
    }

    fn list<'a>(&'a self, namespace: &'a str) -> StoreFuture<'a, Vec<(String, String)>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let prefix = self.key(namespace, "");
            let pattern = format!("{}*", redis_glob_escape(&prefix));
            let mut keys: Vec<String> = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut connection)
                    .await
                    .map_err(failed)?;
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            keys.sort();
            keys.dedup();
            let mut entries = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(200) {
                let values: Vec<Option<String>> = redis::cmd("MGET")
                    .arg(chunk)
                    .query_async(&mut connection)
                    .await
                    .map_err(failed)?;
                // A key that expired between SCAN and MGET is simply gone.
                entries.extend(
                    chunk
                        .iter()
                        .zip(values)
                        .filter_map(|(key, value)| Some((key[prefix.len()..].to_string(), value?))),
                );
            }
            Ok(entries)
        })
    }
}

/// Escapes the characters SCAN's MATCH treats as a pattern.
fn redis_glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
