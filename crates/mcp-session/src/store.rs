//! Durable session state: the records a session keeps, and the [`SessionStore`] trait that
//! persists them.
//!
//! The trait is asynchronous and object-safe so that an embedded store (redb, in
//! `mcp-server`) and a networked one (Redis) can stand behind it without this crate knowing.
//! [`MemoryStore`] keeps everything in memory, for tests and for runs without a data
//! directory. [`conformance`] is the behaviour every implementation must show.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};

pub use mcp_protocol::TaskStatus;
use mcp_protocol::{ProgressToken, RequestId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A future returned by a store.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// An id of 128 random bits as 32 lowercase hex digits: unguessable, safe in URLs, file
/// names and headers.
macro_rules! random_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new random id, from the operating system's generator.
            pub fn random() -> Result<Self, StoreError> {
                let mut bytes = [0u8; 16];
                getrandom::fill(&mut bytes).map_err(|e| {
                    StoreError::Backend(format!(concat!("no randomness for a ", $what, " id: {}"), e))
                })?;
                Ok(Self(bytes.iter().map(|b| format!("{b:02x}")).collect()))
            }

            /// Reads an id given by a client; `None` unless it is exactly 32 lowercase hex
            /// digits.
            pub fn parse(text: &str) -> Option<Self> {
                (text.len() == 32
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
                .then(|| Self(text.to_owned()))
            }

            /// The id's text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

random_id!(
    /// A session's id.
    SessionId,
    "session"
);

random_id!(
    /// A task's id (the tasks extension's `taskId`), which is also what a client needs to
    /// reach the task: it is never derived from anything guessable.
    TaskId,
    "task"
);

/// One completed tool call in a session's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The tool.
    pub tool: String,
    /// The arguments it was called with.
    pub arguments: Value,
    /// Its result (`CallToolResult` as JSON).
    pub result: Value,
    /// When it completed, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// A tool call that was running when the record was last written. A call of a long tool
/// (one that may be a task, or resumes) is a task underneath ([`TaskRecord`] with
/// [`TaskRecord::session`]): its progress, checkpoint and outcome live there, and a
/// resuming client gets the outcome of the task; any other call is reported interrupted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationRecord {
    /// The id of the client's `tools/call` request.
    pub request_id: RequestId,
    /// The tool.
    pub tool: String,
    /// The arguments it was called with.
    pub arguments: Value,
    /// The caller's progress token, if it asked for progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_token: Option<ProgressToken>,
    /// The task that runs it, for a long tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
}

/// What a session is, apart from its outbound log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    /// The session's id.
    pub id: SessionId,
    /// Who owns it (a principal once authentication exists).
    pub owner: String,
    /// A name given at creation (the seeds' agent name), if any.
    pub name: Option<String>,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When a client last used it, in milliseconds since the Unix epoch.
    pub last_active_ms: u64,
    /// The negotiated protocol version, once initialized.
    pub protocol_version: Option<String>,
    /// Completed tool calls, oldest first (at most [`HISTORY_CAP`] of them and
    /// [`HISTORY_BYTES`] of JSON, the newest kept whatever its size).
    pub history: Vec<HistoryEntry>,
    /// Tool calls running when the record was last written.
    #[serde(default)]
    pub operations: Vec<OperationRecord>,
    /// The number the next outbound message gets.
    pub next_seq: u64,
}

/// The owner of every session until authentication exists.
pub const ANONYMOUS: &str = "anonymous";

/// A task: a tool call that outlives the request that started it, polled by its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    /// Its id.
    pub id: TaskId,
    /// The principal it belongs to: nobody else sees it.
    pub owner: String,
    /// The tool.
    pub tool: String,
    /// The arguments it was called with.
    pub arguments: Value,
    /// Where it is.
    pub status: TaskStatus,
    /// What it is doing, or why it ended (progress, with rate and ETA, while it works).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When it last changed.
    pub updated_ms: u64,
    /// How long after its creation it is kept, in milliseconds.
    pub ttl_ms: u64,
    /// How often its client should poll, in milliseconds.
    pub poll_interval_ms: u64,
    /// Its requests to the client not answered yet, by key (`inputRequests`).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub input_requests: serde_json::Map<String, Value>,
    /// The client's answers so far, by key (those of the multi-round-trip requests before
    /// the task existed too): a run started again gets them without asking twice.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub answers: serde_json::Map<String, Value>,
    /// How far it got, as last reported, and out of how much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// Out of how much, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<f64>,
    /// The tool's last checkpoint: what a resumable tool needs to carry on after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Value>,
    /// The tool's result, once completed (`CallToolResult` as JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The JSON-RPC error it failed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// The client's capabilities, as the request that created it declared them: what the
    /// tool may ask of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_capabilities: Option<Value>,
    /// The resumable 2025 session whose call the task runs, if it is one: its client gets
    /// the outcome as the call's response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionId>,
    /// The protocol revision whose result shape the call answers with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
}

impl TaskRecord {
    /// When the task expires, in milliseconds since the Unix epoch: `ttl_ms` after its
    /// creation. A session's task runs as long as the call may (its session ends it), and is
    /// kept `ttl_ms` after it ended, for a client that resumes the session late; its session
    /// removes it once the answer is in the session's log.
    pub fn expires_ms(&self) -> u64 {
        match (&self.session, self.status.is_terminal()) {
            (None, _) => self.created_ms.saturating_add(self.ttl_ms),
            (Some(_), false) => u64::MAX,
            (Some(_), true) => self.updated_ms.saturating_add(self.ttl_ms),
        }
    }
}

/// Milliseconds since the Unix epoch: the clock of records and expiry.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How many completed calls a session's history keeps (the oldest go first).
pub const HISTORY_CAP: usize = 1_000;

/// How many bytes of JSON a session's history keeps (the oldest go first; the newest call
/// is kept whatever its size). The history is part of the record, which each call writes
/// whole: this bounds what a call writes, as well as what the record keeps.
pub const HISTORY_BYTES: u64 = 1 << 20;

impl SessionRecord {
    /// A new, empty session record.
    pub fn new(id: SessionId, owner: &str, name: Option<String>, now_ms: u64) -> Self {
        Self {
            id,
            owner: owner.to_owned(),
            name,
            created_ms: now_ms,
            last_active_ms: now_ms,
            protocol_version: None,
            history: Vec::new(),
            operations: Vec::new(),
            next_seq: 1,
        }
    }

    /// Applies the record part of an update (the log is the store's business).
    pub fn apply(&mut self, update: &Update) {
        if let Some(ms) = update.last_active_ms {
            self.last_active_ms = self.last_active_ms.max(ms);
        }
        if let Some(version) = &update.protocol_version {
            self.protocol_version = Some(version.clone());
        }
        self.history.extend(update.history.iter().cloned());
        if self.history.len() > HISTORY_CAP {
            let excess = self.history.len() - HISTORY_CAP;
            self.history.drain(..excess);
        }
        // The newest first, until the bytes run out.
        let mut bytes = 0u64;
        let kept = self
            .history
            .iter()
            .rev()
            .take_while(|entry| {
                let first = bytes == 0;
                bytes += stored_len(entry);
                first || bytes <= HISTORY_BYTES
            })
            .count();
        let excess = self.history.len() - kept;
        self.history.drain(..excess);
        if let Some(operations) = &update.operations {
            self.operations = operations.clone();
        }
        if let Some(last) = update.entries.iter().map(|e| e.seq).max() {
            self.next_seq = self.next_seq.max(last + 1);
        }
    }
}

/// Changes to one session, written in one transaction by [`SessionStore::update`]. Several
/// writers (a live session, the HTTP API) may update the same session: history is appended,
/// never replaced, so neither loses the other's calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    /// A client used the session at this time.
    pub last_active_ms: Option<u64>,
    /// The protocol version was negotiated.
    pub protocol_version: Option<String>,
    /// Completed calls to append to the history.
    pub history: Vec<HistoryEntry>,
    /// The running calls, replacing the stored list.
    pub operations: Option<Vec<OperationRecord>>,
    /// Messages to add to the outbound log, or to replace at their position (a coalesced
    /// progress notification that changed before it was sent).
    pub entries: Vec<LogEntry>,
    /// How many messages the log keeps: older ones are dropped.
    pub log_cap: usize,
    /// The oldest position the log keeps in any case (the session's log dropped the older
    /// ones, for their bytes): older ones are dropped too.
    pub oldest_kept: u64,
}

impl Update {
    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.last_active_ms.is_none()
            && self.protocol_version.is_none()
            && self.history.is_empty()
            && self.operations.is_none()
            && self.entries.is_empty()
    }

    /// The oldest position the log keeps after this update, given its newest position.
    pub fn keep_from(&self, newest: u64) -> u64 {
        newest
            .saturating_sub(self.log_cap.max(1) as u64 - 1)
            .max(1)
            .max(self.oldest_kept.min(newest))
    }
}

/// One message of a session's outbound log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Its position: 1 for the first message, increasing by one.
    pub seq: u64,
    /// The message as sent.
    pub text: String,
}

/// What a client resuming after `seq` can get.
#[derive(Debug, Clone, PartialEq)]
pub enum Replay {
    /// Every message after the position, in order (possibly none).
    Entries(Vec<LogEntry>),
    /// Messages after the position were dropped by the log's cap: the client cannot resume.
    Truncated {
        /// The oldest position still in the log.
        oldest: u64,
    },
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The session does not exist (never did, expired, or was deleted). The caller should
    /// start a new session.
    #[error("no such session: {0}")]
    NotFound(SessionId),
    /// A session with this id exists already. Ids are random: retry with a new one.
    #[error("a session {0} exists already")]
    Exists(SessionId),
    /// The backend failed (disk, network, corruption). The operation may be retried; the
    /// message says what happened.
    #[error("session store: {0}")]
    Backend(String),
}

/// How deep a record may nest to be written by a backend that keeps JSON: serde_json reads
/// back at most 128 levels, and a record that cannot be read back is never written. Input is
/// refused deeper than [`mcp_protocol::MAX_DEPTH`], so only a bug reaches this.
pub const RECORD_DEPTH: usize = 100;

/// A record as JSON for a backend to keep, refused (clearly) when it would not read back:
/// every backend's invariant is that what it writes, it can read.
pub fn encode_record(
    record: &impl Serialize,
    what: impl std::fmt::Display,
) -> Result<Vec<u8>, StoreError> {
    let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Backend(e.to_string()))?;
    if mcp_protocol::nests_deeper(&bytes, RECORD_DEPTH) {
        return Err(StoreError::Backend(format!(
            "{what} would nest deeper than {RECORD_DEPTH} levels, which the store cannot read back; not written"
        )));
    }
    Ok(bytes)
}

/// What one principal keeps in the store: what its storage limits count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Its stored sessions (agents and resumable sessions).
    pub sessions: usize,
    /// The bytes of its session records (as JSON), their logs' messages and its task
    /// records (as JSON): [`stored_len`] of each record plus each message's length.
    pub bytes: u64,
}

/// The bytes a record counts for in its owner's [`Usage`]: the length of its JSON.
pub fn stored_len(record: &impl Serialize) -> u64 {
    struct Counter(u64);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, record) {
        Ok(()) => counter.0,
        Err(_) => 0,
    }
}

/// Persistence of sessions. Writes return only once durable: a result acknowledged to a
/// client survives a crash.
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new session.
    fn create<'a>(&'a self, record: &'a SessionRecord) -> StoreFuture<'a, ()>;
    /// Loads a session.
    fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<SessionRecord>>;
    /// Applies changes to a session in one transaction.
    fn update<'a>(&'a self, id: &'a SessionId, update: &'a Update) -> StoreFuture<'a, ()>;
    /// The log after position `after`.
    fn replay<'a>(&'a self, id: &'a SessionId, after: u64) -> StoreFuture<'a, Replay>;
    /// Removes a session and its log; removing one that is gone is not an error.
    fn delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, ()>;
    /// The sessions not used since `before_ms` (milliseconds since the Unix epoch).
    fn idle_since<'a>(&'a self, before_ms: u64) -> StoreFuture<'a, Vec<SessionId>>;
    /// What `owner` keeps in the store: what its limits count. Kept up to date by every
    /// write, in the write's transaction, so it is cheap to read.
    fn usage<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, Usage>;
    /// Whether the store works; why not (its disk refused a write, say) until a write works
    /// again. The server is not ready meanwhile.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
    /// Stores a task's record, replacing any with its id, in one transaction.
    fn save_task<'a>(&'a self, record: &'a TaskRecord) -> StoreFuture<'a, ()>;
    /// Loads a task.
    fn load_task<'a>(&'a self, id: &'a TaskId) -> StoreFuture<'a, Option<TaskRecord>>;
    /// Removes a task; removing one that is gone is not an error.
    fn delete_task<'a>(&'a self, id: &'a TaskId) -> StoreFuture<'a, ()>;
    /// Every task (at start: to resume the running ones, count each principal's and expire
    /// the old ones).
    fn tasks<'a>(&'a self) -> StoreFuture<'a, Vec<TaskRecord>>;
    /// Whether other instances share this store (and so its tasks): they then run a task
    /// only under its lease, and take over the tasks whose lease expired.
    fn shared(&self) -> bool {
        false
    }
    /// Takes the lease `name` (`task:{id}`, say) for `holder` (an instance) for `ttl`,
    /// unless anyone holds it, `holder` included: whether it got it. Atomic: of instances
    /// that try at once, one gets it. A store of one instance has no one to share with:
    /// always.
    fn claim_lease<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        ttl: std::time::Duration,
    ) -> StoreFuture<'a, bool> {
        let _ = (name, holder, ttl);
        Box::pin(std::future::ready(Ok(true)))
    }
    /// Extends `holder`'s lease `name` to `ttl` from now: false when it holds it no longer
    /// (it expired, and another took it).
    fn renew_lease<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        ttl: std::time::Duration,
    ) -> StoreFuture<'a, bool> {
        let _ = (name, holder, ttl);
        Box::pin(std::future::ready(Ok(true)))
    }
    /// Extends each of `holder`'s leases `names` to `ttl` from now, in one round trip where
    /// the store can (an instance renews all of its leases at once): for each, whether
    /// `holder` still held it.
    fn renew_leases<'a>(
        &'a self,
        names: &'a [String],
        holder: &'a str,
        ttl: std::time::Duration,
    ) -> StoreFuture<'a, Vec<bool>> {
        Box::pin(async move {
            let mut renewed = Vec::with_capacity(names.len());
            for name in names {
                renewed.push(self.renew_lease(name, holder, ttl).await?);
            }
            Ok(renewed)
        })
    }
    /// Gives `holder`'s lease `name` up (another may take it at once); nothing when it is
    /// not `holder`'s.
    fn release_lease<'a>(&'a self, name: &'a str, holder: &'a str) -> StoreFuture<'a, ()> {
        let _ = (name, holder);
        Box::pin(std::future::ready(Ok(())))
    }
    /// Who holds the lease `name` now, if anyone does (on a store of one instance: never
    /// anyone else, so none).
    fn lease_holder<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<String>> {
        let _ = name;
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// Works out a replay from the entries a log holds, oldest first.
pub fn replay_from(
    entries: impl IntoIterator<Item = LogEntry>,
    after: u64,
    next_seq: u64,
) -> Replay {
    let entries: Vec<LogEntry> = entries.into_iter().collect();
    match entries.first() {
        // Nothing after `after` may be missing: the oldest kept entry must follow it.
        Some(first) if first.seq > after + 1 => Replay::Truncated { oldest: first.seq },
        None if after + 1 < next_seq => Replay::Truncated { oldest: next_seq },
        _ => Replay::Entries(entries.into_iter().filter(|e| e.seq > after).collect()),
    }
}

#[derive(Default)]
struct Memory {
    /// Each session's record, with its [`stored_len`].
    records: HashMap<SessionId, (SessionRecord, u64)>,
    logs: HashMap<SessionId, BTreeMap<u64, String>>,
    /// Each task's record, with its [`stored_len`].
    tasks: BTreeMap<TaskId, (TaskRecord, u64)>,
    usage: HashMap<String, Usage>,
}

impl Memory {
    /// Adds to and takes from `owner`'s usage.
    fn charge(&mut self, owner: &str, sessions: isize, added: u64, removed: u64) {
        let usage = self.usage.entry(owner.to_owned()).or_default();
        usage.sessions = usage.sessions.saturating_add_signed(sessions);
        usage.bytes = usage.bytes.saturating_add(added).saturating_sub(removed);
        if *usage == Usage::default() {
            self.usage.remove(owner);
        }
    }
}

/// A store in memory: for tests, and for a server run without a data directory.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Memory>,
}

impl MemoryStore {
    fn lock(&self) -> MutexGuard<'_, Memory> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn ready<'a, T: Send + 'a>(result: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(result))
}

impl SessionStore for MemoryStore {
    fn create<'a>(&'a self, record: &'a SessionRecord) -> StoreFuture<'a, ()> {
        let mut memory = self.lock();
        if memory.records.contains_key(&record.id) {
            return ready(Err(StoreError::Exists(record.id.clone())));
        }
        let len = stored_len(record);
        memory
            .records
            .insert(record.id.clone(), (record.clone(), len));
        memory.logs.insert(record.id.clone(), BTreeMap::new());
        memory.charge(&record.owner, 1, len, 0);
        ready(Ok(()))
    }

    fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<SessionRecord>> {
        ready(Ok(self.lock().records.get(id).map(|(r, _)| r.clone())))
    }

    fn update<'a>(&'a self, id: &'a SessionId, update: &'a Update) -> StoreFuture<'a, ()> {
        let mut memory = self.lock();
        let Memory { records, logs, .. } = &mut *memory;
        let (Some((record, len)), Some(log)) = (records.get_mut(id), logs.get_mut(id)) else {
            return ready(Err(StoreError::NotFound(id.clone())));
        };
        record.apply(update);
        let (old_len, new_len) = (*len, stored_len(record));
        *len = new_len;
        let (mut added, mut removed) = (new_len, old_len);
        for entry in &update.entries {
            added += entry.text.len() as u64;
            if let Some(old) = log.insert(entry.seq, entry.text.clone()) {
                removed += old.len() as u64;
            }
        }
        if let Some((&newest, _)) = log.last_key_value()
            && !update.entries.is_empty()
        {
            let keep_from = update.keep_from(newest);
            let kept = log.split_off(&keep_from);
            removed += log.values().map(|text| text.len() as u64).sum::<u64>();
            *log = kept;
        }
        let owner = record.owner.clone();
        memory.charge(&owner, 0, added, removed);
        ready(Ok(()))
    }

    fn replay<'a>(&'a self, id: &'a SessionId, after: u64) -> StoreFuture<'a, Replay> {
        let memory = self.lock();
        let (Some(log), Some((record, _))) = (memory.logs.get(id), memory.records.get(id)) else {
            return ready(Err(StoreError::NotFound(id.clone())));
        };
        let entries = log.iter().map(|(&seq, text)| LogEntry {
            seq,
            text: text.clone(),
        });
        ready(Ok(replay_from(entries, after, record.next_seq)))
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, ()> {
        let mut memory = self.lock();
        if let Some((record, len)) = memory.records.remove(id) {
            let log = memory.logs.remove(id).unwrap_or_default();
            let logged: u64 = log.values().map(|text| text.len() as u64).sum();
            memory.charge(&record.owner, -1, 0, len + logged);
        }
        ready(Ok(()))
    }

    fn idle_since<'a>(&'a self, before_ms: u64) -> StoreFuture<'a, Vec<SessionId>> {
        let mut idle: Vec<SessionId> = self
            .lock()
            .records
            .values()
            .filter(|(r, _)| r.last_active_ms < before_ms)
            .map(|(r, _)| r.id.clone())
            .collect();
        idle.sort();
        ready(Ok(idle))
    }

    fn save_task<'a>(&'a self, record: &'a TaskRecord) -> StoreFuture<'a, ()> {
        let mut memory = self.lock();
        let len = stored_len(record);
        let old = memory
            .tasks
            .insert(record.id.clone(), (record.clone(), len))
            .map_or(0, |(_, old)| old);
        memory.charge(&record.owner, 0, len, old);
        ready(Ok(()))
    }

    fn load_task<'a>(&'a self, id: &'a TaskId) -> StoreFuture<'a, Option<TaskRecord>> {
        ready(Ok(self.lock().tasks.get(id).map(|(t, _)| t.clone())))
    }

    fn delete_task<'a>(&'a self, id: &'a TaskId) -> StoreFuture<'a, ()> {
        let mut memory = self.lock();
        if let Some((task, len)) = memory.tasks.remove(id) {
            memory.charge(&task.owner, 0, 0, len);
        }
        ready(Ok(()))
    }

    fn usage<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, Usage> {
        ready(Ok(self
            .lock()
            .usage
            .get(owner)
            .copied()
            .unwrap_or_default()))
    }

    fn tasks<'a>(&'a self) -> StoreFuture<'a, Vec<TaskRecord>> {
        ready(Ok(self
            .lock()
            .tasks
            .values()
            .map(|(t, _)| t.clone())
            .collect()))
    }
}

/// The behaviour every [`SessionStore`] must show; each backend's tests run it (feature
/// `test-support`; it is not compiled into the product).
#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
