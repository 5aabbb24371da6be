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

use futures_util::StreamExt as _;
use mcp_session::{
    Bus, LogEntry, Replay, SessionId, SessionRecord, SessionStore, Signal, StoreError, StoreFuture,
    TaskId, TaskRecord, Update, Usage,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands as _, RedisError, Script};
use tokio::sync::mpsc;

#[cfg(feature = "test-support")]
pub mod testing;

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

/// The Lua scripts of the writes (loaded once per connection, then called by digest).
struct Scripts {
    create: Script,
    update: Script,
    replay: Script,
    remove: Script,
    save_task: Script,
    remove_task: Script,
    renew: Script,
    release: Script,
    renew_all: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            create: Script::new(CREATE),
            update: Script::new(UPDATE),
            replay: Script::new(REPLAY),
            remove: Script::new(REMOVE),
            save_task: Script::new(SAVE_TASK),
            remove_task: Script::new(REMOVE_TASK),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
            renew_all: Script::new(RENEW_ALL),
        }
    }
}

/// KEYS: session, active, owned, usage. ARGV: json, owner, last active, next position, id.
/// 0 when the session exists already.
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'json', ARGV[1], 'v', 1, 'owner', ARGV[2], 'oldest', ARGV[4], 'logbytes', 0)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[5])
redis.call('SADD', KEYS[3], ARGV[5])
redis.call('HINCRBY', KEYS[4], 'sessions', 1)
redis.call('HINCRBY', KEYS[4], 'bytes', string.len(ARGV[1]))
return 1
";

/// KEYS: session, log, active, usage. ARGV: the version read, the new json, last active,
/// id, keep-from (0: no trimming), then position and text of each message. -1: no such
/// session; -2: the version moved (read again); 1: written. Checked whole before anything
/// is written: a script that fails half-way keeps what it wrote.
const UPDATE: &str = r"
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
if v ~= ARGV[1] then return -2 end
local oldest = tonumber(redis.call('HGET', KEYS[1], 'oldest'))
local len = redis.call('LLEN', KEYS[2])
local first, count = oldest, len
for i = 6, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  if count == 0 then first = seq end
  local at = seq - first
  if at == count then count = count + 1
  elseif at > count then
    return redis.error_reply('a gap in the log of ' .. ARGV[4] .. ': position ' .. seq .. ' after ' .. (first + count - 1))
  end
end
local added = string.len(ARGV[2])
local removed = redis.call('HSTRLEN', KEYS[1], 'json')
local logged = tonumber(redis.call('HGET', KEYS[1], 'logbytes'))
redis.call('HSET', KEYS[1], 'json', ARGV[2], 'v', tonumber(v) + 1)
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
for i = 6, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  local text = ARGV[i + 1]
  if len == 0 then oldest = seq end
  local at = seq - oldest
  if at >= 0 and at < len then
    local old = string.len(redis.call('LINDEX', KEYS[2], at))
    redis.call('LSET', KEYS[2], at, text)
    added = added + string.len(text)
    removed = removed + old
    logged = logged + string.len(text) - old
  elseif at == len then
    redis.call('RPUSH', KEYS[2], text)
    len = len + 1
    added = added + string.len(text)
    logged = logged + string.len(text)
  end
end
local keep_from = tonumber(ARGV[5])
if keep_from > oldest and len > 0 then
  local n = math.min(keep_from - oldest, len)
  for _ = 1, n do
    local old = string.len(redis.call('LPOP', KEYS[2]))
    removed = removed + old
    logged = logged - old
  end
  oldest = oldest + n
end
redis.call('HSET', KEYS[1], 'oldest', oldest, 'logbytes', logged)
redis.call('HINCRBY', KEYS[4], 'bytes', added - removed)
return 1
";

/// KEYS: session, log. ARGV: the position after which the client wants the log. The
/// record's json, the position of the first message returned, then the messages, read
/// together; nothing when there is no such session.
const REPLAY: &str = r"
local fields = redis.call('HMGET', KEYS[1], 'json', 'oldest')
if not fields[1] then return {} end
local oldest = tonumber(fields[2])
local from = math.max(tonumber(ARGV[1]) + 1 - oldest, 0)
local out = {fields[1], tostring(oldest + from)}
for _, text in ipairs(redis.call('LRANGE', KEYS[2], from, -1)) do table.insert(out, text) end
return out
";

/// KEYS: session, log, active, owned, usage, quarantine. ARGV: id, owner, the quarantine
/// field ('' to drop the record). Removes a session whose owner is `owner`; 0 when there is
/// none, -1 when its owner is another (read again).
const REMOVE: &str = r"
local fields = redis.call('HMGET', KEYS[1], 'json', 'owner', 'logbytes')
if not fields[1] then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 0
end
if fields[2] ~= ARGV[2] then return -1 end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[6], ARGV[3], fields[1]) end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[5], 'sessions', -1)
redis.call('HINCRBY', KEYS[5], 'bytes', -(string.len(fields[1]) + tonumber(fields[3] or '0')))
return 1
";

/// KEYS: task, tasks, usage. ARGV: json, id, owner.
const SAVE_TASK: &str = r"
local old = redis.call('HSTRLEN', KEYS[1], 'json')
redis.call('HSET', KEYS[1], 'json', ARGV[1], 'owner', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[3], 'bytes', string.len(ARGV[1]) - old)
return 1
";

/// KEYS: task, tasks, usage, quarantine. ARGV: id, owner, the quarantine field ('' to drop
/// the record). 0 when there is no such task, -1 when its owner is another (read again).
const REMOVE_TASK: &str = r"
local fields = redis.call('HMGET', KEYS[1], 'json', 'owner')
if not fields[1] then
  redis.call('SREM', KEYS[2], ARGV[1])
  return 0
end
if fields[2] ~= ARGV[2] then return -1 end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[4], ARGV[3], fields[1]) end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'bytes', -string.len(fields[1]))
return 1
";

/// KEYS: lease. ARGV: holder, ttl in ms. 1 when the holder's lease was extended, 0 when
/// the lease is another's or gone.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// KEYS: leases. ARGV: holder, ttl in ms. For each lease, 1 when the holder's lease was
/// extended, 0 when it is another's or gone.
const RENEW_ALL: &str = r"
local renewed = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    renewed[i] = 1
  else
    renewed[i] = 0
  end
end
return renewed
";

/// How many leases one renewal script takes: a script blocks Redis while it runs.
const RENEWALS_PER_SCRIPT: usize = 500;

/// KEYS: lease. ARGV: holder. Removes the lease if it is the holder's.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// The store's metrics, for the server's registry ([`RedisStore::register_metrics`]).
struct RedisMetrics {
    round_trips: Histogram,
    failures: Counter,
    recoveries: Counter,
}

impl RedisMetrics {
    fn new() -> Self {
        Self {
            round_trips: Histogram::new(exponential_buckets(0.000_05, 4.0, 10)),
            failures: Counter::default(),
            recoveries: Counter::default(),
        }
    }

    /// Counts a command that took since `started`: its time when Redis answered, a failure
    /// when it did not.
    fn round_trip(&self, started: std::time::Instant, result: Result<(), &RedisError>) {
        match result {
            Err(e) if !reached(e) => {
                self.failures.inc();
            }
            _ => self.round_trips.observe(started.elapsed().as_secs_f64()),
        }
    }
}

/// Whether Redis answered (an error reply is an answer; a refused, dropped or timed-out
/// connection is not).
fn reached(e: &RedisError) -> bool {
    !(e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal())
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

/// A signal as it goes over the bus: who sent it, and what.
#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope {
    from: String,
    signal: Signal,
}

/// How many received signals wait for the hub at most; more are dropped (they are hints).
const SIGNALS_WAITING: usize = 4_096;

impl Bus for RedisStore {
    fn publish<'a>(&'a self, signal: &'a Signal) -> StoreFuture<'a, ()> {
        boxed(async move {
            let text = serde_json::to_string(&Envelope {
                from: self.me.to_string(),
                signal: signal.clone(),
            })
            .map_err(|e| StoreError::Backend(e.to_string()))?;
            let mut connection = self.connection();
            let _: i64 = self.run(connection.publish(self.keys.bus(), text)).await?;
            Ok(())
        })
    }

    fn subscribe(&self) -> mpsc::Receiver<Signal> {
        let (tx, rx) = mpsc::channel(SIGNALS_WAITING);
        let (client, channel, me) = (self.client.clone(), self.keys.bus(), Arc::clone(&self.me));
        let listening = Arc::clone(&self.listening);
        listening.0.store(true, Ordering::Release);
        tokio::spawn(async move {
            while !tx.is_closed() {
                if let Err(e) = forward(&client, &channel, &me, &tx, &listening.1).await {
                    tracing::debug!(error = %e, "the signal subscription broke; subscribing again");
                }
                listening.1.store(false, Ordering::Release);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        rx
    }
}

/// Forwards the signals of the other instances to `tx` until the subscription breaks or
/// nobody receives any more.
async fn forward(
    client: &redis::Client,
    channel: &str,
    me: &str,
    tx: &mpsc::Sender<Signal>,
    up: &std::sync::atomic::AtomicBool,
) -> Result<(), RedisError> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    up.store(true, Ordering::Release);
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let envelope: Envelope = match serde_json::from_slice(message.get_payload_bytes()) {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::warn!(error = %e, "a signal that does not read; ignored");
                continue;
            }
        };
        if envelope.from == me {
            continue;
        }
        match tx.try_send(envelope.signal) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(signal)) => {
                tracing::warn!(?signal, "too many signals waiting; one dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Ok(()),
        }
    }
    Ok(())
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
mod tests {
    use super::*;
    use crate::testing::RedisServer;

    #[tokio::test]
    async fn the_redis_store_conforms_and_keeps_what_it_wrote() {
        let redis = RedisServer::start().await;
        let store = RedisStore::open(&redis.url(), "conformance:").unwrap();
        mcp_session::store::conformance::run(&store).await;
        let survivors = store.idle_since(u64::MAX).await.unwrap();
        assert_eq!(survivors.len(), 1, "the conformance run leaves one session");
        // Another instance (another connection) sees the same.
        let other = RedisStore::open(&redis.url(), "conformance:").unwrap();
        assert!(other.load(&survivors[0]).await.unwrap().is_some());
        // Another prefix is another store.
        let apart = RedisStore::open(&redis.url(), "apart:").unwrap();
        assert_eq!(apart.load(&survivors[0]).await.unwrap(), None);
    }

    /// Of two instances claiming a task's lease, one gets it; only the holder renews or
    /// releases it; an expired lease can be claimed again.
    #[tokio::test]
    async fn a_lease_is_had_by_one_instance_at_a_time() {
        let redis = RedisServer::start().await;
        let store = RedisStore::open(&redis.url(), "lease:").unwrap();
        let task = format!("task:{}", TaskId::random().unwrap());
        let long = Duration::from_secs(60);
        let (a, b) = tokio::join!(
            store.claim_lease(&task, "a", long),
            store.claim_lease(&task, "b", long)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a ^ b, "exactly one: {a} {b}");
        let (holder, other) = if a { ("a", "b") } else { ("b", "a") };
        assert!(
            !store.claim_lease(&task, holder, long).await.unwrap(),
            "held, even by itself"
        );
        assert!(store.renew_lease(&task, holder, long).await.unwrap());
        assert!(!store.renew_lease(&task, other, long).await.unwrap());
        store.release_lease(&task, other).await.unwrap();
        assert!(
            !store.claim_lease(&task, other, long).await.unwrap(),
            "not released by another"
        );
        store.release_lease(&task, holder).await.unwrap();
        assert!(
            store
                .claim_lease(&task, other, Duration::from_millis(1))
                .await
                .unwrap()
        );
        // Expired (Redis expires a key of 1 ms at once, or at its next look).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !store.claim_lease(&task, holder, long).await.unwrap() {
            assert!(tokio::time::Instant::now() < deadline, "never expired");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!store.renew_lease(&task, other, long).await.unwrap());
        assert_eq!(
            store.lease_holder(&task).await.unwrap().as_deref(),
            Some(holder)
        );
        assert_eq!(store.lease_holder("task:none").await.unwrap(), None);
    }

    /// All of an instance's leases are renewed in one go: each answer says whether that
    /// lease was still the holder's, in the order asked, across several scripts' worth.
    #[tokio::test]
    async fn leases_are_renewed_together() {
        let redis = RedisServer::start().await;
        let store = RedisStore::open(&redis.url(), "renew:").unwrap();
        let (short, long) = (Duration::from_millis(300), Duration::from_secs(60));
        let names: Vec<String> = (0..RENEWALS_PER_SCRIPT + 3)
            .map(|i| format!("task:{i}"))
            .collect();
        // Every third is another's; every third never existed.
        for (i, name) in names.iter().enumerate() {
            let holder = match i % 3 {
                0 => "a",
                1 => "b",
                _ => continue,
            };
            assert!(store.claim_lease(name, holder, short).await.unwrap());
        }
        let renewed = store.renew_leases(&names, "a", long).await.unwrap();
        let expected: Vec<bool> = (0..names.len()).map(|i| i % 3 == 0).collect();
        assert_eq!(renewed, expected);
        // Renewed to the longer time, in the second script too.
        let mine = (RENEWALS_PER_SCRIPT..names.len())
            .find(|i| i % 3 == 0)
            .unwrap();
        let mut connection = store.connection();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(store.keys.lease(&names[mine]))
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!(ttl > 1_000, "{ttl} ms left");
        assert!(store.renew_leases(&[], "a", long).await.unwrap().is_empty());
    }

    /// Two instances writing the same session at once lose neither's history: an update is a
    /// compare-and-set, tried again when the other wrote first.
    #[tokio::test]
    async fn concurrent_writers_lose_nothing() {
        let redis = RedisServer::start().await;
        let a = RedisStore::open(&redis.url(), "cas:").unwrap();
        let b = RedisStore::open(&redis.url(), "cas:").unwrap();
        let id = SessionId::random().unwrap();
        a.create(&SessionRecord::new(id.clone(), "alice", None, 1))
            .await
            .unwrap();
        let write = |store: RedisStore, n: u64| {
            let id = id.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    let update = Update {
                        history: vec![mcp_session::HistoryEntry {
                            tool: format!("w{n}"),
                            arguments: serde_json::json!({"i": i}),
                            result: serde_json::Value::Null,
                            at_ms: i,
                        }],
                        ..Update::default()
                    };
                    store.update(&id, &update).await.unwrap();
                }
            })
        };
        let (one, two) = (write(a.clone(), 1), write(b.clone(), 2));
        one.await.unwrap();
        two.await.unwrap();
        let record = a.load(&id).await.unwrap().unwrap();
        assert_eq!(record.history.len(), 40);
        assert_eq!(
            a.usage("alice").await.unwrap().bytes,
            mcp_session::stored_len(&record)
        );
    }

    /// Redis gone: clear errors and an unhealthy store; Redis back: healthy again by itself.
    #[tokio::test]
    async fn a_store_whose_redis_goes_away_says_so_and_recovers() {
        let mut redis = RedisServer::start().await;
        let store = RedisStore::open(&redis.url(), "gone:").unwrap();
        let id = SessionId::random().unwrap();
        store
            .create(&SessionRecord::new(id.clone(), "alice", None, 1))
            .await
            .unwrap();
        assert_eq!(store.health(), Ok(()));
        redis.kill().await;
        let error = store.load(&id).await.unwrap_err();
        assert!(error.to_string().contains("redis"), "{error}");
        assert!(store.health().is_err());
        redis.restart().await;
        // The append-only file kept the session (written more than a second ago or not, a
        // clean SIGKILL after `everysec`'s write: the file has it when the write returned).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let record = loop {
            match store.load(&id).await {
                Ok(record) => break record,
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "never back: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        assert!(record.is_some());
        assert_eq!(store.health(), Ok(()));
    }
}
