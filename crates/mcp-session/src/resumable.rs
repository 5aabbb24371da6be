//! What makes a session resumable, as a part of the session that owns its own state: its id
//! and pending store writes ([`Resumable::flush`]), the running calls it records so a restart
//! can report and resume them, a new connection taking over a live session
//! ([`Resumable::attach`], [`claim`]), and a session restored from the store ([`restore`]).
//!
//! The concept has one name, the resumable session; the seeds' agent API calls the same thing
//! an agent.

use std::sync::Arc;

use std::time::Duration;

use mcp_protocol::{
    ErrorObject, InitializeParams, Notification, ProgressToken, ProtocolVersion, RequestId,
    error_codes, methods,
};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::calls::{Finished, Operations};
use crate::hub::Claim;
use crate::outbound::{Answered, AttachError, OutboundQueue, Regarding};
use crate::store::{
    HistoryEntry, LogEntry, OperationRecord, SessionId, SessionRecord, SessionStore, Update, now_ms,
};
use crate::{Hub, InboundReceiver, OutboundReceiver, Peer, Principal, StoreError};

/// The experimental client capability that asks for a resumable session.
pub(crate) const RESUME_CAPABILITY: &str = "resume";

/// What a live session is told from outside its own connection.
pub(crate) enum Control {
    /// A connection asks to resume the session.
    Attach(Box<Attach>),
    /// The session was deleted (the agent API): end it.
    Delete,
    /// The session moves to another instance: end it here, its record kept and its tasks
    /// left for the other instance to take up.
    Leave,
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
    pub(crate) inbound: InboundReceiver,
    pub(crate) reply: oneshot::Sender<AttachReply>,
}

/// The resumed session's log as the connection will read it and the handle for requests to
/// its client, or why not (with the input handed back).
pub(crate) type AttachReply =
    Result<(OutboundReceiver, crate::Peer), (ErrorObject, InboundReceiver)>;

/// A resumable session's own state, besides its log.
pub(crate) struct Resumable {
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
    /// The tasks of answered calls that the last write let go: the session removes them.
    pub(crate) answered: Vec<crate::store::TaskId>,
    /// The grace period passed without a connection: the running calls were cancelled and
    /// the session ends once they are done.
    pub(crate) expired: bool,
    pub(crate) control: mpsc::Receiver<Control>,
    /// The client's name, for a record created by this session.
    pub(crate) client_name: Option<String>,
    /// The running calls as the store should know them (shared with the call table).
    pub(crate) operations: Arc<Operations>,
}

impl Resumable {
    pub(crate) fn new(
        id: SessionId,
        created: bool,
        control: mpsc::Receiver<Control>,
        operations: Arc<Operations>,
    ) -> Self {
        Self {
            operations,
            id,
            created,
            detached_at: None,
            history: Vec::new(),
            protocol_version: None,
            retry_at: None,
            answered: Vec::new(),
            expired: false,
            control,
            client_name: None,
        }
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

/// The id of a new resumable session's `initialize` (one that declares the `resume`
/// capability and names no session), if `text` is one.
pub(crate) fn new_resumable_request(text: &str) -> Option<RequestId> {
    if !text.contains(RESUME_CAPABILITY) || text.contains("mcpSessionId") {
        return None;
    }
    #[derive(Deserialize)]
    struct Initialize {
        id: RequestId,
        method: String,
        params: InitializeParams,
    }
    let request: Initialize = serde_json::from_str(text).ok()?;
    (request.method == methods::INITIALIZE && wants_resume(&request.params)).then_some(request.id)
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

/// The newest progress the log sent with `token` (a coalesced notification replaces an
/// older one in place, so the newest is the furthest): how far the client saw a call get,
/// and out of how much.
pub(crate) fn progress_sent(entries: &[LogEntry], token: &ProgressToken) -> Option<Seen> {
    let token = token.to_value();
    entries
        .iter()
        .filter(|e| e.text.contains(methods::PROGRESS))
        .filter_map(|e| serde_json::from_str::<Value>(&e.text).ok())
        .filter(|m| m.get("method").and_then(Value::as_str) == Some(methods::PROGRESS))
        .filter_map(|m| {
            let params = m.get("params")?;
            (params.get("progressToken")? == &token).then(|| {
                Some(Seen {
                    progress: params.get("progress")?.as_f64()?,
                    total: params.get("total").and_then(Value::as_f64),
                })
            })?
        })
        .reduce(|a, b| if b.progress >= a.progress { b } else { a })
}

/// How far a client saw a call get.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Seen {
    pub(crate) progress: f64,
    pub(crate) total: Option<f64>,
}

/// How long to wait before writing again after the store failed.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// How a write to the store went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Written (or nothing to write): what was written may be sent.
    Written,
    /// The record is gone (deleted or expired): the session ends.
    Gone,
    /// The store failed; the write is retried at [`Resumable::retry_at`].
    Failed,
}

impl Resumable {
    /// Writes what changed to the store: new messages, completed calls, and the running
    /// calls when they changed. Messages can be sent once written; a failed write is retried
    /// after a second.
    pub(crate) async fn flush(
        &mut self,
        store: &dyn SessionStore,
        outbound: &OutboundQueue,
        owner: &str,
        log_cap: usize,
    ) -> Flushed {
        if !self.created {
            let record =
                SessionRecord::new(self.id.clone(), owner, self.client_name.clone(), now_ms());
            match store.create(&record).await {
                Ok(()) | Err(StoreError::Exists(_)) => self.created = true,
                Err(e) => {
                    tracing::error!(error = %e, "could not create the session's record; retrying");
                    self.retry_at = Some(Instant::now() + STORE_RETRY);
                    return Flushed::Failed;
                }
            }
        }
        let entries = outbound.take_unpersisted();
        let (operations, answered) = self
            .operations
            .take_if_changed()
            .map_or((None, None), |(ops, answered)| (Some(ops), Some(answered)));
        let update = Update {
            last_active_ms: Some(now_ms()),
            protocol_version: self.protocol_version.take(),
            history: std::mem::take(&mut self.history),
            operations,
            entries: entries.iter().map(|(e, _)| e.clone()).collect(),
            log_cap,
            oldest_kept: outbound.oldest_kept(),
        };
        match store.update(&self.id, &update).await {
            Ok(()) => {
                outbound.mark_persisted(&entries);
                self.answered.extend(answered.into_iter().flatten());
                Flushed::Written
            }
            Err(StoreError::NotFound(_)) => {
                tracing::info!("the session's record is gone (deleted or expired); ending");
                Flushed::Gone
            }
            Err(e) => {
                tracing::error!(error = %e, "could not write the session; retrying");
                self.history = update.history;
                self.protocol_version = update.protocol_version;
                if let Some(answered) = answered {
                    self.operations.write_failed(answered);
                }
                outbound.retry_persist();
                self.retry_at = Some(Instant::now() + STORE_RETRY);
                Flushed::Failed
            }
        }
    }

    /// A new resumable session, claimed under a fresh id, for a client that negotiated
    /// `version`.
    pub(crate) fn create(
        hub: &Hub,
        version: ProtocolVersion,
        client: &str,
    ) -> Result<Self, ErrorObject> {
        let id = SessionId::random().map_err(ErrorObject::internal)?;
        let Claim::Claimed(control) = hub.claim(&id) else {
            return Err(ErrorObject::internal("a new session id is taken"));
        };
        let mut resumable = Self::new(id, false, control, Arc::default());
        resumable.protocol_version = Some(version.as_str().to_owned());
        resumable.client_name = Some(client.to_owned());
        tracing::info!(session = %resumable.id, "resumable session");
        Ok(resumable)
    }

    /// Keeps a tool call that ended with a result, and was not cancelled, in the history the
    /// store keeps (the seeds' agents show it).
    pub(crate) fn record_history(&mut self, done: &mut Finished) {
        if let (Some((tool, arguments)), Some(result), None) =
            (done.info.call.take(), &done.result, done.cancelled)
        {
            self.history.push(HistoryEntry {
                tool,
                arguments,
                result: serde_json::from_str(result.get()).unwrap_or(Value::Null),
                at_ms: now_ms(),
            });
        }
    }

    /// When the running calls are next due to be written: at once when a call started or
    /// ended (a call that started is on record before a crash could lose it, even when it
    /// sends nothing). Their progress and checkpoints are their tasks' to write. Not while a
    /// failed write waits for its retry, which writes them too.
    pub(crate) fn operations_due(&self) -> Option<Instant> {
        match self.retry_at.is_none() && self.operations.has_changed() {
            true => Some(Instant::now()),
            false => None,
        }
    }

    /// When the grace period of a session without a connection ends.
    pub(crate) fn grace_over(&self, grace: Duration) -> Option<Instant> {
        self.detached_at
            .filter(|_| !self.expired)
            .map(|at| at + grace)
    }

    /// Gives a resuming connection the log after `last_seq`, behind `answer`, the answer to
    /// its `initialize`; the previous connection's receiver yields
    /// [`crate::CloseReason::Replaced`].
    pub(crate) fn attach(
        &mut self,
        outbound: &OutboundQueue,
        answer: (String, Regarding),
        last_seq: Position,
    ) -> Result<OutboundReceiver, ErrorObject> {
        let after = match last_seq {
            Position::After(seq) => Some(seq),
            Position::Delivered => None,
        };
        let receiver = outbound
            .attach(after, vec![answer])
            .map_err(|e| attach_error(e, last_seq))?;
        self.detached_at = None;
        self.expired = false;
        Ok(receiver)
    }
}

/// What a live session takes on from a connection that resumed it.
pub(crate) struct Taken {
    /// The connection's input: the previous connection's goes.
    pub(crate) inbound: InboundReceiver,
    /// Its principal: the same name, and perhaps a newer token with other scopes.
    pub(crate) principal: Principal,
    pub(crate) capabilities: Arc<mcp_protocol::ClientCapabilities>,
}

impl Resumable {
    /// Answers a connection that resumes this live session (a session of `owner` that
    /// negotiated `version`): it gets the answer to its `initialize`, then the messages after
    /// the position it saw, and the previous connection is closed. Anyone but the owner
    /// gets the answer for no session at all.
    pub(crate) fn accept(
        &mut self,
        attach: Attach,
        hub: &Hub,
        version: Option<ProtocolVersion>,
        owner: &Principal,
        outbound: &OutboundQueue,
        peer: &Peer,
    ) -> Option<Taken> {
        let Attach {
            request,
            params,
            last_seq,
            principal,
            unknown,
            inbound,
            reply,
        } = attach;
        if principal.name() != owner.name() {
            let _ = reply.send(Err((unknown, inbound)));
            return None;
        }
        let Some(version) = version else {
            let error = ErrorObject::internal("the session is not initialized");
            let _ = reply.send(Err((error, inbound)));
            return None;
        };
        let regarding = Regarding::Answer(Answered::to(request.clone()));
        let text = hub.initialize_text(version, &self.id, request);
        match self.attach(outbound, (text, regarding), last_seq) {
            Ok(receiver) => {
                let client = &params.client_info.name;
                tracing::info!(%last_seq, %client, "resumed on a new connection");
                let _ = reply.send(Ok((receiver, peer.clone())));
                Some(Taken {
                    inbound,
                    principal,
                    capabilities: Arc::new(params.capabilities),
                })
            }
            Err(error) => {
                let _ = reply.send(Err((error, inbound)));
                None
            }
        }
    }
}

/// The -32000 error of a call cancelled because no connection resumed its session within
/// `grace`.
pub(crate) fn expired_error(grace: Duration) -> ErrorObject {
    ErrorObject::new(
        error_codes::SERVER_SHUTTING_DOWN,
        format!(
            "the call was cancelled: no connection resumed its session within {}",
            crate::router::show(grace)
        ),
    )
}

/// What a resuming connection found.
pub(crate) enum Claimed {
    /// A live session took the connection: its log as the connection reads it and the
    /// handle for requests to its client; `None` when it ended while taking it (the
    /// connection then ends, and its client resumes again).
    Attached(Option<(OutboundReceiver, Peer)>),
    /// Nobody runs the session: its record, to restore in the connection's session, which
    /// now receives its control messages.
    Stored(Box<Stored>),
}

/// A stored session claimed for restoring: its record, and the control messages it now
/// receives.
pub(crate) struct Stored {
    pub(crate) record: SessionRecord,
    pub(crate) control: mpsc::Receiver<Control>,
}

/// Finds the session a resuming `initialize` names: a live one takes the connection's
/// input (`inbound`, handed back when it refuses), a stored one is claimed for restoring.
/// Someone else's session is, to this client, no session at all.
pub(crate) async fn claim(
    hub: &Hub,
    request: &ResumeRequest,
    params: &InitializeParams,
    last_seq: Position,
    principal: &Principal,
    inbound: &mut Option<InboundReceiver>,
) -> Result<Claimed, ErrorObject> {
    let unknown = || {
        not_resumable(
            "unknown",
            "no such session (it never existed, expired or was deleted)".to_owned(),
            // Echoed shortened: the value comes from the client.
            serde_json::json!({
                "mcpSessionId": mcp_protocol::shorten(&request.session.to_string(), 80).to_string()
            }),
        )
    };
    let session = match &request.session {
        Value::String(s) => SessionId::parse(s),
        _ => None,
    };
    let session = session.ok_or_else(unknown)?;
    // Twice at most: a live session may end between the lookup and the attach.
    for _ in 0..2 {
        match hub.claim(&session) {
            Claim::Live(tx) => {
                let connection = inbound
                    .take()
                    .ok_or_else(|| ErrorObject::internal("the connection has no input"))?;
                let (reply_tx, reply_rx) = oneshot::channel();
                let attach = Attach {
                    request: request.id.clone(),
                    params: params.clone(),
                    last_seq,
                    principal: principal.clone(),
                    unknown: unknown(),
                    inbound: connection,
                    reply: reply_tx,
                };
                if let Err(mpsc::error::SendError(control)) =
                    tx.send(Control::Attach(Box::new(attach))).await
                {
                    if let Control::Attach(attach) = control {
                        *inbound = Some(attach.inbound);
                    }
                    continue;
                }
                return match reply_rx.await {
                    Ok(Ok(attached)) => Ok(Claimed::Attached(Some(attached))),
                    Ok(Err((error, connection))) => {
                        *inbound = Some(connection);
                        Err(error)
                    }
                    Err(_) => Ok(Claimed::Attached(None)),
                };
            }
            Claim::Claimed(control) => {
                // Another instance may run it: it lets it go first.
                if let Err(error) = hub.take_session_lease(&session).await {
                    hub.release(&session);
                    return Err(error);
                }
                let loaded = hub.inner.store.load(&session).await;
                return match loaded {
                    Ok(Some(record)) if record.owner == principal.name() => {
                        Ok(Claimed::Stored(Box::new(Stored { record, control })))
                    }
                    Ok(_) => {
                        hub.release(&session);
                        Err(unknown())
                    }
                    Err(e) => {
                        hub.release(&session);
                        Err(ErrorObject::internal(format_args!(
                            "the session store failed: {e}"
                        )))
                    }
                };
            }
        }
    }
    Err(unknown())
}

/// A session restored from the store.
pub(crate) struct Restored {
    pub(crate) resumable: Resumable,
    pub(crate) version: ProtocolVersion,
    /// The calls that were running, with how far their client saw them get.
    pub(crate) interrupted: Vec<(OperationRecord, Option<Seen>)>,
}

/// Restores the stored session into `outbound`: its log after `last_seq`, behind
/// the answer to the resuming `initialize` (`request`). The caller reports its interrupted
/// calls. On an error the caller releases the claim.
pub(crate) async fn restore(
    hub: &Hub,
    stored: Stored,
    request: RequestId,
    params: &InitializeParams,
    last_seq: Position,
    outbound: &OutboundQueue,
    operations: Arc<Operations>,
) -> Result<Restored, ErrorObject> {
    let Stored { record, control } = stored;
    let store = Arc::clone(&hub.inner.store);
    let entries = load_log(store.as_ref(), &record.id)
        .await
        .map_err(|e| ErrorObject::internal(format_args!("the session store failed: {e}")))?;
    let newest = record.next_seq.saturating_sub(1);
    let oldest = entries.first().map_or(record.next_seq, |e| e.seq);
    // The store does not know what reached a client: all of it counts as delivered.
    let after = match last_seq {
        Position::After(seq) => seq,
        Position::Delivered => newest,
    };
    if after > newest {
        return Err(attach_error(AttachError::Ahead { newest }, last_seq));
    }
    if after + 1 < oldest {
        return Err(attach_error(AttachError::Truncated { oldest }, last_seq));
    }
    let version = match &record.protocol_version {
        Some(v) => ProtocolVersion::negotiate(v),
        None => ProtocolVersion::negotiate(&params.protocol_version),
    };
    let mut resumable = Resumable::new(record.id.clone(), true, control, Arc::clone(&operations));
    if record.protocol_version.is_none() {
        resumable.protocol_version = Some(version.as_str().to_owned());
    }
    resumable.client_name = Some(params.client_info.name.clone());
    outbound.make_resumable(
        hub.inner.config.resume_log,
        hub.inner.config.resume_log_bytes,
        true,
    );
    let regarding = Regarding::Answer(Answered::to(request.clone()));
    let text = hub.initialize_text(version, &record.id, request);
    let interrupted: Vec<(OperationRecord, Option<Seen>)> = record
        .operations
        .into_iter()
        .map(|op| {
            let seen = op
                .progress_token
                .as_ref()
                .and_then(|t| progress_sent(&entries, t));
            (op, seen)
        })
        .collect();
    outbound.restore(entries, record.next_seq, after, vec![(text, regarding)]);
    tracing::info!(
        session = %record.id,
        %last_seq,
        newest,
        interrupted = interrupted.len(),
        "session restored from the store"
    );
    operations.touch();
    Ok(Restored {
        resumable,
        version,
        interrupted,
    })
}

/// What a client is told of a call that was running when the server stopped: a warning
/// notice that says whether it carries on (`resumed`: its task was resumed, or ended after
/// resuming).
pub(crate) fn interrupted(op: &OperationRecord, seen: Option<Seen>, resumed: bool) -> Notification {
    let (progress, total, how_far) = how_far(seen);
    tracing::info!(id = %op.request_id, tool = %op.tool, %how_far, resumed, "interrupted call");
    let message = format!(
        "request {} ({}) was interrupted by a server restart after {how_far}{}",
        op.request_id,
        op.tool,
        if resumed { "; it is resumed" } else { "" }
    );
    let data = serde_json::json!({
        "event": "interrupted",
        "requestId": op.request_id,
        "tool": op.tool,
        "task": op.task,
        "progress": progress,
        "total": total,
        "resumed": resumed,
        "message": message,
    });
    Notification {
        method: methods::MESSAGE.to_owned(),
        params: Some(serde_json::json!({"level": "warning", "logger": "session", "data": data})),
    }
}

/// The -32004 error of a call a restart interrupted that nothing resumes.
pub(crate) fn interrupted_error(op: &OperationRecord, seen: Option<Seen>) -> ErrorObject {
    let (progress, total, how_far) = how_far(seen);
    ErrorObject::new(
        error_codes::INTERRUPTED,
        format!("the call was interrupted by a server restart after {how_far}; call it again"),
    )
    .with_data(serde_json::json!({"tool": op.tool, "progress": progress, "total": total}))
}

/// How far a call got, as numbers and in words.
fn how_far(seen: Option<Seen>) -> (f64, Option<f64>, String) {
    let (progress, total) = seen.map_or((0.0, None), |s| (s.progress, s.total));
    let words = match total {
        Some(total) => format!("{progress} of {total}"),
        None => format!("{progress}"),
    };
    (progress, total, words)
}
