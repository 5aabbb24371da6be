//! An MCP client over WebSocket, Streamable HTTP or stdio, for servers of both eras, that
//! survives dropped connections and server restarts.
//!
//! [`Options::stdio`] runs the server as a child process and speaks to it over its standard
//! input and output ([`stdio`]); a process that exits is started again with the same
//! backoff as a reconnection, and the requests it had fail with [`Error::Interrupted`].
//!
//! [`Client::connect`] opens a WebSocket (`ws://` or `wss://`), or speaks Streamable HTTP
//! (`http://` or `https://`), with a bearer token when given, and runs a driver task that
//! owns the connection. It speaks MCP 2026-07-28 when the server does, as the official SDKs
//! do: it probes with `server/discover`, and every request then carries what it needs in its
//! own `_meta` (no session). A server that does not answer the probe as a modern server gets
//! the 2025 handshake instead, as does every server when [`Options::legacy`] is set.
//!
//! **2026-07-28.** A request whose tool needs something from the client (sampling,
//! elicitation, roots) comes back asking for input: the [`Handler`] answers, and the client
//! retries the request with the answers, as often as the tool asks (at most 10 rounds).
//! Over HTTP every request is its own POST; over WebSocket requests share the socket. A
//! connection that drops is reopened with backoff, but the requests it carried fail with
//! [`Error::Interrupted`]: a modern request has no session to resume.
//!
//! **2025, resumable.** The client initializes a resumable session (the server's `resume`
//! capability). When the connection drops, the driver reconnects with exponential backoff
//! and jitter and resumes the session after the last message it received (`lastSeq`), so
//! calls in flight complete as if nothing happened: nothing is missed, and nothing is seen
//! twice. If the session cannot be resumed (it expired, or the server forgot it), calls in
//! flight fail with [`Error::SessionLost`] and a new session starts.
//!
//! Calls are typed ([`Client::list_tools`], [`Client::call_tool`], resources, prompts); a
//! [`Call`] also yields the call's progress, and dropping it before it finishes cancels the
//! call on the server. Server requests (sampling, elicitation, roots) go to a [`Handler`].

#![warn(missing_docs)]

mod dispatch;
mod driver;
pub mod http;
mod modern;
mod stateless;
pub mod stdio;
mod streamable;
mod tasks;
mod tls;

pub use mcp_protocol::TaskStatus;
pub use tasks::{Started, Task, TaskState};

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
use tokio::task::AbortHandle;

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
    /// The connection that carried a 2026-07-28 request broke before its answer: the
    /// request may or may not have run, and is not resumed (a 2025 session would be).
    #[error("the connection broke before the answer ({0}); the request may or may not have run")]
    Interrupted(String),
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
/// A 2025 session gets them as requests; a 2026-07-28 request's tool asks for them in an
/// input-required result, and the same `handle` answers.
pub trait Handler: Send + Sync + 'static {
    /// The capabilities to declare (in `initialize`, or in every modern request's `_meta`),
    /// for the requests this handler answers.
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
    /// Speak the 2025 handshake (`initialize`) even to a server of 2026-07-28: for its
    /// resumable session, in which calls survive a dropped connection.
    pub legacy: bool,
    /// Run the server as a child process and speak to it over its standard input and
    /// output, instead of connecting to `url` (which then only names it in messages).
    pub stdio: Option<stdio::Command>,
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
            legacy: false,
            stdio: None,
        }
    }

    /// Options for a server run as a child process (MCP's stdio transport), with the
    /// defaults: restarted with backoff when it exits, forever.
    pub fn stdio(command: stdio::Command) -> Self {
        Self {
            stdio: Some(command.clone()),
            ..Self::new(format!("stdio:{}", command.name))
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
    /// With a server of 2026-07-28: the `_meta` every request carries.
    modern: Mutex<Option<Map<String, Value>>>,
    /// The log level asked for (stamped on modern requests).
    log_level: Mutex<Option<String>>,
    /// Whether requests go over Streamable HTTP.
    http: bool,
    /// The tools' parameters mirrored in headers (SEP-2243), by tool, from the last
    /// `tools/list`; `None` before one.
    header_params: Mutex<Option<HashMap<String, HeaderParams>>>,
    /// The running `subscriptions/listen` requests, by resource URI.
    listens: Mutex<HashMap<String, AbortHandle>>,
    /// Answers the server's requests (the options' handler).
    handler: Option<Arc<dyn Handler>>,
    /// How to reconnect (the options' policy), for subscriptions to open again.
    reconnect: Reconnect,
}

/// A tool's parameters mirrored in headers: the path to each, and its header's name.
pub(crate) type HeaderParams = Vec<(Vec<String>, String)>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Speaks 2026-07-28 from now on, stamping `meta` on every request; `None`: 2025.
    pub(crate) fn set_modern(&self, meta: Option<Map<String, Value>>) {
        *lock(&self.modern) = meta;
    }

    pub(crate) fn is_modern(&self) -> bool {
        lock(&self.modern).is_some()
    }

    /// The headers mirroring `arguments` of the tool `name`, as its schema annotates them.
    pub(crate) fn param_headers(&self, name: &str, arguments: &Value) -> Vec<(String, String)> {
        let known = lock(&self.header_params);
        let Some(params) = known.as_ref().and_then(|k| k.get(name)) else {
            return Vec::new();
        };
        params
            .iter()
            .filter_map(|(path, header)| {
                let value = path.iter().try_fold(arguments, |v, key| v.get(key))?;
                let text = mcp_protocol::modern::header_text(value)?;
                Some((
                    format!("Mcp-Param-{header}"),
                    mcp_protocol::modern::encode_header_value(&text),
                ))
            })
            .collect()
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
    /// Connects, finds out which era the server speaks (see the crate's documentation),
    /// initializes a resumable session with a 2025 server, and starts the driver. Fails at
    /// once when the first connection, the probe or `initialize` fails (reconnecting is
    /// for later drops).
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
            modern: Mutex::new(None),
            log_level: Mutex::new(None),
            http: options.url.starts_with("http://") || options.url.starts_with("https://"),
            header_params: Mutex::new(None),
            listens: Mutex::new(HashMap::new()),
            handler: options.handler.clone(),
            reconnect: options.reconnect.clone(),
        });
        let (out, out_rx) = mpsc::channel(256);
        let (cancels, cancels_rx) = mpsc::unbounded_channel();
        if shared.http {
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

    /// The server's answer to `initialize` (of the session now running); with a server of
    /// 2026-07-28, what its `server/discover` said, in the same shape.
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

    /// Whether the client speaks 2026-07-28 with the server (stateless requests), rather
    /// than a 2025 session.
    pub fn is_modern(&self) -> bool {
        self.shared.is_modern()
    }

    /// Sends a request and waits for its answer (with a server of 2026-07-28, after the
    /// rounds of input its tool asked for). Dropping the future before the answer cancels
    /// the request on the server.
    pub async fn request(&self, method: &str, params: Option<Value>) -> Result<Value, Error> {
        let params = params.unwrap_or_else(|| json!({}));
        let waiting = self.start(method, &params, None).await?;
        self.clone()
            .rounds(method.to_owned(), params, waiting, None, false)
            .await
    }

    /// Sends `method` with `params`; the wait for its answer.
    async fn start(
        &self,
        method: &str,
        params: &Value,
        progress: Option<mpsc::Sender<Progress>>,
    ) -> Result<Waiting, Error> {
        self.start_with(method, params, progress, false).await
    }

    /// [`Client::start`], declaring the tasks extension for this request when `tasks`.
    async fn start_with(
        &self,
        method: &str,
        params: &Value,
        progress: Option<mpsc::Sender<Progress>>,
        tasks: bool,
    ) -> Result<Waiting, Error> {
        let (id, reply) = self
            .send_request(method, params.clone(), progress, tasks)
            .await?;
        Ok(Waiting {
            id: Some(id),
            reply,
            cancels: Some(self.cancels.clone()),
        })
    }

    /// Waits for the answer of a request sent with `params`; while it asks for input (a
    /// modern server's multi-round-trip request), answers with the handler and retries.
    async fn rounds(
        self,
        method: String,
        mut params: Value,
        mut waiting: Waiting,
        progress: Option<mpsc::Sender<Progress>>,
        tasks: bool,
    ) -> Reply {
        for _ in 0..modern::MAX_ROUNDS {
            let value = waiting.wait().await?;
            if !self.shared.is_modern() || !modern::asks_for_input(&value) {
                return Ok(value);
            }
            params = modern::answer_inputs(self.shared.handler.as_ref(), &params, &value).await?;
            // A retry declares what the first request did.
            waiting = self
                .start_with(&method, &params, progress.clone(), tasks)
                .await?;
        }
        let value = waiting.wait().await?;
        if self.shared.is_modern() && modern::asks_for_input(&value) {
            return Err(Error::Decode(format!(
                "{method}: the server still asks for input after {} rounds",
                modern::MAX_ROUNDS
            )));
        }
        Ok(value)
    }

    async fn send_request(
        &self,
        method: &str,
        mut params: Value,
        progress: Option<mpsc::Sender<Progress>>,
        tasks: bool,
    ) -> Result<(RequestId, oneshot::Receiver<Reply>), Error> {
        let id = RequestId::Number(self.shared.next_id.fetch_add(1, Ordering::Relaxed));
        let modern_meta = lock(&self.shared.modern).clone();
        if let Some(object) = params.as_object_mut() {
            let meta = object.entry("_meta").or_insert_with(|| json!({}));
            if let Some(meta) = meta.as_object_mut() {
                if progress.is_some() {
                    meta.insert("progressToken".to_owned(), id.to_value());
                }
                if let Some(stamp) = modern_meta {
                    meta.extend(stamp);
                    if tasks
                        && let Some(capabilities) = meta
                            .get_mut(mcp_protocol::modern::CLIENT_CAPABILITIES)
                            .and_then(Value::as_object_mut)
                    {
                        let extensions = capabilities
                            .entry("extensions")
                            .or_insert_with(|| json!({}));
                        if let Some(extensions) = extensions.as_object_mut() {
                            extensions.insert(
                                mcp_protocol::modern::TASKS_EXTENSION.to_owned(),
                                json!({}),
                            );
                        }
                    }
                    if let Some(level) = lock(&self.shared.log_level).clone() {
                        meta.insert(mcp_protocol::modern::LOG_LEVEL.to_owned(), json!(level));
                    }
                }
                if meta.is_empty() {
                    object.remove("_meta");
                }
            }
        }
        let progress_tx = progress;
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
        Ok((id, reply_rx))
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
                None => break,
            }
        }
        // What calls over HTTP mirror in headers.
        let params = tools
            .iter()
            .map(|tool| {
                let params = mcp_protocol::modern::header_params(&tool.input_schema);
                (tool.name.clone(), params)
            })
            .filter(|(_, params)| !params.is_empty())
            .collect();
        *lock(&self.shared.header_params) = Some(params);
        Ok(tools)
    }

    /// Before a modern call over HTTP: the tools' header annotations are known (a server
    /// refuses a call that does not mirror its annotated parameters).
    async fn know_header_params(&self) {
        let known = lock(&self.shared.header_params).is_some();
        if self.shared.http
            && self.shared.is_modern()
            && !known
            && let Err(e) = self.list_tools().await
        {
            // The call goes out anyway: the server says if it misses a header.
            tracing::debug!(error = %e, "cannot list the tools for their header parameters");
        }
    }

    /// Starts a tool call that reports progress; see [`Call`].
    pub async fn call(&self, name: &str, arguments: Map<String, Value>) -> Result<Call, Error> {
        self.know_header_params().await;
        let params = json!({"name": name, "arguments": arguments});
        let (tx, progress) = mpsc::channel(64);
        let waiting = self
            .start(methods::TOOLS_CALL, &params, Some(tx.clone()))
            .await?;
        let id = waiting.id.clone();
        let reply = self.clone().rounds(
            methods::TOOLS_CALL.to_owned(),
            params,
            waiting,
            Some(tx),
            false,
        );
        Ok(Call {
            id,
            reply: Box::pin(reply),
            progress: Some(progress),
            done: false,
        })
    }

    /// Calls a tool and waits for its result (progress is not reported).
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<CallToolResult, Error> {
        self.know_header_params().await;
        let params = json!({"name": name, "arguments": arguments});
        let value = self.request(methods::TOOLS_CALL, Some(params)).await?;
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
    /// With a server of 2026-07-28, that is a `subscriptions/listen` request that stays open
    /// (opened again after a dropped connection) until [`Client::unsubscribe`] or
    /// [`Client::close`]; this returns once the server acknowledged it.
    pub async fn subscribe(&self, uri: &str) -> Result<(), Error> {
        if !self.shared.is_modern() {
            return self
                .request(methods::RESOURCES_SUBSCRIBE, Some(json!({"uri": uri})))
                .await
                .map(drop);
        }
        let params = json!({"notifications": {"resourceSubscriptions": [uri]}});
        let waiting = self.listen(uri, &params).await?;
        let task = tokio::spawn(self.clone().keep_listening(params, waiting));
        if let Some(old) = lock(&self.shared.listens).insert(uri.to_owned(), task.abort_handle()) {
            old.abort();
        }
        Ok(())
    }

    /// Opens a `subscriptions/listen` stream for `uri` and waits for its acknowledgement.
    async fn listen(&self, uri: &str, params: &Value) -> Result<Waiting, Error> {
        let mut notes = self.notifications();
        let mut waiting = self
            .start(methods::SUBSCRIPTIONS_LISTEN, params, None)
            .await?;
        let id = waiting.id.clone().map(|id| id.to_value());
        let acknowledged = tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                tokio::select! {
                    note = notes.recv() => match note {
                        Ok(note) if note.method == methods::SUBSCRIPTIONS_ACKNOWLEDGED => {
                            let params = note.params.unwrap_or_default();
                            let tag = params
                                .get("_meta")
                                .and_then(|m| m.get(mcp_protocol::modern::SUBSCRIPTION_ID));
                            if tag == id.as_ref() {
                                return Ok(params);
                            }
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => {
                            return Err(Error::Closed(closed_reason(&self.shared)));
                        }
                    },
                    answer = waiting.wait() => {
                        return Err(answer.err().unwrap_or_else(|| {
                            Error::Decode("subscriptions/listen ended before it was acknowledged".to_owned())
                        }));
                    }
                }
            }
        })
        .await
        .map_err(|_| Error::Decode("subscriptions/listen was not acknowledged in time".to_owned()))??;
        let honoured = acknowledged
            .pointer("/notifications/resourceSubscriptions")
            .and_then(Value::as_array)
            .is_some_and(|uris| uris.iter().any(|u| u == uri));
        if !honoured {
            // Dropping `waiting` ends the stream.
            return Err(Error::Rpc(ErrorObject::invalid_params(format_args!(
                "the server does not send updates of `{uri}`"
            ))));
        }
        Ok(waiting)
    }

    /// Keeps a subscription's stream open: when it ends (a dropped connection, a server
    /// shutting down), opens it again after a pause, until the client closes.
    async fn keep_listening(self, params: Value, mut waiting: Waiting) {
        let uri = params["notifications"]["resourceSubscriptions"][0]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let policy = self.shared.reconnect.clone();
        let mut delay = policy.initial;
        loop {
            let started = tokio::time::Instant::now();
            match waiting.wait().await {
                Ok(_) | Err(Error::Interrupted(_) | Error::SessionLost(_)) => {}
                Err(Error::Closed(_)) => return,
                Err(e) => {
                    tracing::warn!(%uri, error = %e, "the subscription ended");
                    return;
                }
            }
            if started.elapsed() > policy.max {
                delay = policy.initial;
            }
            loop {
                tokio::time::sleep(driver::jitter(delay)).await;
                delay = (delay * 2).min(policy.max);
                if matches!(*self.shared.status.borrow(), Status::Closed(_)) {
                    return;
                }
                match self.listen(&uri, &params).await {
                    Ok(next) => {
                        waiting = next;
                        break;
                    }
                    Err(Error::Closed(_)) => return,
                    Err(e) => tracing::debug!(%uri, error = %e, "cannot subscribe again yet"),
                }
            }
        }
    }

    /// Ends a subscription.
    pub async fn unsubscribe(&self, uri: &str) -> Result<(), Error> {
        if !self.shared.is_modern() {
            return self
                .request(methods::RESOURCES_UNSUBSCRIBE, Some(json!({"uri": uri})))
                .await
                .map(drop);
        }
        // Aborting drops the request's wait, which cancels it on the server.
        if let Some(task) = lock(&self.shared.listens).remove(uri) {
            task.abort();
        }
        Ok(())
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

    /// Asks for log messages at `level` and above: of the session, or with a server of
    /// 2026-07-28 of every request from now on (its `_meta` says the level).
    pub async fn set_log_level(&self, level: &str) -> Result<(), Error> {
        if self.shared.is_modern() {
            *lock(&self.shared.log_level) = Some(level.to_owned());
            return Ok(());
        }
        self.request(methods::LOGGING_SET_LEVEL, Some(json!({"level": level})))
            .await
            .map(drop)
    }

    /// Closes the connection (close 1000) and stops reconnecting. Calls in flight fail
    /// with [`Error::Closed`].
    pub async fn close(&self) {
        for (_, task) in lock(&self.shared.listens).drain() {
            task.abort();
        }
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
/// cancels the call on the server (`notifications/cancelled`, or over HTTP with a server of
/// 2026-07-28, closing the request's stream).
pub struct Call {
    /// The first request's id, until the result.
    id: Option<RequestId>,
    /// The result, after the rounds of input the call asks for.
    reply: futures_util::future::BoxFuture<'static, Reply>,
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
                reply = &mut self.reply => reply,
            },
            None => (&mut self.reply).await,
        };
        self.id = None;
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

    /// The request id, which is also the progress token (of the first round, when the
    /// call asks for input), until the result.
    pub fn id(&self) -> Option<&RequestId> {
        self.id.as_ref()
    }
}

fn decode_call(reply: Reply) -> Result<CallToolResult, Error> {
    reply.and_then(|value| {
        serde_json::from_value(value).map_err(|e| Error::Decode(format!("tools/call: {e}")))
    })
}
