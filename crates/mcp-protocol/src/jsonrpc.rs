//! The JSON-RPC 2.0 envelope: ids, requests, notifications, responses and the error object.
//!
//! Parsing is done in two steps on purpose: text becomes a `serde_json::Value` first (a failure
//! there is a parse error, -32700), then the value is classified (a failure there is an invalid
//! request, -32600, answered with the message's id when one could be read).

use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The JSON-RPC error codes this server uses.
pub mod error_codes {
    /// The text was not valid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON was not a valid JSON-RPC message, or the request is not allowed right now.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist (or is not available in this session).
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The params do not match what the method expects.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The server failed in a way the client could not have prevented.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// MCP: the named resource does not exist.
    pub const RESOURCE_NOT_FOUND: i64 = -32002;
    /// This server: it is shutting down; the request was not started, or was cancelled.
    /// The client should retry on another server or after the restart.
    pub const SERVER_SHUTTING_DOWN: i64 = -32000;
    /// This server: a configured limit was reached (the message names it). The client should
    /// wait for some of its requests to finish, then retry.
    pub const LIMIT_EXCEEDED: i64 = -32001;
    /// The session named in a resuming `initialize` cannot be resumed: it is unknown,
    /// expired or deleted, or the messages after the position the client gave are no longer
    /// kept. `data.reason` says which; the client should start a new session.
    pub const SESSION_NOT_RESUMABLE: i64 = -32003;
    /// The request was running when the server stopped (a crash or a restart) and cannot
    /// be resumed; `data` says how far it got. The client may call it again.
    pub const INTERRUPTED: i64 = -32004;
    /// This server: the caller's access token does not grant this (a JWT's scopes);
    /// `data.scope` names a scope that would.
    pub const FORBIDDEN: i64 = -32005;
}

/// A request id: a JSON number (an integer) or a string.
///
/// The two kinds never compare equal: `92` and `"92"` are different ids, and each is echoed
/// back exactly as it came.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[schemars(untagged)]
pub enum RequestId {
    /// An integer id.
    Number(i64),
    /// A string id.
    String(String),
}

/// The longest string id (or progress token) accepted, in bytes: ids are echoed in answers
/// and kept while their requests run, so a client may not make them large.
pub const MAX_ID_BYTES: usize = 256;

impl RequestId {
    /// Reads an id from a JSON value; `None` for anything but an integer or a string of at
    /// most [`MAX_ID_BYTES`].
    pub fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::String(s) if s.len() <= MAX_ID_BYTES => Some(Self::String(s.clone())),
            Value::Number(n) => n.as_i64().map(Self::Number),
            _ => None,
        }
    }

    /// Reads a message's `id` member: `None` when it is absent or `null`, the -32600 error
    /// every refusal of it carries when it is neither an integer nor a string.
    pub fn read(value: Option<&Value>) -> Result<Option<Self>, ErrorObject> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(v) => Self::from_value(v).map(Some).ok_or_else(|| {
                ErrorObject::invalid_request(format_args!(
                    "`id` must be an integer or a string of at most {MAX_ID_BYTES} bytes, got {}",
                    shorten(&v.to_string(), 80)
                ))
                .with_data(serde_json::json!({ "maxIdBytes": MAX_ID_BYTES }))
            }),
        }
    }

    /// The id as a JSON value.
    pub fn to_value(&self) -> Value {
        match self {
            Self::Number(n) => Value::from(*n),
            Self::String(s) => Value::from(s.as_str()),
        }
    }
}

impl fmt::Display for RequestId {
    /// Shows the id as JSON, so that `92` and `"92"` stay apart in logs and error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::String(s) => write!(f, "{}", Value::from(s.as_str())),
        }
    }
}

impl From<i64> for RequestId {
    fn from(n: i64) -> Self {
        Self::Number(n)
    }
}

impl From<&str> for RequestId {
    fn from(s: &str) -> Self {
        Self::String(s.to_owned())
    }
}

impl From<String> for RequestId {
    fn from(s: String) -> Self {
        Self::String(s)
    }
}

impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Number(n) => serializer.serialize_i64(*n),
            Self::String(s) => serializer.serialize_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(&value).ok_or_else(|| {
            de::Error::custom(format_args!(
                "expected an integer or a string of at most {MAX_ID_BYTES} bytes as id, got {}",
                shorten(&value.to_string(), 80)
            ))
        })
    }
}

/// The JSON-RPC error object, as it travels on the wire.
///
/// This is a wire type, not a Rust error: libraries convert their own errors into it in one
/// place each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorObject {
    /// One of [`error_codes`], or an application-defined code.
    pub code: i64,
    /// A short, human-readable description.
    pub message: String,
    /// Extra structured information about the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorObject {
    /// An error with a code and a message.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Attaches structured data.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// -32700: the text was not JSON.
    pub fn parse_error(detail: impl fmt::Display) -> Self {
        Self::new(error_codes::PARSE_ERROR, format!("parse error: {detail}"))
    }

    /// -32600: not a valid JSON-RPC message, or not allowed now.
    pub fn invalid_request(detail: impl fmt::Display) -> Self {
        Self::new(
            error_codes::INVALID_REQUEST,
            format!("invalid request: {detail}"),
        )
    }

    /// -32601: the method does not exist. A very long name is shortened, so that the error
    /// never echoes a large input back.
    pub fn method_not_found(method: &str) -> Self {
        let shown = shorten(method, 128);
        Self::new(
            error_codes::METHOD_NOT_FOUND,
            format!("method not found: {shown}"),
        )
        .with_data(serde_json::json!({ "method": shown }))
    }

    /// -32602: the params are wrong.
    pub fn invalid_params(detail: impl fmt::Display) -> Self {
        Self::new(
            error_codes::INVALID_PARAMS,
            format!("invalid params: {detail}"),
        )
    }

    /// -32603: the server failed.
    pub fn internal(detail: impl fmt::Display) -> Self {
        Self::new(
            error_codes::INTERNAL_ERROR,
            format!("internal error: {detail}"),
        )
    }
}

/// `text` cut to at most `max` bytes (at a character boundary), with `…` when cut.
pub fn shorten(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

impl fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// A request: a method call that expects exactly one response.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Correlates the response with this request.
    pub id: RequestId,
    /// The method name, for example [`crate::methods::TOOLS_CALL`].
    pub method: String,
    /// The params object, if any.
    pub params: Option<Value>,
}

/// A notification: a one-way message that is never answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The method name, for example [`crate::methods::CANCELLED`].
    pub method: String,
    /// The params object, if any.
    pub params: Option<Value>,
}

/// A response: the result of a request, or its error.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The id of the request this answers; `None` (JSON `null`) only for an error about a
    /// message whose id could not be read.
    pub id: Option<RequestId>,
    /// The result, or the error: never both, never neither.
    pub result: Result<Value, ErrorObject>,
}

impl Response {
    /// A successful response.
    pub fn ok(id: RequestId, result: Value) -> Self {
        Self {
            id: Some(id),
            result: Ok(result),
        }
    }

    /// An error response.
    pub fn error(id: Option<RequestId>, error: ErrorObject) -> Self {
        Self {
            id,
            result: Err(error),
        }
    }
}

/// Any JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A notification.
    Notification(Notification),
    /// A response.
    Response(Response),
}

impl From<Request> for Message {
    fn from(r: Request) -> Self {
        Self::Request(r)
    }
}

impl From<Notification> for Message {
    fn from(n: Notification) -> Self {
        Self::Notification(n)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Self {
        Self::Response(r)
    }
}

/// A message that is JSON but not valid JSON-RPC.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidMessage {
    /// The id, when one could be read, so that the error response can name it.
    pub id: Option<RequestId>,
    /// The -32600 error to answer with.
    pub error: ErrorObject,
}

/// What one text frame (or HTTP body) held.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// One message, or why it is not valid JSON-RPC.
    Single(Result<Message, InvalidMessage>),
    /// A JSON array of messages (a batch); never empty.
    Batch(Vec<Result<Message, InvalidMessage>>),
}

/// How deep arrays and objects may nest in what a client sends (a message, a request body):
/// deeper input is refused where it arrives, so that whatever the server keeps of it (a
/// call's arguments in a session's history, a task's record) always reads back.
pub const MAX_DEPTH: usize = 64;

/// Whether `text` nests arrays and objects deeper than `max` levels (brackets inside strings
/// do not count). One pass, no tree: it runs before anything parses the text.
pub fn nests_deeper(text: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in text {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The -32600 error of input that nests deeper than [`MAX_DEPTH`].
pub fn too_deep() -> ErrorObject {
    ErrorObject::invalid_request(format_args!(
        "arrays and objects nest deeper than {MAX_DEPTH} levels"
    ))
    .with_data(serde_json::json!({ "maxDepth": MAX_DEPTH }))
}

/// Parses the text of one frame.
///
/// Fails with a -32700 error when the text is not JSON, and with -32600 ([`too_deep`]) when
/// it nests deeper than [`MAX_DEPTH`]. An empty array is reported as a single invalid
/// message, as JSON-RPC 2.0 asks.
pub fn parse(text: &str) -> Result<Incoming, ErrorObject> {
    if nests_deeper(text.as_bytes(), MAX_DEPTH) {
        return Err(too_deep());
    }
    let value: Value = serde_json::from_str(text).map_err(ErrorObject::parse_error)?;
    Ok(match value {
        Value::Array(items) if items.is_empty() => Incoming::Single(Err(InvalidMessage {
            id: None,
            error: ErrorObject::invalid_request("empty batch"),
        })),
        Value::Array(items) => {
            Incoming::Batch(items.into_iter().map(Message::from_value).collect())
        }
        other => Incoming::Single(Message::from_value(other)),
    })
}

impl Message {
    /// Classifies a JSON value as a request, notification or response.
    pub fn from_value(value: Value) -> Result<Self, InvalidMessage> {
        let Value::Object(mut obj) = value else {
            return Err(InvalidMessage {
                id: None,
                error: ErrorObject::invalid_request("a message must be a JSON object"),
            });
        };
        // The id is read first so that every later complaint can be answered with it.
        let raw_id = obj.remove("id");
        let id =
            RequestId::read(raw_id.as_ref()).map_err(|error| InvalidMessage { id: None, error })?;
        let invalid = |detail: String| InvalidMessage {
            id: id.clone(),
            error: ErrorObject::invalid_request(detail),
        };
        match obj.remove("jsonrpc") {
            Some(Value::String(v)) if v == "2.0" => {}
            Some(other) => return Err(invalid(format!("`jsonrpc` must be \"2.0\", got {other}"))),
            None => return Err(invalid("missing `jsonrpc`: \"2.0\"".to_owned())),
        }
        if let Some(method) = obj.remove("method") {
            let Value::String(method) = method else {
                return Err(invalid(format!("`method` must be a string, got {method}")));
            };
            let params = match obj.remove("params") {
                None | Some(Value::Null) => None,
                Some(p @ (Value::Object(_) | Value::Array(_))) => Some(p),
                Some(other) => {
                    return Err(invalid(format!("`params` must be an object, got {other}")));
                }
            };
            return match (raw_id, id.clone()) {
                (None, _) => Ok(Message::Notification(Notification { method, params })),
                (Some(_), Some(id)) => Ok(Message::Request(Request { id, method, params })),
                (Some(_), None) => Err(invalid("a request `id` must not be null".to_owned())),
            };
        }
        if raw_id.is_none() {
            return Err(invalid(
                "a message needs `method` (request or notification) or `id` (response)".to_owned(),
            ));
        }
        let result = match (obj.remove("result"), obj.remove("error")) {
            (Some(result), None) => Ok(result),
            (None, Some(error)) => Err(serde_json::from_value::<ErrorObject>(error)
                .map_err(|e| invalid(format!("malformed `error` object: {e}")))?),
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "a response has `result` or `error`, not both".to_owned(),
                ));
            }
            (None, None) => {
                return Err(invalid("a response needs `result` or `error`".to_owned()));
            }
        };
        if result.is_ok() && id.is_none() {
            return Err(invalid("a result response needs an `id`".to_owned()));
        }
        Ok(Message::Response(Response { id, result }))
    }

    /// Serializes to the compact JSON text sent in one frame.
    pub fn to_text(&self) -> String {
        // Serializing these types cannot fail: every map key is a string.
        serde_json::to_string(self)
            .unwrap_or_else(|e| unreachable!("serializing a JSON-RPC message failed: {e}"))
    }
}

/// The text of a successful response whose result is already JSON text: what a result
/// serialized once, for the response and for keeping, is sent as.
pub fn response_text(id: &RequestId, result: &serde_json::value::RawValue) -> String {
    struct Text<'a>(&'a RequestId, &'a serde_json::value::RawValue);
    impl Serialize for Text<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut map = serializer.serialize_map(Some(3))?;
            map.serialize_entry("jsonrpc", "2.0")?;
            map.serialize_entry("id", self.0)?;
            map.serialize_entry("result", self.1)?;
            map.end()
        }
    }
    serde_json::to_string(&Text(id, result))
        .unwrap_or_else(|e| unreachable!("serializing a JSON-RPC response failed: {e}"))
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("jsonrpc", "2.0")?;
        match self {
            Message::Request(r) => {
                map.serialize_entry("id", &r.id)?;
                map.serialize_entry("method", &r.method)?;
                if let Some(p) = &r.params {
                    map.serialize_entry("params", p)?;
                }
            }
            Message::Notification(n) => {
                map.serialize_entry("method", &n.method)?;
                if let Some(p) = &n.params {
                    map.serialize_entry("params", p)?;
                }
            }
            Message::Response(r) => {
                map.serialize_entry("id", &r.id)?;
                match &r.result {
                    Ok(v) => map.serialize_entry("result", v)?,
                    Err(e) => map.serialize_entry("error", e)?,
                }
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Message::from_value(value).map_err(|e| de::Error::custom(e.error.message))
    }
}

/// Reads a request's `params` into `T`, naming the offending field on failure (-32602).
///
/// Absent params read as an empty object, so a params type whose fields are all optional
/// accepts a request without params.
pub fn decode_params<T: serde::de::DeserializeOwned>(
    params: Option<Value>,
) -> Result<T, ErrorObject> {
    let value = params.unwrap_or_else(|| Value::Object(Map::new()));
    // serde would read a struct from an array by position; MCP params are always objects.
    if !value.is_object() {
        return Err(ErrorObject::invalid_params(
            "params must be an object with named fields",
        ));
    }
    decode_value(value).map_err(ErrorObject::invalid_params)
}

/// Deserializes `T` from a JSON value; the error names the path of the offending field
/// (`arguments.a: invalid type: ...`) and stays under about 500 bytes.
///
/// Values that fit are read without tracking the path, which costs an allocation per map
/// key; only a value that does not fit is read again to say where.
pub fn decode_value<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, String> {
    if let Ok(decoded) = T::deserialize(&value) {
        return Ok(decoded);
    }
    serde_path_to_error::deserialize(value).map_err(|e| path_error(&e))
}

/// What is wrong, and where: the path of the offending field, then serde's words.
fn path_error<E: std::fmt::Display>(e: &serde_path_to_error::Error<E>) -> String {
    let path = e.path().to_string();
    // serde quotes the offending value, which may be huge: the message stays short.
    let detail = e.inner().to_string();
    let detail = shorten(&detail, 300);
    if path == "." {
        detail.into_owned()
    } else {
        format!("`{}`: {detail}", shorten(&path, 200))
    }
}

/// Reads `T` from JSON text in one pass, without a tree in between; on failure, says which
/// field (by its path) is wrong and why, like [`decode_value`].
pub fn decode_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    if nests_deeper(text.as_bytes(), MAX_DEPTH) {
        return Err(format!(
            "arrays and objects nest deeper than {MAX_DEPTH} levels"
        ));
    }
    if let Ok(decoded) = serde_json::from_str(text) {
        return Ok(decoded);
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| path_error(&e))
}

#[cfg(test)]
mod tests;
