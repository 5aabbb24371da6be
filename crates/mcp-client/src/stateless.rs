//! Streamable HTTP with a server of 2026-07-28: every request is its own POST, with the
//! headers the revision requires (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, and
//! `Mcp-Param-*` for the parameters a tool mirrors), answered with JSON or with an SSE
//! stream that carries the request's progress and log messages before its answer. There is
//! no session and no standing stream; cancelling a request closes its connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::{Request, StatusCode, Uri};
use mcp_protocol::{ErrorObject, RequestId, methods};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::modern::{self, Probe};
use crate::streamable::Messages;
use crate::{CONNECT_TIMEOUT, Error, Options, Outgoing, Shared, Status, dispatch};

/// The largest error body read.
const MAX_ERROR_BODY: usize = 64 << 10;

/// The transport's state.
pub(crate) struct Stateless {
    options: Options,
    shared: Arc<Shared>,
    out: mpsc::Sender<Outgoing>,
    endpoint: Uri,
    /// The POSTs whose answer has not come, by request id: aborting one closes its
    /// connection, which cancels the request on the server.
    running: Mutex<HashMap<RequestId, AbortHandle>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What one POST brought back.
enum Posted {
    /// A success status: the body to read.
    Body(hyper::Response<hyper::body::Incoming>),
    /// A refusal: its status and body (a JSON-RPC error, when it is one).
    Refused(StatusCode, String),
}

impl Stateless {
    /// Probes `endpoint` with `server/discover`: a modern server's transport, or why not.
    pub(crate) async fn probe(options: &Options, endpoint: &Uri) -> Result<Probe, Error> {
        let probe = modern::discover_request(options);
        let posted = post(options, endpoint, &probe, &[])
            .await
            .map_err(Error::Connect)?;
        match posted {
            Posted::Body(response) => {
                let mut messages = Messages::new(response);
                let answer = tokio::time::timeout(modern::PROBE_TIMEOUT, async {
                    while let Some(value) = messages.next().await {
                        if value.get("id") == probe.get("id") {
                            return Some(value);
                        }
                    }
                    None
                })
                .await;
                Ok(match answer {
                    Ok(Some(answer)) => modern::read_discover(&answer),
                    Ok(None) => Probe::Legacy("no answer to server/discover".to_owned()),
                    Err(_) => Probe::Legacy("no answer to server/discover in time".to_owned()),
                })
            }
            // A modern server says what is wrong in a modern error; anything else is a
            // legacy server (400 for a request without a session, 404, 405...).
            Posted::Refused(status, body) => Ok(match rpc_error(&body) {
                Some(error) if modern::is_modern_error(error.code) => Probe::Refused(error),
                _ => Probe::Legacy(format!("server/discover answered HTTP {status}")),
            }),
        }
    }

    pub(crate) fn new(
        options: Options,
        shared: Arc<Shared>,
        out: mpsc::Sender<Outgoing>,
        endpoint: Uri,
    ) -> Arc<Self> {
        Arc::new(Self {
            options,
            shared,
            out,
            endpoint,
            running: Mutex::new(HashMap::new()),
        })
    }

    /// Sends what the client sends, each request on its own POST, until the client closes.
    pub(crate) async fn run(
        self: Arc<Self>,
        mut out: mpsc::Receiver<Outgoing>,
        mut cancels: mpsc::UnboundedReceiver<RequestId>,
    ) {
        loop {
            tokio::select! {
                message = out.recv() => match message {
                    Some(Outgoing::Text(text)) => self.send(text),
                    Some(Outgoing::Close(done)) => {
                        self.close();
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.close();
                        return;
                    }
                },
                Some(id) = cancels.recv() => {
                    if let Some(task) = lock(&self.running).remove(&id) {
                        task.abort();
                    }
                    self.shared.answer(&id, Err(Error::Closed("cancelled".to_owned())));
                }
            }
        }
    }

    /// Starts the POST of one message.
    fn send(self: &Arc<Self>, text: String) {
        let Ok(message) = serde_json::from_str::<Value>(&text) else {
            return;
        };
        let id = RequestId::read(message.get("id")).ok().flatten();
        if message.get("method").is_none() {
            // An answer to a server request: this revision's servers send none.
            tracing::debug!("no server request to answer over stateless HTTP");
            return;
        }
        let this = Arc::clone(self);
        let task_id = id.clone();
        // Held until the task is registered: a task that ends at once still finds itself
        // there to remove.
        let mut running = lock(&self.running);
        let task = tokio::spawn(async move {
            this.exchange(task_id.as_ref(), message).await;
            if let Some(id) = task_id {
                lock(&this.running).remove(&id);
            }
        });
        if let Some(id) = id {
            running.insert(id, task.abort_handle());
        }
    }

    /// POSTs `message` and hands what comes back to the client.
    async fn exchange(&self, id: Option<&RequestId>, message: Value) {
        let headers = self.param_headers(&message);
        let fail = |error: Error| {
            if let Some(id) = id {
                self.shared.answer(id, Err(error));
            }
        };
        match post(&self.options, &self.endpoint, &message, &headers).await {
            Err(why) => fail(Error::Connect(why)),
            Ok(Posted::Refused(status, body)) => match rpc_error(&body) {
                Some(error) => fail(Error::Rpc(error)),
                None => fail(Error::Connect(format!("HTTP {status}: {body}"))),
            },
            Ok(Posted::Body(response)) => {
                let mut messages = Messages::new(response);
                while let Some(value) = messages.next().await {
                    self.handle(value).await;
                }
                let (_, clean) = messages.ended();
                // Still waiting: the stream ended without the answer.
                let why = if clean {
                    "the server ended the response without the answer"
                } else {
                    "the response stream broke"
                };
                fail(Error::Interrupted(why.to_owned()));
            }
        }
    }

    /// The `Mcp-Param-*` headers of a `tools/call`, as the tool's schema annotates them.
    fn param_headers(&self, message: &Value) -> Vec<(String, String)> {
        if message.get("method").and_then(Value::as_str) != Some(methods::TOOLS_CALL) {
            return Vec::new();
        }
        let params = &message["params"];
        match params.get("name").and_then(Value::as_str) {
            Some(name) => self.shared.param_headers(name, &params["arguments"]),
            None => Vec::new(),
        }
    }

    async fn handle(&self, value: Value) {
        let handler = self.options.handler.clone();
        if let Some(answer) = dispatch::handle(&self.shared, handler, &self.out, value) {
            let _ = self.out.send(Outgoing::Text(answer)).await;
        }
    }

    /// Stops every request still running (their connections close) and the client.
    fn close(&self) {
        for (_, task) in lock(&self.running).drain() {
            task.abort();
        }
        self.shared
            .set_status(Status::Closed("closed by the client".to_owned()));
        self.shared
            .fail_all(|| Error::Closed("closed by the client".to_owned()));
    }
}

/// POSTs `message` to `endpoint` with the headers the revision requires and `extra`.
async fn post(
    options: &Options,
    endpoint: &Uri,
    message: &Value,
    extra: &[(String, String)],
) -> Result<Posted, String> {
    let method = message.get("method").and_then(Value::as_str).unwrap_or("");
    let mut builder = Request::post(endpoint.path_and_query().map_or("/", |p| p.as_str()))
        .header(
            hyper::header::HOST,
            endpoint.authority().map_or("", |a| a.as_str()),
        )
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::ACCEPT, "application/json, text/event-stream")
        .header("MCP-Protocol-Version", modern::VERSION.as_str())
        .header("Mcp-Method", method);
    let params = &message["params"];
    let name = match method {
        methods::TOOLS_CALL | methods::PROMPTS_GET => params.get("name"),
        methods::RESOURCES_READ => params.get("uri"),
        // The tasks extension routes on the task's id.
        methods::TASKS_GET | methods::TASKS_UPDATE | methods::TASKS_CANCEL => params.get("taskId"),
        _ => None,
    };
    if let Some(name) = name.and_then(Value::as_str) {
        builder = builder.header("Mcp-Name", mcp_protocol::modern::encode_header_value(name));
    }
    for (header, value) in extra {
        builder = builder.header(header.as_str(), value.as_str());
    }
    if let Some(token) = &options.token {
        builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = builder
        .body(Full::new(Bytes::from(message.to_string())))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(
        CONNECT_TIMEOUT,
        crate::http::open(endpoint, request, &options.extra_roots),
    )
    .await
    .map_err(|_| "no answer in time".to_owned())??;
    let status = response.status();
    if status.is_success() {
        return Ok(Posted::Body(response));
    }
    let body = Limited::new(response.into_body(), MAX_ERROR_BODY)
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
        .unwrap_or_default();
    Ok(Posted::Refused(status, body))
}

/// The JSON-RPC error a refusal's body carries, if it carries one.
fn rpc_error(body: &str) -> Option<ErrorObject> {
    let value: Value = serde_json::from_str(body).ok()?;
    serde_json::from_value(value.get("error")?.clone()).ok()
}
