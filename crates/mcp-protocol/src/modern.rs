//! The modern era (revision 2026-07-28 and later): no `initialize`, every request carries
//! what the server needs to know in its own `_meta`, and every result says what kind it is
//! (`resultType`).
//!
//! This module reads a request's `_meta` ([`RequestMeta::read`]), names the errors the
//! revision defines (-32020, -32021, -32022), and shapes what a modern result carries
//! besides its body ([`complete`], [`Cache`]).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{
    ClientCapabilities, ErrorObject, Implementation, LoggingLevel, ProgressToken, ProtocolVersion,
    ServerCapabilities, methods,
};

/// `_meta` key of the revision a request speaks (required).
pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key of the client's capabilities for this request (required).
pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key of who the client is (optional).
pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key of the lowest level of log messages the request wants (optional; none
/// without it).
pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// Result `_meta` key of who the server is.
pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// Notification `_meta` key of the `subscriptions/listen` request a notification belongs to.
pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// Error codes the modern revision defines.
pub mod codes {
    /// The HTTP headers do not match the body, or a required one is missing.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// The request needs a capability the client did not declare.
    pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
    /// The request speaks a revision the server does not.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
}

/// What a modern request says of itself in `_meta`.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestMeta {
    /// The revision it speaks.
    pub version: ProtocolVersion,
    /// What the client can do, for this request.
    pub capabilities: ClientCapabilities,
    /// Who the client is, when it says.
    pub client_info: Option<Implementation>,
    /// The lowest level of log messages it wants; none when absent.
    pub log_level: Option<LoggingLevel>,
    /// Its progress token, when it wants progress.
    pub progress_token: Option<ProgressToken>,
}

/// Whether `params` says it is a modern request: its `_meta` names a revision (any, even one
/// this server does not speak).
pub fn names_a_version(params: Option<&Value>) -> bool {
    params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(PROTOCOL_VERSION))
        .is_some()
}

impl RequestMeta {
    /// Reads the `_meta` of a modern request's params: -32602 when a required field is
    /// missing or malformed, -32022 when the revision is not one this server serves per
    /// request.
    pub fn read(params: Option<&Value>) -> Result<Self, ErrorObject> {
        let missing = |what: &str| {
            ErrorObject::invalid_params(format_args!(
                "a {} request needs `params._meta` with `{PROTOCOL_VERSION}` and `{CLIENT_CAPABILITIES}`: {what}",
                ProtocolVersion::LATEST_MODERN
            ))
        };
        let meta = match params.and_then(|p| p.get("_meta")) {
            None => return Err(missing("there is no `_meta`")),
            Some(Value::Object(meta)) => meta,
            Some(_) => return Err(missing("`_meta` is not an object")),
        };
        let requested = match meta.get(PROTOCOL_VERSION) {
            None => return Err(missing(&format!("`{PROTOCOL_VERSION}` is missing"))),
            Some(Value::String(v)) => v,
            Some(_) => return Err(missing(&format!("`{PROTOCOL_VERSION}` is not a string"))),
        };
        let version = ProtocolVersion::parse(requested)
            .filter(|v| v.is_modern())
            .ok_or_else(|| unsupported_version(requested))?;
        let capabilities = match meta.get(CLIENT_CAPABILITIES) {
            None => return Err(missing(&format!("`{CLIENT_CAPABILITIES}` is missing"))),
            Some(v) => ClientCapabilities::deserialize(v).map_err(|e| {
                ErrorObject::invalid_params(format_args!("`{CLIENT_CAPABILITIES}`: {e}"))
            })?,
        };
        let client_info =
            match meta.get(CLIENT_INFO) {
                None | Some(Value::Null) => None,
                Some(v) => Some(Implementation::deserialize(v).map_err(|e| {
                    ErrorObject::invalid_params(format_args!("`{CLIENT_INFO}`: {e}"))
                })?),
            };
        let log_level = match meta.get(LOG_LEVEL) {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                LoggingLevel::deserialize(v)
                    .map_err(|e| ErrorObject::invalid_params(format_args!("`{LOG_LEVEL}`: {e}")))?,
            ),
        };
        let progress_token = meta
            .get("progressToken")
            .and_then(crate::RequestId::from_value);
        Ok(Self {
            version,
            capabilities,
            client_info,
            log_level,
            progress_token,
        })
    }

    /// Whether the client declared `capability` (`sampling`, `elicitation`, `roots`, or an
    /// extension's name under `extensions`).
    pub fn declares(&self, capability: &str) -> bool {
        let c = &self.capabilities;
        match capability {
            "sampling" => c.sampling.is_some(),
            "elicitation" => c.elicitation.is_some(),
            "roots" => c.roots.is_some(),
            other => c
                .extra
                .get("extensions")
                .and_then(|e| e.get(other))
                .is_some(),
        }
    }
}

/// -32022: the request speaks `requested`, which this server does not serve per request.
pub fn unsupported_version(requested: &str) -> ErrorObject {
    let supported: Vec<&str> = ProtocolVersion::SUPPORTED.map(|v| v.as_str()).to_vec();
    ErrorObject::new(
        codes::UNSUPPORTED_PROTOCOL_VERSION,
        format!(
            "unsupported protocol version `{}`: this server speaks {} per request, and {} after `initialize`",
            crate::shorten(requested, 40),
            ProtocolVersion::MODERN.map(|v| v.as_str()).join(", "),
            ProtocolVersion::LEGACY.map(|v| v.as_str()).join(", ")
        ),
    )
    .with_data(json!({"supported": supported, "requested": requested}))
}

/// -32020: a header the transport mirrors from the body is missing or says otherwise.
pub fn header_mismatch(detail: impl std::fmt::Display) -> ErrorObject {
    ErrorObject::new(codes::HEADER_MISMATCH, format!("header mismatch: {detail}"))
}

/// -32021: the request needs `capability`, which the client did not declare.
pub fn missing_capability(capability: &str) -> ErrorObject {
    ErrorObject::new(
        codes::MISSING_REQUIRED_CLIENT_CAPABILITY,
        format!(
            "this request needs the client capability `{capability}`, which `{CLIENT_CAPABILITIES}` does not declare"
        ),
    )
    .with_data(json!({"requiredCapabilities": {capability: {}}}))
}

/// The tasks extension's name, under `capabilities.extensions`.
pub const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// -32021: the request needs the extension `name`, which the client did not declare.
pub fn missing_extension(name: &str) -> ErrorObject {
    ErrorObject::new(
        codes::MISSING_REQUIRED_CLIENT_CAPABILITY,
        format!(
            "this request needs the client to declare the extension `{name}` under `extensions` in `{CLIENT_CAPABILITIES}`"
        ),
    )
    .with_data(json!({"requiredCapabilities": {"extensions": {name: {}}}}))
}

/// Whether the modern revision removed `method` (it belongs to the `initialize` era): such
/// a request is answered -32601, as a method this server does not implement.
pub fn is_removed(method: &str) -> bool {
    matches!(
        method,
        methods::INITIALIZE
            | methods::PING
            | methods::LOGGING_SET_LEVEL
            | methods::RESOURCES_SUBSCRIBE
            | methods::RESOURCES_UNSUBSCRIBE
    )
}

/// A header value as the HTTP binding encodes it (SEP-2243): as is when it is plain ASCII,
/// `=?base64?{UTF-8 as Base64}?=` otherwise. `None` when the Base64 or its UTF-8 is bad.
pub fn decode_header_value(value: &str) -> Option<String> {
    use base64::Engine as _;
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(value.to_owned()),
    }
}

/// A header value as the HTTP binding wants it (SEP-2243): as is when it is visible ASCII and
/// spaces with no space at either end, and does not look like the sentinel itself;
/// `=?base64?{UTF-8 as Base64}?=` otherwise. [`decode_header_value`] reads it back.
pub fn encode_header_value(value: &str) -> String {
    use base64::Engine as _;
    let visible = value.bytes().all(|b| (0x20..=0x7e).contains(&b));
    let padded = value.starts_with(' ') || value.ends_with(' ');
    let sentinel = value.starts_with("=?base64?") && value.ends_with("?=");
    if visible && !padded && !sentinel {
        value.to_owned()
    } else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(value);
        format!("=?base64?{encoded}?=")
    }
}

/// The parameters an input schema annotates with `x-mcp-header` (SEP-2243): the path of
/// `properties` keys to each (nested objects at most 8 deep), and its header's name (sent
/// as `Mcp-Param-{name}`).
pub fn header_params(schema: &Value) -> Vec<(Vec<String>, String)> {
    fn walk(schema: &Value, path: &mut Vec<String>, found: &mut Vec<(Vec<String>, String)>) {
        if path.len() > 8 {
            return;
        }
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (key, property) in properties {
            path.push(key.clone());
            if let Some(header) = property.get("x-mcp-header").and_then(Value::as_str) {
                found.push((path.clone(), header.to_owned()));
            }
            walk(property, path, found);
            path.pop();
        }
    }
    let mut found = Vec::new();
    walk(schema, &mut Vec::new(), &mut found);
    found
}

/// What a header mirrors of an argument's value, before encoding: a string as is, a number
/// in decimal, a boolean as `true` or `false`; `None` for anything else (not mirrored).
pub fn header_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether a header's (decoded) text says what the body's value is: a string as is, a number
/// by its value (`42` and `42.0` alike), a boolean as `true` or `false`.
pub fn header_matches(header: &str, value: &Value) -> bool {
    match value {
        Value::String(s) => s == header,
        Value::Number(n) => header
            .trim()
            .parse::<f64>()
            .ok()
            .zip(n.as_f64())
            .is_some_and(|(h, b)| h == b),
        Value::Bool(b) => header == if *b { "true" } else { "false" },
        _ => false,
    }
}

/// How long, and for whom, a result may be cached (SEP-2549).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cache {
    /// How long the result stays fresh, in milliseconds.
    pub ttl_ms: u64,
    /// Whether it may be shared across authorization contexts.
    pub public: bool,
}

impl Cache {
    fn insert(self, result: &mut Map<String, Value>) {
        result.insert("ttlMs".to_owned(), Value::from(self.ttl_ms));
        let scope = if self.public { "public" } else { "private" };
        result.insert("cacheScope".to_owned(), Value::from(scope));
    }
}

/// Makes `result` a modern complete result: `resultType: "complete"`, who the server is in
/// its `_meta`, and the caching fields when it is cacheable.
pub fn complete(result: &mut Map<String, Value>, server: &Implementation, cache: Option<Cache>) {
    result.insert("resultType".to_owned(), Value::from("complete"));
    stamp_server(result, server);
    if let Some(cache) = cache {
        cache.insert(result);
    }
}

/// Adds who the server is to a result's `_meta`.
pub fn stamp_server(result: &mut Map<String, Value>, server: &Implementation) {
    let meta = result
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        meta.insert(
            SERVER_INFO.to_owned(),
            serde_json::to_value(server).unwrap_or(Value::Null),
        );
    }
}

/// The result of `server/discover`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoverResult {
    /// Every revision this server speaks: modern ones per request, legacy ones after
    /// `initialize`.
    pub supported_versions: Vec<String>,
    /// What the server can do.
    pub capabilities: ServerCapabilities,
    /// How to use this server, for the client's model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
}

#[cfg(test)]
mod tests;
