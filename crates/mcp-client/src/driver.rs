//! The WebSocket and stdio transports: the task that owns the connection (a socket, or a
//! child process's pipes). It finds out which era the server speaks (the `server/discover`
//! probe, then `initialize` for a legacy server), reads and writes messages, answers server
//! requests, and reconnects when the connection drops: resuming a 2025 session, or probing
//! again for 2026-07-28 (whose requests in flight fail with [`Error::Interrupted`]). A
//! server process that exits is started again, with the same backoff, and the requests it
//! had fail with [`Error::Interrupted`]: a process keeps nothing for the next one.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use mcp_protocol::{ErrorObject, RequestId, error_codes, methods};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::modern::{self, Probe};
use crate::stdio::{Incoming, Process};
use crate::{CONNECT_TIMEOUT, Error, Options, Outgoing, Shared, Status, dispatch};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What carries the messages: a WebSocket, or a server process's standard input and output.
enum Wire {
    WebSocket(Box<Socket>),
    Stdio(Box<Process>),
}

impl Wire {
    /// The next message, or why the connection ended.
    async fn next(&mut self) -> Incoming {
        match self {
            Self::WebSocket(socket) => loop {
                match socket.next().await {
                    Some(Ok(Frame::Text(text))) => return Incoming::Text(text.as_str().to_owned()),
                    Some(Ok(Frame::Close(close))) => {
                        return Incoming::Ended(close_reason(close.as_ref()));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Incoming::Ended(e.to_string()),
                    None => return Incoming::Ended("the connection ended".to_owned()),
                }
            },
            Self::Stdio(process) => process.next().await,
        }
    }

    async fn send(&mut self, text: String) -> Result<(), String> {
        match self {
            Self::WebSocket(socket) => socket
                .send(Frame::text(text))
                .await
                .map_err(|e| e.to_string()),
            Self::Stdio(process) => process.send(&text).await,
        }
    }

    /// Closes it: a close frame, or the server process stopped.
    async fn close(&mut self) {
        match self {
            Self::WebSocket(socket) => {
                let _ = WebSocketStream::close(
                    socket.as_mut(),
                    Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "client closed".into(),
                    }),
                )
                .await;
            }
            Self::Stdio(process) => process.close().await,
        }
    }
}

pub(crate) struct Driver {
    options: Options,
    shared: Arc<Shared>,
    /// For the answers to server requests, which handlers produce on their own tasks.
    out: mpsc::Sender<Outgoing>,
    socket: Wire,
    /// The resumable session's id.
    session: Option<String>,
    /// Whether the server speaks 2026-07-28 (no session).
    modern: bool,
}

/// Why a connection ended.
enum Ended {
    /// The client was closed.
    Closed,
    /// The connection dropped (or the server closed it): reconnect.
    Dropped(String),
}

impl Driver {
    /// Connects, and speaks 2026-07-28 or initializes a new session.
    pub(crate) async fn start(
        options: Options,
        shared: Arc<Shared>,
        out: mpsc::Sender<Outgoing>,
    ) -> Result<Self, Error> {
        let socket = open(&options).await?;
        let mut driver = Self {
            options,
            shared,
            out,
            socket,
            session: None,
            modern: false,
        };
        driver.establish().await.map_err(|e| match e {
            Attempt::Refused(error) => Error::Rpc(error),
            Attempt::Failed(why) => Error::Connect(why),
        })?;
        Ok(driver)
    }

    /// On a new connection: probes with `server/discover` (unless the options say legacy);
    /// a modern server is spoken to per request from now on, any other gets `initialize`
    /// (on the same socket, or a new one when the probe closed it).
    async fn establish(&mut self) -> Result<(), Attempt> {
        if !self.options.legacy {
            match self.probe().await? {
                Probe::Modern(result) => {
                    self.modern = true;
                    self.session = None;
                    self.shared.set_session(None);
                    self.shared
                        .set_modern(Some(modern::request_meta(&self.options)));
                    self.shared.set_initialized(*result);
                    return Ok(());
                }
                Probe::Refused(error) => return Err(Attempt::Refused(error)),
                Probe::Legacy(why) => {
                    tracing::info!(%why, "a server of the 2025 revisions: initializing a session");
                }
            }
        }
        self.modern = false;
        self.shared.set_modern(None);
        self.initialize(false).await
    }

    /// Sends `server/discover` and reads its answer. A connection the server closed
    /// instead is opened again for `initialize`.
    async fn probe(&mut self) -> Result<Probe, Attempt> {
        let probe = modern::discover_request(&self.options).to_string();
        self.send(probe).await.map_err(Attempt::Failed)?;
        let answer = tokio::time::timeout(modern::PROBE_TIMEOUT, async {
            loop {
                let Incoming::Text(text) = self.socket.next().await else {
                    return None;
                };
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    return None;
                };
                if value.get("id") == Some(&json!(modern::DISCOVER_ID)) {
                    return Some(value);
                }
                self.handle(value).await;
            }
        })
        .await;
        match answer {
            Ok(Some(answer)) => Ok(modern::read_discover(&answer)),
            Ok(None) => {
                self.socket = open(&self.options)
                    .await
                    .map_err(|e| Attempt::Failed(e.to_string()))?;
                Ok(Probe::Legacy(
                    "the server closed the connection at server/discover".to_owned(),
                ))
            }
            Err(_) => Ok(Probe::Legacy(
                "no answer to server/discover in time".to_owned(),
            )),
        }
    }

    /// Sends `initialize` (resuming the session when `resume`) and waits for its answer.
    /// Messages of the session that come first (none should) are handled as usual.
    async fn initialize(&mut self, resume: bool) -> Result<(), Attempt> {
        let after = self.shared.resume_after();
        let resume_from = self
            .session
            .as_deref()
            .filter(|_| resume)
            .map(|id| (id, after));
        let message = dispatch::initialize_request(&self.options, resume_from);
        self.send(message).await.map_err(Attempt::Failed)?;
        let answer = tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                let text = match self.socket.next().await {
                    Incoming::Text(text) => text,
                    Incoming::Ended(why) => return Err(Attempt::Failed(why)),
                };
                let value: Value = serde_json::from_str(&text)
                    .map_err(|e| Attempt::Failed(format!("not JSON: {e}")))?;
                if value.get("id") == Some(&json!(dispatch::INITIALIZE_ID)) {
                    return Ok(value);
                }
                self.handle(value).await;
            }
        })
        .await
        .map_err(|_| Attempt::Failed("no answer to initialize in time".to_owned()))??;
        let (result, session) = dispatch::initialize_answer(&answer).map_err(|e| match e {
            dispatch::Refused::Error(error) => Attempt::Refused(error),
            dispatch::Refused::Malformed(why) => Attempt::Failed(why),
        })?;
        if !resume {
            self.session = session;
            self.shared.reset_seq();
            self.shared.set_session(self.session.clone());
            if self.session.is_none() && self.options.stdio.is_none() {
                tracing::warn!(
                    "the server does not offer resumable sessions: a dropped connection loses the calls in flight"
                );
            }
        }
        self.shared.set_initialized(result);
        self.send(dispatch::initialized())
            .await
            .map_err(Attempt::Failed)?;
        Ok(())
    }

    async fn send(&mut self, text: String) -> Result<(), String> {
        self.socket.send(text).await
    }

    pub(crate) async fn run(
        mut self,
        mut out: mpsc::Receiver<Outgoing>,
        mut cancels: mpsc::UnboundedReceiver<RequestId>,
    ) {
        loop {
            let reason = match self.serve(&mut out, &mut cancels).await {
                Ended::Closed => {
                    self.shared
                        .set_status(Status::Closed("closed by the client".to_owned()));
                    self.shared
                        .fail_all(|| Error::Closed("closed by the client".to_owned()));
                    return;
                }
                Ended::Dropped(reason) => reason,
            };
            tracing::info!(%reason, "connection lost; reconnecting");
            if let Err(why) = self.reconnect(reason).await {
                self.shared.set_status(Status::Closed(why.clone()));
                self.shared.fail_all(|| Error::Closed(why.clone()));
                return;
            }
        }
    }

    /// Moves messages both ways until the connection ends.
    async fn serve(
        &mut self,
        out: &mut mpsc::Receiver<Outgoing>,
        cancels: &mut mpsc::UnboundedReceiver<RequestId>,
    ) -> Ended {
        loop {
            tokio::select! {
                incoming = self.socket.next() => match incoming {
                    Incoming::Text(text) => match serde_json::from_str::<Value>(&text) {
                        Ok(value) => self.handle(value).await,
                        Err(e) => tracing::warn!(error = %e, "the server sent a message that is not JSON"),
                    },
                    Incoming::Ended(why) => return Ended::Dropped(why),
                },
                message = out.recv() => match message {
                    Some(Outgoing::Text(text)) => {
                        if let Err(e) = self.send(text.clone()).await {
                            // Sent again after the resume: the server never had it. A
                            // modern request fails instead, with the others in flight.
                            if !self.modern {
                                self.requeue(text);
                            }
                            return Ended::Dropped(e);
                        }
                    }
                    Some(Outgoing::Close(done)) => {
                        self.close(cancels).await;
                        let _ = done.send(());
                        return Ended::Closed;
                    }
                    // Every client handle is gone: nobody can use the session any more.
                    None => {
                        self.close(cancels).await;
                        return Ended::Closed;
                    }
                },
                Some(id) = cancels.recv() => {
                    if let Err(e) = self.cancel(&id, "the caller stopped waiting").await {
                        return Ended::Dropped(e);
                    }
                }
            }
        }
    }

    /// A message that could not be sent goes out first after the resume.
    fn requeue(&mut self, text: String) {
        let out = self.out.clone();
        tokio::spawn(async move {
            let _ = out.send(Outgoing::Text(text)).await;
        });
    }

    /// Tells the server to stop the request `id`, and fails its wait.
    async fn cancel(&mut self, id: &RequestId, reason: &str) -> Result<(), String> {
        self.shared
            .answer(id, Err(Error::Closed("cancelled".to_owned())));
        let cancel = json!({"jsonrpc": "2.0", "method": methods::CANCELLED,
            "params": {"requestId": id.to_value(), "reason": reason}});
        self.send(cancel.to_string()).await
    }

    /// Closes for good. A resumable session outlives its connection, calls and all, so
    /// every request still waiting (and every cancellation not yet sent) is cancelled on
    /// the server first: a closed client leaves nothing running.
    async fn close(&mut self, cancels: &mut mpsc::UnboundedReceiver<RequestId>) {
        let mut ids: Vec<RequestId> = self.shared.waiting();
        while let Ok(id) = cancels.try_recv() {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        for id in ids {
            if self.cancel(&id, "the client closed").await.is_err() {
                break;
            }
        }
        self.socket.close().await;
    }

    /// Reconnects with backoff and resumes the session; or starts a new one when the old
    /// one is gone. Fails after the configured number of attempts.
    async fn reconnect(&mut self, mut reason: String) -> Result<(), String> {
        let policy = self.options.reconnect.clone();
        let mut delay = policy.initial;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if policy.attempts.is_some_and(|max| attempt > max) {
                return Err(format!(
                    "gave up reconnecting after {} attempts: {reason}",
                    attempt - 1
                ));
            }
            self.shared.set_status(Status::Reconnecting {
                attempt,
                reason: reason.clone(),
            });
            tokio::time::sleep(jitter(delay)).await;
            delay = (delay * 2).min(policy.max);
            match self.attempt().await {
                Ok(()) => {
                    self.shared.set_status(Status::Connected);
                    return Ok(());
                }
                Err(why) => {
                    tracing::debug!(attempt, error = %why, "reconnect attempt failed");
                    reason = why;
                }
            }
        }
    }

    /// One reconnect attempt: connect, then resume (or start anew when the session is gone).
    async fn attempt(&mut self) -> Result<(), String> {
        self.socket = open(&self.options).await.map_err(|e| e.to_string())?;
        if self.options.stdio.is_some() {
            // A new process: it has nothing of the old one's requests.
            self.session = None;
            self.shared.fail_all(|| {
                Error::Interrupted("the server process ended and was started again".to_owned())
            });
            return self.establish().await.map_err(attempt_error);
        }
        if self.modern {
            // Modern requests have no session: the ones in flight died with the connection.
            // The server may have changed: probe again.
            self.shared
                .fail_all(|| Error::Interrupted("the WebSocket connection dropped".to_owned()));
            return self.establish().await.map_err(attempt_error);
        }
        if self.session.is_none() {
            // Nothing to resume: the calls in flight died with the connection.
            self.shared.fail_all(|| {
                Error::SessionLost(ErrorObject::new(
                    error_codes::SESSION_NOT_RESUMABLE,
                    "the server's sessions are not resumable",
                ))
            });
            return self.establish().await.map_err(attempt_error);
        }
        match self.initialize(true).await {
            Ok(()) => Ok(()),
            Err(Attempt::Refused(error)) if error.code == error_codes::SESSION_NOT_RESUMABLE => {
                tracing::warn!(%error, "the session cannot be resumed; starting a new one");
                self.shared.fail_all(|| Error::SessionLost(error.clone()));
                self.session = None;
                self.initialize(false).await.map_err(attempt_error)
            }
            Err(e) => Err(attempt_error(e)),
        }
    }

    /// Handles one message from the server; an immediate answer goes back on the socket.
    async fn handle(&mut self, value: Value) {
        let handler = self.options.handler.clone();
        if let Some(answer) = dispatch::handle(&self.shared, handler, &self.out, value) {
            let _ = self.send(answer).await;
        }
    }
}

/// Why an attempt to initialize failed.
enum Attempt {
    /// The server answered with an error.
    Refused(ErrorObject),
    /// The connection failed.
    Failed(String),
}

fn attempt_error(e: Attempt) -> String {
    match e {
        Attempt::Refused(error) => error.to_string(),
        Attempt::Failed(why) => why,
    }
}

fn close_reason(close: Option<&CloseFrame>) -> String {
    match close {
        Some(close) => format!(
            "closed by the server ({}): {}",
            u16::from(close.code),
            close.reason
        ),
        None => "closed by the server".to_owned(),
    }
}

/// `delay` plus up to 50% at random, so that many clients do not come back at once.
pub(crate) fn jitter(delay: Duration) -> Duration {
    let mut bytes = [0u8; 2];
    let spread = match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX),
        Err(_) => 0.5,
    };
    delay.mul_f64(1.0 + spread / 2.0)
}

/// Starts the server process, or opens the WebSocket.
async fn open(options: &Options) -> Result<Wire, Error> {
    match &options.stdio {
        Some(command) => Process::spawn(command).map(|p| Wire::Stdio(Box::new(p))),
        None => open_websocket(options)
            .await
            .map(|s| Wire::WebSocket(Box::new(s))),
    }
}

/// Opens the WebSocket, with the token and the subprotocols: `mcp.version.2026-07-28` (as
/// SEP-1288 proposes) and `mcp`, or only `mcp` for a legacy client.
async fn open_websocket(options: &Options) -> Result<Socket, Error> {
    let mut request = options
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| Error::Connect(format!("{}: {e}", options.url)))?;
    let headers = request.headers_mut();
    let subprotocols = if options.legacy {
        HeaderValue::from_static("mcp")
    } else {
        HeaderValue::from_static("mcp.version.2026-07-28, mcp")
    };
    headers.insert("Sec-WebSocket-Protocol", subprotocols);
    if let Some(token) = &options.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| Error::Connect("the token is not a valid header value".to_owned()))?;
        headers.insert("Authorization", value);
    }
    let connector = if options.url.starts_with("wss://") {
        Some(tokio_tungstenite::Connector::Rustls(
            crate::tls::client_config(&options.extra_roots)?,
        ))
    } else {
        None
    };
    let connecting =
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector);
    let (socket, _) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| Error::Connect(format!("{}: no connection in time", options.url)))?
        .map_err(|e| Error::Connect(describe(&options.url, &e)))?;
    Ok(socket)
}

fn describe(url: &str, e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match e {
        WsError::Http(response) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            format!("{url}: HTTP {}: {}", response.status(), body.trim())
        }
        other => format!("{url}: {other}"),
    }
}
