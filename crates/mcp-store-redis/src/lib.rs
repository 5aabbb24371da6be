//! The shared session store: Redis (or Valkey), for a server run as several instances that
//! any request may reach. The data model, key by key, is in docs/scale-out.md; in short:
//!
//! - `{p}session:{id}`: a hash with the record's JSON (`json`), its version (`v`), its owner,
//!   the position of the oldest message its log keeps (`oldest`) and the bytes of that log
//!   (`logbytes`); `{p}log:{id}`: the log, a list of messages, oldest first, so that the
//!   message at position `seq` is at index `seq - oldest`;
//! - `{p}sessions:active`: a sorted set of session ids by last use (the idle sweep's index);
//! - `{p}owned:{owner}`: a set of the owner's session ids; `{p}usage:{owner}`: a hash of the
//!   owner's `sessions` and `bytes` (what its limits count);
//! - `{p}task:{id}`: a hash with a task's JSON and owner; `{p}tasks`: the set of task ids;
//! - `{p}quarantine`: a hash of records that could not be read, set aside.
//!
//! Every write is one Lua script, so that a record, its log, the indexes and its owner's
//! usage change together or not at all. An update is a compare-and-set: the record is read,
//! changed here (the same [`SessionRecord::apply`] as every backend), and written back only
//! if its version did not move meanwhile (another instance's write); else it is read again.
//! A write is acknowledged by Redis once applied in memory: how durable it is then depends on
//! Redis's persistence (`appendfsync always` for every write, `everysec` for all but the last
//! second; docs/scale-out.md).

#![warn(missing_docs)]

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mcp_session::{
    LogEntry, Replay, SessionId, SessionRecord, SessionStore, StoreError, StoreFuture, TaskId,
    TaskRecord, Update, Usage,
};
use prometheus_client::registry::Registry;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands as _, RedisError};

mod bus;
mod metrics;
mod scripts;
#[cfg(feature = "test-support")]
pub mod testing;

use metrics::{RedisMetrics, reached};
use scripts::{RENEWALS_PER_SCRIPT, Scripts};

/// How long one command may take before it fails (and the store is reported broken).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a compare-and-set is tried again when another writer changed the record.
const CAS_TRIES: usize = 32;
/// How often the store checks that Redis answers (what `health` reports between writes).
const PING_EVERY: Duration = Duration::from_secs(1);

/// Sessions, logs and tasks in Redis, shared by every instance that names the same server
/// and key prefix.
#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    /// A random name for this store's signals, so that it does not hear its own.
    me: Arc<str>,
    connection: ConnectionManager,
    keys: Arc<Keys>,
    scripts: Arc<Scripts>,
    /// Why the store fails, since the last command that could not reach Redis.
    broken: Arc<Mutex<Option<String>>>,
    /// Its metrics: round trips, failures, recoveries.
    metrics: Arc<RedisMetrics>,
    /// Whether signals were asked for ([`Bus::subscribe`]), and whether their subscription
    /// is up: the instance is not ready while it cannot hear the others.
    listening: Arc<(std::sync::atomic::AtomicBool, std::sync::atomic::AtomicBool)>,
}

/// The names of the keys, under one prefix.
struct Keys {
    prefix: String,
}

impl Keys {
    fn session(&self, id: &str) -> String {
        format!("{}session:{id}", self.prefix)
    }
    fn log(&self, id: &str) -> String {
        format!("{}log:{id}", self.prefix)
    }
    fn active(&self) -> String {
        format!("{}sessions:active", self.prefix)
    }
    fn owned(&self, owner: &str) -> String {
        format!("{}owned:{owner}", self.prefix)
    }
    fn usage(&self, owner: &str) -> String {
        format!("{}usage:{owner}", self.prefix)
    }
    fn task(&self, id: &str) -> String {
        format!("{}task:{id}", self.prefix)
    }
    fn tasks(&self) -> String {
        format!("{}tasks", self.prefix)
    }
    fn lease(&self, name: &str) -> String {
        format!("{}lease:{name}", self.prefix)
    }
    fn bus(&self) -> String {
        format!("{}bus", self.prefix)
    }
    fn quarantine(&self) -> String {
        format!("{}quarantine", self.prefix)
    }
}

impl RedisStore {
    /// Adds the store's metrics to `registry`: Redis round trips (commands and the
    /// once-a-second ping), commands that got no answer, and recoveries (Redis answering
    /// again after it did not; the connection reconnects by itself).
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "mcp_redis_round_trip_seconds",
            "Time of a Redis command (scripts included) that Redis answered",
            self.metrics.round_trips.clone(),
        );
        registry.register(
            "mcp_redis_failures",
            "Redis commands that got no answer (refused, dropped or timed out)",
            self.metrics.failures.clone(),
        );
        registry.register(
            "mcp_redis_recoveries",
            "Times Redis answered again after it did not (the connection reconnected)",
            self.metrics.recoveries.clone(),
        );
    }

    /// A store on the Redis at `url` (`redis://HOST:PORT[/DB]`, `rediss://` for TLS,
    /// `redis+unix:///PATH`), its keys under `prefix`. It connects lazily and reconnects by
    /// itself: a server starts while Redis is down, and is not ready until it answers.
    pub fn open(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Backend(format!("the Redis address {url:?}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_max_delay(Duration::from_secs(2));
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| StoreError::Backend(format!("redis: {e}")))?;
        let mut me = [0u8; 8];
        getrandom::fill(&mut me)
            .map_err(|e| StoreError::Backend(format!("no randomness for a signal name: {e}")))?;
        let store = Self {
            client,
            me: Arc::from(me.iter().map(|b| format!("{b:02x}")).collect::<String>()),
            connection,
            keys: Arc::new(Keys {
                prefix: prefix.to_owned(),
            }),
            scripts: Arc::new(Scripts::new()),
            broken: Arc::new(Mutex::new(Some("not connected to Redis yet".to_owned()))),
            listening: Arc::default(),
            metrics: Arc::new(RedisMetrics::new()),
        };
        store.watch();
        Ok(store)
    }

    /// Pings Redis every [`PING_EVERY`] for as long as the store is kept, so that `health`
    /// follows Redis between writes (down: not ready; back: ready again).
    fn watch(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.broken);
        let metrics = Arc::clone(&self.metrics);
        let mut connection = self.connection.clone();
        runtime.spawn(async move {
            loop {
                let Some(broken) = weak.upgrade() else {
                    return;
                };
                let started = std::time::Instant::now();
                let answer: Result<String, RedisError> =
                    redis::cmd("PING").query_async(&mut connection).await;
                metrics.round_trip(started, answer.as_ref().map(drop));
                note(&broken, &metrics, answer.as_ref().map(drop));
                drop(broken);
                tokio::time::sleep(PING_EVERY).await;
            }
        });
    }

    /// Runs one command or script, noting whether Redis answered.
    async fn run<T>(
        &self,
        command: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        let result = command.await;
        self.metrics
            .round_trip(started, result.as_ref().map(|_| ()));
        note(&self.broken, &self.metrics, result.as_ref().map(|_| ()));
        result.map_err(|e| StoreError::Backend(format!("redis: {e}")))
    }

    fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// Reads a session's record and version; an unreadable record is quarantined and is,
    /// from then on, no session.
    async fn read(&self, id: &str) -> Result<Option<(SessionRecord, String)>, StoreError> {
        let mut connection = self.connection();
        let (json, version): (Option<Vec<u8>>, Option<String>) = self
            .run(connection.hmget(self.keys.session(id), &["json", "v"]))
            .await?;
        let (Some(json), Some(version)) = (json, version) else {
            return Ok(None);
        };
        match serde_json::from_slice(&json) {
            Ok(record) => Ok(Some((record, version))),
            Err(e) => {
                self.quarantine_session(id, &json, &e).await?;
                Ok(None)
            }
        }
    }

    /// Sets an unreadable session record aside, with its log.
    async fn quarantine_session(
        &self,
        id: &str,
        json: &[u8],
        why: &serde_json::Error,
    ) -> Result<(), StoreError> {
        let owner = serde_json::from_slice::<Owner>(json).map(|o| o.owner);
        let mut connection = self.connection();
        let owner = match owner {
            Ok(owner) => owner,
            Err(_) => {
                let owner: Option<String> = self
                    .run(connection.hget(self.keys.session(id), "owner"))
                    .await?;
                owner.unwrap_or_default()
            }
        };
        self.remove_session(id, &owner, &format!("session:{id}"))
            .await?;
        tracing::error!(session = id, error = %why, "a stored session is unreadable; quarantined (the session is gone)");
        Ok(())
    }

    /// Removes a session of `owner` (into the quarantine under `quarantine`, unless empty).
    async fn remove_session(
        &self,
        id: &str,
        owner: &str,
        quarantine: &str,
    ) -> Result<i64, StoreError> {
        let keys = &self.keys;
        let mut connection = self.connection();
        let mut invocation = self.scripts.remove.prepare_invoke();
        invocation
            .key(keys.session(id))
            .key(keys.log(id))
            .key(keys.active())
            .key(keys.owned(owner))
            .key(keys.usage(owner))
            .key(keys.quarantine())
            .arg(id)
            .arg(owner)
            .arg(quarantine);
        self.run(invocation.invoke_async(&mut connection)).await
    }

    /// Removes the record in hash `key` with `remove`, a script given the owner read from
    /// the hash first (its usage key depends on it), which answers -1 when the record's owner
    /// is another: read again then.
    async fn remove_owned<F, Removed>(&self, key: String, remove: F) -> Result<(), StoreError>
    where
        F: Fn(String) -> Removed,
        Removed: Future<Output = Result<i64, StoreError>>,
    {
        for _ in 0..CAS_TRIES {
            let mut connection = self.connection();
            let owner: Option<String> = self.run(connection.hget(&key, "owner")).await?;
            if remove(owner.unwrap_or_default()).await? >= 0 {
                return Ok(());
            }
        }
        Err(StoreError::Backend(format!(
            "{key}: its owner keeps changing"
        )))
    }

    /// Removes a task of `owner` (into the quarantine under `quarantine`, unless empty).
    async fn remove_task(
        &self,
        id: &str,
        owner: &str,
        quarantine: &str,
    ) -> Result<i64, StoreError> {
        let keys = &self.keys;
        let mut connection = self.connection();
        let mut invocation = self.scripts.remove_task.prepare_invoke();
        invocation
            .key(keys.task(id))
            .key(keys.tasks())
            .key(keys.usage(owner))
            .key(keys.quarantine())
            .arg(id)
            .arg(owner)
            .arg(quarantine);
        self.run(invocation.invoke_async(&mut connection)).await
    }

    /// Reads a task; an unreadable one is quarantined and is, from then on, no task.
    async fn read_task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let mut connection = self.connection();
        let (json, owner): (Option<Vec<u8>>, Option<String>) = self
            .run(connection.hmget(self.keys.task(id), &["json", "owner"]))
            .await?;
        let Some(json) = json else {
            return Ok(None);
        };
        match serde_json::from_slice(&json) {
            Ok(task) => Ok(Some(task)),
            Err(e) => {
                let owner = owner.unwrap_or_default();
                self.remove_task(id, &owner, &format!("task:{id}")).await?;
                tracing::error!(task = id, error = %e, "a stored task is unreadable; quarantined (the task is gone)");
                Ok(None)
            }
        }
    }
}

/// Notes whether Redis answered: an answer (even an error reply) clears the store's
/// brokenness; no answer (refused, dropped, timed out) sets it.
fn note(broken: &Mutex<Option<String>>, metrics: &RedisMetrics, result: Result<(), &RedisError>) {
    let reached = match result {
        Ok(()) => true,
        Err(e) => reached(e),
    };
    let mut broken = broken.lock().unwrap_or_else(PoisonError::into_inner);
    match (reached, result) {
        (true, _) => {
            if broken.take().is_some() {
                metrics.recoveries.inc();
                tracing::info!("the session store (Redis) answers again");
            }
        }
        (false, Err(e)) => {
            if broken.is_none() {
                tracing::error!(error = %e, "the session store (Redis) does not answer; not ready until it does");
            }
            *broken = Some(format!("Redis does not answer: {e}"));
        }
        (false, Ok(())) => {}
    }
}

/// A duration in whole milliseconds, at least one (Redis refuses an expiry of 0).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// A record as JSON, refused when it would not read back.
fn encode(
    record: &impl serde::Serialize,
    what: impl std::fmt::Display,
) -> Result<Vec<u8>, StoreError> {
    mcp_session::store::encode_record(record, what)
}

fn boxed<'a, T: Send + 'a>(
    future: impl Future<Output = Result<T, StoreError>> + Send + 'a,
) -> StoreFuture<'a, T> {
    Box::pin(future)
}

impl SessionStore for RedisStore {
    fn create<'a>(&'a self, record: &'a SessionRecord) -> StoreFuture<'a, ()> {
        boxed(async move {
            let json = encode(record, format_args!("session {}", record.id))?;
            let (id, keys) = (record.id.as_str(), &self.keys);
            let mut connection = self.connection();
            let mut invocation = self.scripts.create.prepare_invoke();
            invocation
                .key(keys.session(id))
                .key(keys.active())
                .key(keys.owned(&record.owner))
                .key(keys.usage(&record.owner))
                .arg(json)
                .arg(&record.owner)
                .arg(record.last_active_ms)
                .arg(record.next_seq)
                .arg(id);
            let created: i64 = self.run(invocation.invoke_async(&mut connection)).await?;
            match created {
                0 => Err(StoreError::Exists(record.id.clone())),
                _ => Ok(()),
            }
        })
    }

    fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<SessionRecord>> {
        boxed(async move { Ok(self.read(id.as_str()).await?.map(|(record, _)| record)) })
    }

    fn update<'a>(&'a self, id: &'a SessionId, update: &'a Update) -> StoreFuture<'a, ()> {
        boxed(async move {
            let keys = &self.keys;
            for _ in 0..CAS_TRIES {
                let Some((mut record, version)) = self.read(id.as_str()).await? else {
                    return Err(StoreError::NotFound(id.clone()));
                };
                record.apply(update);
                let json = encode(&record, format_args!("session {id}"))?;
                // Positions are consecutive, so the cap is a bound on the oldest position.
                let keep_from = match update.entries.is_empty() {
                    true => 0,
                    false => update.keep_from(record.next_seq.saturating_sub(1)),
                };
                let mut connection = self.connection();
                let mut invocation = self.scripts.update.prepare_invoke();
                invocation
                    .key(keys.session(id.as_str()))
                    .key(keys.log(id.as_str()))
                    .key(keys.active())
                    .key(keys.usage(&record.owner))
                    .arg(&version)
                    .arg(json)
                    .arg(record.last_active_ms)
                    .arg(id.as_str())
                    .arg(keep_from);
                for entry in &update.entries {
                    invocation.arg(entry.seq).arg(&entry.text);
                }
                let written: i64 = self.run(invocation.invoke_async(&mut connection)).await?;
                match written {
                    -1 => return Err(StoreError::NotFound(id.clone())),
                    // Another writer got there first: apply to what it wrote.
                    -2 => continue,
                    _ => return Ok(()),
                }
            }
            Err(StoreError::Backend(format!(
                "session {id} changed under {CAS_TRIES} writes in a row; not written"
            )))
        })
    }

    fn replay<'a>(&'a self, id: &'a SessionId, after: u64) -> StoreFuture<'a, Replay> {
        boxed(async move {
            let keys = &self.keys;
            let mut connection = self.connection();
            let mut invocation = self.scripts.replay.prepare_invoke();
            invocation
                .key(keys.session(id.as_str()))
                .key(keys.log(id.as_str()))
                .arg(after);
            let mut answer: Vec<Vec<u8>> =
                self.run(invocation.invoke_async(&mut connection)).await?;
            if answer.len() < 2 {
                return Err(StoreError::NotFound(id.clone()));
            }
            let texts = answer.split_off(2);
            let first: u64 = std::str::from_utf8(&answer[1])
                .ok()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| StoreError::Backend(format!("session {id}: a bad log position")))?;
            let record: SessionRecord = match serde_json::from_slice(&answer[0]) {
                Ok(record) => record,
                Err(e) => {
                    self.quarantine_session(id.as_str(), &answer[0], &e).await?;
                    return Err(StoreError::NotFound(id.clone()));
                }
            };
            let mut entries = Vec::with_capacity(texts.len());
            for (seq, text) in (first..).zip(texts) {
                let text = String::from_utf8(text).map_err(|_| {
                    StoreError::Backend(format!("session {id}: a message that is not UTF-8"))
                })?;
                entries.push(LogEntry { seq, text });
            }
            Ok(mcp_session::store::replay_from(
                entries,
                after,
                record.next_seq,
            ))
        })
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, ()> {
        boxed(
            self.remove_owned(self.keys.session(id.as_str()), move |owner| async move {
                self.remove_session(id.as_str(), &owner, "").await
            }),
        )
    }

    fn idle_since<'a>(&'a self, before_ms: u64) -> StoreFuture<'a, Vec<SessionId>> {
        boxed(async move {
            let mut connection = self.connection();
            let ids: Vec<String> = self
                .run(connection.zrangebyscore(self.keys.active(), "-inf", format!("({before_ms}")))
                .await?;
            let mut idle: Vec<SessionId> =
                ids.iter().filter_map(|id| SessionId::parse(id)).collect();
            idle.sort();
            Ok(idle)
        })
    }

    fn usage<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, Usage> {
        boxed(async move {
            let mut connection = self.connection();
            let (sessions, bytes): (Option<i64>, Option<i64>) = self
                .run(connection.hmget(self.keys.usage(owner), &["sessions", "bytes"]))
                .await?;
            Ok(Usage {
                sessions: usize::try_from(sessions.unwrap_or(0)).unwrap_or(0),
                bytes: u64::try_from(bytes.unwrap_or(0)).unwrap_or(0),
            })
        })
    }

    fn health(&self) -> Result<(), String> {
        if let Some(why) = &*self.broken.lock().unwrap_or_else(PoisonError::into_inner) {
            return Err(why.clone());
        }
        let (asked, up) = &*self.listening;
        if asked.load(Ordering::Acquire) && !up.load(Ordering::Acquire) {
            return Err("not subscribed to the other instances' signals on Redis yet".to_owned());
        }
        Ok(())
    }

    fn save_task<'a>(&'a self, record: &'a TaskRecord) -> StoreFuture<'a, ()> {
        boxed(async move {
            let json = encode(record, format_args!("task {}", record.id))?;
            let (id, keys) = (record.id.as_str(), &self.keys);
            let mut connection = self.connection();
            let mut invocation = self.scripts.save_task.prepare_invoke();
            invocation
                .key(keys.task(id))
                .key(keys.tasks())
                .key(keys.usage(&record.owner))
                .arg(json)
                .arg(id)
                .arg(&record.owner);
            let _: i64 = self.run(invocation.invoke_async(&mut connection)).await?;
            Ok(())
        })
    }

    fn load_task<'a>(&'a self, id: &'a TaskId) -> StoreFuture<'a, Option<TaskRecord>> {
        boxed(self.read_task(id.as_str()))
    }

    fn delete_task<'a>(&'a self, id: &'a TaskId) -> StoreFuture<'a, ()> {
        boxed(
            self.remove_owned(self.keys.task(id.as_str()), move |owner| async move {
                self.remove_task(id.as_str(), &owner, "").await
            }),
        )
    }

    fn shared(&self) -> bool {
        true
    }

    fn claim_lease<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        boxed(async move {
            let mut connection = self.connection();
            // `SET NX PX`: one command, so of instances that claim at once one gets it.
            let set: Option<String> = self
                .run(
                    redis::cmd("SET")
                        .arg(self.keys.lease(name))
                        .arg(holder)
                        .arg("NX")
                        .arg("PX")
                        .arg(millis(ttl))
                        .query_async(&mut connection),
                )
                .await?;
            Ok(set.is_some())
        })
    }

    fn renew_lease<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        boxed(async move {
            let mut connection = self.connection();
            let mut invocation = self.scripts.renew.prepare_invoke();
            invocation
                .key(self.keys.lease(name))
                .arg(holder)
                .arg(millis(ttl));
            let renewed: i64 = self.run(invocation.invoke_async(&mut connection)).await?;
            Ok(renewed == 1)
        })
    }

    fn renew_leases<'a>(
        &'a self,
        names: &'a [String],
        holder: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, Vec<bool>> {
        boxed(async move {
            let mut renewed = Vec::with_capacity(names.len());
            for chunk in names.chunks(RENEWALS_PER_SCRIPT) {
                let mut connection = self.connection();
                let mut invocation = self.scripts.renew_all.prepare_invoke();
                for name in chunk {
                    invocation.key(self.keys.lease(name));
                }
                invocation.arg(holder).arg(millis(ttl));
                let answers: Vec<i64> = self.run(invocation.invoke_async(&mut connection)).await?;
                renewed.extend(answers.into_iter().map(|a| a == 1));
            }
            Ok(renewed)
        })
    }

    fn release_lease<'a>(&'a self, name: &'a str, holder: &'a str) -> StoreFuture<'a, ()> {
        boxed(async move {
            let mut connection = self.connection();
            let mut invocation = self.scripts.release.prepare_invoke();
            invocation.key(self.keys.lease(name)).arg(holder);
            let _: i64 = self.run(invocation.invoke_async(&mut connection)).await?;
            Ok(())
        })
    }

    fn lease_holder<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<String>> {
        boxed(async move {
            let mut connection = self.connection();
            self.run(connection.get(self.keys.lease(name))).await
        })
    }

    fn tasks<'a>(&'a self) -> StoreFuture<'a, Vec<TaskRecord>> {
        boxed(async move {
            let mut connection = self.connection();
            let ids: Vec<String> = self.run(connection.smembers(self.keys.tasks())).await?;
            let mut tasks = Vec::with_capacity(ids.len());
            // A pipeline of reads a thousand at a time: one round trip each.
            for chunk in ids.chunks(1_000) {
                let mut pipeline = redis::pipe();
                for id in chunk {
                    pipeline.hget(self.keys.task(id), "json");
                }
                let jsons: Vec<Option<Vec<u8>>> =
                    self.run(pipeline.query_async(&mut connection)).await?;
                for (id, json) in chunk.iter().zip(jsons) {
                    let Some(json) = json else { continue };
                    match serde_json::from_slice(&json) {
                        Ok(task) => tasks.push(task),
                        // One unreadable record does not hide the others.
                        Err(_) => {
                            self.read_task(id).await?;
                        }
                    }
                }
            }
            Ok(tasks)
        })
    }
}

/// Who owns a record.
#[derive(serde::Deserialize)]
struct Owner {
    owner: String,
}

#[cfg(test)]
mod tests;
