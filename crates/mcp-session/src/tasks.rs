//! Tasks: the 2026-07-28 tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663), tool
//! calls that outlive the request that started them, on the durable store.
//!
//! A modern `tools/call` whose client declares the extension, of a tool that may run as a
//! task ([`mcp_tools::Tool::task_support`]), gets a `CreateTaskResult` once the task's record
//! is in the store; the call then runs on a task of its own, and its client polls it with
//! `tasks/get`, answers what it asks with `tasks/update`, and stops it with `tasks/cancel`.
//!
//! The record ([`TaskRecord`]) is the truth: a running task keeps its progress, checkpoint,
//! outstanding input requests and answers in memory and writes them (status changes at once,
//! progress and checkpoints at most once a second); it is answered from memory while it runs
//! here and from the store otherwise. After a restart ([`Hub::recover_tasks`]), a task that
//! was running is resumed from its checkpoint when its tool is resumable, and fails with
//! -32004 otherwise: nothing is reported completed that was not.
//!
//! Nobody but a task's owner learns anything of it: an unknown, expired or foreign task id
//! gets the same -32602.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mcp_protocol::modern::{self, RequestMeta};
use mcp_protocol::{ErrorObject, error_codes};
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, broadcast, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::Principal;
use crate::calls::{CallReply, Reply};
use crate::hub::Hub;
use crate::router::{CallScope, Router, ToolCall};
use crate::store::{TaskId, TaskRecord, TaskStatus, now_ms};

/// The `_meta` key of a detailed task that says how far it got durably: the progress of the
/// checkpoint in the store, from which a restart resumes it.
pub(crate) const CHECKPOINTED: &str = "mcp-server/checkpointedProgress";

/// The `_meta` key of a detailed task with its last progress report as numbers
/// (`{"progress", "total"}`), for a client that draws a bar (the extension has no progress
/// notifications).
pub(crate) const PROGRESS: &str = "mcp-server/progress";

/// The shortest time between two writes of a task's progress and checkpoint.
const WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// The tasks of one hub.
pub(crate) struct Tasks {
    /// The tasks running in this process.
    live: Mutex<HashMap<TaskId, Arc<Live>>>,
    /// The id of every task that changed, for `subscriptions/listen` streams.
    pub(crate) changes: broadcast::Sender<TaskId>,
    /// How many tasks each principal has stored.
    counts: Mutex<HashMap<String, usize>>,
    /// The resumable sessions whose lease this instance holds (on a shared store).
    held_sessions: Mutex<std::collections::HashSet<crate::SessionId>>,
}

impl Default for Tasks {
    fn default() -> Self {
        Self {
            live: Mutex::default(),
            changes: broadcast::channel(1024).0,
            counts: Mutex::default(),
            held_sessions: Mutex::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A task running here.
pub(crate) struct Live {
    record: Mutex<TaskRecord>,
    /// Stops the tool.
    cancel: CancellationToken,
    /// `tasks/cancel` asked it to stop.
    cancelled: AtomicBool,
    /// The tool's requests to the client waiting for an answer, by key.
    waiting: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    /// The capability the tool asked for that the client did not declare.
    missing: Mutex<Option<String>>,
    /// Wakes the writer: the record changed.
    changed: Notify,
    /// The change must be written at once (a status), not within [`WRITE_INTERVAL`].
    urgent: AtomicBool,
    /// Writes one at a time, each of the record as it is when it starts: the last write
    /// is of the newest state.
    writing: tokio::sync::Mutex<()>,
    /// The final state is written: the writer may stop.
    done: CancellationToken,
    /// The progress of the checkpoint last written.
    checkpointed: Mutex<Option<f64>>,
    /// Nothing writes the record again: the task expired and its record is removed, or it
    /// ended with its session following it, which takes the outcome.
    sealed: AtomicBool,
    /// The session whose call the task runs, while it listens.
    front: Mutex<Option<Front>>,
    /// Its lease was lost (another instance took the task over): it stops here without a
    /// word more to the store, which is the other instance's now.
    lost: AtomicBool,
    /// When its lease was last taken or renewed.
    leased: Mutex<std::time::Instant>,
    /// Its session moved to another instance: it stops here without ending (as in a
    /// shutdown), for that instance to take up.
    moving: AtomicBool,
}

/// Where a session's task sends what it produces besides its record: the session that
/// runs the call, live in this process. A task resumed after a restart has none until its
/// session is resumed too.
#[derive(Clone)]
pub(crate) struct Front {
    /// The call's progress notifications (and its operation resource).
    pub(crate) progress: Arc<dyn mcp_tools::ProgressSink>,
    /// Progress up to this much has reached the client already: none of it again.
    pub(crate) after: Option<f64>,
    /// The session's log messages.
    pub(crate) log: Arc<dyn mcp_tools::LogSink>,
    /// The session's client, asked over the session's connection.
    pub(crate) client: Arc<dyn mcp_tools::ClientSink>,
    /// The session's number, for the scheduler's fairness.
    pub(crate) session: u64,
}

impl Live {
    fn new(record: TaskRecord, cancel: CancellationToken, front: Option<Front>) -> Arc<Self> {
        let checkpointed = record.checkpoint.as_ref().and(record.progress);
        Arc::new(Self {
            record: Mutex::new(record),
            cancel,
            cancelled: AtomicBool::new(false),
            waiting: Mutex::default(),
            missing: Mutex::default(),
            changed: Notify::new(),
            urgent: AtomicBool::new(false),
            writing: tokio::sync::Mutex::new(()),
            done: CancellationToken::new(),
            checkpointed: Mutex::new(checkpointed),
            sealed: AtomicBool::new(false),
            front: Mutex::new(front),
            lost: AtomicBool::new(false),
            leased: Mutex::new(std::time::Instant::now()),
            moving: AtomicBool::new(false),
        })
    }

    fn record(&self) -> MutexGuard<'_, TaskRecord> {
        lock(&self.record)
    }

    /// Stops the tool because `tasks/cancel` asked: the task ends `cancelled`.
    fn stop_on_request(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.cancel.cancel();
        // A tool waiting for its client stops waiting.
        lock(&self.waiting).clear();
    }

    fn front(&self) -> Option<Front> {
        lock(&self.front).clone()
    }

    /// Changes the record; `urgent` changes are written at once, others within a second.
    fn change(&self, hub: &Hub, urgent: bool, f: impl FnOnce(&mut TaskRecord)) {
        let id = {
            let mut record = self.record();
            f(&mut record);
            record.updated_ms = now_ms();
            record.id.clone()
        };
        if urgent {
            self.urgent.store(true, Ordering::Release);
        }
        self.changed.notify_one();
        let _ = hub.inner.tasks.changes.send(id);
    }

    /// Writes the record as it is now.
    async fn write(&self, hub: &Hub) -> Result<(), crate::StoreError> {
        let _one = self.writing.lock().await;
        if self.sealed.load(Ordering::Acquire) {
            return Ok(());
        }
        let snapshot = self.record().clone();
        hub.inner.store.save_task(&snapshot).await?;
        // Listen streams of it on other instances read it again.
        hub.publish(crate::bus::Signal::TaskChanged {
            task: snapshot.id.clone(),
        });
        if snapshot.checkpoint.is_some() {
            *lock(&self.checkpointed) = snapshot.progress;
        }
        Ok(())
    }
}

/// The task's record, written as it changes until its final state is: status changes at
/// once, progress and checkpoints at most once per [`WRITE_INTERVAL`]. A failed write is
/// tried again a second later.
async fn writer(hub: Hub, live: Arc<Live>) {
    loop {
        tokio::select! {
            () = live.done.cancelled() => return,
            () = live.changed.notified() => {}
        }
        if !live.urgent.swap(false, Ordering::AcqRel) {
            // Progress alone: wait for more of it, unless something urgent comes.
            tokio::select! {
                () = live.done.cancelled() => return,
                () = tokio::time::sleep(WRITE_INTERVAL) => {}
                () = live.changed.notified() => {}
            }
            live.urgent.store(false, Ordering::Release);
        }
        if let Err(e) = live.write(&hub).await {
            tracing::warn!(error = %e, "cannot write a task's record; trying again");
            live.changed.notify_one();
            tokio::time::sleep(WRITE_INTERVAL).await;
        }
    }
}

/// What a lookup of a task id found.
enum Found {
    /// Running here.
    Live(Arc<Live>),
    /// In the store only (ended, or running elsewhere).
    Stored(Box<TaskRecord>),
}

impl Found {
    fn record(&self) -> TaskRecord {
        match self {
            Self::Live(live) => live.record().clone(),
            Self::Stored(record) => (**record).clone(),
        }
    }

    /// How far the task got durably: the progress of its stored checkpoint.
    fn checkpointed(&self) -> Option<f64> {
        match self {
            Self::Live(live) => *lock(&live.checkpointed),
            Self::Stored(record) => record.checkpoint.as_ref().and(record.progress),
        }
    }
}

/// The one answer to an id that names no task of the caller's: unknown, expired and foreign
/// tasks are not told apart.
fn no_such_task(id: &str) -> ErrorObject {
    ErrorObject::invalid_params(format_args!(
        "Failed to retrieve task: no task `{}` (it never existed, it expired, or it is not yours)",
        mcp_protocol::shorten(id, 64)
    ))
}

fn store_failed(e: impl std::fmt::Display) -> ErrorObject {
    ErrorObject::internal(format_args!("the task store failed: {e}"))
}

/// A time as ISO 8601 (`2026-07-28T10:30:00.000Z`), from milliseconds since the Unix epoch.
pub(crate) fn iso8601(ms: u64) -> String {
    let (days, rest) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1_000 % 60,
        rest % 1_000
    )
}

/// The task as the wire shows it (`Task`, and with `detailed` the `DetailedTask` of
/// `tasks/get` and `notifications/tasks`: its input requests, result or error).
pub(crate) fn task_value(record: &TaskRecord, detailed: bool) -> Map<String, Value> {
    let mut task = Map::new();
    task.insert("taskId".to_owned(), json!(record.id.as_str()));
    task.insert("status".to_owned(), json!(record.status.as_str()));
    if let Some(message) = &record.status_message {
        task.insert("statusMessage".to_owned(), json!(message));
    }
    task.insert("createdAt".to_owned(), json!(iso8601(record.created_ms)));
    task.insert(
        "lastUpdatedAt".to_owned(),
        json!(iso8601(record.updated_ms)),
    );
    task.insert("ttlMs".to_owned(), json!(record.ttl_ms));
    task.insert("pollIntervalMs".to_owned(), json!(record.poll_interval_ms));
    if detailed {
        match record.status {
            TaskStatus::InputRequired => {
                task.insert(
                    "inputRequests".to_owned(),
                    Value::Object(record.input_requests.clone()),
                );
            }
            TaskStatus::Completed => {
                task.insert(
                    "result".to_owned(),
                    record.result.clone().unwrap_or_else(|| json!({})),
                );
            }
            TaskStatus::Failed => {
                task.insert(
                    "error".to_owned(),
                    record.error.clone().unwrap_or_else(
                        || json!({"code": error_codes::INTERNAL_ERROR, "message": "failed"}),
                    ),
                );
            }
            TaskStatus::Working | TaskStatus::Cancelled => {}
        }
    }
    task
}

/// What a progress report says as a task's status line: the tool's own message (which has
/// its rate and ETA), or the share done.
fn status_line(update: &mcp_tools::ProgressUpdate) -> String {
    if let Some(message) = &update.message {
        return message.clone();
    }
    match update.total {
        Some(total) if total > 0.0 => format!(
            "{:.0}% ({}/{total})",
            100.0 * update.progress / total,
            update.progress
        ),
        _ => format!("{} done", update.progress),
    }
}

/// A task's progress: its status line, written with the record.
struct TaskProgress {
    hub: Hub,
    live: Arc<Live>,
}

impl mcp_tools::ProgressSink for TaskProgress {
    fn send(&self, update: mcp_tools::ProgressUpdate) {
        self.live.change(&self.hub, false, |record| {
            record.progress = Some(update.progress);
            record.total = update.total;
            if record.status == TaskStatus::Working {
                record.status_message = Some(status_line(&update));
            }
        });
        if let Some(front) = self.live.front()
            && front.after.is_none_or(|after| update.progress > after)
        {
            front.progress.send(update);
        }
    }
}

/// A session's task's log messages, to its session while it listens.
struct TaskLog {
    live: Arc<Live>,
}

impl mcp_tools::LogSink for TaskLog {
    fn log(&self, level: mcp_protocol::LoggingLevel, logger: &str, data: Value) {
        if let Some(front) = self.live.front() {
            front.log.log(level, logger, data);
        }
    }
}

/// A task's checkpoints, kept in its record.
struct TaskCheckpoint {
    hub: Hub,
    live: Arc<Live>,
}

impl mcp_tools::CheckpointSink for TaskCheckpoint {
    fn save(&self, state: Value) {
        self.live
            .change(&self.hub, false, |record| record.checkpoint = Some(state));
    }
}

/// A task's requests to its client: answered from the answers it has (those given before
/// the task existed too), otherwise outstanding in its `inputRequests` until `tasks/update`
/// brings the answer.
struct TaskInputs {
    hub: Hub,
    live: Arc<Live>,
    /// The client's capabilities, as the request that created the task declared them.
    capabilities: RequestMeta,
}

impl mcp_tools::ClientSink for TaskInputs {
    fn supports(&self, capability: &str) -> bool {
        match self.live.front() {
            Some(front) => front.client.supports(capability),
            None => self.capabilities.declares(capability),
        }
    }

    fn unsupported(&self, capability: &str) {
        lock(&self.live.missing).get_or_insert_with(|| capability.to_owned());
    }

    fn request(
        &self,
        key: &str,
        method: &str,
        params: Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, String>> + Send>> {
        // A session's client is asked over its connection, as any call of the session asks.
        if let Some(front) = self.live.front() {
            return front.client.request(key, method, params);
        }
        if let Some(answer) = self.live.record().answers.get(key).cloned() {
            return Box::pin(async move { Ok(answer) });
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.live.waiting).insert(key.to_owned(), tx);
        let request = json!({"method": method, "params": params});
        self.live.change(&self.hub, true, |record| {
            record.input_requests.insert(key.to_owned(), request);
            record.status = TaskStatus::InputRequired;
            record.status_message = Some(format!("waiting for the client to answer {method}"));
        });
        Box::pin(async move {
            rx.await
                .map_err(|_| "the task ended before its client answered".to_owned())
        })
    }
}

impl Hub {
    /// Turns an admitted `tools/call` into a task: writes its record, starts it, and answers
    /// with the `CreateTaskResult` (once a `tasks/get` of it would find it). `answers` are
    /// those its client gave in the multi-round-trip requests before.
    pub(crate) async fn create_task(
        &self,
        principal: &Principal,
        call: ToolCall,
        meta: RequestMeta,
        answers: Map<String, Value>,
    ) -> Reply {
        let (record, _) = self.new_task(principal, call, meta, answers).await?;
        let mut created = task_value(&record, false);
        created.insert("resultType".to_owned(), json!("task"));
        CallReply::from_value(&Value::Object(created))
    }

    /// Runs a call of the agent API (the seeds' HTTP API) as a task and waits for its end:
    /// such calls of tools that may be tasks are tasks underneath, written to the store like
    /// any other, so that they resume after a restart and their owner can follow them with
    /// `tasks/get`.
    pub(crate) async fn run_task(
        &self,
        principal: &Principal,
        call: ToolCall,
    ) -> Result<mcp_protocol::CallToolResult, ErrorObject> {
        let (record, live) = self
            .new_task(principal, call, no_client(None), Map::new())
            .await?;
        live.done.cancelled().await;
        let ended = live.record().clone();
        match ended.status {
            TaskStatus::Completed => ended
                .result
                .and_then(|result| serde_json::from_value(result).ok())
                .ok_or_else(|| ErrorObject::internal("the task completed without a result")),
            TaskStatus::Failed => Err(ended
                .error
                .and_then(|error| serde_json::from_value(error).ok())
                .unwrap_or_else(|| ErrorObject::internal("the task failed"))),
            TaskStatus::Cancelled => Err(ErrorObject::new(
                error_codes::SERVER_SHUTTING_DOWN,
                format!("task {} was cancelled", record.id),
            )),
            // Stopped without ending: a shutdown (it resumes after the restart) or expiry.
            TaskStatus::Working | TaskStatus::InputRequired => Err(ErrorObject::new(
                error_codes::SERVER_SHUTTING_DOWN,
                format!(
                    "the server stopped task {} before it ended; it resumes after a restart when its tool can",
                    record.id
                ),
            )),
        }
    }

    /// Writes a new task's record and starts it: the record as created, and the running task.
    async fn new_task(
        &self,
        principal: &Principal,
        call: ToolCall,
        meta: RequestMeta,
        answers: Map<String, Value>,
    ) -> Result<(TaskRecord, Arc<Live>), ErrorObject> {
        self.may_store(principal.name(), false).await?;
        let mut record = self.admit_task(principal, &call, &meta)?;
        record.answers = answers;
        // Its lease before its record: no instance may take up a task it finds in the store
        // before its first holder has it.
        let saved = match self.claim_lease(&record.id).await {
            Ok(true) => self.inner.store.save_task(&record).await,
            Ok(false) => Err(crate::StoreError::Backend(format!(
                "task {} is held already",
                record.id
            ))),
            Err(e) => Err(e),
        };
        if let Err(e) = saved {
            self.forget_task(&record.owner);
            return Err(store_failed(e));
        }
        let live = self.start_task(record.clone(), call.slot, meta, None, true);
        Ok((record, live))
    }

    /// Counts a new task of `principal` (refused at the principal's limit) and makes its
    /// record.
    fn admit_task(
        &self,
        principal: &Principal,
        call: &ToolCall,
        meta: &RequestMeta,
    ) -> Result<TaskRecord, ErrorObject> {
        let config = &self.inner.config;
        let owner = principal.name().to_owned();
        {
            let mut counts = lock(&self.inner.tasks.counts);
            let count = counts.entry(owner.clone()).or_default();
            if *count >= config.max_tasks_per_principal {
                return Err(crate::limits::refuse(
                    "tasks",
                    format!(
                        "{owner} has {count} tasks, the most one principal may keep (until they expire after {} s)",
                        config.task_ttl.as_secs()
                    ),
                    WRITE_INTERVAL,
                ));
            }
            *count += 1;
        }
        let now = now_ms();
        let id = match TaskId::random() {
            Ok(id) => id,
            Err(e) => {
                self.forget_task(&owner);
                return Err(store_failed(e));
            }
        };
        Ok(TaskRecord {
            id,
            owner,
            tool: call.name.clone(),
            arguments: Value::Object(call.arguments.clone()),
            status: TaskStatus::Working,
            status_message: Some("started".to_owned()),
            created_ms: now,
            updated_ms: now,
            ttl_ms: u64::try_from(config.task_ttl.as_millis()).unwrap_or(u64::MAX),
            poll_interval_ms: u64::try_from(config.task_poll_interval.as_millis())
                .unwrap_or(1_000)
                .max(1),
            input_requests: Map::new(),
            answers: Map::new(),
            progress: None,
            total: None,
            checkpoint: None,
            result: None,
            error: None,
            client_capabilities: Some(serde_json::to_value(&meta.capabilities).unwrap_or_default()),
            session: None,
            protocol_version: None,
        })
    }

    /// One task fewer for `owner`.
    fn forget_task(&self, owner: &str) {
        let mut counts = lock(&self.inner.tasks.counts);
        if let Some(count) = counts.get_mut(owner) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(owner);
            }
        }
    }

    /// Runs the task of `record` here: its tool (from its checkpoint, when it has one) and
    /// the writer of its record.
    /// Starts a task: `claimed` when this instance holds its lease already, else it is taken
    /// before the tool runs (a new session task, whose record is written only later).
    fn start_task(
        &self,
        record: TaskRecord,
        slot: Option<crate::limits::CallSlot>,
        capabilities: RequestMeta,
        front: Option<Front>,
        claimed: bool,
    ) -> Arc<Live> {
        let id = record.id.clone();
        let name = record.tool.clone();
        let arguments = match &record.arguments {
            Value::Object(arguments) => arguments.clone(),
            _ => Map::new(),
        };
        let resume = record.checkpoint.clone();
        let seen = record.progress;
        // A session's task runs as long as a call may; any other until it expires.
        let time_limit = match record.session {
            Some(_) => None,
            None => Some(Duration::from_millis(
                record.expires_ms().saturating_sub(now_ms()),
            )),
        };
        let version = record
            .protocol_version
            .as_deref()
            .map_or(mcp_protocol::ProtocolVersion::LATEST_MODERN, |v| {
                mcp_protocol::ProtocolVersion::negotiate(v)
            });
        let of_session = record.session.is_some();
        let session = front.as_ref().map_or(0, |f| f.session);
        let principal: Arc<str> = Arc::from(record.owner.as_str());
        let live = Live::new(record, self.inner.shutdown.child_token(), front);
        lock(&self.inner.tasks.live).insert(id.clone(), Arc::clone(&live));
        let mut progress = mcp_tools::Progress::new(
            Arc::new(TaskProgress {
                hub: self.clone(),
                live: Arc::clone(&live),
            }),
            self.inner.config.progress_interval,
        );
        if let Some(seen) = seen {
            progress.continue_after(seen);
        }
        let scope = CallScope {
            cancel: live.cancel.clone(),
            progress,
            checkpoint: mcp_tools::Checkpoint::new(
                Arc::new(TaskCheckpoint {
                    hub: self.clone(),
                    live: Arc::clone(&live),
                }),
                resume,
            ),
            // The extension sends no log messages of tasks; a session's task sends them to
            // its session.
            log: match of_session {
                true => mcp_tools::Logger::new(
                    Arc::new(TaskLog {
                        live: Arc::clone(&live),
                    }),
                    name.clone(),
                ),
                false => mcp_tools::Logger::none(),
            },
            client: mcp_tools::Client::new(Arc::new(TaskInputs {
                hub: self.clone(),
                live: Arc::clone(&live),
                capabilities,
            })),
            task: mcp_tools::TaskGate::open(),
            principal,
            session,
            time_limit,
            label: Some(format!("of task {id}")),
        };
        let call = ToolCall {
            name,
            arguments,
            progress_token: None,
            slot,
        };
        let label = mcp_protocol::RequestId::from(id.as_str());
        let run = Router::start_call(self, &label, version, call, scope);
        tokio::spawn(writer(self.clone(), Arc::clone(&live)));
        let span = tracing::info_span!("task", task = %id);
        tokio::spawn(
            self.clone()
                .drive(Arc::clone(&live), run, claimed)
                .instrument(span),
        );
        live
    }

    /// Runs the tool of a task to its end and records how it ended.
    async fn drive(
        self,
        live: Arc<Live>,
        run: Result<std::pin::Pin<Box<impl Future<Output = Reply> + Send + 'static>>, ErrorObject>,
        claimed: bool,
    ) {
        let id = live.record().id.clone();
        if !claimed {
            match self.claim_lease(&id).await {
                Ok(true) => *lock(&live.leased) = std::time::Instant::now(),
                Ok(false) => self.lose(&live, "its lease is another instance's"),
                Err(e) => self.lose(&live, &format!("cannot take its lease: {e}")),
            }
        }
        // On a task of its own, so that a panic is an error of the task, not of the server.
        let ended = match run {
            Ok(run) if !live.lost.load(Ordering::Acquire) => tokio::spawn(run).await,
            Ok(_) => Ok(Err(ErrorObject::internal("the task's lease was lost"))),
            Err(error) => Ok(Err(error)),
        };
        // Another instance took the task over: the record is its business now.
        if live.lost.load(Ordering::Acquire) {
            live.done.cancel();
            lock(&self.inner.tasks.live).remove(&id);
            return;
        }
        // A server going down stops its tasks without ending them: the next start (here or
        // on another instance, which may take it at once) resumes them, or says they were
        // interrupted.
        let stopped = self.inner.shutdown.is_cancelled() || live.moving.load(Ordering::Acquire);
        if stopped && !live.cancelled.load(Ordering::Acquire) {
            live.done.cancel();
            if let Err(e) = live.write(&self).await {
                tracing::warn!(task = %id, error = %e, "cannot write a stopping task's record");
            }
            self.release_lease(&id).await;
            lock(&self.inner.tasks.live).remove(&id);
            return;
        }
        let limit = self.inner.config.max_task_result_bytes;
        let server = &self.inner.config.server_info;
        let missing = lock(&live.missing).take();
        live.change(&self, true, |record| {
            record.input_requests.clear();
            record.checkpoint = None;
            let (status, message) = match (ended, missing) {
                (_, Some(capability)) => {
                    record.error = error_value(&modern::missing_capability(&capability));
                    (
                        TaskStatus::Failed,
                        format!("the client did not declare `{capability}`, which the tool needs"),
                    )
                }
                (Ok(Ok(reply)), None)
                    if live.cancelled.load(Ordering::Acquire) && reply.is_error =>
                {
                    (TaskStatus::Cancelled, "cancelled by the client".to_owned())
                }
                (Ok(Ok(reply)), None) if reply.body.get().len() > limit => {
                    let error = ErrorObject::internal(format_args!(
                        "the result is {} bytes, more than the {limit} a task keeps",
                        reply.body.get().len()
                    ));
                    let message = error.message.clone();
                    record.error = error_value(&error);
                    (TaskStatus::Failed, message)
                }
                (Ok(Ok(reply)), None) => {
                    // The tool's result as the call would have answered it: a complete
                    // modern result.
                    record.result = serde_json::from_str::<Map<String, Value>>(reply.body.get())
                        .ok()
                        .map(|mut result| {
                            modern::complete(&mut result, server, None);
                            Value::Object(result)
                        });
                    let message = if reply.is_error {
                        "completed with a tool error"
                    } else {
                        "completed"
                    };
                    (TaskStatus::Completed, message.to_owned())
                }
                (Ok(Err(error)), None) => {
                    record.error = error_value(&error);
                    (TaskStatus::Failed, error.message)
                }
                (Err(join), None) => {
                    let why = match join.try_into_panic() {
                        Ok(panic) => panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a panic".to_owned()),
                        Err(_) => "it was stopped".to_owned(),
                    };
                    let error = ErrorObject::internal(format_args!("the tool failed: {why}"));
                    record.error = error_value(&error);
                    (TaskStatus::Failed, error.message)
                }
            };
            record.status = status;
            record.status_message = Some(message);
        });
        // Senders of answers nobody waits for any more.
        lock(&live.waiting).clear();
        if live.front().is_some() && !live.cancelled.load(Ordering::Acquire) {
            // Its session takes the outcome into its log, and then removes the task: writing
            // it would only cost a write. A crash before that resumes it again from its
            // checkpoint, as if it had not ended. (A cancelled one is written: a restart must
            // not start again what its caller gave up.)
            let _writes = live.writing.lock().await;
            live.sealed.store(true, Ordering::Release);
        } else {
            loop {
                match live.write(&self).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(task = %id, error = %e, "cannot write a finished task; trying again");
                        tokio::time::sleep(WRITE_INTERVAL).await;
                    }
                }
            }
        }
        live.done.cancel();
        self.release_lease(&id).await;
        lock(&self.inner.tasks.live).remove(&id);
        tracing::debug!(task = %id, status = live.record().status.as_str(), "task ended");
    }

    /// Finds the caller's task `id`: running here, or in the store; expired ones are
    /// removed on the way.
    async fn find_task(&self, principal: &Principal, id: &str) -> Result<Found, ErrorObject> {
        let Some(task_id) = TaskId::parse(id) else {
            return Err(no_such_task(id));
        };
        let live = lock(&self.inner.tasks.live).get(&task_id).cloned();
        let found = match live {
            Some(live) => Found::Live(live),
            None => match self.inner.store.load_task(&task_id).await {
                Ok(Some(record)) => Found::Stored(Box::new(record)),
                Ok(None) => return Err(no_such_task(id)),
                Err(e) => return Err(store_failed(e)),
            },
        };
        let record = found.record();
        if record.owner != principal.name() {
            return Err(no_such_task(id));
        }
        if record.expires_ms() <= now_ms() {
            self.expire_task(&record).await;
            return Err(no_such_task(id));
        }
        Ok(found)
    }

    /// Removes an expired task (stopping it first, when it still runs).
    async fn expire_task(&self, record: &TaskRecord) {
        let live = lock(&self.inner.tasks.live).remove(&record.id);
        // Held while the record is removed: a write in progress ends first, later ones see
        // the task expired and write nothing.
        let _writes = match &live {
            Some(live) => {
                live.cancel.cancel();
                live.done.cancel();
                let writes = live.writing.lock().await;
                live.sealed.store(true, Ordering::Release);
                Some(writes)
            }
            None => None,
        };
        match self.inner.store.delete_task(&record.id).await {
            Ok(()) => {
                self.forget_task(&record.owner);
                tracing::info!(task = %record.id, "task expired");
            }
            Err(e) => {
                tracing::warn!(task = %record.id, error = %e, "cannot remove an expired task")
            }
        }
    }

    /// `tasks/get`: the detailed task.
    pub(crate) async fn task_get(&self, principal: &Principal, params: Option<Value>) -> Reply {
        let id = task_id_param(params.as_ref())?;
        let found = self.find_task(principal, &id).await?;
        let record = found.record();
        let mut task = task_value(&record, true);
        let mut meta = Map::new();
        if let Some(progress) = found.checkpointed() {
            meta.insert(CHECKPOINTED.to_owned(), json!(progress));
        }
        if let Some(progress) = record.progress.filter(|_| !record.status.is_terminal()) {
            meta.insert(
                PROGRESS.to_owned(),
                json!({"progress": progress, "total": record.total}),
            );
        }
        if !meta.is_empty() {
            task.insert("_meta".to_owned(), Value::Object(meta));
        }
        CallReply::from_value(&Value::Object(task))
    }

    /// `tasks/update`: answers to the task's outstanding input requests (others are
    /// ignored); acknowledged at once, the task goes on by itself.
    pub(crate) async fn task_update(&self, principal: &Principal, params: Option<Value>) -> Reply {
        let id = task_id_param(params.as_ref())?;
        let responses = match params.as_ref().and_then(|p| p.get("inputResponses")) {
            Some(Value::Object(responses)) => responses.clone(),
            None | Some(Value::Null) => Map::new(),
            Some(_) => {
                return Err(ErrorObject::invalid_params(
                    "`inputResponses` must be an object of results, by the keys of `inputRequests`",
                ));
            }
        };
        if let Found::Live(live) = self.find_task(principal, &id).await? {
            let mut delivered = Vec::new();
            {
                let mut waiting = lock(&live.waiting);
                for (key, answer) in responses {
                    if let Some(tx) = waiting.remove(&key) {
                        delivered.push((key, answer, tx));
                    }
                }
            }
            if !delivered.is_empty() {
                live.change(self, true, |record| {
                    for (key, answer, _) in &delivered {
                        record.input_requests.remove(key);
                        record.answers.insert(key.clone(), answer.clone());
                    }
                    if record.input_requests.is_empty()
                        && record.status == TaskStatus::InputRequired
                    {
                        record.status = TaskStatus::Working;
                        record.status_message = Some("working".to_owned());
                    }
                });
                for (_, answer, tx) in delivered {
                    let _ = tx.send(answer);
                }
            }
        }
        CallReply::from_value(&json!({}))
    }

    /// `tasks/cancel`: asks the task to stop (cooperatively: the tool stops at its next
    /// check); acknowledged at once, and for an ended task too.
    pub(crate) async fn task_cancel(&self, principal: &Principal, params: Option<Value>) -> Reply {
        let id = task_id_param(params.as_ref())?;
        match self.find_task(principal, &id).await? {
            Found::Live(live) => live.stop_on_request(),
            // Running on another instance, maybe: the one that runs it stops it.
            Found::Stored(record) if !record.status.is_terminal() => {
                self.publish(crate::bus::Signal::CancelTask { task: record.id });
            }
            Found::Stored(_) => {}
        }
        CallReply::from_value(&json!({}))
    }

    /// Stops a task running here that another instance was asked to cancel (its owner was
    /// checked there).
    pub(crate) fn cancel_task_here(&self, id: &TaskId) {
        let live = lock(&self.inner.tasks.live).get(id).cloned();
        if let Some(live) = live {
            live.stop_on_request();
        }
    }

    /// The caller's tasks among `ids`, as they are now (for a `subscriptions/listen` stream).
    pub(crate) async fn tasks_of(&self, principal: &Principal, ids: &[String]) -> Vec<TaskRecord> {
        let mut found = Vec::new();
        for id in ids {
            if let Ok(task) = self.find_task(principal, id).await {
                found.push(task.record());
            }
        }
        found
    }

    /// Picks up the tasks in the store, once at start: a task that was running resumes
    /// from its checkpoint when its tool is resumable and fails with -32004 otherwise;
    /// expired ones are removed. Returns how many resumed.
    pub async fn recover_tasks(&self) -> Result<usize, crate::StoreError> {
        self.take_up_tasks(true).await
    }

    /// Removes the tasks that expired (stopping those still running); returns how many.
    pub async fn expire_tasks(&self) -> Result<usize, crate::StoreError> {
        let now = now_ms();
        let expired: Vec<TaskRecord> = self
            .inner
            .store
            .tasks()
            .await?
            .into_iter()
            .filter(|t| t.expires_ms() <= now)
            .collect();
        for record in &expired {
            self.expire_task(record).await;
        }
        Ok(expired.len())
    }
}

mod lease;
mod session;

pub(crate) use session::SessionTask;

/// What a task knows of a client it cannot reach (after a restart, or the agent API's): the
/// capabilities it declared, if any.
fn no_client(capabilities: Option<Value>) -> RequestMeta {
    RequestMeta {
        version: mcp_protocol::ProtocolVersion::LATEST_MODERN,
        capabilities: capabilities
            .and_then(|c| serde_json::from_value(c).ok())
            .unwrap_or_default(),
        client_info: None,
        log_level: None,
        progress_token: None,
    }
}

fn error_value(error: &ErrorObject) -> Option<Value> {
    serde_json::to_value(error).ok()
}

/// The `taskId` of a tasks method's params: -32602 without one.
fn task_id_param(params: Option<&Value>) -> Result<String, ErrorObject> {
    match params.and_then(|p| p.get("taskId")) {
        Some(Value::String(id)) => Ok(id.clone()),
        _ => Err(ErrorObject::invalid_params(
            "`taskId` (a string) is required",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::iso8601;

    #[test]
    fn times_are_iso_8601_in_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(1_785_234_600_123), "2026-07-28T10:30:00.123Z");
    }
}
