//! The 2026-07-28 revision, whatever carries it: the `server/discover` probe that tells a
//! modern server from a legacy one, the `_meta` every modern request carries, and the
//! client's side of multi-round-trip requests (SEP-2322): answering a result's
//! `inputRequests` with the [`Handler`] and retrying with `inputResponses`.

use std::sync::Arc;
use std::time::Duration;

use mcp_protocol::modern::{self as wire, DiscoverResult, codes};
use mcp_protocol::{ErrorObject, Implementation, InitializeResult, ProtocolVersion, methods};
use serde_json::{Map, Value, json};

use crate::{Error, Handler, Options};

/// The modern revision this client speaks.
pub(crate) const VERSION: ProtocolVersion = ProtocolVersion::LATEST_MODERN;

/// The id of the `server/discover` probe, told apart from the client's own ids.
pub(crate) const DISCOVER_ID: &str = "discover";

/// How long a server may take to answer the `server/discover` probe before it counts as a
/// legacy server that stays silent.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times one request may come back asking for input before the client gives up.
pub(crate) const MAX_ROUNDS: usize = 10;

/// The `_meta` entries every modern request carries: the revision, the client's
/// capabilities (those of its handler) and who it is.
pub(crate) fn request_meta(options: &Options) -> Map<String, Value> {
    let capabilities = options
        .handler
        .as_ref()
        .map(|h| h.capabilities())
        .unwrap_or_default();
    let mut meta = Map::new();
    meta.insert(wire::PROTOCOL_VERSION.to_owned(), json!(VERSION.as_str()));
    meta.insert(
        wire::CLIENT_CAPABILITIES.to_owned(),
        serde_json::to_value(capabilities).unwrap_or_else(|_| json!({})),
    );
    meta.insert(
        wire::CLIENT_INFO.to_owned(),
        serde_json::to_value(&options.client_info).unwrap_or_else(|_| json!({})),
    );
    meta
}

/// The `server/discover` probe.
pub(crate) fn discover_request(options: &Options) -> Value {
    json!({"jsonrpc": "2.0", "id": DISCOVER_ID, "method": methods::SERVER_DISCOVER,
        "params": {"_meta": request_meta(options)}})
}

/// What the probe found.
pub(crate) enum Probe {
    /// A server of this revision: how it describes itself, as `initialize` would have.
    Modern(Box<InitializeResult>),
    /// A modern server that refuses (for example, it speaks another modern revision):
    /// falling back to `initialize` would not help.
    Refused(ErrorObject),
    /// Anything else: a legacy server. Why, for the logs.
    Legacy(String),
}

/// Whether `code` is an error only a modern server gives.
pub(crate) fn is_modern_error(code: i64) -> bool {
    matches!(
        code,
        codes::HEADER_MISMATCH
            | codes::MISSING_REQUIRED_CLIENT_CAPABILITY
            | codes::UNSUPPORTED_PROTOCOL_VERSION
    )
}

/// Reads the answer to the probe (a JSON-RPC response).
pub(crate) fn read_discover(answer: &Value) -> Probe {
    if let Some(error) = answer.get("error") {
        return match serde_json::from_value::<ErrorObject>(error.clone()) {
            Ok(error) if is_modern_error(error.code) => Probe::Refused(error),
            Ok(error) => Probe::Legacy(format!("server/discover answered {error}")),
            Err(e) => Probe::Legacy(format!("server/discover answered a malformed error: {e}")),
        };
    }
    let result = &answer["result"];
    let discovered: DiscoverResult = match serde_json::from_value(result.clone()) {
        Ok(discovered) => discovered,
        Err(e) => return Probe::Legacy(format!("not a server/discover result: {e}")),
    };
    if !discovered
        .supported_versions
        .iter()
        .any(|v| v == VERSION.as_str())
    {
        let legacy = ProtocolVersion::LEGACY.map(ProtocolVersion::as_str);
        if discovered
            .supported_versions
            .iter()
            .any(|v| legacy.contains(&v.as_str()))
        {
            return Probe::Legacy(format!(
                "the server speaks {} (not {} per request)",
                discovered.supported_versions.join(", "),
                VERSION.as_str()
            ));
        }
        let message = format!(
            "the server speaks {}, this client {} (or a 2025 revision after `initialize`)",
            discovered.supported_versions.join(", "),
            VERSION.as_str()
        );
        return Probe::Refused(
            ErrorObject::new(codes::UNSUPPORTED_PROTOCOL_VERSION, message).with_data(json!({
                "supported": discovered.supported_versions,
                "requested": VERSION.as_str(),
            })),
        );
    }
    let server_info = result
        .pointer(&format!("/_meta/{}", wire::SERVER_INFO.replace('/', "~1")))
        .and_then(|info| serde_json::from_value::<Implementation>(info.clone()).ok())
        .unwrap_or_else(|| Implementation {
            name: "unknown".to_owned(),
            version: "unknown".to_owned(),
            title: None,
            extra: Map::new(),
        });
    Probe::Modern(Box::new(InitializeResult {
        protocol_version: VERSION.as_str().to_owned(),
        capabilities: discovered.capabilities,
        server_info,
        instructions: discovered.instructions,
    }))
}

/// Whether a result asks for input (SEP-2322) rather than completing.
pub(crate) fn asks_for_input(result: &Value) -> bool {
    result.get("resultType").and_then(Value::as_str) == Some("input_required")
}

/// Answers an input-required result's `inputRequests` with `handler`, all at once, and
/// returns the params of the retry: `params` with `inputResponses` and the `requestState`
/// the server gave.
pub(crate) async fn answer_inputs(
    handler: Option<&Arc<dyn Handler>>,
    params: &Value,
    result: &Value,
) -> Result<Value, Error> {
    let malformed = |why: &str| Error::Decode(format!("an input-required result {why}"));
    let requests = result
        .get("inputRequests")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed("has no `inputRequests` object"))?;
    let mut pending = Vec::with_capacity(requests.len());
    for (key, request) in requests {
        let method = request
            .get("method")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed(&format!("asks `{key}` without a method")))?;
        let Some(handler) = handler else {
            return Err(Error::Rpc(ErrorObject::method_not_found(method)));
        };
        let answer = handler.handle(method, request.get("params").cloned());
        pending.push(async move { (key.clone(), answer.await) });
    }
    let mut responses = Map::new();
    for (key, answer) in futures_util::future::join_all(pending).await {
        // The revision has no way to tell the server a request failed: the call fails here.
        responses.insert(key, answer.map_err(Error::Rpc)?);
    }
    let mut retry = params.clone();
    let object = retry
        .as_object_mut()
        .ok_or_else(|| Error::Decode("the request's params are not an object".to_owned()))?;
    object.insert("inputResponses".to_owned(), Value::Object(responses));
    match result.get("requestState") {
        Some(state) => object.insert("requestState".to_owned(), state.clone()),
        None => object.remove("requestState"),
    };
    Ok(retry)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Probe, read_discover};

    #[test]
    fn the_probe_tells_modern_from_legacy_servers() {
        let modern = json!({"jsonrpc": "2.0", "id": "discover", "result": {
            "supportedVersions": ["2026-07-28", "2025-11-25"],
            "capabilities": {"tools": {}},
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "s", "version": "1"}},
        }});
        match read_discover(&modern) {
            Probe::Modern(result) => {
                assert_eq!(result.protocol_version, "2026-07-28");
                assert_eq!(result.server_info.name, "s");
            }
            _ => panic!("a discover result is a modern server"),
        }
        let not_initialized = json!({"jsonrpc": "2.0", "id": "discover",
            "error": {"code": -32600, "message": "not initialized"}});
        assert!(matches!(read_discover(&not_initialized), Probe::Legacy(_)));
        let unknown = json!({"jsonrpc": "2.0", "id": "discover",
            "error": {"code": -32601, "message": "Method not found"}});
        assert!(matches!(read_discover(&unknown), Probe::Legacy(_)));
        let other_revision = json!({"jsonrpc": "2.0", "id": "discover", "error": {
            "code": -32022, "message": "unsupported", "data": {"supported": ["2027-01-01"]}}});
        assert!(matches!(read_discover(&other_revision), Probe::Refused(_)));
        let only_newer = json!({"jsonrpc": "2.0", "id": "discover", "result": {
            "supportedVersions": ["2027-01-01"], "capabilities": {}}});
        assert!(matches!(read_discover(&only_newer), Probe::Refused(e) if e.code == -32022));
        let only_legacy = json!({"jsonrpc": "2.0", "id": "discover", "result": {
            "supportedVersions": ["2025-06-18"], "capabilities": {}}});
        assert!(matches!(read_discover(&only_legacy), Probe::Legacy(_)));
    }
}
