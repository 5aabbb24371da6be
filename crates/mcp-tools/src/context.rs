//! What a running tool gets besides its arguments: a cancellation token, a progress reporter,
//! and a place in the server's scheduler for heavy work.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mcp_protocol::LoggingLevel;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::scheduler::{Permit, Scheduler};

/// The context of one tool call.
#[derive(Debug)]
pub struct ToolContext {
    /// Fires when the call is cancelled: by the client, by its connection closing, by a time
    /// limit or by shutdown. A tool checks it between units of work.
    pub cancel: CancellationToken,
    /// Where to report progress; a no-op when the caller did not ask for progress.
    pub progress: Progress,
    /// Heavy work waits here for its turn; see [`ToolContext::heavy_slot`].
    pub scheduler: Scheduler,
    /// Who is calling, for fair scheduling: the principal's name...
    pub principal: std::sync::Arc<str>,
    /// ...and the session's number (0 for a call of no session).
    pub session: u64,
    /// The request's id as text, for messages (`batch 42: ...`).
    pub call_label: String,
    /// Log messages for the client (`notifications/message`), filtered by the level the
    /// client set.
    pub log: Logger,
    /// Where a resumable tool saves how far it got, and what it saved before the call was
    /// interrupted (a server restart), so that it can carry on instead of starting over.
    pub checkpoint: Checkpoint,
    /// Requests to the caller's client: sampling, elicitation, roots.
    pub client: Client,
    /// Where a tool that asks its client first becomes a task ([`crate::Tool::detaches_itself`]).
    pub task: TaskGate,
}

impl ToolContext {
    /// A context with the given token, no progress reporting, and a scheduler of its own.
    pub fn new(cancel: CancellationToken) -> Self {
        Self {
            cancel,
            progress: Progress::none(),
            scheduler: Scheduler::new(1),
            principal: std::sync::Arc::from(""),
            session: 0,
            call_label: String::new(),
            log: Logger::none(),
            checkpoint: Checkpoint::none(),
            client: Client::none(),
            task: TaskGate::open(),
        }
    }

    /// Waits for a slot to run heavy work, reporting the queue position as progress while
    /// waiting (`{label}: queued, position 3`). `None` when the call was cancelled first.
    pub async fn heavy_slot(&mut self, label: &str) -> Option<Permit> {
        let scheduler = self.scheduler.clone();
        tokio::select! {
            permit = scheduler.acquire(
                crate::Caller { principal: std::sync::Arc::clone(&self.principal), session: self.session },
                &mut self.progress,
                label,
            ) => Some(permit),
            () = self.cancel.cancelled() => None,
        }
    }
}

/// Sends requests to the client of a call: a 2025 session sends them through its `Peer` and
/// waits for the answers; a modern request cannot wait, and turns them into an
/// input-required result that the client answers by retrying its request.
pub trait ClientSink: Send + Sync {
    /// Whether the client declared `capability` (`sampling`, `elicitation`, `roots`).
    fn supports(&self, capability: &str) -> bool;
    /// Sends `method` with `params` and waits for the client's answer; the error says why
    /// there is none (the client refused, or went away). `key` names the request among the
    /// call's (a modern client answers by key).
    fn request(
        &self,
        key: &str,
        method: &str,
        params: Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, String>> + Send>>;
    /// The call asked for `capability`, which the client did not declare. A modern request
    /// is refused for it (-32021); a 2025 session lets the tool fail.
    fn unsupported(&self, capability: &str) {
        let _ = capability;
    }
}

/// A tool's way to its caller's client.
///
/// A tool writes its requests once: in a 2025 session they are requests to the client,
/// answered while the call waits; in a 2026-07-28 request the call stops at the first one
/// not answered yet, the client gets them all as one input-required result, and the call
/// runs again from the start with the answers (so a tool that asks should ask the same
/// things in the same order each time, and do nothing irreversible before it has them).
#[derive(Clone)]
pub struct Client {
    sink: Option<Arc<dyn ClientSink>>,
    /// How many requests were sent without a key: the next one's automatic key.
    asked: Arc<std::sync::atomic::AtomicUsize>,
}

impl Client {
    /// No client to ask (tests, the agent HTTP API): every request fails.
    pub fn none() -> Self {
        Self {
            sink: None,
            asked: Arc::default(),
        }
    }

    /// Requests go to `sink`.
    pub fn new(sink: Arc<dyn ClientSink>) -> Self {
        Self {
            sink: Some(sink),
            asked: Arc::default(),
        }
    }

    /// Whether the client declared `capability` (`sampling`, `elicitation`, `roots`): a
    /// tool may ask only for what the client can give.
    pub fn supports(&self, capability: &str) -> bool {
        self.sink.as_ref().is_some_and(|s| s.supports(capability))
    }

    /// Sends `method` to the client, which must have declared `capability`; a failure is a
    /// [`crate::ToolError::Failed`] saying why. Its key, for a modern client, is
    /// `input-1`, `input-2`... in the order of the call's requests without a key.
    pub async fn request(
        &self,
        capability: &str,
        method: &str,
        params: Value,
    ) -> Result<Value, crate::ToolError> {
        let n = self
            .asked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        self.ask(&format!("input-{n}"), capability, method, params)
            .await
    }

    /// Like [`Client::request`], under `key`: the name a modern client sees it by, unique
    /// within the call.
    pub async fn ask(
        &self,
        key: &str,
        capability: &str,
        method: &str,
        params: Value,
    ) -> Result<Value, crate::ToolError> {
        let Some(sink) = self.sink.as_ref() else {
            return Err(crate::ToolError::Failed(format!(
                "there is no client to ask for {capability}"
            )));
        };
        if !sink.supports(capability) {
            sink.unsupported(capability);
            return Err(crate::ToolError::Failed(format!(
                "the client does not support {capability}: it did not declare the `{capability}` capability"
            )));
        }
        sink.request(key, method, params)
            .await
            .map_err(|e| crate::ToolError::Failed(format!("{method} failed: {e}")))
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("connected", &self.sink.is_some())
            .finish()
    }
}

/// Receives a tool's log messages; the session implements it by queueing
/// `notifications/message` when the level is at or above the client's. Never blocks.
pub trait LogSink: Send + Sync {
    /// Delivers one message.
    fn log(&self, level: LoggingLevel, logger: &str, data: Value);
}

/// A tool's logger. Cheap to clone, so blocking workers can have their own.
#[derive(Clone)]
pub struct Logger {
    sink: Option<Arc<dyn LogSink>>,
    name: String,
}

impl Logger {
    /// A logger that drops everything.
    pub fn none() -> Self {
        Self {
            sink: None,
            name: String::new(),
        }
    }

    /// A logger named `name` (the `logger` field of its messages) delivering to `sink`.
    pub fn new(sink: Arc<dyn LogSink>, name: impl Into<String>) -> Self {
        Self {
            sink: Some(sink),
            name: name.into(),
        }
    }

    /// Logs `data` (a string or any JSON value) at `level`.
    pub fn log(&self, level: LoggingLevel, data: impl Into<Value>) {
        if let Some(sink) = &self.sink {
            sink.log(level, &self.name, data.into());
        }
    }

    /// Logs at `info`.
    pub fn info(&self, data: impl Into<Value>) {
        self.log(LoggingLevel::Info, data);
    }

    /// Logs at `warning`.
    pub fn warning(&self, data: impl Into<Value>) {
        self.log(LoggingLevel::Warning, data);
    }
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logger").field("name", &self.name).finish()
    }
}

/// Receives a tool's checkpoints; the session implements it by keeping the newest with the
/// call's operation record, which it writes to the store. Never blocks.
pub trait CheckpointSink: Send + Sync {
    /// Keeps `state`, replacing the previous checkpoint.
    fn save(&self, state: Value);
}

/// A call's checkpoints: the state to resume from, and where to save new ones. Only tools
/// that declare [`crate::Tool::resumable`] are resumed, and they get back exactly what they
/// saved last.
#[derive(Clone, Default)]
pub struct Checkpoint {
    sink: Option<Arc<dyn CheckpointSink>>,
    resume: Option<Value>,
}

impl Checkpoint {
    /// No checkpoints: nothing to resume from, and saving does nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// Checkpoints saved to `sink`; `resume` is the state saved before an interruption.
    pub fn new(sink: Arc<dyn CheckpointSink>, resume: Option<Value>) -> Self {
        Self {
            sink: Some(sink),
            resume,
        }
    }

    /// The state saved before the call was interrupted, if it is being resumed.
    pub fn resume_state(&self) -> Option<&Value> {
        self.resume.as_ref()
    }

    /// Whether saving goes anywhere; a tool may skip building a checkpoint otherwise.
    pub fn is_requested(&self) -> bool {
        self.sink.is_some()
    }

    /// Saves how far the call got.
    pub fn save(&self, state: Value) {
        if let Some(sink) = &self.sink {
            sink.save(state);
        }
    }
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("requested", &self.is_requested())
            .field("resuming", &self.resume.is_some())
            .finish()
    }
}

/// Where a call that may become a task does (see [`crate::Tool::detaches_itself`]).
///
/// In a 2026-07-28 request whose client takes tasks, [`TaskGate::detach`] ends the request's
/// part: the client gets a task's id, and the call runs again as that task from the start,
/// with every answer its client gave so far (so it asks nothing twice), past this point. Anywhere
/// else (a task already, a 2025 session, a client without tasks) it returns at once.
#[derive(Clone, Default)]
pub struct TaskGate {
    signal: Option<Arc<tokio::sync::Notify>>,
}

impl TaskGate {
    /// A gate that lets the call through: it is not becoming a task.
    pub fn open() -> Self {
        Self::default()
    }

    /// A gate that signals `signal` and stops the call there (the caller turns it into a
    /// task).
    pub fn signalling(signal: Arc<tokio::sync::Notify>) -> Self {
        Self {
            signal: Some(signal),
        }
    }

    /// Becomes a task here, when the call can; returns at once when it cannot or already is.
    pub async fn detach(&self) {
        if let Some(signal) = &self.signal {
            signal.notify_one();
            // The request stops here: the task runs the call again, through an open gate.
            std::future::pending::<()>().await;
        }
    }
}

impl fmt::Debug for TaskGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGate")
            .field("detaches", &self.signal.is_some())
            .finish()
    }
}

/// One progress report.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressUpdate {
    /// Work done so far.
    pub progress: f64,
    /// Total work, when known.
    pub total: Option<f64>,
    /// A human-readable status line.
    pub message: Option<String>,
}

impl ProgressUpdate {
    /// `done` of `total`, with a status line.
    pub fn of(done: f64, total: f64, message: impl Into<String>) -> Self {
        Self {
            progress: done,
            total: Some(total),
            message: Some(message.into()),
        }
    }
}

/// Receives a call's progress reports; the session implements it by queueing
/// `notifications/progress` tagged with the caller's token. It never blocks, so it can be
/// called from a blocking thread.
pub trait ProgressSink: Send + Sync {
    /// Delivers one report.
    fn send(&self, update: ProgressUpdate);
}

/// A call's progress reporter.
///
/// It keeps progress strictly increasing, as the specification requires (a report that does
/// not move forward is not sent), and sends at most one report per `min_interval`, except
/// that the first and the final one (progress equal to total) always go out.
pub struct Progress {
    sink: Option<Arc<dyn ProgressSink>>,
    min_interval: Duration,
    last: Option<f64>,
    last_sent_at: Option<Instant>,
}

impl Progress {
    /// A reporter that drops every report, for calls made without a progress token.
    pub fn none() -> Self {
        Self {
            sink: None,
            min_interval: Duration::ZERO,
            last: None,
            last_sent_at: None,
        }
    }

    /// A reporter that delivers to `sink`, at most once per `min_interval`.
    pub fn new(sink: Arc<dyn ProgressSink>, min_interval: Duration) -> Self {
        Self {
            sink: Some(sink),
            min_interval,
            last: None,
            last_sent_at: None,
        }
    }

    /// Drops reports up to `progress`: a resumed call's client has seen that much already,
    /// and progress must keep increasing.
    pub fn continue_after(&mut self, progress: f64) {
        self.last = Some(progress);
    }

    /// Whether anyone listens; a tool may skip building messages when nobody does.
    pub fn is_requested(&self) -> bool {
        self.sink.is_some()
    }

    /// Whether a report made now would be sent (unless it is the final one, which always is).
    /// Lets a tool skip formatting a message that would be dropped.
    pub fn is_due(&self) -> bool {
        self.sink.is_some()
            && self
                .last_sent_at
                .is_none_or(|at| at.elapsed() >= self.min_interval)
    }

    /// Reports progress. Returns whether the report was sent.
    pub fn report(&mut self, update: ProgressUpdate) -> bool {
        let Some(sink) = &self.sink else {
            return false;
        };
        if !update.progress.is_finite() || self.last.is_some_and(|last| update.progress <= last) {
            return false;
        }
        let is_final = update.total == Some(update.progress);
        if !is_final && !self.is_due() {
            return false;
        }
        self.last = Some(update.progress);
        self.last_sent_at = Some(Instant::now());
        sink.send(update);
        true
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress")
            .field("requested", &self.is_requested())
            .field("last", &self.last)
            .finish()
    }
}

/// A status line with rate and ETA: `batch 42: 4200/10000, 350 items/s, ETA 16 s`.
pub fn rate_message(label: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if done == 0 || secs <= 0.0 {
        return format!("{label}: {done}/{total}, starting");
    }
    let rate = done as f64 / secs;
    let remaining = total.saturating_sub(done) as f64 / rate;
    format!(
        "{label}: {done}/{total}, {} items/s, ETA {} s",
        rate.round() as u64,
        remaining.ceil() as u64
    )
}

#[cfg(test)]
mod tests;
