//! The Streamable HTTP transport (`http://` or `https://` endpoints). A server that answers
//! the `server/discover` probe as one of 2026-07-28 is spoken to statelessly (see
//! [`crate::stateless`]); with any other, the client initializes a 2025 session, as follows.
//!
//! Every message is a POST; an answer comes as JSON or as an SSE stream (progress first); a standing GET
//! stream carries what the server sends on its own (notifications, its requests).
//!
//! Resuming: a POST stream that breaks is continued with a GET carrying `Last-Event-ID`;
//! when the server no longer knows the HTTP session (a restart), the client initializes
//! again with `mcpSessionId` and `lastSeq`, and what it missed comes on the GET stream.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, Uri};
use mcp_protocol::{ErrorObject, RequestId, error_codes, methods};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::modern::{self, Probe};
use crate::stateless::Stateless;
use crate::{CONNECT_TIMEOUT, Error, Options, Outgoing, Shared, Status, dispatch};

/// The largest SSE event or JSON answer read.
const MAX_EVENT: usize = 16 << 20;

/// What every task of the transport shares.
struct Core {
    options: Options,
    shared: Arc<Shared>,
    out: mpsc::Sender<Outgoing>,
    endpoint: Uri,
    /// The HTTP session (`Mcp-Session-Id`) and its negotiated revision (sent as
    /// `MCP-Protocol-Version`), and the resumable session's id.
    session: Mutex<Option<(String, String)>>,
    resumable: Mutex<Option<String>>,
    /// The last event id seen on the GET stream.
    last_event: Mutex<Option<String>>,
    /// One reconnection at a time.
    reconnecting: tokio::sync::Mutex<u64>,
    /// Bumped by every successful (re)initialization.
    generation: Mutex<u64>,
    closed: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Connects (initializes a session over POST), then runs the transport.
pub(crate) async fn start(
    options: Options,
    shared: Arc<Shared>,
    out: mpsc::Sender<Outgoing>,
    out_rx: mpsc::Receiver<Outgoing>,
    cancels: mpsc::UnboundedReceiver<RequestId>,
) -> Result<(), Error> {
    let endpoint: Uri = options
        .url
        .parse()
        .map_err(|e| Error::Connect(format!("{}: {e}", options.url)))?;
    if !options.legacy {
        match Stateless::probe(&options, &endpoint).await? {
            Probe::Modern(result) => {
                shared.set_modern(Some(modern::request_meta(&options)));
                shared.set_initialized(*result);
                let transport = Stateless::new(options, shared, out, endpoint);
                tokio::spawn(transport.run(out_rx, cancels));
                return Ok(());
            }
            Probe::Refused(error) => return Err(Error::Rpc(error)),
            Probe::Legacy(why) => {
                tracing::info!(%why, "a server of the 2025 revisions: initializing a session");
            }
        }
    }
    let core = Arc::new(Core {
        options,
        shared,
        out,
        endpoint,
        session: Mutex::new(None),
        resumable: Mutex::new(None),
        last_event: Mutex::new(None),
        reconnecting: tokio::sync::Mutex::new(0),
        generation: Mutex::new(0),
        closed: Default::default(),
    });
    core.initialize(false).await.map_err(|e| match e {
        Failure::Refused(error) => Error::Rpc(error),
        other => Error::Connect(other.to_string()),
    })?;
    tokio::spawn(Arc::clone(&core).standing_stream());
    tokio::spawn(core.run(out_rx, cancels));
    Ok(())
}

/// Why an exchange failed.
#[derive(Debug)]
enum Failure {
    /// The server does not know the HTTP session (404): initialize again.
    SessionGone,
    /// The server answered `initialize` with an error.
    Refused(ErrorObject),
    /// The request did not get through (connection, TLS).
    Network(String),
    /// The server refused the request with this status and text.
    Status(StatusCode, String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SessionGone => write!(f, "the server no longer knows the session"),
            Self::Refused(error) => write!(f, "{error}"),
            Self::Network(why) => write!(f, "{why}"),
            Self::Status(status, body) => write!(f, "HTTP {status}: {body}"),
        }
    }
}

impl Core {
    /// Sends a request over one new connection; the response, body unread.
    async fn exchange(
        &self,
        method: Method,
        extra: &[(&str, String)],
        body: Option<String>,
    ) -> Result<Response<Incoming>, Failure> {
        let mut builder = Request::builder()
            .method(method)
            .uri(self.endpoint.path_and_query().map_or("/", |p| p.as_str()))
            .header(
                hyper::header::HOST,
                self.endpoint.authority().map_or("", |a| a.as_str()),
            );
        if let Some(token) = &self.options.token {
            builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some((session, version)) = lock(&self.session).clone() {
            builder = builder
                .header("Mcp-Session-Id", session)
                .header("MCP-Protocol-Version", version);
        }
        for (name, value) in extra {
            builder = builder.header(*name, value);
        }
        if body.is_some() {
            builder = builder
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(hyper::header::ACCEPT, "application/json, text/event-stream");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Failure::Network(e.to_string()))?;
        let response = tokio::time::timeout(
            CONNECT_TIMEOUT,
            crate::http::open(&self.endpoint, request, &self.options.extra_roots),
        )
        .await
        .map_err(|_| Failure::Network("no answer in time".to_owned()))?
        .map_err(|e| Failure::Network(e.to_string()))?;
        match response.status() {
            StatusCode::NOT_FOUND => Err(Failure::SessionGone),
            status if status.is_success() => Ok(response),
            status => {
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
                    .unwrap_or_default();
                Err(Failure::Status(status, body))
            }
        }
    }

    /// Initializes a session (resuming the last one when `resume`).
    async fn initialize(&self, resume: bool) -> Result<(), Failure> {
        let resumable = lock(&self.resumable).clone();
        let after = self.shared.resume_after();
        let resume_from = resumable
            .as_deref()
            .filter(|_| resume)
            .map(|id| (id, after));
        let message = dispatch::initialize_request(&self.options, resume_from);
        *lock(&self.session) = None;
        let response = self.exchange(Method::POST, &[], Some(message)).await?;
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut answer = None;
        self.read_body(response, |value| {
            if value.get("id") == Some(&json!(dispatch::INITIALIZE_ID)) {
                answer = Some(value);
                None
            } else {
                Some(value)
            }
        })
        .await;
        let answer =
            answer.ok_or_else(|| Failure::Network("no answer to initialize".to_owned()))?;
        let (result, id) = dispatch::initialize_answer(&answer).map_err(|e| match e {
            dispatch::Refused::Error(error) => Failure::Refused(error),
            dispatch::Refused::Malformed(why) => Failure::Network(why),
        })?;
        *lock(&self.session) = session.map(|s| (s, result.protocol_version.clone()));
        if !resume {
            *lock(&self.resumable) = id.clone();
            self.shared.set_session(id);
            self.shared.reset_seq();
        }
        *lock(&self.last_event) = None;
        self.shared.set_initialized(result);
        *lock(&self.generation) += 1;
        self.exchange(Method::POST, &[], Some(dispatch::initialized()))
            .await?;
        Ok(())
    }

    /// Reads a JSON or SSE body, giving each message to `take`; what `take` hands back is
    /// handled as usual. Returns the last SSE event id seen and whether the body ended
    /// cleanly.
    async fn read_body(
        &self,
        response: Response<Incoming>,
        mut take: impl FnMut(Value) -> Option<Value>,
    ) -> (Option<String>, bool) {
        let mut messages = Messages::new(response);
        while let Some(value) = messages.next().await {
            if let Some(value) = take(value) {
                self.handle(value).await;
            }
        }
        messages.ended()
    }

    async fn handle(&self, value: Value) {
        let handler = self.options.handler.clone();
        if let Some(answer) = dispatch::handle(&self.shared, handler, &self.out, value) {
            let _ = self.out.send(Outgoing::Text(answer)).await;
        }
    }

    /// POSTs one message and handles what comes back; on a broken stream, continues it with
    /// a GET; when the session is gone or the server unreachable, reconnects and retries.
    async fn post(self: Arc<Self>, text: String) {
        loop {
            if self.closed.is_cancelled() {
                return;
            }
            let generation = *lock(&self.generation);
            match self.exchange(Method::POST, &[], Some(text.clone())).await {
                Ok(response) => {
                    let (last_id, clean) = self.read_body(response, Some).await;
                    if !clean && let Some(id) = last_id {
                        // The stream broke: what is left of it comes on a GET.
                        tokio::spawn(Arc::clone(&self).resume_stream(id));
                    }
                    return;
                }
                Err(failure) => self.reconnect_or_close(generation, failure).await,
            }
        }
    }

    /// Reconnects after `failure`, unless another task already did since `generation`.
    async fn reconnect(&self, generation: u64, failure: Failure) -> Result<(), String> {
        let _one = self.reconnecting.lock().await;
        if *lock(&self.generation) != generation {
            return Ok(());
        }
        let policy = self.options.reconnect.clone();
        let mut delay = policy.initial;
        let mut reason = failure.to_string();
        let mut session_gone = matches!(failure, Failure::SessionGone);
        for attempt in 1.. {
            if policy.attempts.is_some_and(|max| attempt > max) {
                return Err(format!(
                    "gave up reconnecting after {} attempts: {reason}",
                    attempt - 1
                ));
            }
            if self.closed.is_cancelled() {
                return Err("closed by the client".to_owned());
            }
            self.shared.set_status(Status::Reconnecting {
                attempt,
                reason: reason.clone(),
            });
            tokio::time::sleep(crate::driver::jitter(delay)).await;
            delay = (delay * 2).min(policy.max);
            if !session_gone {
                // Is the server back, with the session? A ping says.
                let ping =
                    json!({"jsonrpc": "2.0", "id": "reconnect-ping", "method": methods::PING})
                        .to_string();
                match self.exchange(Method::POST, &[], Some(ping)).await {
                    Ok(response) => {
                        let _ = response.into_body().collect().await;
                        *lock(&self.generation) += 1;
                        self.shared.set_status(Status::Connected);
                        return Ok(());
                    }
                    Err(Failure::SessionGone) => session_gone = true,
                    Err(other) => {
                        reason = other.to_string();
                        continue;
                    }
                }
            }
            match self.initialize(true).await {
                Ok(()) => {
                    self.shared.set_status(Status::Connected);
                    return Ok(());
                }
                Err(Failure::Refused(error))
                    if error.code == error_codes::SESSION_NOT_RESUMABLE =>
                {
                    self.shared.fail_all(|| Error::SessionLost(error.clone()));
                    *lock(&self.resumable) = None;
                    if self.initialize(false).await.is_ok() {
                        self.shared.set_status(Status::Connected);
                        return Ok(());
                    }
                }
                Err(other) => reason = other.to_string(),
            }
        }
        Err(reason)
    }

    /// A GET that continues the stream whose last event was `id`. When the server is gone
    /// or forgot the session, reconnecting resumes the session instead, and what is left
    /// comes on the standing stream.
    async fn resume_stream(self: Arc<Self>, id: String) {
        let generation = *lock(&self.generation);
        let headers = [
            ("Accept", "text/event-stream".to_owned()),
            ("Last-Event-ID", id),
        ];
        match self.exchange(Method::GET, &headers, None).await {
            Ok(response) => {
                self.read_body(response, Some).await;
            }
            Err(failure) => self.reconnect_or_close(generation, failure).await,
        }
    }

    /// Reconnects; when that fails for good, closes the client.
    async fn reconnect_or_close(&self, generation: u64, failure: Failure) {
        if let Err(why) = self.reconnect(generation, failure).await {
            self.shared.set_status(Status::Closed(why.clone()));
            self.shared.fail_all(|| Error::Closed(why.clone()));
            self.closed.cancel();
        }
    }

    /// The standing GET stream: what the server sends on its own. Reopened (after the last
    /// event seen) whenever it ends, until the client closes.
    async fn standing_stream(self: Arc<Self>) {
        while !self.closed.is_cancelled() {
            let generation = *lock(&self.generation);
            let mut headers = vec![("Accept", "text/event-stream".to_owned())];
            if let Some(id) = lock(&self.last_event).clone() {
                headers.push(("Last-Event-ID", id));
            }
            let opened = tokio::select! {
                () = self.closed.cancelled() => return,
                opened = self.exchange(Method::GET, &headers, None) => opened,
            };
            match opened {
                Ok(response) => {
                    let read = self.read_body(response, Some);
                    let (last, clean) = tokio::select! {
                        () = self.closed.cancelled() => return,
                        read = read => read,
                    };
                    if last.is_some() {
                        *lock(&self.last_event) = last;
                    }
                    if clean {
                        // The server ended it: open it again, after the pause SSE advises.
                        tokio::select! {
                            () = self.closed.cancelled() => return,
                            () = tokio::time::sleep(self.options.reconnect.initial) => {}
                        }
                    } else {
                        // The connection broke: is the server still there?
                        let failure = Failure::Network("the event stream broke".to_owned());
                        self.reconnect_or_close(generation, failure).await;
                    }
                }
                // A server without the standing stream: nothing to wait for.
                Err(Failure::Status(StatusCode::METHOD_NOT_ALLOWED, _)) => return,
                Err(failure) => self.reconnect_or_close(generation, failure).await,
            }
        }
    }

    async fn run(
        self: Arc<Self>,
        mut out: mpsc::Receiver<Outgoing>,
        mut cancels: mpsc::UnboundedReceiver<RequestId>,
    ) {
        loop {
            tokio::select! {
                message = out.recv() => match message {
                    Some(Outgoing::Text(text)) => {
                        tokio::spawn(Arc::clone(&self).post(text));
                    }
                    Some(Outgoing::Close(done)) => {
                        self.close(&mut cancels).await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.close(&mut cancels).await;
                        return;
                    }
                },
                Some(id) = cancels.recv() => {
                    self.shared.answer(&id, Err(Error::Closed("cancelled".to_owned())));
                    let cancel = json!({"jsonrpc": "2.0", "method": methods::CANCELLED,
                        "params": {"requestId": id.to_value(), "reason": "the caller stopped waiting"}});
                    tokio::spawn(Arc::clone(&self).post(cancel.to_string()));
                }
                () = self.closed.cancelled() => return,
            }
        }
    }

    /// Ends the session on the server (DELETE), which stops whatever still runs.
    async fn close(&self, cancels: &mut mpsc::UnboundedReceiver<RequestId>) {
        while cancels.try_recv().is_ok() {}
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.exchange(Method::DELETE, &[], None),
        )
        .await;
        self.closed.cancel();
        self.shared
            .set_status(Status::Closed("closed by the client".to_owned()));
        self.shared
            .fail_all(|| Error::Closed("closed by the client".to_owned()));
    }
}

/// The messages of a JSON or SSE body (by its content type), one at a time.
pub(crate) struct Messages {
    body: Option<Incoming>,
    sse: bool,
    buffer: Vec<u8>,
    /// The last SSE event id seen.
    last_id: Option<String>,
    /// Whether the body ended cleanly (once it ended).
    clean: bool,
}

impl Messages {
    pub(crate) fn new(response: Response<Incoming>) -> Self {
        let sse = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        Self {
            body: Some(response.into_body()),
            sse,
            buffer: Vec::new(),
            last_id: None,
            clean: false,
        }
    }

    /// The next message; `None` once the body ended (see [`Messages::ended`]).
    pub(crate) async fn next(&mut self) -> Option<Value> {
        let body = self.body.as_mut()?;
        if !self.sse {
            let bytes = Limited::new(self.body.take()?, MAX_EVENT).collect().await;
            self.clean = bytes.is_ok();
            return bytes
                .ok()
                .and_then(|b| serde_json::from_slice(&b.to_bytes()).ok());
        }
        loop {
            while let Some(end) = find_event_end(&self.buffer) {
                let event: Vec<u8> = self.buffer.drain(..end).collect();
                let (id, data) = parse_event(&event);
                if id.is_some() {
                    self.last_id = id;
                }
                if let Ok(value) = serde_json::from_str::<Value>(&data) {
                    return Some(value);
                }
            }
            let frame = match body.frame().await {
                None => {
                    self.clean = true;
                    self.body = None;
                    return None;
                }
                Some(Err(_)) => {
                    self.body = None;
                    return None;
                }
                Some(Ok(frame)) => frame,
            };
            if let Ok(data) = frame.into_data() {
                self.buffer.extend_from_slice(&data);
                if self.buffer.len() > MAX_EVENT {
                    self.body = None;
                    return None;
                }
            }
        }
    }

    /// The last SSE event id seen, and whether the body ended cleanly.
    pub(crate) fn ended(self) -> (Option<String>, bool) {
        (self.last_id, self.clean)
    }
}

/// Where the first SSE event in `buffer` ends (after its blank line).
fn find_event_end(buffer: &[u8]) -> Option<usize> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// An SSE event's id and data (data lines joined with newlines).
fn parse_event(event: &[u8]) -> (Option<String>, String) {
    let text = String::from_utf8_lossy(event);
    let mut id = None;
    let mut data = Vec::new();
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("id:") {
            id = Some(value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push(value.strip_prefix(' ').unwrap_or(value).to_owned());
        }
    }
    (id, data.join("\n"))
}
