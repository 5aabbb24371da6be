//! One 2025-era session: the lifecycle state machine and the driver loop.
//!
//! The session owns what lives as long as a connection's conversation: the lifecycle, the
//! client's capabilities and log level, its call table, and its outbound log. The methods
//! every era serves are the router's; the state of a resumable session is its `Resumable`
//! part. What is left here is the loop that waits for input, finished calls, timers and
//! control messages, and the methods only a 2025 session has (`initialize`, `ping`,
//! `logging/setLevel`, `resources/subscribe`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use mcp_protocol::{
    ClientCapabilities, ErrorObject, Incoming, InitializeParams, InvalidMessage, LoggingLevel,
    Message, Notification, ProtocolVersion, Request, RequestId, ResourceParams, Response,
    SetLevelParams, decode_params, methods,
};
use serde::Serialize;
use serde_json::Value;
use tokio::task::{self, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::calls::{
    Answer, BatchId, BatchResponses, CallInfo, CallReply, CallTable, CancelledBy, Reply,
};
use crate::hub::Notices;
use crate::lifecycle::{Admitted, CloseReason, Drain, Due, Lifecycle, SessionEnd, shutdown_error};
use crate::metrics::Outcome;
use crate::outbound::{Answered, Coalesce, OutboundQueue, Regarding, with_member};
use crate::peer::PendingTable;
use crate::resources::{Resources, STATS_URI};
use crate::resumable::{self, Control, Flushed, Resumable, resume_request, wants_resume};
use crate::router::{self, Polled, RequestContext, Route, Router, ToolCall, to_value};
use crate::sinks::{SessionSinks, session_client, updated_text};
use crate::store::{OperationRecord, now_ms};
use crate::{Hub, InboundReceiver, Peer, Principal, SessionId};

/// A call the session runs: a tool of its own, or the wait for a task.
pub(super) type CallRun = Pin<Box<dyn Future<Output = crate::calls::Reply> + Send>>;

mod modern;
mod resume;

/// What became of one incoming message.
enum Handled {
    /// Answer right away.
    Reply(Response),
    /// Refuse a request whose id is still running, right away.
    Duplicate(Response),
    /// A request is running; its response comes when it finishes.
    Spawned,
    /// A tool call that finished when first polled (a quick tool): it ran without a task,
    /// and its ending is still to be recorded and answered.
    Finished(Box<(RequestId, Reply)>),
    /// Nothing to send (a notification or a response).
    Nothing,
}

/// One MCP session, driven by [`Session::run`].
pub struct Session {
    hub: Hub,
    id: u64,
    outbound: OutboundQueue,
    /// Child of the hub's token; parent of every request's token.
    token: CancellationToken,
    lifecycle: Lifecycle,
    /// What the client can do, as it said in `initialize`; shared with every call's client
    /// handle, so that a call does not copy it.
    client: Option<Arc<ClientCapabilities>>,
    calls: CallTable,
    /// The running requests. Dropping the set aborts them, so nothing outlives the session.
    tasks: JoinSet<Reply>,
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
    inbound: Option<InboundReceiver>,
    /// Set when the session is resumable.
    resumable: Option<Resumable>,
    /// The session id to announce in the answer to the `initialize` being handled.
    announce: Option<SessionId>,
    /// The connection went on to the session it resumed: this one ends.
    handed_over: bool,
    /// A 2026-07-28 request was served: the connection needs no `initialize`.
    served_modern: bool,
    /// The session was deleted: it ends.
    deleted: bool,
    /// The session moves to another instance: it ends here.
    moving: bool,
    /// The principal the session belongs to: only it may resume it, and its scopes say
    /// which tools the session may see and call.
    principal: Principal,
    /// Its place under its principal's session limit, held while it runs.
    principal_slot: Option<crate::limits::CallSlot>,
    /// The span to run in, when the transport gives one.
    span: Option<tracing::Span>,
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

    pub(crate) fn new(hub: Hub, id: u64, outbound: OutboundQueue) -> Self {
        let token = hub.inner.shutdown.child_token();
        hub.inner.metrics.session_started();
        let pending = PendingTable::default();
        let peer = Peer::new(pending.clone(), &outbound);
        let log_level = Arc::new(AtomicU8::new(DEFAULT_LOG_LEVEL as u8));
        let log_sink = Arc::new(Notices {
            queue: outbound.downgrade(),
            level: Arc::clone(&log_level),
        });
        Self {
            hub,
            id,
            outbound,
            token,
            lifecycle: Lifecycle::AwaitingInitialize,
            client: None,
            calls: CallTable::default(),
            tasks: JoinSet::new(),
            pending,
            peer,
            output_closed: false,
            drain: None,
            last_activity: Instant::now(),
            log_level,
            log_sink,
            resources: Arc::default(),
            inbound: None,
            resumable: None,
            announce: None,
            handed_over: false,
            served_modern: false,
            deleted: false,
            moving: false,
            principal: Principal::anonymous(),
            principal_slot: None,
            span: None,
        }
    }

    /// Holds the session's place under its principal's limit until it ends.
    pub(crate) fn hold(&mut self, slot: Option<crate::limits::CallSlot>) {
        self.principal_slot = slot;
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
    /// (resuming, batches, store writes, draining, timers): only the hot paths stay inline.
    pub fn run(
        mut self,
        inbound: InboundReceiver,
    ) -> impl Future<Output = SessionEnd> + Send + 'static {
        let span = self
            .span
            .take()
            .unwrap_or_else(|| tracing::info_span!("session", id = self.id));
        async move {
            tracing::debug!("session started");
            self.inbound = Some(inbound);
            self.hub.inner.sessions_lock().insert(self.id, self.notices());
            let draining = self.hub.inner.draining.clone();
            let init_deadline = Instant::now() + self.hub.inner.config.init_timeout;
            let mut stats = self.hub.inner.stats_version.subscribe();
            // One timer for every deadline, armed for the earliest and re-armed only when an
            // earlier one appears or it fired: not a timer registered and dropped for each
            // message, and one timer's worth of memory in every session's frame.
            let mut timer = Box::pin(tokio::time::sleep_until(init_deadline));
            let end = loop {
                if let Some(end) = self.ending() {
                    break end;
                }
                // Only the earliest deadline is kept across the wait: whatever the loop holds
                // there is in every session's frame.
                let next_due = self.deadlines(init_deadline).into_iter().filter_map(|(_, at)| at).min();
                if let Some(due) = next_due
                    && (due < timer.deadline() || timer.is_elapsed())
                {
                    timer.as_mut().reset(due);
                }
                let attached = self.inbound.is_some();
                let resumable = self.resumable.is_some();
                let flush = self.resumable.as_ref().is_some_and(|r| r.retry_at.is_none());
                // Priority: shutdown, then finished requests (their responses go out), then
                // store writes (what is written can be sent), then timers and control
                // messages, then new input. Output before input is what gives backpressure:
                // while the client does not read, the session stops reading too.
                tokio::select! {
                    biased;
                    () = self.token.cancelled() => {
                        self.outbound.close(CloseReason::ShuttingDown);
                        break SessionEnd::ShuttingDown;
                    }
                    Some(done) = self.tasks.join_next_with_id() => self.finished(done).await,
                    () = self.outbound.unpersisted(), if flush => {
                        Box::pin(self.gather()).await;
                        Box::pin(self.flush()).await;
                    }
                    // What is due, one at a time, in order; another that is due too fires at
                    // once on the next turn.
                    () = &mut timer, if next_due.is_some() => {
                        if let Some(due) = self.due_now(init_deadline)
                            && let Some(end) = Box::pin(self.on_due(due)).await
                        {
                            break end;
                        }
                    }
                    () = draining.cancelled(), if self.drain.is_none() => Box::pin(self.begin_drain()).await,
                    Some(control) = recv_control(&mut self.resumable), if resumable => self.on_control(control),
                    Ok(()) = stats.changed(), if self.resources.is_subscribed(STATS_URI) => {
                        self.resource_updated(STATS_URI);
                    }
                    text = recv_opt(&mut self.inbound), if attached => match text {
                        Some(text) => {
                            self.last_activity = Instant::now();
                            self.handle_text(&text).await;
                        }
                        None => {
                            if let Some(end) = self.connection_lost() {
                                break end;
                            }
                        }
                    },
                }
            };
            if self.resumable.is_some() && !self.deleted {
                // What the session produced last (cancellations, a shutdown's errors) is
                // kept for the client's next resume.
                Box::pin(self.flush()).await;
            }
            tracing::debug!(?end, cancelled = self.calls.len(), "session ended");
            // Dropping the session (here, or wherever `run` is abandoned) releases everything.
            end
        }
        .instrument(span)
    }

    /// Whether the session ends now, and how.
    fn ending(&mut self) -> Option<SessionEnd> {
        let idle = self.calls.is_empty();
        let end = if self.output_closed {
            SessionEnd::OutputClosed
        } else if self.handed_over {
            SessionEnd::Resumed
        } else if self.deleted {
            self.outbound.close(CloseReason::Deleted);
            SessionEnd::Deleted
        } else if self.moving {
            // Its calls' tasks stop here without ending: the other instance takes them up.
            self.hub.move_tasks_of(self.id);
            self.outbound.close(CloseReason::Replaced);
            SessionEnd::Moved
        } else if self.drain.is_some() && idle {
            self.outbound.close(CloseReason::ShuttingDown);
            SessionEnd::ShuttingDown
        } else if self.resumable.as_ref().is_some_and(|r| r.expired) && idle {
            SessionEnd::Expired
        } else {
            return None;
        };
        Some(end)
    }

    /// Every deadline of the session, in the order they are served.
    fn deadlines(&self, init_deadline: Instant) -> [(Due, Option<Instant>); 6] {
        let config = &self.hub.inner.config;
        let resumable = self.resumable.as_ref();
        let running = !self.calls.is_empty();
        let awaiting_init = self.lifecycle == Lifecycle::AwaitingInitialize && !self.served_modern;
        let idle = !running && self.drain.is_none() && self.inbound.is_some() && !awaiting_init;
        [
            (Due::Retry, resumable.and_then(|r| r.retry_at)),
            (
                Due::Operations,
                resumable.and_then(Resumable::operations_due),
            ),
            (Due::Drain, self.drain.as_ref().map(Drain::next_due)),
            (
                Due::Grace,
                resumable.and_then(|r| r.grace_over(config.resume_grace)),
            ),
            (Due::Init, awaiting_init.then_some(init_deadline)),
            (
                Due::Idle,
                idle.then_some(self.last_activity + config.idle_timeout),
            ),
        ]
    }

    /// The first deadline, in serving order, that has passed. The clock is read after the
    /// deadlines: one that is "now" (a call that started) must count as passed.
    fn due_now(&self, init_deadline: Instant) -> Option<Due> {
        let deadlines = self.deadlines(init_deadline);
        let now = Instant::now();
        deadlines
            .into_iter()
            .find(|(_, at)| at.is_some_and(|at| at <= now))
            .map(|(due, _)| due)
    }

    /// Does what is due; how the session ends, when it does.
    async fn on_due(&mut self, due: Due) -> Option<SessionEnd> {
        let config = &self.hub.inner.config;
        match due {
            Due::Retry => {
                if let Some(r) = &mut self.resumable {
                    r.retry_at = None;
                }
                self.flush().await;
            }
            Due::Operations => self.flush().await,
            Due::Drain => {
                if self.advance_drain().await {
                    self.outbound.close(CloseReason::ShuttingDown);
                    return Some(SessionEnd::ShuttingDown);
                }
            }
            Due::Grace => self.expire(),
            Due::Init => {
                let timeout_ms = config.init_timeout.as_millis();
                tracing::info!(timeout_ms, "no initialize in time; closing");
                self.outbound.close(CloseReason::InitTimeout);
                return Some(SessionEnd::TimedOut);
            }
            Due::Idle => {
                tracing::info!(
                    timeout_ms = config.idle_timeout.as_millis(),
                    "idle; closing"
                );
                self.outbound.close(CloseReason::Idle);
                return Some(SessionEnd::TimedOut);
            }
        }
        None
    }

    /// The connection's input ended: a resumable session waits to be resumed; any other ends.
    fn connection_lost(&mut self) -> Option<SessionEnd> {
        self.inbound = None;
        let Some(r) = &mut self.resumable else {
            return Some(SessionEnd::InputClosed);
        };
        tracing::info!(
            grace_s = self.hub.inner.config.resume_grace.as_secs(),
            running = self.calls.len(),
            "connection lost; the session waits to be resumed"
        );
        r.detached_at = Some(Instant::now());
        None
    }

    fn on_control(&mut self, control: Control) {
        match control {
            Control::Attach(attach) => self.attach(*attach),
            Control::Delete => {
                tracing::info!("session deleted");
                self.deleted = true;
            }
            Control::Leave => {
                tracing::info!("session resumed on another instance; it leaves this one");
                self.moving = true;
            }
        }
    }

    fn notices(&self) -> Notices {
        Notices {
            queue: self.outbound.downgrade(),
            level: Arc::clone(&self.log_level),
        }
    }

    /// Before a store write: serves the input and the finished calls that are already
    /// waiting, up to [`GATHERED`], so that one write (one commit, one fsync) carries all of
    /// their messages, not one write each. Bounded, so output still comes before more input.
    async fn gather(&mut self) {
        for _ in 0..GATHERED {
            if let Some(done) = self.tasks.try_join_next_with_id() {
                self.finished(done).await;
                continue;
            }
            let Some(text) = self.inbound.as_mut().and_then(InboundReceiver::try_recv) else {
                return;
            };
            self.last_activity = Instant::now();
            self.handle_text(&text).await;
        }
    }

    /// Writes what changed to the store (see [`Resumable::flush`]).
    async fn flush(&mut self) {
        let Some(r) = &mut self.resumable else {
            return;
        };
        let store = Arc::clone(&self.hub.inner.store);
        let log_cap = self.hub.inner.config.resume_log;
        let owner = self.principal.name();
        if r.flush(store.as_ref(), &self.outbound, owner, log_cap)
            .await
            == Flushed::Gone
        {
            self.deleted = true;
        }
        let answered = std::mem::take(&mut r.answered);
        if !answered.is_empty() {
            // Not in the session's way: a task left behind only expires later.
            let owner = self.principal.name().to_owned();
            tokio::spawn(self.hub.clone().drop_session_tasks(owner, answered));
        }
    }

    /// The grace period passed without a connection: cancels the running calls; the
    /// session ends once they are done, their outcomes kept for a later resume.
    fn expire(&mut self) {
        if let Some(r) = &mut self.resumable {
            r.expired = true;
        }
        tracing::info!(
            grace_s = self.hub.inner.config.resume_grace.as_secs(),
            cancelled = self.calls.len(),
            "no connection resumed the session in time; cancelling its calls"
        );
        self.calls.cancel_all();
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
        let inner = &self.hub.inner;
        let deadline = inner
            .drain_deadline
            .get()
            .copied()
            .unwrap_or_else(Instant::now);
        inner.metrics.drained();
        let (drain, notice) = Drain::begin(deadline, self.calls.len());
        self.drain = Some(drain);
        self.send_message(Message::Notification(notice), Regarding::Other)
            .await;
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
                cancelled = self.calls.len(),
                "grace period over; cancelling running requests"
            );
            drain.abandon_at = Some(Instant::now() + self.hub.inner.config.stop_grace);
            self.calls.cancel_all();
            return false;
        }
        self.tasks.abort_all();
        let (stuck, waiting) = self.calls.abandon_all();
        tracing::warn!(stuck, "requests did not wind down; abandoning them");
        for _ in 0..stuck {
            self.hub.inner.metrics.request_finished();
        }
        for id in waiting {
            let error = shutdown_error("it did not stop in time and was abandoned");
            self.send_error(Some(id), error).await;
        }
        true
    }

    async fn send(&mut self, text: String, regarding: Regarding) {
        if self.outbound.push(text, regarding).await.is_err() {
            self.output_closed = true;
        }
    }

    async fn send_error(&mut self, id: Option<RequestId>, error: ErrorObject) {
        let regarding = id
            .clone()
            .map_or(Regarding::Other, |id| Regarding::Answer(Answered::to(id)));
        self.send_message(Message::Response(Response::error(id, error)), regarding)
            .await;
    }

    async fn send_message(&mut self, message: impl Serialize, regarding: Regarding) {
        match serde_json::to_string(&message) {
            Ok(text) => self.send(text, regarding).await,
            Err(e) => tracing::error!(error = %e, "could not serialize an outgoing message"),
        }
    }

    async fn handle_text(&mut self, text: &str) {
        if self.lifecycle == Lifecycle::AwaitingInitialize {
            if let Some(request) = resume_request(text) {
                Box::pin(self.resume(request)).await;
                return;
            }
            // A new resumable session is kept in the store: within its principal's limits.
            if let Some(id) = resumable::new_resumable_request(text)
                && let Err(error) = Box::pin(self.hub.may_store(self.principal.name(), true)).await
            {
                self.send_error(Some(id), error).await;
                return;
            }
        }
        match mcp_protocol::parse(text) {
            Err(error) => {
                tracing::debug!(%error, "unparseable message");
                self.send_error(None, error).await;
            }
            Ok(Incoming::Single(message)) => {
                if let Some((id, error)) = self.over_storage(&message).await {
                    let duplicate = self.calls.contains(&id);
                    self.reply(Response::error(Some(id), error), duplicate)
                        .await;
                    return;
                }
                match self.handle_message(message, None) {
                    Handled::Reply(response) => self.reply(response, false).await,
                    Handled::Duplicate(response) => self.reply(response, true).await,
                    Handled::Finished(finished) => {
                        let (id, reply) = *finished;
                        self.complete(id, reply).await;
                    }
                    Handled::Spawned | Handled::Nothing => {}
                }
            }
            Ok(Incoming::Batch(messages)) => Box::pin(self.handle_batch(messages)).await,
        }
    }

    /// A tool call in a resumable session is kept (its answer goes to the session's stored
    /// log): its id and the -32001 error when its principal keeps too much already
    /// ([`Hub::may_store`]).
    async fn over_storage(
        &self,
        message: &Result<Message, InvalidMessage>,
    ) -> Option<(RequestId, ErrorObject)> {
        let Ok(Message::Request(request)) = message else {
            return None;
        };
        if self.resumable.is_none() || request.method != methods::TOOLS_CALL {
            return None;
        }
        let refused = self.hub.may_store(self.principal.name(), false).await;
        refused.err().map(|error| (request.id.clone(), error))
    }

    /// Sends an answer that was ready at once; `duplicate` when it refuses a request whose id
    /// was still running.
    async fn reply(&mut self, response: Response, duplicate: bool) {
        let regarding = response.id.clone().map_or(Regarding::Other, |id| {
            Regarding::Answer(Answered { id, duplicate })
        });
        let mut text = Message::Response(response).to_text();
        if let Some(id) = self.announce.take() {
            // SEP-1288: the answer to `initialize` names the session.
            text = with_member(&text, "mcpSessionId", &Value::from(id.as_str()));
        }
        self.send(text, regarding).await;
    }

    async fn handle_batch(&mut self, messages: Vec<Result<Message, InvalidMessage>>) {
        if let Err(error) = self.lifecycle.admit_batch() {
            self.send_error(None, error).await;
            return;
        }
        let batch = self.calls.open_batch();
        let mut finished = Vec::new();
        for message in messages {
            if let Some((id, error)) = self.over_storage(&message).await {
                let duplicate = self.calls.contains(&id);
                self.calls
                    .batch_reply(batch, Response::error(Some(id), error), duplicate);
                continue;
            }
            match self.handle_message(message, Some(batch)) {
                Handled::Reply(response) => self.calls.batch_reply(batch, response, false),
                Handled::Duplicate(response) => self.calls.batch_reply(batch, response, true),
                Handled::Finished(done) => finished.push(done),
                Handled::Spawned | Handled::Nothing => {}
            }
        }
        // Each counts itself out of the batch, which goes out with the last.
        for done in finished {
            let (id, reply) = *done;
            self.complete(id, reply).await;
        }
        if let Some(responses) = self.calls.close_batch(batch) {
            self.send_batch(responses).await;
        }
    }

    /// A batch's responses, as one array. A batch of only notifications (or of only
    /// cancelled requests) has none and gets no response.
    async fn send_batch(&mut self, responses: BatchResponses) {
        let regarding = responses.regarding();
        let messages: Vec<Message> = responses
            .responses
            .into_iter()
            .map(Message::Response)
            .collect();
        self.send_message(messages, regarding).await;
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
                let duplicate = self.calls.contains(&id);
                let method = request.method.clone();
                let metrics = self.hub.inner.metrics.clone();
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
                        let refusal = Response::error(Some(id.clone()), error);
                        match duplicate {
                            true => Handled::Duplicate(refusal),
                            false => Handled::Reply(refusal),
                        }
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
                self.pending.answer(response);
                Handled::Nothing
            }
        }
    }

    /// The lifecycle's methods here; the rest through the router.
    fn handle_request(
        &mut self,
        request: Request,
        batch: Option<BatchId>,
    ) -> Result<Handled, ErrorObject> {
        let Request { id, method, params } = request;
        if self.calls.contains(&id) {
            return Err(ErrorObject::invalid_request(format_args!(
                "duplicate request id {id}: a request with this id is still in flight"
            )));
        }
        if self.drain.is_some() && method != methods::PING {
            return Err(shutdown_error("new requests are refused"));
        }
        if mcp_protocol::modern::names_a_version(params.as_ref()) {
            // A 2026-07-28 request: served on its own, whatever this connection's era.
            return self.handle_modern(id, method, params, batch);
        }
        // Pings keep connections alive: they do not draw on the principal's rate, which is
        // for work, but on a bucket of their own at the same rate (keeping alive takes one
        // every few seconds).
        if method != methods::PING {
            self.hub.inner.limits.check_rate(&self.principal)?;
        } else {
            self.hub.inner.limits.check_ping(&self.principal)?;
        }
        let empty = || {
            Ok(Handled::Reply(Response::ok(
                id.clone(),
                Value::Object(Default::default()),
            )))
        };
        let version = match self.lifecycle.admit(&method)? {
            Admitted::Ping => return empty(),
            Admitted::Initialize => {
                let result = self.initialize(params)?;
                return Ok(Handled::Reply(Response::ok(id, result)));
            }
            Admitted::Serve(version) => version,
        };
        match method.as_str() {
            methods::RESOURCES_SUBSCRIBE => {
                let p: ResourceParams = decode_params(params)?;
                self.resources.subscribe(&p.uri, &self.hub.inner.catalog)?;
                empty()
            }
            methods::RESOURCES_UNSUBSCRIBE => {
                let p: ResourceParams = decode_params(params)?;
                self.resources.unsubscribe(&p.uri);
                empty()
            }
            methods::LOGGING_SET_LEVEL => {
                let p: SetLevelParams = decode_params(params)?;
                self.log_level.store(p.level as u8, Ordering::Relaxed);
                tracing::debug!(level = %p.level, "log level set");
                empty()
            }
            _ => {
                let (peer, capabilities) = (&self.peer, &self.client);
                let client = || session_client(peer, capabilities.clone().unwrap_or_default());
                let ctx = RequestContext {
                    version,
                    principal: &self.principal,
                    resources: &self.resources,
                    running: self.calls.len(),
                    client: &client,
                };
                match self
                    .hub
                    .inner
                    .router
                    .route(&self.hub, &method, &ctx, params)?
                {
                    Route::Answer(value) => Ok(Handled::Reply(Response::ok(id, value))),
                    Route::Call(call) => self.start_call(id, call, version, batch, None),
                    Route::Pending(answer) => Ok(self.answer_later(id, &method, answer, batch)),
                }
            }
        }
    }

    fn initialize(&mut self, params: Option<Value>) -> Result<Value, ErrorObject> {
        let params: InitializeParams = decode_params(params)?;
        let version = ProtocolVersion::negotiate(&params.protocol_version);
        if wants_resume(&params) {
            self.make_resumable(version, &params.client_info.name)?;
        }
        tracing::info!(
            client = %params.client_info.name,
            client_version = %params.client_info.version,
            requested = %params.protocol_version,
            negotiated = %version,
            "initialize"
        );
        self.client = Some(Arc::new(params.capabilities));
        self.lifecycle = Lifecycle::Initializing(version);
        to_value(self.hub.initialize_result(version))
    }

    /// Starts an admitted tool call with sinks into this session: polled once here, and
    /// spawned if it is not done at once. In a resumable session, a call of a long tool (one
    /// that may be a task, or resumes) runs as a task, which keeps its progress, checkpoint
    /// and outcome in the store; the session follows it. A call started over after a resume
    /// sends no progress up to what its client saw already (`seen`): progress only goes up.
    fn start_call(
        &mut self,
        id: RequestId,
        call: ToolCall,
        version: ProtocolVersion,
        batch: Option<BatchId>,
        seen: Option<f64>,
    ) -> Result<Handled, ErrorObject> {
        let token = self.token.child_token();
        let operation = self.resources.start(&id, &call.name);
        let mut record = self.calls.operations().is_some().then(|| OperationRecord {
            request_id: id.clone(),
            tool: call.name.clone(),
            arguments: Value::Object(call.arguments.clone()),
            progress_token: call.progress_token.clone(),
            task: None,
            started_ms: now_ms(),
        });
        let history = record
            .as_ref()
            .map(|r| (r.tool.clone(), r.arguments.clone()));
        let sinks = self.sinks();
        // Looked up only for a resumable session's call: the others never become tasks.
        let long = || {
            let tools = self.hub.inner.catalog.tools();
            tools.task_support(&call.name) != mcp_tools::TaskSupport::Forbidden
                || tools.is_resumable(&call.name)
        };
        let run: CallRun = match (&mut record, &self.resumable) {
            (Some(record), Some(resumable)) if long() => {
                let front = sinks.front(&call, &token, &operation, seen);
                let (task, run) = self.hub.start_session_task(
                    &self.principal,
                    &resumable.id,
                    version,
                    call,
                    front,
                    &token,
                )?;
                record.task = Some(task);
                Box::pin(run)
            }
            _ => {
                let scope = sinks.scope(&call, &token, &operation);
                Router::start_call(&self.hub, &id, version, call, scope)?
            }
        };
        let info = CallInfo {
            method: methods::TOOLS_CALL,
            started: Instant::now(),
            uri: operation,
            call: history,
        };
        Ok(self.launch(id, run, token, batch, info, record))
    }

    /// What this session lends its tool calls.
    fn sinks(&self) -> SessionSinks<'_> {
        SessionSinks {
            outbound: &self.outbound,
            resources: &self.resources,
            log: &self.log_sink,
            peer: &self.peer,
            capabilities: self.client.as_ref(),
            progress_interval: self.hub.inner.config.progress_interval,
            principal: Arc::clone(self.principal.key()),
            session: self.id,
        }
    }

    /// Answers request `id` when `answer` is done (it may ask the client first), as a call:
    /// in the call table, so it can be cancelled, and counted.
    fn answer_later(
        &mut self,
        id: RequestId,
        method: &str,
        answer: Pin<Box<dyn Future<Output = Result<Value, ErrorObject>> + Send>>,
        batch: Option<BatchId>,
    ) -> Handled {
        let token = self.token.child_token();
        let cancel = token.clone();
        let run = Box::pin(async move {
            let value = tokio::select! {
                value = answer => value?,
                () = cancel.cancelled() => return Err(shutdown_error("it was cancelled")),
            };
            CallReply::from_value(&value)
        });
        let info = CallInfo {
            method: crate::metrics::known(method),
            started: Instant::now(),
            uri: String::new(),
            call: None,
        };
        self.launch(id, run, token, batch, info, None)
    }

    /// Enters a started call in the call table and polls it once, where it arrived: done at
    /// once, or spawned to go on.
    fn launch(
        &mut self,
        id: RequestId,
        run: impl Future<Output = Reply> + Send + Unpin + 'static,
        token: CancellationToken,
        batch: Option<BatchId>,
        info: CallInfo,
        record: Option<OperationRecord>,
    ) -> Handled {
        self.calls.start(id.clone(), token, batch, info, record);
        self.hub.inner.metrics.request_started();
        match router::poll_once(run) {
            Polled::Pending(run) => {
                let handle = self.tasks.spawn(run);
                self.calls.spawned(handle.id(), id);
                Handled::Spawned
            }
            Polled::Ready(reply) => Handled::Finished(Box::new((id, reply))),
        }
    }

    async fn finished(&mut self, done: Result<(task::Id, Reply), JoinError>) {
        let (task_id, reply) = done.unwrap_or_else(|e| (e.id(), crate::calls::failed(&e)));
        let Some(id) = self.calls.task_finished(task_id) else {
            tracing::error!(?task_id, "a task finished that no request owns");
            return;
        };
        self.complete(id, reply).await;
    }

    /// Records how a tool call ended and answers it (or counts it into its batch).
    ///
    /// Only the sending waits, so that what this future holds across its awaits stays
    /// small: it is inline in the session's loop, and so in every session's frame.
    async fn complete(&mut self, id: RequestId, reply: Reply) {
        match self.conclude(id, reply) {
            Some(Concluded::Answer(id, text)) => {
                self.send(text, Regarding::Answer(Answered::to(id))).await
            }
            Some(Concluded::Batch(responses)) => Box::pin(self.send_batch(responses)).await,
            None => {}
        }
    }

    /// Everything of [`Self::complete`] but the sending: what to send.
    fn conclude(&mut self, id: RequestId, reply: Reply) -> Option<Concluded> {
        // Idleness counts from the end of the last call as well as from the last input.
        self.last_activity = Instant::now();
        let expired = self.resumable.as_ref().is_some_and(|r| r.expired);
        let grace = self.hub.inner.config.resume_grace;
        let cancelled = || match expired {
            true => resumable::expired_error(grace),
            false => shutdown_error("it was cancelled"),
        };
        let Some(mut done) = self.calls.finish(&id, reply, cancelled) else {
            tracing::error!(%id, "a request finished twice");
            return None;
        };
        let metrics = &self.hub.inner.metrics;
        let (method, started) = (done.info.method, done.info.started);
        metrics.request_finished();
        metrics.observe_latency(method, started.elapsed().as_secs_f64());
        metrics.count_request(method, done.outcome);
        tracing::debug!(%id, method, outcome = ?done.outcome, duration_ms = started.elapsed().as_millis(), "request finished");
        let status = done.status();
        if let Some(r) = &mut self.resumable {
            r.record_history(&mut done);
        }
        // The result moves into the call's resource: no second copy of it is made.
        let uri = std::mem::take(&mut done.info.uri);
        // A modern call has no resource here.
        if !uri.is_empty() && self.resources.finish(&uri, status, done.result.take()) {
            self.resource_updated(&uri);
        }
        match done.send {
            Answer::Nothing => {
                if done.cancelled == Some(CancelledBy::Client) {
                    tracing::debug!(%id, "cancelled by the client; no response");
                }
                None
            }
            // The result's text goes out as it is: no tree is built or copied again.
            Answer::One(Ok(reply)) => {
                let text = mcp_protocol::response_text(&id, &reply.body);
                Some(Concluded::Answer(id, text))
            }
            Answer::One(Err(error)) => {
                let text = Message::Response(Response::error(Some(id.clone()), error)).to_text();
                Some(Concluded::Answer(id, text))
            }
            Answer::Batch(responses) => Some(Concluded::Batch(responses)),
        }
    }

    fn handle_notification(&mut self, notification: Notification) {
        let Notification { method, params } = notification;
        match method.as_str() {
            methods::INITIALIZED => self.lifecycle.initialized(),
            methods::CANCELLED => self.calls.cancelled(params),
            other => tracing::debug!(method = other, "notification ignored"),
        }
    }
}

/// What is sent when a tool call ends.
enum Concluded {
    /// Its response.
    Answer(RequestId, String),
    /// Its batch, whose last request it was.
    Batch(BatchResponses),
}

impl Drop for Session {
    /// Cancels and aborts whatever the session started, fails the requests waiting for the
    /// client, ends its output, and takes it out of the counts and the broadcast registry,
    /// whether `run` returned or was dropped half-way.
    fn drop(&mut self) {
        if let Some(r) = &self.resumable {
            self.hub.release(&r.id);
        }
        self.token.cancel();
        self.tasks.abort_all();
        self.pending.close();
        self.outbound.end();
        let inner = &self.hub.inner;
        inner.sessions_lock().remove(&self.id);
        for _ in 0..self.calls.len() {
            inner.metrics.request_finished();
        }
        inner.metrics.session_ended();
        self.hub.release_session();
        inner.session_ended.notify_waiters();
    }
}

/// The level of `notifications/message` a client gets until it sets one: tools' chatter
/// only for clients that ask for it, broadcasts (warning by default) for everyone.
const DEFAULT_LOG_LEVEL: LoggingLevel = LoggingLevel::Warning;

/// How many waiting messages and finished calls a resumable session serves before one store
/// write ([`Session::gather`]).
const GATHERED: usize = 256;

/// The next message of the attached connection; `None` once it ended.
async fn recv_opt(inbound: &mut Option<InboundReceiver>) -> Option<String> {
    match inbound {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The next control message of a resumable session.
async fn recv_control(resumable: &mut Option<Resumable>) -> Option<Control> {
    match resumable {
        Some(r) => r.control.recv().await,
        None => std::future::pending().await,
    }
}
