//! One session: the lifecycle state machine and the driver loop that routes messages.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use mcp_protocol::{
    CallToolParams, CallToolResult, CancelledParams, ClientCapabilities, CompleteParams,
    ErrorObject, GetPromptParams, Implementation, Incoming, InitializeParams, InitializeResult,
    InvalidMessage, ListPromptsResult, ListToolsResult, LoggingLevel, Message, Notification,
    PaginatedParams, ProgressParams, ProgressToken, ProtocolVersion, Request, RequestId,
    ResourceParams, ResourcesCapability, Response, ServerCapabilities, SetLevelParams,
    ToolsCapability, decode_params, error_codes, methods,
};
use mcp_tools::{Checkpoint, LogSink, Logger, Progress, ProgressSink, ProgressUpdate, ToolContext};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{self, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::durable::{
    Attach, Control, Durable, OperationCheckpoint, Operations, Position, ResumeRequest,
    attach_error, last_seq, load_log, not_resumable, progress_sent, resume_request, wants_resume,
    with_member,
};
use crate::inflight::{BatchId, InFlight};
use crate::limits::CallSlot;
use crate::metrics::Outcome;
use crate::outbound::{Coalesce, OutboundQueue};
use crate::peer::PendingTable;
use crate::principal::{SCOPE_TOOL_PREFIX, SCOPE_TOOLS};
use crate::resources::{Resources, STATS_URI, Status};
use crate::server::{Claim, Notices};
use crate::store::{HistoryEntry, OperationRecord, SessionRecord, Update, now_ms};
use crate::{Outbound, Peer, Principal, Server, SessionId, StoreError};

/// What a tool call's task gives back: its result serialized once, as JSON text, and whether
/// it is a tool error.
type Reply = Result<CallReply, ErrorObject>;

struct CallReply {
    body: Box<RawValue>,
    is_error: bool,
}

/// Why the session asks its transport to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The server is shutting down (WebSocket close code 1001).
    ShuttingDown,
    /// The client did not send `initialize` within the configured time (1008).
    InitTimeout,
    /// The client sent nothing for the configured idle time while nothing ran (1000).
    Idle,
    /// The client resumed the session on another connection (1000).
    Replaced,
    /// The session was deleted (the agent API) (1000).
    Deleted,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEnd {
    /// The transport reported that no more input will come (the client closed or vanished).
    InputClosed,
    /// The transport stopped taking output.
    OutputClosed,
    /// The server is shutting down.
    ShuttingDown,
    /// The client never initialized, or went idle; see [`CloseReason`].
    TimedOut,
    /// The connection resumed another session, which carries on with it.
    Resumed,
    /// A resumable session had no connection for the grace period; its calls were
    /// cancelled. Its record stays in the store until it expires.
    Expired,
    /// The session was deleted.
    Deleted,
}

/// A graceful shutdown in progress.
#[derive(Debug, Clone, Copy)]
struct Drain {
    /// When running requests are cancelled.
    deadline: Instant,
    /// Set once they were: when the last stragglers are abandoned.
    abandon_at: Option<Instant>,
}

/// Where the session is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    /// Only `initialize` and `ping` are accepted.
    AwaitingInitialize,
    /// `initialize` was answered; waiting for `notifications/initialized`. Requests are
    /// already served: clients commonly pipeline them right behind the notification.
    Initializing(ProtocolVersion),
    /// Normal operation.
    Operating(ProtocolVersion),
}

impl Lifecycle {
    fn version(self) -> Option<ProtocolVersion> {
        match self {
            Self::AwaitingInitialize => None,
            Self::Initializing(v) | Self::Operating(v) => Some(v),
        }
    }
}

/// What the client told the server about itself in `initialize`.
#[derive(Debug, Clone)]
struct ClientInfo {
    /// Shared with every call's client handle, so that a call does not copy it.
    capabilities: Arc<ClientCapabilities>,
    info: Implementation,
}

/// What became of one incoming message.
enum Handled {
    /// Answer right away.
    Reply(Response),
    /// A request is running; its response comes when it finishes.
    Spawned,
    /// A tool call that finished when first polled (a quick tool): it ran without a task,
    /// and its ending is still to be recorded and answered.
    Finished(Box<(TaskRequest, Reply)>),
    /// Nothing to send (a notification or a response).
    Nothing,
}

/// What is sent when a tool call ends.
enum Concluded {
    /// Its response.
    Text(String),
    /// Its batch, whose last request it was.
    Batch(Batch),
    /// Nothing: it was cancelled, or its batch waits for others.
    Nothing,
}

/// The responses of one batch, sent as one array when the last of its requests finishes.
#[derive(Default)]
struct Batch {
    responses: Vec<Response>,
    running: usize,
}

/// One MCP session, driven by [`Session::run`].
pub struct Session {
    server: Server,
    id: u64,
    outbound: OutboundQueue,
    /// Child of the server's token; parent of every request's token.
    token: CancellationToken,
    lifecycle: Lifecycle,
    client: Option<ClientInfo>,
    inflight: InFlight,
    /// The running requests. Dropping the set aborts them, so nothing outlives the session.
    tasks: JoinSet<Reply>,
    task_requests: HashMap<task::Id, TaskRequest>,
    batches: HashMap<BatchId, Batch>,
    next_batch: BatchId,
    pending: PendingTable,
    /// The handle the transport sends requests through (its heartbeat's pings).
    peer: Peer,
    output_closed: bool,
    drain: Option<Drain>,
    last_activity: Instant,
    /// The lowest `notifications/message` level the client wants, as an index into
    /// [`LoggingLevel::ALL`]; shared with broadcasts.
    log_level: Arc<AtomicU8>,
    /// Where the calls' loggers send: one for the session, shared by its calls.
    log_sink: Arc<Notices>,
    resources: Arc<Resources>,
    /// The attached connection's input; `None` while a resumable session has none.
    inbound: Option<mpsc::Receiver<String>>,
    /// Set when the session is resumable.
    durable: Option<Durable>,
    /// The running calls, as the store should know them (resumable sessions only).
    operations: Arc<Operations>,
    /// The session id to announce in the answer to the `initialize` being handled.
    announce: Option<SessionId>,
    /// The connection went on to the session it resumed: this one ends.
    handed_over: bool,
    /// The session was deleted: it ends.
    deleted: bool,
    /// The principal the session belongs to: only it may resume it, and its scopes say
    /// which tools the session may see and call.
    principal: Principal,
    /// The span to run in, when the transport gives one.
    span: Option<tracing::Span>,
}

/// A running request, by its task.
struct TaskRequest {
    id: RequestId,
    method: &'static str,
    started: Instant,
    /// The call's resource.
    uri: String,
    /// A tool call's tool and arguments, for the history.
    call: Option<(String, Value)>,
}

/// What a resumed call starts from.
struct Resume {
    checkpoint: Option<Value>,
    /// The highest progress its client may have seen.
    seen: Option<f64>,
}

impl Session {
    /// Makes `principal` the one the session belongs to (before it runs).
    pub fn set_principal(&mut self, principal: Principal) {
        self.principal = principal;
    }

    /// Runs the session's task in `span` instead of a `session` span of its own: a transport
    /// that has a span for the connection already records the session's id in it, and every
    /// open span costs memory for as long as it is open (a few hundred bytes with the fmt
    /// layer).
    pub fn set_span(&mut self, span: tracing::Span) {
        self.span = Some(span);
    }

    pub(crate) fn new(server: Server, id: u64, outbound: OutboundQueue) -> Self {
        let token = server.inner.shutdown.child_token();
        server.inner.metrics.session_started();
        let pending = PendingTable::default();
        let peer = Peer::new(pending.clone(), &outbound);
        let log_level = Arc::new(AtomicU8::new(DEFAULT_LOG_LEVEL as u8));
        let log_sink = Arc::new(Notices {
            queue: outbound.downgrade(),
            level: Arc::clone(&log_level),
        });
        Self {
            server,
            id,
            outbound,
            token,
            lifecycle: Lifecycle::AwaitingInitialize,
            client: None,
            inflight: InFlight::default(),
            tasks: JoinSet::new(),
            task_requests: HashMap::new(),
            batches: HashMap::new(),
            next_batch: 0,
            pending,
            peer,
            output_closed: false,
            drain: None,
            last_activity: Instant::now(),
            log_level,
            log_sink,
            resources: Arc::default(),
            inbound: None,
            durable: None,
            operations: Arc::default(),
            announce: None,
            handed_over: false,
            deleted: false,
            principal: Principal::anonymous(),
            span: None,
        }
    }

    fn notices(&self) -> Notices {
        Notices {
            queue: self.outbound.downgrade(),
            level: Arc::clone(&self.log_level),
        }
    }

    /// The session's number, unique within this server process; for logs.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// A handle for sending requests to this session's client.
    pub fn peer(&self) -> Peer {
        self.peer.clone()
    }

    /// Runs the session until its input ends, its output is closed, or the server shuts down.
    ///
    /// `inbound` carries the text of each message the client sent, in order; the transport
    /// drops its sender when the client is gone. When this returns, every request the session
    /// started has been cancelled and aborted, and every server-initiated request has failed
    /// with [`crate::PeerError::Closed`].
    ///
    /// A plain function returning the future, not an `async fn`: an `async fn` would keep
    /// `self` in its frame beside the inner future that took it, and every open session pays
    /// for its task's frame. For the same reason the loop boxes the futures of what is rare
    /// (resuming, batches, store writes, draining, closing): only the hot paths stay inline.
    pub fn run(
        mut self,
        inbound: mpsc::Receiver<String>,
    ) -> impl Future<Output = SessionEnd> + Send + 'static {
        let span = self
            .span
            .take()
            .unwrap_or_else(|| tracing::info_span!("session", id = self.id));
        async move {
            tracing::debug!("session started");
            self.inbound = Some(inbound);
            self.server
                .inner
                .sessions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(self.id, self.notices());
            // Only what the loop reads: an idle session's task is mostly this frame.
            let (init_timeout, idle_timeout, resume_grace) = {
                let config = &self.server.inner.config;
                (config.init_timeout, config.idle_timeout, config.resume_grace)
            };
            let draining = self.server.inner.draining.clone();
            let init_deadline = Instant::now() + init_timeout;
            let mut stats = self.server.inner.stats_version.subscribe();
            // One timer for every deadline, armed for the earliest and re-armed only when an
            // earlier one appears or it fired: not a timer registered and dropped for each
            // message, and one timer's worth of memory in every session's frame.
            let mut timer = Box::pin(tokio::time::sleep_until(init_deadline));
            let end = loop {
                if self.output_closed {
                    break SessionEnd::OutputClosed;
                }
                if self.handed_over {
                    break SessionEnd::Resumed;
                }
                if self.deleted {
                    Box::pin(self.send(Outbound::Close(CloseReason::Deleted))).await;
                    break SessionEnd::Deleted;
                }
                if self.drain.is_some() && self.inflight.is_empty() {
                    Box::pin(self.send(Outbound::Close(CloseReason::ShuttingDown))).await;
                    break SessionEnd::ShuttingDown;
                }
                if self.durable.as_ref().is_some_and(|d| d.expired) && self.inflight.is_empty() {
                    break SessionEnd::Expired;
                }
                let awaiting_init = self.lifecycle == Lifecycle::AwaitingInitialize;
                let attached = self.inbound.is_some();
                let idle = self.inflight.is_empty() && self.drain.is_none() && attached;
                let idle_deadline = self.last_activity + idle_timeout;
                let drain_deadline = self.drain.map(|d| d.abandon_at.unwrap_or(d.deadline));
                let durable = self.durable.is_some();
                let retry_at = self.durable.as_ref().and_then(|d| d.retry_at);
                // Progress and checkpoints of running calls are written once a second;
                // they do not wake the loop themselves (a call without a progress token
                // sends nothing), so a timer looks while calls run.
                let operations_due = self
                    .durable
                    .as_ref()
                    .filter(|_| !self.inflight.is_empty())
                    .map(|d| d.operations_written + OPERATIONS_WRITE_INTERVAL);
                let grace_over = self
                    .durable
                    .as_ref()
                    .filter(|d| !d.expired)
                    .and_then(|d| d.detached_at)
                    .map(|at| at + resume_grace);
                let init_due = awaiting_init.then_some(init_deadline);
                let idle_due = (idle && !awaiting_init).then_some(idle_deadline);
                let next_due = [retry_at, operations_due, drain_deadline, grace_over, init_due, idle_due]
                    .into_iter()
                    .flatten()
                    .min();
                if let Some(due) = next_due
                    && (due < timer.deadline() || timer.is_elapsed())
                {
                    timer.as_mut().reset(due);
                }
                // Priority: shutdown, then finished requests (their responses go out), then
                // store writes (what is written can be sent), then timers and control
                // messages, then new input. Output before input is what gives backpressure:
                // while the client does not read, the session stops reading too.
                tokio::select! {
                    biased;
                    () = self.token.cancelled() => {
                        Box::pin(self.send(Outbound::Close(CloseReason::ShuttingDown))).await;
                        break SessionEnd::ShuttingDown;
                    }
                    Some(done) = self.tasks.join_next_with_id() => self.finished(done).await,
                    () = self.outbound.unpersisted(), if durable && retry_at.is_none() => {
                        Box::pin(self.flush(false)).await;
                    }
                    // What is due, one at a time, in this order; another that is due too
                    // fires at once on the next turn.
                    () = &mut timer, if next_due.is_some() => {
                        let now = Instant::now();
                        let due = |at: Option<Instant>| at.is_some_and(|at| at <= now);
                        if due(retry_at) {
                            if let Some(d) = &mut self.durable {
                                d.retry_at = None;
                            }
                            Box::pin(self.flush(false)).await;
                        } else if due(operations_due) {
                            if self.operations.has_moved() {
                                Box::pin(self.flush(true)).await;
                            } else if let Some(d) = &mut self.durable {
                                d.operations_written = Instant::now();
                            }
                        } else if due(drain_deadline) {
                            if Box::pin(self.advance_drain()).await {
                                Box::pin(self.send(Outbound::Close(CloseReason::ShuttingDown))).await;
                                break SessionEnd::ShuttingDown;
                            }
                        } else if due(grace_over) {
                            self.expire();
                        } else if due(init_due) {
                            tracing::info!(timeout_ms = init_timeout.as_millis(), "no initialize in time; closing");
                            Box::pin(self.send(Outbound::Close(CloseReason::InitTimeout))).await;
                            break SessionEnd::TimedOut;
                        } else if due(idle_due) {
                            tracing::info!(timeout_ms = idle_timeout.as_millis(), "idle; closing");
                            Box::pin(self.send(Outbound::Close(CloseReason::Idle))).await;
                            break SessionEnd::TimedOut;
                        }
                    }
                    () = draining.cancelled(), if self.drain.is_none() => Box::pin(self.begin_drain()).await,
                    Some(control) = recv_control(&mut self.durable), if durable => match control {
                        Control::Attach(attach) => self.attach(*attach),
                        Control::Delete => {
                            tracing::info!("session deleted");
                            self.deleted = true;
                        }
                    },
                    Ok(()) = stats.changed(), if self.resources.is_subscribed(STATS_URI) => {
                        self.resource_updated(STATS_URI);
                    }
                    text = recv_opt(&mut self.inbound), if attached => match text {
                        Some(text) => {
                            self.last_activity = Instant::now();
                            self.handle_text(&text).await;
                        }
                        None => {
                            self.inbound = None;
                            match &mut self.durable {
                                Some(d) => {
                                    tracing::info!(
                                        grace_s = resume_grace.as_secs(),
                                        running = self.inflight.len(),
                                        "connection lost; the session waits to be resumed"
                                    );
                                    d.detached_at = Some(Instant::now());
                                }
                                None => break SessionEnd::InputClosed,
                            }
                        }
                    },
                }
            };
            if self.durable.is_some() && !self.deleted {
                // What the session produced last (cancellations, a shutdown's errors) is
                // kept for the client's next resume.
                Box::pin(self.flush(true)).await;
            }
            tracing::debug!(?end, cancelled = self.inflight.len(), "session ended");
            // Dropping the session (here, or wherever `run` is abandoned) releases everything.
            end
        }
        .instrument(span)
    }

    /// Writes what changed to the store: new messages, completed calls, and the running
    /// calls (with `operations_due`, also when only their progress moved). Messages can be
    /// sent once written; a failed write is retried after a second.
    async fn flush(&mut self, operations_due: bool) {
        let Some(durable) = &mut self.durable else {
            return;
        };
        let store = Arc::clone(&self.server.inner.store);
        let config = &self.server.inner.config;
        if !durable.created {
            let record = SessionRecord::new(
                durable.id.clone(),
                self.principal.name(),
                durable.client_name.clone(),
                now_ms(),
            );
            match store.create(&record).await {
                Ok(()) | Err(StoreError::Exists(_)) => durable.created = true,
                Err(e) => {
                    tracing::error!(error = %e, "could not create the session's record; retrying");
                    durable.retry_at = Some(Instant::now() + STORE_RETRY);
                    return;
                }
            }
        }
        let entries = self.outbound.take_unpersisted();
        let operations = self.operations.take_if_due(operations_due);
        let wrote_operations = operations.is_some();
        let update = Update {
            last_active_ms: Some(now_ms()),
            protocol_version: durable.protocol_version.take(),
            history: std::mem::take(&mut durable.history),
            operations,
            entries: entries.iter().map(|(e, _)| e.clone()).collect(),
            log_cap: config.resume_log,
        };
        match store.update(&durable.id, &update).await {
            Ok(()) => {
                self.outbound.mark_persisted(&entries);
                if wrote_operations {
                    durable.operations_written = Instant::now();
                }
            }
            Err(StoreError::NotFound(_)) => {
                tracing::info!("the session's record is gone (deleted or expired); ending");
                self.deleted = true;
            }
            Err(e) => {
                tracing::error!(error = %e, "could not write the session; retrying");
                durable.history = update.history;
                durable.protocol_version = update.protocol_version;
                if wrote_operations {
                    self.operations.write_failed();
                }
                self.outbound.retry_persist();
                durable.retry_at = Some(Instant::now() + STORE_RETRY);
            }
        }
    }

    /// The grace period passed without a connection: cancels the running calls; the
    /// session ends once they are done, their outcomes kept for a later resume.
    fn expire(&mut self) {
        let grace = self.server.inner.config.resume_grace;
        if let Some(d) = &mut self.durable {
            d.expired = true;
        }
        tracing::info!(
            grace_s = grace.as_secs(),
            cancelled = self.inflight.len(),
            "no connection resumed the session in time; cancelling its calls"
        );
        self.inflight.cancel_all_for_shutdown();
    }

    /// A connection resumes this (live) session: it gets the answer to its `initialize`,
    /// then the messages after the position it saw; the previous connection is closed.
    fn attach(&mut self, attach: Attach) {
        let Attach {
            request,
            params,
            last_seq,
            principal,
            unknown,
            inbound,
            reply,
        } = attach;
        if principal.name() != self.principal.name() {
            // Someone else's session is, to this client, no session at all.
            let _ = reply.send(Err((unknown, inbound)));
            return;
        }
        let (Some(version), Some(durable)) = (self.lifecycle.version(), &mut self.durable) else {
            let error = ErrorObject::internal("the session is not resumable");
            let _ = reply.send(Err((error, inbound)));
            return;
        };
        let text = initialize_text(&self.server, version, &durable.id, request);
        let after = match last_seq {
            Position::After(seq) => Some(seq),
            Position::Delivered => None,
        };
        match self.outbound.attach(after, vec![text]) {
            Ok(receiver) => {
                tracing::info!(
                    %last_seq,
                    client = %params.client_info.name,
                    "resumed on a new connection"
                );
                // The previous connection's input goes; its output is told it was replaced.
                // Its token may be a newer one, with other scopes.
                self.inbound = Some(inbound);
                self.principal = principal;
                durable.detached_at = None;
                durable.expired = false;
                self.last_activity = Instant::now();
                self.client = Some(ClientInfo {
                    capabilities: Arc::new(params.capabilities),
                    info: params.client_info,
                });
                let _ = reply.send(Ok((receiver, self.peer())));
            }
            Err(e) => {
                let _ = reply.send(Err((attach_error(e, last_seq), inbound)));
            }
        }
    }

    /// Handles a resuming `initialize`: attaches this connection to the live session it
    /// names, or restores that session from the store into this one.
    async fn resume(&mut self, request: ResumeRequest) {
        let id = request.id.clone();
        match self.try_resume(request).await {
            Ok(()) => {}
            Err(error) => {
                tracing::info!(%error, "resume refused");
                self.send_message(Message::Response(Response::error(Some(id), error)))
                    .await;
            }
        }
    }

    async fn try_resume(&mut self, request: ResumeRequest) -> Result<(), ErrorObject> {
        let params: InitializeParams = decode_params(request.params)?;
        let last_seq = last_seq(&params)?;
        let session = match &request.session {
            Value::String(s) => SessionId::parse(s),
            _ => None,
        };
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
        let session = session.ok_or_else(unknown)?;
        // Twice at most: a live session may end between the lookup and the attach.
        for _ in 0..2 {
            match self.server.claim(&session) {
                Claim::Live(tx) => {
                    let Some(inbound) = self.inbound.take() else {
                        return Ok(());
                    };
                    let (reply_tx, reply_rx) = oneshot::channel();
                    let attach = Attach {
                        request: request.id.clone(),
                        params: params.clone(),
                        last_seq,
                        principal: self.principal.clone(),
                        unknown: unknown(),
                        inbound,
                        reply: reply_tx,
                    };
                    if let Err(mpsc::error::SendError(control)) =
                        tx.send(Control::Attach(Box::new(attach))).await
                    {
                        if let Control::Attach(attach) = control {
                            self.inbound = Some(attach.inbound);
                        }
                        continue;
                    }
                    return match reply_rx.await {
                        Ok(Ok((receiver, peer))) => {
                            // The transport's requests (heartbeat pings) follow the connection.
                            self.peer.follow(&peer);
                            self.outbound.hand_over(receiver);
                            self.handed_over = true;
                            Ok(())
                        }
                        Ok(Err((error, inbound))) => {
                            self.inbound = Some(inbound);
                            Err(error)
                        }
                        Err(_) => {
                            // The session ended while taking the connection: its input is
                            // gone, so this connection ends; the client resumes again.
                            self.handed_over = true;
                            Ok(())
                        }
                    };
                }
                Claim::Claimed(control) => {
                    let store = Arc::clone(&self.server.inner.store);
                    let loaded = store.load(&session).await;
                    let record = match loaded {
                        // Someone else's session is, to this client, no session at all.
                        Ok(Some(record)) if record.owner == self.principal.name() => record,
                        Ok(_) => {
                            self.server.release(&session);
                            return Err(unknown());
                        }
                        Err(e) => {
                            self.server.release(&session);
                            return Err(ErrorObject::internal(format_args!(
                                "the session store failed: {e}"
                            )));
                        }
                    };
                    let result = self
                        .restore(
                            record,
                            request.id.clone(),
                            params.clone(),
                            last_seq,
                            control,
                        )
                        .await;
                    if result.is_err() {
                        self.server.release(&session);
                    }
                    return result;
                }
            }
        }
        Err(unknown())
    }

    /// Becomes the stored session `record`: its protocol state, its log, and its calls that
    /// were running (reported as interrupted; resumed when their tool can).
    async fn restore(
        &mut self,
        record: SessionRecord,
        request: RequestId,
        params: InitializeParams,
        last_seq: Position,
        control: mpsc::Receiver<Control>,
    ) -> Result<(), ErrorObject> {
        let store = Arc::clone(&self.server.inner.store);
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
            return Err(attach_error(
                crate::outbound::AttachError::Ahead { newest },
                last_seq,
            ));
        }
        if after + 1 < oldest {
            return Err(attach_error(
                crate::outbound::AttachError::Truncated { oldest },
                last_seq,
            ));
        }
        let version = match &record.protocol_version {
            Some(v) => ProtocolVersion::negotiate(v),
            None => ProtocolVersion::negotiate(&params.protocol_version),
        };
        let mut durable = Durable::new(record.id.clone(), true, control);
        if record.protocol_version.is_none() {
            durable.protocol_version = Some(version.as_str().to_owned());
        }
        durable.client_name = Some(params.client_info.name.clone());
        self.durable = Some(durable);
        self.client = Some(ClientInfo {
            capabilities: Arc::new(params.capabilities),
            info: params.client_info,
        });
        self.lifecycle = Lifecycle::Operating(version);
        let config = &self.server.inner.config;
        self.outbound.make_durable(config.resume_log, true);
        let text = initialize_text(&self.server, version, &record.id, request);
        let seen: Vec<(RequestId, Option<f64>)> = record
            .operations
            .iter()
            .map(|op| {
                let seen = op
                    .progress_token
                    .as_ref()
                    .and_then(|t| progress_sent(&entries, t));
                (op.request_id.clone(), seen)
            })
            .collect();
        self.outbound
            .restore(entries, record.next_seq, after, vec![text]);
        tracing::info!(
            session = %record.id,
            %last_seq,
            newest,
            interrupted = record.operations.len(),
            "session restored from the store"
        );
        self.operations.touch();
        for (op, (_, seen)) in record.operations.into_iter().zip(seen) {
            self.interrupted(op, seen, version).await;
        }
        Ok(())
    }

    /// Reports a call that was running when the server stopped, and resumes it when its
    /// tool can; otherwise answers it with an -32004 error.
    async fn interrupted(
        &mut self,
        op: OperationRecord,
        seen: Option<f64>,
        version: ProtocolVersion,
    ) {
        let resumable = self.server.inner.tools.is_resumable(&op.tool);
        let progress = seen.unwrap_or(op.progress);
        let how_far = match op.total {
            Some(total) => format!("{progress} of {total}"),
            None => format!("{progress}"),
        };
        tracing::info!(id = %op.request_id, tool = %op.tool, %how_far, resumable, "interrupted call");
        let message = format!(
            "request {} ({}) was interrupted by a server restart after {how_far}{}",
            op.request_id,
            op.tool,
            if resumable { "; it is resumed" } else { "" }
        );
        let data = serde_json::json!({
            "event": "interrupted",
            "requestId": op.request_id,
            "tool": op.tool,
            "progress": progress,
            "total": op.total,
            "resumed": resumable,
            "message": message,
        });
        let notice = Notification {
            method: methods::MESSAGE.to_owned(),
            params: Some(
                serde_json::json!({"level": "warning", "logger": "session", "data": data}),
            ),
        };
        self.send_message(Message::Notification(notice)).await;
        if resumable {
            let arguments = match op.arguments {
                Value::Object(map) => map,
                _ => serde_json::Map::new(),
            };
            let resume = Resume {
                checkpoint: op.checkpoint,
                seen,
            };
            let started = self.start_call(
                op.request_id.clone(),
                op.tool,
                arguments,
                op.progress_token,
                version,
                None,
                Some(resume),
                // It was admitted before the restart: it counts, but is not refused.
                Some(self.server.inner.limits.count_call(&self.principal)),
            );
            match started {
                Err(error) => {
                    self.send_message(Message::Response(Response::error(
                        Some(op.request_id),
                        error,
                    )))
                    .await;
                }
                Ok(Handled::Finished(done)) => {
                    let (request, reply) = *done;
                    self.complete(request, reply).await;
                }
                Ok(_) => {}
            }
        } else {
            let error = ErrorObject::new(
                error_codes::INTERRUPTED,
                format!(
                    "the call was interrupted by a server restart after {how_far}; call it again"
                ),
            )
            .with_data(
                serde_json::json!({"tool": op.tool, "progress": progress, "total": op.total}),
            );
            self.send_message(Message::Response(Response::error(
                Some(op.request_id),
                error,
            )))
            .await;
        }
    }

    /// Queues `notifications/resources/updated` for `uri`, replacing one still queued.
    fn resource_updated(&mut self, uri: &str) {
        if self
            .outbound
            .push_coalesced(Coalesce::Updated(uri.to_owned()), updated_text(uri))
            .is_err()
        {
            self.output_closed = true;
        }
    }

    /// Tells the client the server is going away and starts the grace period.
    async fn begin_drain(&mut self) {
        let deadline = self
            .server
            .inner
            .drain_deadline
            .get()
            .copied()
            .unwrap_or_else(Instant::now);
        let grace = deadline.saturating_duration_since(Instant::now());
        self.drain = Some(Drain {
            deadline,
            abandon_at: None,
        });
        let running = self.inflight.len();
        self.server.inner.metrics.drained();
        tracing::info!(running, grace_ms = grace.as_millis(), "draining");
        let data = if running == 0 {
            "server shutting down".to_owned()
        } else {
            format!(
                "server shutting down: {running} running request(s) have {} s to finish; new requests are refused",
                grace.as_secs()
            )
        };
        let notice = Notification {
            method: methods::MESSAGE.to_owned(),
            params: Some(serde_json::json!({"level": "warning", "logger": "server", "data": data})),
        };
        self.send_message(Message::Notification(notice)).await;
    }

    /// Moves the drain on when its deadline passes: first the running requests are
    /// cancelled; if some do not wind down within `stop_grace`, they are abandoned and their
    /// callers told. Returns whether the session can close now.
    async fn advance_drain(&mut self) -> bool {
        let Some(drain) = &mut self.drain else {
            return true;
        };
        if drain.abandon_at.is_none() {
            tracing::info!(
                cancelled = self.inflight.len(),
                "grace period over; cancelling running requests"
            );
            drain.abandon_at = Some(Instant::now() + self.server.inner.config.stop_grace);
            self.inflight.cancel_all_for_shutdown();
            return false;
        }
        let stuck = self.inflight.ids();
        tracing::warn!(
            stuck = stuck.len(),
            "requests did not wind down; abandoning them"
        );
        self.tasks.abort_all();
        for id in stuck {
            if self.inflight.finish(&id).is_some() {
                self.server.inner.metrics.request_finished();
                let error = shutdown_error("it did not stop in time and was abandoned");
                self.send_message(Message::Response(Response::error(Some(id), error)))
                    .await;
            }
        }
        self.task_requests.clear();
        true
    }

    async fn send(&mut self, item: Outbound) {
        match item {
            Outbound::Text(text) => {
                if self.outbound.push(text).await.is_err() {
                    self.output_closed = true;
                }
            }
            Outbound::Close(reason) => self.outbound.close(reason),
        }
    }

    async fn send_message(&mut self, message: impl Serialize) {
        match serde_json::to_string(&message) {
            Ok(text) => self.send(Outbound::Text(text)).await,
            Err(e) => tracing::error!(error = %e, "could not serialize an outgoing message"),
        }
    }

    async fn handle_text(&mut self, text: &str) {
        if self.lifecycle == Lifecycle::AwaitingInitialize
            && let Some(request) = resume_request(text)
        {
            Box::pin(self.resume(request)).await;
            return;
        }
        match mcp_protocol::parse(text) {
            Err(error) => {
                tracing::debug!(%error, "unparseable message");
                self.send_message(Message::Response(Response::error(None, error)))
                    .await;
            }
            Ok(Incoming::Single(message)) => match self.handle_message(message, None) {
                Handled::Reply(response) => {
                    let mut text = Message::Response(response).to_text();
                    if let Some(id) = self.announce.take() {
                        // SEP-1288: the answer to `initialize` names the session.
                        text = with_member(&text, "mcpSessionId", &Value::from(id.as_str()));
                    }
                    self.send(Outbound::Text(text)).await;
                }
                Handled::Finished(finished) => {
                    let (request, reply) = *finished;
                    self.complete(request, reply).await;
                }
                Handled::Spawned | Handled::Nothing => {}
            },
            Ok(Incoming::Batch(messages)) => Box::pin(self.handle_batch(messages)).await,
        }
    }

    async fn handle_batch(&mut self, messages: Vec<Result<Message, InvalidMessage>>) {
        let version = self.lifecycle.version();
        if !version.is_some_and(ProtocolVersion::allows_batches) {
            let negotiated = match version {
                Some(v) => format!("this session speaks {v}"),
                None => "this session is not initialized".to_owned(),
            };
            let error = ErrorObject::invalid_request(format_args!(
                "batches (JSON arrays) are only allowed in protocol version 2025-03-26, and {negotiated}"
            ));
            self.send_message(Message::Response(Response::error(None, error)))
                .await;
            return;
        }
        let batch_id = self.next_batch;
        self.next_batch += 1;
        let mut batch = Batch::default();
        let mut finished = Vec::new();
        for message in messages {
            match self.handle_message(message, Some(batch_id)) {
                Handled::Reply(response) => batch.responses.push(response),
                Handled::Spawned => batch.running += 1,
                Handled::Finished(done) => {
                    batch.running += 1;
                    finished.push(done);
                }
                Handled::Nothing => {}
            }
        }
        if batch.running == 0 {
            self.send_batch(batch).await;
        } else {
            self.batches.insert(batch_id, batch);
            // Each counts itself out of the batch, which goes out with the last.
            for done in finished {
                let (request, reply) = *done;
                self.complete(request, reply).await;
            }
        }
    }

    async fn send_batch(&mut self, batch: Batch) {
        // A batch of only notifications (or of only cancelled requests) gets no response.
        if !batch.responses.is_empty() {
            let messages: Vec<Message> =
                batch.responses.into_iter().map(Message::Response).collect();
            self.send_message(messages).await;
        }
    }

    fn handle_message(
        &mut self,
        message: Result<Message, InvalidMessage>,
        batch: Option<BatchId>,
    ) -> Handled {
        match message {
            Err(invalid) => {
                tracing::debug!(error = %invalid.error, "invalid message");
                Handled::Reply(Response::error(invalid.id, invalid.error))
            }
            Ok(Message::Request(request)) => {
                let id = request.id.clone();
                let method = request.method.clone();
                let metrics = self.server.inner.metrics.clone();
                let started = Instant::now();
                let handled = match self.handle_request(request, batch) {
                    Ok(Handled::Reply(response)) => {
                        metrics.count_request(&method, Outcome::ok);
                        Handled::Reply(response)
                    }
                    Ok(handled) => return handled,
                    Err(error) => {
                        tracing::debug!(%id, %error, "request refused");
                        metrics.count_request(&method, Outcome::error);
                        Handled::Reply(Response::error(Some(id.clone()), error))
                    }
                };
                metrics.observe_latency(&method, started.elapsed().as_secs_f64());
                tracing::debug!(%id, %method, duration_us = started.elapsed().as_micros(), "request answered");
                handled
            }
            Ok(Message::Notification(notification)) => {
                self.handle_notification(notification);
                Handled::Nothing
            }
            Ok(Message::Response(response)) => {
                self.handle_response(response);
                Handled::Nothing
            }
        }
    }

    fn handle_request(
        &mut self,
        request: Request,
        batch: Option<BatchId>,
    ) -> Result<Handled, ErrorObject> {
        let Request { id, method, params } = request;
        if self.inflight.contains(&id) {
            return Err(ErrorObject::invalid_request(format_args!(
                "duplicate request id {id}: a request with this id is still in flight"
            )));
        }
        let reply = |result: Result<Value, ErrorObject>| {
            result.map(|value| Handled::Reply(Response::ok(id.clone(), value)))
        };
        if self.drain.is_some() && method != methods::PING {
            return Err(shutdown_error("new requests are refused"));
        }
        // Pings keep connections alive; they are not work to limit.
        if method != methods::PING {
            self.server.inner.limits.check_rate(&self.principal)?;
        }
        let fixtures = self.server.inner.tools.has_conformance_fixtures();
        match (self.lifecycle, method.as_str()) {
            (_, methods::PING) => reply(Ok(Value::Object(Default::default()))),
            (Lifecycle::AwaitingInitialize, methods::INITIALIZE) => reply(self.initialize(params)),
            (_, methods::INITIALIZE) => Err(ErrorObject::invalid_request(
                "the session is already initialized; `initialize` is accepted once per session",
            )),
            (Lifecycle::AwaitingInitialize, _) => Err(ErrorObject::invalid_request(format_args!(
                "the session is not initialized: send `initialize` before `{method}`"
            ))),
            (Lifecycle::Initializing(v) | Lifecycle::Operating(v), methods::TOOLS_LIST) => {
                reply(self.list_tools(params, v))
            }
            (_, methods::RESOURCES_LIST) => {
                let _: PaginatedParams = decode_params(params)?;
                reply(to_value(self.resources.list(fixtures)))
            }
            (_, methods::RESOURCES_TEMPLATES_LIST) => {
                let _: PaginatedParams = decode_params(params)?;
                reply(to_value(Resources::templates(fixtures)))
            }
            (_, methods::RESOURCES_READ) => {
                let p: ResourceParams = decode_params(params)?;
                let server = self.server.clone();
                reply(
                    self.resources
                        .read(&p.uri, fixtures, || server.stats())
                        .and_then(to_value),
                )
            }
            (_, methods::RESOURCES_SUBSCRIBE) => {
                let p: ResourceParams = decode_params(params)?;
                self.resources.subscribe(&p.uri, fixtures)?;
                reply(Ok(Value::Object(Default::default())))
            }
            (_, methods::PROMPTS_LIST) if fixtures => {
                let _: PaginatedParams = decode_params(params)?;
                reply(to_value(ListPromptsResult {
                    prompts: mcp_tools::fixtures::prompts(),
                    next_cursor: None,
                }))
            }
            (_, methods::PROMPTS_GET) if fixtures => {
                let p: GetPromptParams = decode_params(params)?;
                reply(mcp_tools::fixtures::get_prompt(&p).and_then(to_value))
            }
            (_, methods::COMPLETION_COMPLETE) if fixtures => {
                let p: CompleteParams = decode_params(params)?;
                reply(to_value(mcp_tools::fixtures::complete(&p)))
            }
            (_, methods::RESOURCES_UNSUBSCRIBE) => {
                let p: ResourceParams = decode_params(params)?;
                self.resources.unsubscribe(&p.uri);
                reply(Ok(Value::Object(Default::default())))
            }
            (_, methods::LOGGING_SET_LEVEL) => {
                let p: SetLevelParams = decode_params(params)?;
                self.log_level.store(p.level as u8, Ordering::Relaxed);
                tracing::debug!(level = %p.level, "log level set");
                reply(Ok(Value::Object(Default::default())))
            }
            (Lifecycle::Initializing(v) | Lifecycle::Operating(v), methods::TOOLS_CALL) => {
                self.call_tool(id.clone(), params, v, batch)
            }
            _ => Err(ErrorObject::method_not_found(&method)),
        }
    }

    fn initialize(&mut self, params: Option<Value>) -> Result<Value, ErrorObject> {
        let params: InitializeParams = decode_params(params)?;
        let version = ProtocolVersion::negotiate(&params.protocol_version);
        if wants_resume(&params) {
            self.make_durable(version, &params.client_info.name)?;
        }
        tracing::info!(
            client = %params.client_info.name,
            client_version = %params.client_info.version,
            requested = %params.protocol_version,
            negotiated = %version,
            "initialize"
        );
        self.client = Some(ClientInfo {
            capabilities: Arc::new(params.capabilities),
            info: params.client_info,
        });
        self.lifecycle = Lifecycle::Initializing(version);
        to_value(initialize_result(&self.server, version))
    }

    /// Makes this new session resumable: it gets an id, and its messages are kept (and
    /// written to the store before they are sent) from its answer to `initialize` on.
    fn make_durable(&mut self, version: ProtocolVersion, client: &str) -> Result<(), ErrorObject> {
        let id = SessionId::random().map_err(ErrorObject::internal)?;
        let Claim::Claimed(control) = self.server.claim(&id) else {
            return Err(ErrorObject::internal("a new session id is taken"));
        };
        let mut durable = Durable::new(id.clone(), false, control);
        durable.protocol_version = Some(version.as_str().to_owned());
        durable.client_name = Some(client.to_owned());
        self.durable = Some(durable);
        let config = &self.server.inner.config;
        self.outbound.make_durable(config.resume_log, true);
        tracing::info!(session = %id, "resumable session");
        self.announce = Some(id);
        Ok(())
    }

    fn list_tools(
        &self,
        params: Option<Value>,
        version: ProtocolVersion,
    ) -> Result<Value, ErrorObject> {
        let params: PaginatedParams = decode_params(params)?;
        let page = self
            .server
            .inner
            .tools
            .page(params.cursor.as_deref(), self.server.inner.config.page_size)
            .map_err(ErrorObject::invalid_params)?;
        let tools = page
            .tools
            .iter()
            .filter(|tool| self.principal.may_call(&tool.name))
            .cloned()
            .map(|mut tool| {
                // Fields a revision does not know are left out rather than sent to clients
                // that may validate strictly.
                if !version.has_structured_output() {
                    tool.output_schema = None;
                    tool.title = None;
                }
                if version < ProtocolVersion::V2025_03_26 {
                    tool.annotations = None;
                }
                tool
            })
            .collect();
        to_value(ListToolsResult {
            tools,
            next_cursor: page.next_cursor,
        })
    }

    fn call_tool(
        &mut self,
        id: RequestId,
        params: Option<Value>,
        version: ProtocolVersion,
        batch: Option<BatchId>,
    ) -> Result<Handled, ErrorObject> {
        // Arguments that are an object are taken out before the params are read: they are
        // the tool's to check, and reading them here would copy them. Anything else stays,
        // for the params' reading to refuse in serde's words (or to take as none: null).
        let mut params = params;
        let arguments = match params.as_mut().and_then(Value::as_object_mut) {
            Some(p) if p.get("arguments").is_some_and(Value::is_object) => p.remove("arguments"),
            _ => None,
        };
        let mut params: CallToolParams = decode_params(params)?;
        if let Some(Value::Object(arguments)) = arguments {
            params.arguments = Some(arguments);
        }
        let limit = self.server.inner.config.max_inflight_per_session;
        if self.inflight.len() >= limit {
            return Err(ErrorObject::new(
                error_codes::LIMIT_EXCEEDED,
                format!("too many requests in flight: this session has {limit} running, the limit (--max-inflight); retry when one finishes"),
            )
            .with_data(serde_json::json!({"limit": "max_inflight_per_session", "value": limit})));
        }
        if !self.principal.may_call(&params.name) {
            return Err(forbidden_tool(&params.name));
        }
        let slot = self.server.inner.limits.begin_call(&self.principal)?;
        self.start_call(
            id,
            params.name,
            params.arguments.unwrap_or_default(),
            params.meta.and_then(|m| m.progress_token),
            version,
            batch,
            None,
            Some(slot),
        )
    }

    /// Starts a tool call (a new one, or one resumed after a restart).
    #[allow(clippy::too_many_arguments)]
    fn start_call(
        &mut self,
        id: RequestId,
        name: String,
        arguments: serde_json::Map<String, Value>,
        progress_token: Option<ProgressToken>,
        version: ProtocolVersion,
        batch: Option<BatchId>,
        resume: Option<Resume>,
        slot: Option<CallSlot>,
    ) -> Result<Handled, ErrorObject> {
        let token = self.token.child_token();
        let config = &self.server.inner.config;
        let operation = self.resources.start(&id, &name);
        let durable = self.durable.is_some();
        if durable {
            self.operations.insert(OperationRecord {
                request_id: id.clone(),
                tool: name.clone(),
                arguments: Value::Object(arguments.clone()),
                progress_token: progress_token.clone(),
                progress: resume.as_ref().and_then(|r| r.seen).unwrap_or(0.0),
                total: None,
                checkpoint: resume.as_ref().and_then(|r| r.checkpoint.clone()),
                started_ms: now_ms(),
            });
        }
        // Progress always feeds the call's resource; it becomes notifications only for a
        // caller that gave a token.
        let mut progress = Progress::new(
            Arc::new(ProgressNotifier {
                progress_token,
                outbound: self.outbound.clone(),
                call: token.clone(),
                resources: Arc::clone(&self.resources),
                operation: operation.clone(),
                operations: durable.then(|| (Arc::clone(&self.operations), id.clone())),
            }),
            config.progress_interval,
        );
        if let Some(seen) = resume.as_ref().and_then(|r| r.seen) {
            progress.continue_after(seen);
        }
        let checkpoint = if durable {
            Checkpoint::new(
                Arc::new(OperationCheckpoint {
                    operations: Arc::clone(&self.operations),
                    id: id.clone(),
                }),
                resume.and_then(|r| r.checkpoint),
            )
        } else {
            Checkpoint::none()
        };
        let ctx = ToolContext {
            cancel: token.clone(),
            progress,
            scheduler: self.server.inner.scheduler.clone(),
            session: self.id,
            call_label: id.to_string(),
            log: Logger::new(self.log_sink.clone(), name.clone()),
            checkpoint,
            client: mcp_tools::Client::new(Arc::new(ToolClient {
                peer: self.peer(),
                capabilities: self
                    .client
                    .as_ref()
                    .map(|c| Arc::clone(&c.capabilities))
                    .unwrap_or_default(),
            })),
        };
        let (time_limit, grace) = (config.call_timeout, config.stop_grace);
        let history_arguments = durable.then(|| Value::Object(arguments.clone()));
        let call = self
            .server
            .inner
            .tools
            .call(&name, arguments, ctx)
            .ok_or_else(|| {
                self.operations.remove(&id);
                ErrorObject::invalid_params(format_args!("unknown tool: `{name}`"))
                    .with_data(serde_json::json!({ "name": name }))
            })?;
        // Debug, like tower-http's request spans: formatting an info span's fields for every
        // call was 7% of a small call's cost. The session's span carries the context of
        // what is logged at info.
        let span = tracing::debug_span!("request", %id, method = methods::TOOLS_CALL, tool = %name);
        let stop = token.clone();
        let mut run = Box::pin(
            async move {
                // The call counts against its principal until it ends.
                let _slot = slot;
                let started = std::time::Instant::now();
                let mut result: CallToolResult =
                    with_time_limit(call, stop, time_limit, grace).await;
                if !version.has_structured_output() {
                    result.structured_content = None;
                }
                let is_error = result.is_error.unwrap_or(false);
                tracing::debug!(
                    elapsed_ms = started.elapsed().as_millis(),
                    is_error,
                    "tool finished"
                );
                serde_json::value::to_raw_value(&result)
                    .map(|body| CallReply { body, is_error })
                    .map_err(ErrorObject::internal)
            }
            .instrument(span),
        );
        let request = TaskRequest {
            id: id.clone(),
            method: methods::TOOLS_CALL,
            started: Instant::now(),
            uri: operation,
            call: history_arguments.map(|arguments| (name, arguments)),
        };
        self.inflight.insert(id, token, batch);
        self.server.inner.metrics.request_started();
        // Polled once here: a tool that is done at once (arithmetic) needs no task, no
        // scheduling and no wake-up of this loop. A panic is caught as a task's would be.
        // One that is not done goes on as a task, which polls it again with its own waker.
        let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run.as_mut()
                .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        }));
        match first {
            Ok(std::task::Poll::Pending) => {
                let handle = self.tasks.spawn(run);
                self.task_requests.insert(handle.id(), request);
                Ok(Handled::Spawned)
            }
            Ok(std::task::Poll::Ready(reply)) => Ok(Handled::Finished(Box::new((request, reply)))),
            Err(_) => {
                tracing::error!("the handler panicked");
                let reply = Err(ErrorObject::internal("the handler panicked"));
                Ok(Handled::Finished(Box::new((request, reply))))
            }
        }
    }

    async fn finished(&mut self, done: Result<(task::Id, Reply), JoinError>) {
        let (task_id, reply) = match done {
            Ok(done) => done,
            Err(e) => {
                let reason = if e.is_panic() {
                    "the handler panicked"
                } else {
                    "the handler was aborted"
                };
                tracing::error!(error = %e, "{reason}");
                (e.id(), Err(ErrorObject::internal(reason)))
            }
        };
        let Some(request) = self.task_requests.remove(&task_id) else {
            tracing::error!(?task_id, "a task finished that no request owns");
            return;
        };
        self.complete(request, reply).await;
    }

    /// Records how a tool call ended and answers it (or counts it into its batch).
    ///
    /// Only the sending waits, so that what this future holds across its awaits stays
    /// small: it is inline in the session's loop, and so in every session's frame.
    async fn complete(&mut self, request: TaskRequest, reply: Reply) {
        match self.conclude(request, reply) {
            Concluded::Text(text) => self.send(Outbound::Text(text)).await,
            Concluded::Batch(batch) => Box::pin(self.send_batch(batch)).await,
            Concluded::Nothing => {}
        }
    }

    /// Everything of [`Self::complete`] but the sending: what to send.
    fn conclude(&mut self, request: TaskRequest, reply: Reply) -> Concluded {
        // Idleness counts from the end of the last call as well as from the last input.
        self.last_activity = Instant::now();
        let TaskRequest {
            id,
            method,
            started,
            uri,
            call,
        } = request;
        self.operations.remove(&id);
        let metrics = &self.server.inner.metrics;
        metrics.request_finished();
        metrics.observe_latency(method, started.elapsed().as_secs_f64());
        let Some(finished) = self.inflight.finish(&id) else {
            tracing::error!(%id, "a request finished twice");
            return Concluded::Nothing;
        };
        let outcome = match &reply {
            _ if !finished.respond => Outcome::cancelled,
            Ok(reply) if reply.is_error => Outcome::tool_error,
            Ok(_) => Outcome::ok,
            Err(_) => Outcome::error,
        };
        metrics.count_request(method, outcome);
        tracing::debug!(
            %id,
            method,
            ?outcome,
            duration_ms = started.elapsed().as_millis(),
            "request finished"
        );
        let status = match outcome {
            Outcome::ok => Status::Completed,
            Outcome::cancelled => Status::Cancelled,
            _ if finished.shutdown => Status::Cancelled,
            Outcome::error | Outcome::tool_error => Status::Failed,
        };
        if self
            .resources
            .finish(&uri, status, reply.as_ref().ok().map(|r| r.body.clone()))
        {
            self.resource_updated(&uri);
        }
        if let (Some(durable), Some((tool, arguments)), Ok(result), true) = (
            &mut self.durable,
            call,
            &reply,
            finished.respond && !finished.shutdown,
        ) {
            durable.history.push(HistoryEntry {
                tool,
                arguments,
                result: serde_json::from_str(result.body.get()).unwrap_or(Value::Null),
                at_ms: now_ms(),
            });
        }
        let reply = if finished.shutdown {
            if self.durable.as_ref().is_some_and(|d| d.expired) {
                Err(ErrorObject::new(
                    error_codes::SERVER_SHUTTING_DOWN,
                    format!(
                        "the call was cancelled: no connection resumed its session within {}",
                        show(self.server.inner.config.resume_grace)
                    ),
                ))
            } else {
                Err(shutdown_error("it was cancelled"))
            }
        } else {
            reply
        };
        if !finished.respond {
            tracing::debug!(%id, "cancelled by the client; no response");
        }
        match finished.batch {
            None if !finished.respond => Concluded::Nothing,
            // The result's text goes out as it is: no tree is built or copied again.
            None => Concluded::Text(match reply {
                Ok(reply) => mcp_protocol::response_text(&id, &reply.body),
                Err(error) => Message::Response(Response::error(Some(id), error)).to_text(),
            }),
            Some(batch_id) => {
                let Some(batch) = self.batches.get_mut(&batch_id) else {
                    tracing::error!(batch_id, "a request finished for an unknown batch");
                    return Concluded::Nothing;
                };
                if finished.respond {
                    // Batches (protocol 2025-03-26 only) are answered as one array of trees.
                    let result = reply
                        .map(|reply| serde_json::from_str(reply.body.get()).unwrap_or(Value::Null));
                    batch.responses.push(Response {
                        id: Some(id),
                        result,
                    });
                }
                batch.running -= 1;
                if batch.running == 0
                    && let Some(batch) = self.batches.remove(&batch_id)
                {
                    Concluded::Batch(batch)
                } else {
                    Concluded::Nothing
                }
            }
        }
    }

    fn handle_notification(&mut self, notification: Notification) {
        let Notification { method, params } = notification;
        match method.as_str() {
            methods::INITIALIZED => match self.lifecycle {
                Lifecycle::Initializing(v) => {
                    let client = self.client.as_ref().map(|c| c.info.name.as_str());
                    tracing::debug!(?client, "initialized");
                    self.lifecycle = Lifecycle::Operating(v);
                }
                state => {
                    tracing::debug!(?state, "`notifications/initialized` out of place; ignored")
                }
            },
            methods::CANCELLED => match decode_params::<CancelledParams>(params) {
                Ok(p) => {
                    if self.inflight.cancel(&p.request_id) {
                        tracing::debug!(id = %p.request_id, reason = ?p.reason, "request cancelled by the client");
                    } else {
                        tracing::debug!(id = %p.request_id, "cancel for a request that is not running; ignored");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "malformed `notifications/cancelled`; ignored")
                }
            },
            other => tracing::debug!(method = other, "notification ignored"),
        }
    }

    fn handle_response(&mut self, response: Response) {
        match response.id {
            Some(id) => {
                if !self.pending.complete(&id, response.result) {
                    tracing::warn!(%id, "response to a request this server is not waiting for; ignored");
                }
            }
            None => match response.result {
                Err(error) => {
                    tracing::warn!(%error, "the client reported an error about a message it could not read")
                }
                Ok(_) => tracing::warn!("result without an id; ignored"),
            },
        }
    }
}

impl Drop for Session {
    /// Cancels and aborts whatever the session started, fails the requests waiting for the
    /// client, ends its output, and takes it out of the counts and the broadcast registry,
    /// whether `run` returned or was dropped half-way.
    fn drop(&mut self) {
        if let Some(durable) = &self.durable {
            self.server.release(&durable.id);
        }
        self.token.cancel();
        self.tasks.abort_all();
        self.pending.close();
        self.outbound.end();
        let inner = &self.server.inner;
        inner
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
        for _ in self.task_requests.drain() {
            inner.metrics.request_finished();
        }
        inner.metrics.session_ended();
        inner.session_ended.notify_waiters();
    }
}

/// Queues a call's progress as `notifications/progress` with the caller's token. Never waits:
/// a notification still queued for the same token is replaced by the newer one.
struct ProgressNotifier {
    progress_token: Option<ProgressToken>,
    outbound: OutboundQueue,
    /// Once the call is cancelled nobody waits for its progress, and after a time limit its
    /// response may already be out: no progress may follow it.
    call: CancellationToken,
    resources: Arc<Resources>,
    operation: String,
    /// A resumable session's record of the call, and its id there.
    operations: Option<(Arc<Operations>, RequestId)>,
}

impl ProgressSink for ProgressNotifier {
    fn send(&self, update: ProgressUpdate) {
        if self.call.is_cancelled() {
            return;
        }
        if let Some((operations, id)) = &self.operations {
            operations.progress(id, update.progress, update.total);
        }
        if self.resources.progress(
            &self.operation,
            update.progress,
            update.total,
            update.message.as_deref(),
        ) {
            let _ = self.outbound.push_coalesced(
                Coalesce::Updated(self.operation.clone()),
                updated_text(&self.operation),
            );
        }
        let Some(progress_token) = &self.progress_token else {
            return;
        };
        let params = ProgressParams {
            progress_token: progress_token.clone(),
            progress: update.progress,
            total: update.total,
            message: update.message,
        };
        let Ok(params) = serde_json::to_value(params) else {
            return;
        };
        let text = Message::Notification(Notification {
            method: methods::PROGRESS.to_owned(),
            params: Some(params),
        })
        .to_text();
        // A closed queue means the session is ending and the call is being cancelled.
        let _ = self.outbound.push_progress(progress_token.clone(), text);
    }
}

/// Runs a tool call under its time limit. When the limit passes, the call's token is
/// cancelled and the tool gets `grace` to stop and say how far it got; its answer is then
/// returned as an error result that names the limit.
pub(crate) async fn with_time_limit(
    call: impl Future<Output = CallToolResult>,
    token: CancellationToken,
    limit: Duration,
    grace: Duration,
) -> CallToolResult {
    tokio::pin!(call);
    tokio::select! {
        // The call first: a result that came in time is kept, and a call done at once
        // never arms the timer.
        biased;
        result = &mut call => result,
        () = tokio::time::sleep(limit) => {
            tracing::warn!(limit_ms = limit.as_millis(), "tool call exceeded its time limit");
            token.cancel();
            let note = format!("the call exceeded its time limit of {} and was stopped", show(limit));
            match tokio::time::timeout(grace, call).await {
                Ok(mut result) => {
                    result.content.insert(0, mcp_protocol::Content::text(note));
                    result.is_error = Some(true);
                    result
                }
                Err(_) => CallToolResult::error(format!("{note}; it did not wind down within {}", show(grace))),
            }
        }
    }
}

fn updated_text(uri: &str) -> String {
    Message::Notification(Notification {
        method: methods::RESOURCES_UPDATED.to_owned(),
        params: Some(serde_json::json!({ "uri": uri })),
    })
    .to_text()
}

/// The level of `notifications/message` a client gets until it sets one: tools' chatter
/// only for clients that ask for it, broadcasts (warning by default) for everyone.
const DEFAULT_LOG_LEVEL: LoggingLevel = LoggingLevel::Warning;

impl LogSink for Notices {
    fn log(&self, level: LoggingLevel, logger: &str, data: Value) {
        self.send(level, logger, data);
    }
}

/// The error of a call the principal's token does not grant.
pub(crate) fn forbidden_tool(tool: &str) -> ErrorObject {
    ErrorObject::new(
        error_codes::FORBIDDEN,
        format!(
            "the access token does not grant calling `{}`: it needs the scope `{SCOPE_TOOLS}` or `{SCOPE_TOOL_PREFIX}{}`",
            mcp_protocol::shorten(tool, 100),
            mcp_protocol::shorten(tool, 100)
        ),
    )
    .with_data(serde_json::json!({ "scope": format!("{SCOPE_TOOL_PREFIX}{tool}") }))
}

/// The -32000 error of a request the shutdown refused or stopped.
fn shutdown_error(what: &str) -> ErrorObject {
    ErrorObject::new(
        error_codes::SERVER_SHUTTING_DOWN,
        format!("the server is shutting down: {what}"),
    )
}

/// How often the progress and checkpoints of running calls are written, at most.
const OPERATIONS_WRITE_INTERVAL: Duration = Duration::from_secs(1);
/// How long to wait before writing again after the store failed.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// The next message of the attached connection; `None` once it ended.
async fn recv_opt(inbound: &mut Option<mpsc::Receiver<String>>) -> Option<String> {
    match inbound {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The next control message of a resumable session.
async fn recv_control(durable: &mut Option<Durable>) -> Option<Control> {
    match durable {
        Some(d) => d.control.recv().await,
        None => std::future::pending().await,
    }
}

/// A tool's requests to the session's client, through the session's `Peer`.
struct ToolClient {
    peer: Peer,
    capabilities: Arc<ClientCapabilities>,
}

impl mcp_tools::ClientSink for ToolClient {
    fn supports(&self, capability: &str) -> bool {
        let c = &self.capabilities;
        match capability {
            "sampling" => c.sampling.is_some(),
            "elicitation" => c.elicitation.is_some(),
            "roots" => c.roots.is_some(),
            _ => false,
        }
    }

    fn request(
        &self,
        method: &str,
        params: Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, String>> + Send>> {
        let peer = self.peer.clone();
        let method = method.to_owned();
        Box::pin(async move {
            peer.request(&method, Some(params))
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// What `initialize` answers.
fn initialize_result(server: &Server, version: ProtocolVersion) -> InitializeResult {
    let config = &server.inner.config;
    let fixtures = server.inner.tools.has_conformance_fixtures();
    InitializeResult {
        protocol_version: version.as_str().to_owned(),
        capabilities: ServerCapabilities {
            tools: Some(ToolsCapability { list_changed: None }),
            logging: Some(serde_json::Map::new()),
            resources: Some(ResourcesCapability {
                subscribe: Some(true),
                list_changed: None,
            }),
            prompts: fixtures.then(serde_json::Map::new),
            completions: fixtures.then(serde_json::Map::new),
            experimental: None,
        },
        server_info: config.server_info.clone(),
        instructions: config.instructions.clone(),
    }
}

/// The answer to a resuming `initialize`, naming the session (SEP-1288).
fn initialize_text(
    server: &Server,
    version: ProtocolVersion,
    session: &SessionId,
    id: RequestId,
) -> String {
    let result = to_value(initialize_result(server, version)).unwrap_or_default();
    let text = Message::Response(Response::ok(id, result)).to_text();
    with_member(&text, "mcpSessionId", &Value::from(session.as_str()))
}

/// A duration for people: `600 s`, `1.5 s`, `250 ms`.
fn show(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{} s", d.as_secs())
    } else if d.as_secs() > 0 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

fn to_value(value: impl Serialize) -> Result<Value, ErrorObject> {
    serde_json::to_value(value).map_err(ErrorObject::internal)
}
