//! What a message from the server does, whatever carried it: an answer completes its
//! request, progress goes to its call, a notification to the listeners, and a request to
//! the handler (or is answered at once: `ping`, or -32601 without a handler).

use std::sync::Arc;

use mcp_protocol::{ErrorObject, InitializeResult, Message, ProgressParams, Response, methods};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{Error, Handler, Options, Outgoing, Shared};

/// The newest MCP revision this client speaks.
const PROTOCOL_VERSION: &str = "2025-11-25";

/// The id of the `initialize` request, told apart from the session's own ids.
pub(crate) const INITIALIZE_ID: &str = "initialize";

/// The `initialize` request: a new resumable session, or with `resume` the session `id`
/// after position `after`. The handler's capabilities are declared.
pub(crate) fn initialize_request(options: &Options, resume: Option<(&str, u64)>) -> String {
    let mut capabilities = options
        .handler
        .as_ref()
        .map(|h| h.capabilities())
        .unwrap_or_default();
    let resume_capability = match resume {
        Some((_, after)) => json!({"lastSeq": after}),
        None => json!({}),
    };
    capabilities
        .experimental
        .get_or_insert_with(Default::default)
        .insert("resume".to_owned(), resume_capability);
    let mut message = json!({"jsonrpc": "2.0", "id": INITIALIZE_ID, "method": methods::INITIALIZE,
    "params": {
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": capabilities,
        "clientInfo": options.client_info,
    }});
    if let Some((id, _)) = resume {
        message["mcpSessionId"] = json!(id);
    }
    message.to_string()
}

/// Why `initialize` did not succeed.
pub(crate) enum Refused {
    /// The server's error.
    Error(ErrorObject),
    /// An answer of the wrong shape.
    Malformed(String),
}

/// The answer to `initialize`: its result and the session's `mcpSessionId`.
pub(crate) fn initialize_answer(
    answer: &Value,
) -> Result<(InitializeResult, Option<String>), Refused> {
    if let Some(error) = answer.get("error") {
        return Err(serde_json::from_value(error.clone()).map_or_else(
            |e| Refused::Malformed(format!("a malformed error: {e}")),
            Refused::Error,
        ));
    }
    let result = serde_json::from_value(answer["result"].clone())
        .map_err(|e| Refused::Malformed(format!("a malformed initialize result: {e}")))?;
    Ok((result, answer["mcpSessionId"].as_str().map(str::to_owned)))
}

/// The notification that follows a successful `initialize`.
pub(crate) fn initialized() -> String {
    json!({"jsonrpc": "2.0", "method": methods::INITIALIZED}).to_string()
}

/// Handles `value`; returns an answer to send back at once, if any. A handler's answer is
/// sent through `out` when it is ready.
pub(crate) fn handle(
    shared: &Shared,
    handler: Option<Arc<dyn Handler>>,
    out: &mpsc::Sender<Outgoing>,
    value: Value,
) -> Option<String> {
    if let Some(seq) = value.get("seq").and_then(Value::as_u64)
        && !shared.accept_seq(seq)
    {
        // Seen before the connection dropped: nothing twice.
        return None;
    }
    let message = match Message::from_value(value) {
        Ok(message) => message,
        Err(e) => {
            tracing::warn!(error = ?e, "the server sent a message that is not JSON-RPC");
            return None;
        }
    };
    match message {
        Message::Response(Response {
            id: Some(id),
            result,
        }) => shared.answer(&id, result.map_err(Error::Rpc)),
        Message::Response(Response { id: None, result }) => {
            tracing::warn!(?result, "the server answered a message it could not read");
        }
        Message::Notification(notification) if notification.method == methods::PROGRESS => {
            match notification
                .params
                .map(serde_json::from_value::<ProgressParams>)
            {
                Some(Ok(progress)) => shared.progress(progress),
                _ => tracing::warn!("a malformed progress notification"),
            }
        }
        Message::Notification(notification) => shared.notify(notification),
        Message::Request(request) => {
            let id = request.id.clone();
            if request.method == methods::PING {
                return Some(Message::Response(Response::ok(id, json!({}))).to_text());
            }
            let Some(handler) = handler else {
                let error = ErrorObject::method_not_found(&request.method);
                return Some(Message::Response(Response::error(Some(id), error)).to_text());
            };
            // Handlers may take long (a user answering): they run on their own.
            let answer = handler.handle(&request.method, request.params);
            let out = out.clone();
            tokio::spawn(async move {
                let response = match answer.await {
                    Ok(result) => Response::ok(id, result),
                    Err(error) => Response::error(Some(id), error),
                };
                let text = Message::Response(response).to_text();
                let _ = out.send(Outgoing::Text(text)).await;
            });
        }
    }
    None
}
