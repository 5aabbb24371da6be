//! What a message from the server does, whatever carried it: an answer completes its
//! request, progress goes to its call, a notification to the listeners, and a request to
//! the handler (or is answered at once: `ping`, or -32601 without a handler).

use std::sync::Arc;

use mcp_protocol::{ErrorObject, Message, ProgressParams, Response, methods};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{Error, Handler, Outgoing, Shared};

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
