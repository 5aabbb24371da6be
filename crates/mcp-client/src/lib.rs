//! An MCP client over WebSocket or Streamable HTTP that survives dropped connections and
//! server restarts.
//!
//! [`Client::connect`] opens a WebSocket (`ws://` or `wss://`), or speaks Streamable HTTP
//! (`http://` or `https://`), with a bearer token when given, initializes a resumable session (the server's `resume` capability), and runs a
//! driver task that owns the socket. When the connection drops, the driver reconnects with
//! exponential backoff and jitter and resumes the session after the last message it
//! received (`lastSeq`), so calls in flight complete as if nothing happened: nothing is
//! missed, and nothing is seen twice. If the session cannot be resumed (it expired, or the
//! server forgot it), calls in flight fail with [`Error::SessionLost`] and a new session
//! starts.
//!
//! Calls are typed ([`Client::list_tools`], [`Client::call_tool`], resources, prompts); a
//! [`Call`] also yields the call's progress, and dropping it before it finishes cancels the
//! call on the server. Server requests (sampling, elicitation, roots) go to a [`Handler`].

#![warn(missing_docs)]

mod dispatch;
mod driver;
pub mod http;
mod streamable;
mod tls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use mcp_protocol::{
    CallToolResult, ClientCapabilities, ErrorObject, GetPromptResult, Implementation,
    InitializeResult, ListPromptsResult, ListResourcesResult, ListToolsResult, Notification,
    ProgressParams, Prompt, ReadResourceResult, RequestId, Resource, Tool, methods,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// How long a connection attempt (TCP, TLS, upgrade and `initialize`) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached, or refused the connection.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The server answered with a JSON-RPC error.
    #[error("{0}")]
    Rpc(ErrorObject),
    /// The session the call belonged to could not be resumed; a new one was started.
    #[error("the session was lost ({0}); a new one was started")]
    SessionLost(ErrorObject),
    /// The client was closed, or gave up reconnecting.
    #[error("the client is closed: {0}")]
    Closed(String),
    /// The answer did not have the expected shape.
    #[error("unexpected answer: {0}")]
    Decode(String),
}

/// How the client reconnects: exponential backoff from `initial` to `max`, with up to 50%
/// random jitter, for at most `attempts` tries in a row (`None`: forever).
#[derive(Debug, Clone)]
pub struct Reconnect {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// How many failed attempts in a row before giving up.
    pub attempts: Option<u32>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            attempts: None,
        }
    }
}

/// Answers the server's requests: sampling (`sampling/createMessage`), elicitation
/// (`elicitation/create`) and roots (`roots/list`). `ping` is answered by the client itself.
pub trait Handler: Send + Sync + 'static {
    /// The capabilities to declare in `initialize`, for the requests this handler answers.
    fn capabilities(&self) -> ClientCapabilities;
    /// The answer to a request from the server.
    fn handle(
        &self,
        method: &str,
        params: Option<Value>,
    ) -> BoxFuture<'static, Result<Value, ErrorObject>>;
}

/// How to connect.
#[derive(Clone)]
pub struct Options {
    /// `ws://host:port/mcp` or `wss://...` for WebSocket; `http://...` or `https://...` for
    /// Streamable HTTP.
    pub url: String,
    /// A bearer token, sent as `Authorization: Bearer`.
    pub token: Option<String>,
    /// Who the client is.
    pub client_info: Implementation,
    /// How to reconnect.
    pub reconnect: Reconnect,
    /// Answers server requests; without one, they get -32601.
    pub handler: Option<Arc<dyn Handler>>,
    /// Extra trusted certificates (DER), beside the system's, for `wss://` to a server with
    /// a private CA or a self-signed certificate.
    pub extra_roots: Vec<Vec<u8>>,
}

impl Options {
    /// Options for `url` with the defaults: no token, reconnect forever, no handler.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: None,
            client_info: Implementation {
                name: "mcp-client".to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                title: None,
                extra: Map::new(),
            },
            reconnect: Reconnect::default(),
            handler: None,
            extra_roots: Vec::new(),
        }
    }
}

/// The state of the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Connected, the session running.
    Connected,
    /// The connection dropped; trying again. `attempt` counts from 1.
    Reconnecting {
        /// Which attempt is next.
        attempt: u32,
        /// Why the last connection or attempt ended.
        reason: String,
    },
    /// Closed for good, by [`Client::close`] or after the last reconnect attempt.
    Closed(String),
}

/// A progress report of a call.
pub type Progress = ProgressParams;

/// What a [`Call`] yields next.
#[derive(Debug)]
pub enum CallEvent {
    /// Progress.
    Progress(Progress),
    /// The call's result (a tool failure is a result with `is_error`).
    Done(Result<CallToolResult, Error>),
}

type Reply = Result<Value, Error>;

/// A request waiting for its answer.
struct Pending {
    reply: oneshot::Sender<Reply>,
    /// Where the request's progress goes, when it asked for progress.
    progress: Option<mpsc::Sender<Progress>>,
}

/// What the client and its driver share.
pub(crate) struct Shared {
    pending: Mutex<HashMap<RequestId, Pending>>,
    next_id: AtomicI64,
    notifications: broadcast::Sender<Notification>,
    status: watch::Sender<Status>,
    initialized: Mutex<Option<InitializeResult>>,
    /// The resumable session's id (`mcpSessionId`), when the server offers resuming.
    session: Mutex<Option<String>>,
    /// The positions (`seq`) received.
    seen: Mutex<Seen>,
}

/// The positions received: everything up to `contiguous`, and some above it (over HTTP,
/// messages of one session come on several streams, so out of order).
#[derive(Default)]
pub(crate) struct Seen {
    contiguous: u64,
    above: std::collections::BTreeSet<u64>,
}

impl Seen {
    /// Whether `seq` is new; it counts as received from now on.
    fn accept(&mut self, seq: u64) -> bool {
        if seq <= self.contiguous || !self.above.insert(seq) {
            return false;
        }
        while self.above.remove(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
        true
    }
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers the request `id`, if it is still waiting.
    pub(crate) fn answer(&self, id: &RequestId, reply: Reply) {
        if let Some(pending) = self.pending().remove(id) {
            let _ = pending.reply.send(reply);
        }
    }

    /// Hands progress to the request whose token it names (tokens are request ids). A
    /// caller that does not keep up loses intermediate reports, never the result.
    pub(crate) fn progress(&self, progress: Progress) {
        let pending = self.pending();
        if let Some(tx) = pending
            .get(&progress.progress_token)
            .and_then(|p| p.progress.as_ref())
        {
            let _ = tx.try_send(progress);
        }
    }

    /// The ids of the requests still waiting.
    pub(crate) fn waiting(&self) -> Vec<RequestId> {
        self.pending().keys().cloned().collect()
    }

    /// Fails every waiting request with `error()`.
    pub(crate) fn fail_all(&self, error: impl Fn() -> Error) {
        for (_, pending) in self.pending().drain() {
            let _ = pending.reply.send(Err(error()));
        }
    }

    pub(crate) fn notify(&self, notification: Notification) {
        // Nobody listening is fine.
        let _ = self.notifications.send(notification);
    }

    pub(crate) fn set_status(&self, status: Status) {
        self.status.send_replace(status);
    }

    /// Whether the message at `seq` is new (not seen before a resume): nothing twice.
    pub(crate) fn accept_seq(&self, seq: u64) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .accept(seq)
    }

    /// Where a resume starts: after every position up to this one was received.
    pub(crate) fn resume_after(&self) -> u64 {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contiguous
    }

    /// A new session: positions start again.
    pub(crate) fn reset_seq(&self) {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Seen::default();
    }

    pub(crate) fn set_session(&self, session: Option<String>) {
        *self.session.lock().unwrap_or_else(PoisonError::into_inner) = session;
    }

    pub(crate) fn set_initialized(&self, result: InitializeResult) {
        *self
            .initialized
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(result);
    }
}

/// What the driver sends.
pub(crate) enum Outgoing {
    /// A message's text.
    Text(String),
    /// Close the connection and stop.
    Close(oneshot::Sender<()>),
}

/// A connected client. Cheap to clone; every clone drives the same session.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    out: mpsc::Sender<Outgoing>,
    /// Cancellations, from `Drop`, which cannot wait for room.
    cancels: mpsc::UnboundedSender<RequestId>,
}

impl Client {
    /// Connects, initializes a resumable session, and starts the driver. Fails at once when
    /// the first connection or `initialize` fails (reconnecting is for later drops).
    pub async fn connect(options: Options) -> Result<Self, Error> {
        let (status, _) = watch::channel(Status::Connected);
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicI64::new(1),
            notifications: broadcast::channel(256).0,
            status,
            initialized: Mutex::new(None),
            session: Mutex::new(None),
            seen: Mutex::new(Seen::default()),
        });
        let (out, out_rx) = mpsc::channel(256);
        let (cancels, cancels_rx) = mpsc::unbounded_channel();
        if options.url.starts_with("http://") || options.url.starts_with("https://") {
            streamable::start(
                options,
                Arc::clone(&shared),
                out.clone(),
                out_rx,
                cancels_rx,
            )
            .await?;
        } else {
            let driver = driver::Driver::start(options, Arc::clone(&shared), out.clone()).await?;
            tokio::spawn(driver.run(out_rx, cancels_rx));
        }
        Ok(Self {
            shared,
            out,
            cancels,
        })
    }

    /// The server's answer to `initialize` (of the session now running).
    pub fn server(&self) -> InitializeResult {
        self.shared
            .initialized
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .expect("connect returns only after initialize succeeded, which sets it")
    }

    /// The session's id (`mcpSessionId`; on this server also its agent id), when the server
    /// offers resumable sessions. It changes only when a session was lost and a new one
    /// started.
    pub fn session_id(&self) -> Option<String> {
        self.shared
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The connection's state, now and as it changes.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.shared.status.subscribe()
    }

    /// The server's notifications other than progress (log messages, resource updates,
    /// list changes), from now on. A receiver that falls 256 behind loses the oldest.
    pub fn notifications(&self) -> broadcast::Receiver<Notification> {
        self.shared.notifications.subscribe()
    }

    /// Sends a request and waits for its answer. Dropping the future before the answer
    /// cancels the request on the server.
    pub async fn request(&self, method: &str, params: Option<Value>) -> Result<Value, Error> {
        let (id, reply, _) = self.send_request(method, params, false).await?;
        let mut waiting = Waiting {
            id: Some(id),
            reply,
            cancels: Some(self.cancels.clone()),
        };
        waiting.wait().await
    }

    async fn send_request(
        &self,
        method: &str,
        params: Option<Value>,
        progress: bool,
    ) -> Result<
        (
            RequestId,
            oneshot::Receiver<Reply>,
            Option<mpsc::Receiver<Progress>>,
        ),
        Error,
    > {
        let id = RequestId::Number(self.shared.next_id.fetch_add(1, Ordering::Relaxed));
        let mut params = params.unwrap_or_else(|| json!({}));
        let (progress_tx, progress_rx) = if progress {
            let (tx, rx) = mpsc::channel(64);
            if let Some(object) = params.as_object_mut() {
                let meta = object.entry("_meta").or_insert_with(|| json!({}));
                if let Some(meta) = meta.as_object_mut() {
                    meta.insert("progressToken".to_owned(), id.to_value());
                }
            }
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        self.shared.pending().insert(
            id.clone(),
            Pending {
                reply: reply_tx,
                progress: progress_tx,
            },
        );
        let text =
            json!({"jsonrpc": "2.0", "id": id.to_value(), "method": method, "params": params})
                .to_string();
        if self.out.send(Outgoing::Text(text)).await.is_err() {
            self.shared.pending().remove(&id);
            return Err(Error::Closed(closed_reason(&self.shared)));
        }
        Ok((id, reply_rx, progress_rx))
    }

    /// Sends a notification.
    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), Error> {
        let mut message = json!({"jsonrpc": "2.0", "method": method});
        if let Some(params) = params {
            message["params"] = params;
        }
        self.out
            .send(Outgoing::Text(message.to_string()))
            .await
            .map_err(|_| Error::Closed(closed_reason(&self.shared)))
    }

    async fn typed<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, Error> {
        let value = self.request(method, Some(params)).await?;
        serde_json::from_value(value).map_err(|e| Error::Decode(format!("{method}: {e}")))
    }

    /// Every tool, following `nextCursor` through the pages.
    pub async fn list_tools(&self) -> Result<Vec<Tool>, Error> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let params = cursor.map_or_else(|| json!({}), |c| json!({"cursor": c}));
            let page: ListToolsResult = self.typed(methods::TOOLS_LIST, params).await?;
            tools.extend(page.tools);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(tools),
            }
        }
    }

    /// Starts a tool call that reports progress; see [`Call`].
    pub async fn call(&self, name: &str, arguments: Map<String, Value>) -> Result<Call, Error> {
        let params = json!({"name": name, "arguments": arguments});
        let (id, reply, progress) = self
            .send_request(methods::TOOLS_CALL, Some(params), true)
            .await?;
        Ok(Call {
            waiting: Waiting {
                id: Some(id),
                reply,
                cancels: Some(self.cancels.clone()),
            },
            progress,
            done: false,
        })
    }

    /// Calls a tool and waits for its result (progress is not reported).
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<CallToolResult, Error> {
        let params = json!({"name": name, "arguments": arguments});
        let (id, reply, _) = self
            .send_request(methods::TOOLS_CALL, Some(params), false)
            .await?;
        let mut waiting = Waiting {
            id: Some(id),
            reply,
            cancels: Some(self.cancels.clone()),
        };
        let value = waiting.wait().await?;
        serde_json::from_value(value).map_err(|e| Error::Decode(format!("tools/call: {e}")))
    }

    /// Every resource, following `nextCursor`.
    pub async fn list_resources(&self) -> Result<Vec<Resource>, Error> {
        let mut resources = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let params = cursor.map_or_else(|| json!({}), |c| json!({"cursor": c}));
            let page: ListResourcesResult = self.typed(methods::RESOURCES_LIST, params).await?;
            resources.extend(page.resources);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(resources),
            }
        }
    }

    /// Reads a resource.
    pub async fn read_resource(&self, uri: &str) -> Result<ReadResourceResult, Error> {
        self.typed(methods::RESOURCES_READ, json!({"uri": uri}))
            .await
    }

    /// Subscribes to a resource: its updates come as `notifications/resources/updated`.
    pub async fn subscribe(&self, uri: &str) -> Result<(), Error> {
        self.request(methods::RESOURCES_SUBSCRIBE, Some(json!({"uri": uri})))
            .await
            .map(drop)
    }

    /// Ends a subscription.
    pub async fn unsubscribe(&self, uri: &str) -> Result<(), Error> {
        self.request(methods::RESOURCES_UNSUBSCRIBE, Some(json!({"uri": uri})))
            .await
            .map(drop)
    }

    /// Every prompt.
    pub async fn list_prompts(&self) -> Result<Vec<Prompt>, Error> {
        let page: ListPromptsResult = self.typed(methods::PROMPTS_LIST, json!({})).await?;
        Ok(page.prompts)
    }

    /// A prompt, filled with `arguments`.
    pub async fn get_prompt(
        &self,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<GetPromptResult, Error> {
        self.typed(
            methods::PROMPTS_GET,
            json!({"name": name, "arguments": arguments}),
        )
        .await
    }

    /// Asks for log messages at `level` and above.
    pub async fn set_log_level(&self, level: &str) -> Result<(), Error> {
        self.request(methods::LOGGING_SET_LEVEL, Some(json!({"level": level})))
            .await
            .map(drop)
    }

    /// Closes the connection (close 1000) and stops reconnecting. Calls in flight fail
    /// with [`Error::Closed`].
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.out.send(Outgoing::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
    }
}

fn closed_reason(shared: &Shared) -> String {
    match &*shared.status.borrow() {
        Status::Closed(reason) => reason.clone(),
        _ => "the connection's driver stopped".to_owned(),
    }
}

/// A request waiting for its answer; dropped unanswered, it cancels the request.
struct Waiting {
    /// `Some` for a request that is cancelled when dropped unanswered.
    id: Option<RequestId>,
    reply: oneshot::Receiver<Reply>,
    cancels: Option<mpsc::UnboundedSender<RequestId>>,
}

impl Waiting {
    async fn wait(&mut self) -> Reply {
        let reply = (&mut self.reply)
            .await
            .unwrap_or_else(|_| Err(Error::Closed("the connection's driver stopped".to_owned())));
        // Answered: nothing to cancel.
        self.id = None;
        reply
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let (Some(id), Some(cancels)) = (self.id.take(), &self.cancels) {
            let _ = cancels.send(id);
        }
    }
}

/// A running tool call: its progress, then its result. Dropping it before the result
/// cancels the call on the server (`notifications/cancelled`).
pub struct Call {
    waiting: Waiting,
    progress: Option<mpsc::Receiver<Progress>>,
    /// The result was yielded.
    done: bool,
}

impl Call {
    /// The next progress report, or the result. After the result, this only yields it
    /// again as an error.
    pub async fn next(&mut self) -> CallEvent {
        if self.done {
            return CallEvent::Done(Err(Error::Decode(
                "the call's result was already taken".to_owned(),
            )));
        }
        let reply = match &mut self.progress {
            Some(progress) => tokio::select! {
                biased;
                Some(p) = progress.recv() => return CallEvent::Progress(p),
                reply = &mut self.waiting.reply => {
                    self.waiting.id = None;
                    reply.unwrap_or_else(|_| Err(Error::Closed("the connection's driver stopped".to_owned())))
                }
            },
            None => self.waiting.wait().await,
        };
        // Set only now: a `next` dropped while waiting leaves the call as it was.
        self.done = true;
        self.progress = None;
        CallEvent::Done(decode_call(reply))
    }

    /// Waits for the result, passing over progress.
    pub async fn result(mut self) -> Result<CallToolResult, Error> {
        loop {
            if let CallEvent::Done(result) = self.next().await {
                return result;
            }
        }
    }

    /// The request id, which is also the progress token.
    pub fn id(&self) -> Option<&RequestId> {
        self.waiting.id.as_ref()
    }
}

fn decode_call(reply: Reply) -> Result<CallToolResult, Error> {
    reply.and_then(|value| {
        serde_json::from_value(value).map_err(|e| Error::Decode(format!("tools/call: {e}")))
    })
}
