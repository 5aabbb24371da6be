//! What makes a session resumable: its id and pending store writes, the running calls it
//! records so a restart can report and resume them, and the messages connections use to
//! re-attach.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use mcp_protocol::{ErrorObject, InitializeParams, ProgressToken, RequestId, error_codes, methods};
use mcp_tools::CheckpointSink;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::outbound::AttachError;
use crate::store::{HistoryEntry, LogEntry, OperationRecord, SessionId, SessionStore};
use crate::{OutboundReceiver, StoreError};

/// The experimental client capability that asks for a resumable session.
pub(crate) const RESUME_CAPABILITY: &str = "resume";

/// What a live session is told from outside its own connection.
pub(crate) enum Control {
    /// A connection asks to resume the session.
    Attach(Box<Attach>),
    /// The session was deleted (the agent API): end it.
    Delete,
}

/// A connection that asks to resume a live session (a re-`initialize` naming it).
pub(crate) struct Attach {
    /// The id of the resuming `initialize`.
    pub(crate) request: RequestId,
    pub(crate) params: InitializeParams,
    pub(crate) last_seq: Position,
    /// The principal of the connection: only the session's owner may resume it, and the
    /// session takes on its (possibly newer) scopes.
    pub(crate) principal: crate::Principal,
    /// The answer for a connection that may not resume it: the same as for no session.
    pub(crate) unknown: ErrorObject,
    /// The connection's input, handed to the session it resumes.
    pub(crate) inbound: mpsc::Receiver<String>,
    pub(crate) reply: oneshot::Sender<AttachReply>,
}

/// The resumed session's log as the connection will read it and the handle for requests to
/// its client, or why not (with the input handed back).
pub(crate) type AttachReply =
    Result<(OutboundReceiver, crate::Peer), (ErrorObject, mpsc::Receiver<String>)>;

/// A resumable session's own state, besides its log.
pub(crate) struct Durable {
    pub(crate) id: SessionId,
    /// Whether the record exists in the store (a new session creates it at its first write).
    pub(crate) created: bool,
    /// When the last connection went away.
    pub(crate) detached_at: Option<Instant>,
    /// Completed calls not yet written.
    pub(crate) history: Vec<HistoryEntry>,
    /// A negotiated protocol version not yet written.
    pub(crate) protocol_version: Option<String>,
    /// After a failed write: when to try again.
    pub(crate) retry_at: Option<Instant>,
    /// When the running calls were last written.
    pub(crate) operations_written: Instant,
    /// The grace period passed without a connection: the running calls were cancelled and
    /// the session ends once they are done.
    pub(crate) expired: bool,
    pub(crate) control: mpsc::Receiver<Control>,
    /// The client's name, for a record created by this session.
    pub(crate) client_name: Option<String>,
}

impl Durable {
    pub(crate) fn new(id: SessionId, created: bool, control: mpsc::Receiver<Control>) -> Self {
        Self {
            id,
            created,
            detached_at: None,
            history: Vec::new(),
            protocol_version: None,
            retry_at: None,
            operations_written: Instant::now(),
            expired: false,
            control,
            client_name: None,
        }
    }
}

/// The running calls of a resumable session, as the store should know them. Updated by the
/// calls' progress and checkpoints from any thread; written by the session.
#[derive(Default)]
pub(crate) struct Operations {
    running: Mutex<HashMap<RequestId, OperationRecord>>,
    /// The set changed (a call started or finished): write at the next flush.
    changed: AtomicBool,
    /// Only progress or checkpoints changed: written at most once per second.
    moved: AtomicBool,
}

impl Operations {
    fn lock(&self) -> MutexGuard<'_, HashMap<RequestId, OperationRecord>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn insert(&self, record: OperationRecord) {
        self.lock().insert(record.request_id.clone(), record);
        self.changed.store(true, Ordering::Release);
    }

    pub(crate) fn remove(&self, id: &RequestId) {
        if self.lock().remove(id).is_some() {
            self.changed.store(true, Ordering::Release);
        }
    }

    pub(crate) fn progress(&self, id: &RequestId, progress: f64, total: Option<f64>) {
        if let Some(op) = self.lock().get_mut(id) {
            op.progress = progress;
            op.total = total;
            self.moved.store(true, Ordering::Release);
        }
    }

    fn checkpoint(&self, id: &RequestId, state: Value) {
        if let Some(op) = self.lock().get_mut(id) {
            op.checkpoint = Some(state);
            self.moved.store(true, Ordering::Release);
        }
    }

    /// Marks the set as changed, so the next flush writes it (after a restore).
    pub(crate) fn touch(&self) {
        self.changed.store(true, Ordering::Release);
    }

    /// The running calls to write, if they need writing: always when the set changed, and
    /// when only progress moved, if `progress_due`.
    pub(crate) fn take_if_due(&self, progress_due: bool) -> Option<Vec<OperationRecord>> {
        let changed = self.changed.swap(false, Ordering::AcqRel);
        let moved = progress_due && self.moved.swap(false, Ordering::AcqRel);
        if !changed && !moved {
            return None;
        }
        if changed {
            self.moved.store(false, Ordering::Release);
        }
        let mut ops: Vec<OperationRecord> = self.lock().values().cloned().collect();
        ops.sort_by_key(|op| op.started_ms);
        Some(ops)
    }

    /// Puts the write back after a failed flush.
    pub(crate) fn write_failed(&self) {
        self.changed.store(true, Ordering::Release);
    }

    /// Whether progress moved since the last write.
    pub(crate) fn has_moved(&self) -> bool {
        self.moved.load(Ordering::Acquire)
    }
}

/// Keeps a call's checkpoints with its operation record.
pub(crate) struct OperationCheckpoint {
    pub(crate) operations: std::sync::Arc<Operations>,
    pub(crate) id: RequestId,
}

impl CheckpointSink for OperationCheckpoint {
    fn save(&self, state: Value) {
        self.operations.checkpoint(&self.id, state);
    }
}

/// The fields of a message that tell a resuming `initialize` apart.
#[derive(Deserialize)]
pub(crate) struct ResumeRequest {
    pub(crate) id: RequestId,
    pub(crate) method: String,
    #[serde(rename = "mcpSessionId")]
    pub(crate) session: Value,
    #[serde(default)]
    pub(crate) params: Option<Value>,
}

/// Reads a message as a resuming `initialize` (one naming `mcpSessionId`); `None` for
/// anything else, which the session then handles as usual.
pub(crate) fn resume_request(text: &str) -> Option<ResumeRequest> {
    if !text.trim_start().starts_with('{') || !text.contains("mcpSessionId") {
        return None;
    }
    let request: ResumeRequest = serde_json::from_str(text).ok()?;
    (request.method == methods::INITIALIZE && !request.session.is_null()).then_some(request)
}

/// Where a resuming connection carries on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// After this position: the last message the client received.
    After(u64),
    /// After the last message handed to any connection: for clients that do not track
    /// positions, which get what no connection was given (`"lastSeq": "delivered"`).
    Delivered,
}

impl Position {
    /// The position as the client gave it, for errors.
    pub(crate) fn to_value(self) -> Value {
        match self {
            Self::After(seq) => Value::from(seq),
            Self::Delivered => Value::from(DELIVERED),
        }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::After(seq) => write!(f, "{seq}"),
            Self::Delivered => write!(f, "\"{DELIVERED}\""),
        }
    }
}

/// The `lastSeq` value that asks for [`Position::Delivered`].
const DELIVERED: &str = "delivered";

/// The `resume` capability's position: the last message the client received (0, before
/// the first, when absent), or `"delivered"`.
pub(crate) fn last_seq(params: &InitializeParams) -> Result<Position, ErrorObject> {
    let value = params
        .capabilities
        .experimental
        .as_ref()
        .and_then(|e| e.get(RESUME_CAPABILITY))
        .and_then(|r| r.get("lastSeq"));
    match value {
        None => Ok(Position::After(0)),
        Some(Value::String(s)) if s == DELIVERED => Ok(Position::Delivered),
        Some(v) => v.as_u64().map(Position::After).ok_or_else(|| {
            ErrorObject::invalid_params(format!(
                "capabilities.experimental.resume.lastSeq must be a non-negative integer or \"{DELIVERED}\", not {}",
                mcp_protocol::shorten(&v.to_string(), 40)
            ))
        }),
    }
}

/// Whether the client asked for a resumable session.
pub(crate) fn wants_resume(params: &InitializeParams) -> bool {
    params
        .capabilities
        .experimental
        .as_ref()
        .is_some_and(|e| e.contains_key(RESUME_CAPABILITY))
}

/// The -32003 error of a session that cannot be resumed.
pub(crate) fn not_resumable(reason: &str, message: String, data: Value) -> ErrorObject {
    let mut data = data;
    if let Value::Object(map) = &mut data {
        map.insert("reason".to_owned(), Value::from(reason));
    }
    ErrorObject::new(
        error_codes::SESSION_NOT_RESUMABLE,
        format!("{message}; start a new session (initialize without mcpSessionId)"),
    )
    .with_data(data)
}

/// The error for a position the log cannot resume from.
pub(crate) fn attach_error(error: AttachError, last_seq: Position) -> ErrorObject {
    match error {
        AttachError::Truncated { oldest } => not_resumable(
            "truncated",
            format!(
                "the messages after position {last_seq} are no longer kept (the oldest kept is {oldest})"
            ),
            serde_json::json!({ "lastSeq": last_seq.to_value(), "oldestSeq": oldest }),
        ),
        AttachError::Ahead { newest } => not_resumable(
            "ahead",
            format!("position {last_seq} was never sent (the newest is {newest})"),
            serde_json::json!({ "lastSeq": last_seq.to_value(), "newestSeq": newest }),
        ),
    }
}

/// Every message a store keeps for a session, oldest first.
pub(crate) async fn load_log(
    store: &dyn SessionStore,
    id: &SessionId,
) -> Result<Vec<LogEntry>, StoreError> {
    match store.replay(id, 0).await? {
        crate::Replay::Entries(entries) => Ok(entries),
        crate::Replay::Truncated { oldest } => match store.replay(id, oldest - 1).await? {
            crate::Replay::Entries(entries) => Ok(entries),
            crate::Replay::Truncated { .. } => Ok(Vec::new()),
        },
    }
}

/// The highest progress the log sent for `token`: what the client may have seen.
pub(crate) fn progress_sent(entries: &[LogEntry], token: &ProgressToken) -> Option<f64> {
    let token = token.to_value();
    entries
        .iter()
        .filter(|e| e.text.contains(methods::PROGRESS))
        .filter_map(|e| serde_json::from_str::<Value>(&e.text).ok())
        .filter(|m| m.get("method").and_then(Value::as_str) == Some(methods::PROGRESS))
        .filter_map(|m| {
            let params = m.get("params")?;
            (params.get("progressToken")? == &token).then(|| params.get("progress")?.as_f64())?
        })
        .reduce(f64::max)
}

/// The message with `member` added at the top level (to each element of a batch).
pub(crate) fn with_member(text: &str, key: &str, value: &Value) -> String {
    if let Some(rest) = text.strip_prefix('{') {
        let sep = if rest.trim_start().starts_with('}') {
            ""
        } else {
            ","
        };
        return format!("{{{}:{value}{sep}{rest}", Value::from(key));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(mut items)) => {
            for item in &mut items {
                if let Value::Object(map) = item {
                    map.insert(key.to_owned(), value.clone());
                }
            }
            Value::Array(items).to_string()
        }
        _ => text.to_owned(),
    }
}
