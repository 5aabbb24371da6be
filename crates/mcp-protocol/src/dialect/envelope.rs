//! The math-mcp seed's envelopes, on `GET /agent/{agentId}/websocket`.
//!
//! Client to server:
//! - `{"type": "mcp_request", "request": {"method", "params"}, "requestId"?}`: `method` is a
//!   tool name (`"add"`, as in the seed) or an MCP method (`"tools/list"`, `"tools/call"`,
//!   `"resources/read"`, ...);
//! - `{"type": "cancel", "requestId"}`: cancels a running request;
//! - `{"type": "ping"}` (answered with `pong`) and `{"type": "pong"}` (the answer to the
//!   server's `ping`).
//!
//! Server to client, each with an ISO-8601 `timestamp`, and `seq` (the session's position,
//! for resuming) when the message has one:
//! - `{"type": "mcp_response", "result", "requestId"?}`: a tool's `structuredContent` (its
//!   whole result when it has none), or the MCP method's result;
//! - `{"type": "error", "error": {"code"?, "message", "data"?}, "requestId"?}`: the request
//!   failed (`code` is the JSON-RPC error code), or the tool reported a failure (no `code`),
//!   or the envelope itself was refused;
//! - `{"type": "progress", "requestId"?, "progress", "total"?, "message"?}` while a tool runs;
//! - `{"type": "cancelled", "requestId"}`: the request was cancelled; nothing else follows
//!   for it;
//! - `{"type": "notification", "payload": {"method", "params"}}`: anything else the server
//!   pushes (log messages, broadcasts, resource updates);
//! - `{"type": "ping"}` (answer with `pong`) and `{"type": "pong"}`.
//!
//! On open, the dialect resumes the agent's session with a synthesized `initialize` (whose
//! answer the client never sees); a refusal becomes an `error` envelope and the connection
//! closes.
//!
//! JSON-RPC ids carry the client's `requestId`, so an answer that arrives on a later
//! connection (after a resume) still names the request it answers.

use std::collections::{HashMap, VecDeque};
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::{CANCELLED_MEMORY, Translated, is_response, result_text, timestamp};
use crate::{ProtocolVersion, error_codes, methods, shorten};

/// How many unanswered server pings the dialect keeps; older ones are forgotten (the
/// session gives up on them on its own).
const PINGS_KEPT: usize = 16;

/// The envelope dialect of one connection.
#[derive(Debug)]
pub struct Envelope {
    /// Unique among the session's connections; prefixes the JSON-RPC ids made here.
    connection: String,
    /// The agent's session id.
    agent: String,
    /// Where to resume: a position, or `"delivered"`.
    last_seq: Value,
    next: u64,
    /// The JSON-RPC id of each running request, by its `requestId` (as JSON text).
    running: HashMap<String, String>,
    /// JSON-RPC ids of cancelled requests, oldest first.
    cancelled: VecDeque<String>,
    /// The ids of the server's unanswered pings, oldest first.
    pings: VecDeque<Value>,
}

/// What kind of answer a request expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A tool call: its structured content is the answer.
    Tool,
    /// Any other MCP method: its result is the answer.
    Method,
}

impl Envelope {
    /// The dialect for a connection (`connection` unique among the agent's connections) to
    /// the agent `agent`, resuming after `last_seq` (`None`: after what was delivered).
    pub fn new(
        connection: impl Into<String>,
        agent: impl Into<String>,
        last_seq: Option<u64>,
    ) -> Self {
        Self {
            // Ids made here are split at dots.
            connection: connection.into().replace('.', "_"),
            agent: agent.into(),
            last_seq: last_seq.map_or_else(|| Value::from("delivered"), Value::from),
            next: 0,
            running: HashMap::new(),
            cancelled: VecDeque::new(),
            pings: VecDeque::new(),
        }
    }

    fn init_id(&self) -> String {
        format!("{}.init", self.connection)
    }

    pub(super) fn open(&mut self) -> Translated {
        let mut out = Translated::default();
        out.session(&json!({
            "jsonrpc": "2.0",
            "id": self.init_id(),
            "method": methods::INITIALIZE,
            "mcpSessionId": self.agent,
            "params": {
                "protocolVersion": ProtocolVersion::LATEST_LEGACY.as_str(),
                "capabilities": {"experimental": {"resume": {"lastSeq": self.last_seq}}},
                "clientInfo": {"name": "websocket-envelope", "version": "1"},
            },
        }));
        out.session(&json!({"jsonrpc": "2.0", "method": methods::INITIALIZED}));
        out
    }

    pub(super) fn on_client(&mut self, text: &str, now: SystemTime) -> Translated {
        let mut out = Translated::default();
        let refuse = |out: &mut Translated, code: i64, message: String, request: Option<&Value>| {
            out.client(&error_envelope(
                json!({"code": code, "message": message}),
                request,
                None,
                now,
            ));
        };
        let envelope = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(envelope)) => envelope,
            Ok(_) => {
                refuse(
                    &mut out,
                    error_codes::INVALID_REQUEST,
                    "an envelope is a JSON object with a \"type\"".to_owned(),
                    None,
                );
                return out;
            }
            Err(e) => {
                refuse(
                    &mut out,
                    error_codes::PARSE_ERROR,
                    format!("not JSON: {e}"),
                    None,
                );
                return out;
            }
        };
        let request_id = envelope.get("requestId").filter(|v| !v.is_null());
        if let Some(id) = request_id
            && !(id.is_string() || id.is_number())
        {
            refuse(
                &mut out,
                error_codes::INVALID_REQUEST,
                "requestId must be a string or a number".to_owned(),
                None,
            );
            return out;
        }
        match envelope.get("type").and_then(Value::as_str) {
            Some("mcp_request") => self.request(&envelope, request_id, now, &mut out),
            Some("cancel") => self.cancel(request_id, now, &mut out),
            Some("ping") => out.client(&json!({"type": "pong", "timestamp": timestamp(now)})),
            Some("pong") => {
                if let Some(id) = self.pings.pop_front() {
                    out.session(&json!({"jsonrpc": "2.0", "id": id, "result": {}}));
                }
            }
            Some(other) => refuse(
                &mut out,
                error_codes::INVALID_REQUEST,
                format!(
                    "unknown envelope type \"{}\": send mcp_request, cancel, ping or pong",
                    shorten(other, 40)
                ),
                request_id,
            ),
            None => refuse(
                &mut out,
                error_codes::INVALID_REQUEST,
                "an envelope needs a \"type\": mcp_request, cancel, ping or pong".to_owned(),
                request_id,
            ),
        }
        out
    }

    /// `mcp_request`: a tool call (the method is the tool's name) or an MCP method.
    fn request(
        &mut self,
        envelope: &Map<String, Value>,
        request_id: Option<&Value>,
        now: SystemTime,
        out: &mut Translated,
    ) {
        let request = envelope.get("request");
        let method = request
            .and_then(|r| r.get("method"))
            .and_then(Value::as_str);
        let params = request
            .and_then(|r| r.get("params"))
            .filter(|p| !p.is_null());
        let problem = match (method, params) {
            (None, _) => Some("mcp_request needs \"request\": {\"method\": string, \"params\": object}".to_owned()),
            (Some(_), Some(p)) if !p.is_object() => Some("request.params must be an object".to_owned()),
            (Some(methods::INITIALIZE), _) => Some(
                "the agent's session is initialized when the socket opens: send tools/list or a tool's name".to_owned(),
            ),
            _ => None,
        };
        let (Some(method), None) = (method, problem.as_ref()) else {
            out.client(&error_envelope(
                json!({"code": error_codes::INVALID_REQUEST, "message": problem.unwrap_or_default()}),
                request_id,
                None,
                now,
            ));
            return;
        };
        let params = params.cloned().unwrap_or_else(|| json!({}));
        // A name with a slash is an MCP method (`tools/list`); `ping` is one too.
        let (kind, method, mut params) = if method == methods::TOOLS_CALL {
            (Kind::Tool, method, params)
        } else if method.contains('/') || method == methods::PING {
            (Kind::Method, method, params)
        } else {
            (
                Kind::Tool,
                methods::TOOLS_CALL,
                json!({"name": method, "arguments": params}),
            )
        };
        if let Some(request_id) = request_id
            && self.running.contains_key(&request_id.to_string())
        {
            out.client(&error_envelope(
                json!({"code": error_codes::INVALID_REQUEST, "message": "a request with this requestId is still running"}),
                Some(request_id),
                None,
                now,
            ));
            return;
        }
        self.next += 1;
        let id = encode_id(&self.connection, self.next, kind, request_id);
        if kind == Kind::Tool
            && let Some(params) = params.as_object_mut()
        {
            // Every tool call reports progress, named by the request.
            let meta = params.entry("_meta").or_insert_with(|| json!({}));
            if let Some(meta) = meta.as_object_mut() {
                meta.insert("progressToken".to_owned(), Value::from(id.clone()));
            }
        }
        if let Some(request_id) = request_id {
            self.running.insert(request_id.to_string(), id.clone());
        }
        out.session(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
    }

    /// `cancel`: the request named by `requestId` is cancelled and answered `cancelled`.
    fn cancel(&mut self, request_id: Option<&Value>, now: SystemTime, out: &mut Translated) {
        let Some(id) = request_id.and_then(|r| self.running.remove(&r.to_string())) else {
            out.client(&error_envelope(
                json!({
                    "code": error_codes::INVALID_PARAMS,
                    "message": "cancel needs the requestId of a running request (it finished, or was never sent)",
                }),
                request_id,
                None,
                now,
            ));
            return;
        };
        out.session(&json!({
            "jsonrpc": "2.0",
            "method": methods::CANCELLED,
            "params": {"requestId": id, "reason": "cancelled by the client"},
        }));
        self.cancelled.push_back(id);
        if self.cancelled.len() > CANCELLED_MEMORY {
            self.cancelled.pop_front();
        }
        out.client(
            &json!({"type": "cancelled", "requestId": request_id, "timestamp": timestamp(now)}),
        );
    }

    pub(super) fn on_session(&mut self, text: &str, now: SystemTime) -> Translated {
        let mut out = Translated::default();
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(batch)) => {
                for message in &batch {
                    self.message(message, now, &mut out);
                }
            }
            Ok(message) => self.message(&message, now, &mut out),
            Err(e) => {
                // The session writes JSON; say so rather than drop it.
                out.client(&error_envelope(
                    json!({"code": error_codes::INTERNAL_ERROR, "message": format!("the server sent a message that is not JSON: {e}")}),
                    None,
                    None,
                    now,
                ));
            }
        }
        out
    }

    fn message(&mut self, message: &Value, now: SystemTime, out: &mut Translated) {
        let seq = message.get("seq").filter(|s| s.is_u64());
        if is_response(message) {
            self.response(message, seq, now, out);
            return;
        }
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        match (message.get("id"), method) {
            (Some(id), methods::PING) => {
                self.pings.push_back(id.clone());
                if self.pings.len() > PINGS_KEPT {
                    self.pings.pop_front();
                }
                out.client(&json!({"type": "ping", "timestamp": timestamp(now)}));
            }
            (Some(id), method) => out.session(&json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {
                    "code": error_codes::METHOD_NOT_FOUND,
                    "message": format!("the envelope dialect carries no server requests ({})", shorten(method, 60)),
                },
            })),
            (None, methods::PROGRESS) => {
                let token = params.get("progressToken").and_then(Value::as_str);
                let decoded = token.and_then(|t| decode_id(t).map(|(_, request)| (t, request)));
                let Some((token, request_id)) = decoded else {
                    out.client(&notification(method, params, seq, now));
                    return;
                };
                if self.cancelled.iter().any(|c| c == token) {
                    return;
                }
                let mut envelope = json!({"type": "progress"});
                if let Some(r) = request_id {
                    envelope["requestId"] = r;
                }
                for field in ["progress", "total", "message"] {
                    if let Some(v) = params.get(field) {
                        envelope[field] = v.clone();
                    }
                }
                out.client(&stamped(envelope, seq, now));
            }
            (None, method) => out.client(&notification(method, params, seq, now)),
        }
    }

    fn response(
        &mut self,
        message: &Value,
        seq: Option<&Value>,
        now: SystemTime,
        out: &mut Translated,
    ) {
        let id = message
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if id == self.init_id() {
            if let Some(error) = message.get("error") {
                out.client(&error_envelope(error.clone(), None, seq, now));
                out.close = Some("cannot attach to the agent's session".to_owned());
            }
            return;
        }
        if let Some(index) = self.cancelled.iter().position(|c| c == id) {
            // Answered before the cancel arrived; the client was told it was cancelled.
            self.cancelled.remove(index);
            return;
        }
        let (kind, request_id) = decode_id(id).unwrap_or((Kind::Method, None));
        if let Some(r) = &request_id
            && self
                .running
                .get(&r.to_string())
                .is_some_and(|running| running == id)
        {
            self.running.remove(&r.to_string());
        }
        let request = request_id.as_ref();
        if let Some(error) = message.get("error") {
            out.client(&error_envelope(error.clone(), request, seq, now));
            return;
        }
        let result = message.get("result").cloned().unwrap_or(Value::Null);
        if kind == Kind::Tool {
            if result.get("isError") == Some(&Value::Bool(true)) {
                let mut error = json!({"message": result_text(&result)});
                if let Some(data) = result.get("structuredContent") {
                    error["data"] = data.clone();
                }
                out.client(&error_envelope(error, request, seq, now));
                return;
            }
            let answer = result.get("structuredContent").cloned().unwrap_or(result);
            out.client(&response_envelope(answer, request, seq, now));
        } else {
            out.client(&response_envelope(result, request, seq, now));
        }
    }
}

/// The JSON-RPC id of a request made here: `{connection}.{n}.{t|m}`, then `:` and the
/// client's `requestId` as JSON when it gave one.
fn encode_id(connection: &str, n: u64, kind: Kind, request_id: Option<&Value>) -> String {
    let kind = match kind {
        Kind::Tool => 't',
        Kind::Method => 'm',
    };
    match request_id {
        Some(r) => format!("{connection}.{n}.{kind}:{r}"),
        None => format!("{connection}.{n}.{kind}"),
    }
}

/// The kind and `requestId` an id made by [`encode_id`] carries.
fn decode_id(id: &str) -> Option<(Kind, Option<Value>)> {
    let mut parts = id.splitn(3, '.');
    let (_, _, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let (kind, request) = match rest.split_once(':') {
        Some((kind, request)) => (kind, Some(serde_json::from_str(request).ok()?)),
        None => (rest, None),
    };
    let kind = match kind {
        "t" => Kind::Tool,
        "m" => Kind::Method,
        _ => return None,
    };
    Some((kind, request))
}

/// Adds the timestamp, and the session's position when the message had one.
fn stamped(mut envelope: Value, seq: Option<&Value>, now: SystemTime) -> Value {
    envelope["timestamp"] = Value::from(timestamp(now));
    if let Some(seq) = seq {
        envelope["seq"] = seq.clone();
    }
    envelope
}

fn with_request(mut envelope: Value, request: Option<&Value>) -> Value {
    if let Some(r) = request {
        envelope["requestId"] = r.clone();
    }
    envelope
}

fn response_envelope(
    result: Value,
    request: Option<&Value>,
    seq: Option<&Value>,
    now: SystemTime,
) -> Value {
    let envelope = with_request(json!({"type": "mcp_response", "result": result}), request);
    stamped(envelope, seq, now)
}

fn error_envelope(
    error: Value,
    request: Option<&Value>,
    seq: Option<&Value>,
    now: SystemTime,
) -> Value {
    let envelope = with_request(json!({"type": "error", "error": error}), request);
    stamped(envelope, seq, now)
}

fn notification(method: &str, params: Value, seq: Option<&Value>, now: SystemTime) -> Value {
    stamped(
        json!({"type": "notification", "payload": {"method": method, "params": params}}),
        seq,
        now,
    )
}
