//! Modern Streamable HTTP (2026-07-28): one POST, one request, no session.
//!
//! The POST's headers that mirror its body (`MCP-Protocol-Version`, `Mcp-Method`,
//! `Mcp-Name`) go to the core with the body, which checks and serves the request
//! ([`Hub::serve_stateless`]). A refusal is HTTP 400 (404 for a method the server does not
//! serve) with its JSON-RPC error; an answer ready at once is JSON; a call that runs on is
//! an SSE stream of its progress and log messages, then its response. The stream is the
//! request: a client that closes it cancels the call. Modern streams are not resumable, so
//! their events carry no ids.

use std::collections::VecDeque;
use std::convert::Infallible;

use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use mcp_session::{
    Hub, Mirrored, Outbound, OutboundReceiver, Principal, Regarding, Stateless, StatelessCall,
};
use tokio_util::sync::DropGuard;
use tokio_util::task::TaskTracker;

use crate::reply::{Body, KEEPALIVE, json, text};

/// `Mcp-Method`: the request's method.
const METHOD_HEADER: HeaderName = HeaderName::from_static("mcp-method");
/// `Mcp-Name`: the tool or prompt name, or the resource URI.
const NAME_HEADER: HeaderName = HeaderName::from_static("mcp-name");
/// The prefix of the headers that mirror a tool's parameters (`Mcp-Param-{Name}`), as hyper
/// spells header names: in lower case.
const PARAM_PREFIX: &str = "mcp-param-";
/// The protocol version header.
const VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// How long a call may take to send something before its response starts as a stream
/// anyway: a client waiting for the headers of a long call learns at once that it runs.
const FIRST_WAIT: std::time::Duration = std::time::Duration::from_millis(500);
/// Tells reverse proxies not to buffer a stream.
const ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// Serves a modern POST whose body is `body`.
pub(crate) async fn post(
    headers: &HeaderMap,
    body: &str,
    hub: &Hub,
    tracker: &TaskTracker,
    principal: &Principal,
) -> Response<Body> {
    let mirrored = mirrored(headers);
    match hub.serve_stateless(body, Some(&mirrored), principal) {
        Stateless::Refused { text, not_found } => {
            let status = match not_found {
                true => StatusCode::NOT_FOUND,
                false => StatusCode::BAD_REQUEST,
            };
            json(status, text)
        }
        Stateless::Answer(answer) => json(StatusCode::OK, answer),
        Stateless::Accepted => {
            let mut response = text(StatusCode::ACCEPTED, "");
            response.headers_mut().remove(CONTENT_TYPE);
            response
        }
        Stateless::Running(call) => running(call, tracker).await,
    }
}

/// The headers a request mirrors from its body, as received; one that is not text is taken
/// as absent (and so refused as missing).
fn mirrored(headers: &HeaderMap) -> Mirrored {
    let get = |name: &HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let params = headers
        .iter()
        .filter_map(|(name, value)| {
            let param = name.as_str().strip_prefix(PARAM_PREFIX)?;
            Some((param.to_owned(), value.to_str().ok().map(str::to_owned)))
        })
        .collect();
    Mirrored {
        protocol_version: get(&VERSION_HEADER),
        method: get(&METHOD_HEADER),
        name: get(&NAME_HEADER),
        params,
    }
}

/// A call that runs on: JSON when its answer is the first thing it sends (within
/// [`FIRST_WAIT`]), an SSE stream otherwise.
async fn running(call: StatelessCall, tracker: &TaskTracker) -> Response<Body> {
    let StatelessCall {
        mut output,
        run,
        cancel,
    } = call;
    tracker.spawn(run);
    let first = match tokio::time::timeout(FIRST_WAIT, output.recv_with_regarding()).await {
        Err(_) => return sse(None, output, cancel),
        Ok(Some((Outbound::Text(first), regarding))) => (first, regarding),
        // A call always answers before its output ends; say so rather than hang.
        Ok(_) => {
            tracing::error!("a stateless call ended without an answer");
            return json(
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error: the call ended without an answer"}}"#,
            );
        }
    };
    if matches!(first.1, Regarding::Answer(_)) {
        return json(StatusCode::OK, first.0);
    }
    sse(Some(first.0), output, cancel)
}

/// An SSE stream of `first` (if any), then what `output` yields, with a keep-alive comment while
/// nothing comes. Dropping the stream (the client went away) drops `cancel`, which cancels
/// the call.
fn sse(first: Option<String>, output: OutboundReceiver, cancel: DropGuard) -> Response<Body> {
    let head: VecDeque<Bytes> = first.iter().map(|f| event(f)).collect();
    let state = (head, Some(output), cancel);
    let stream = futures_util::stream::unfold(state, |(mut head, mut output, cancel)| async move {
        if let Some(bytes) = head.pop_front() {
            return Some((
                Ok::<_, Infallible>(Frame::data(bytes)),
                (head, output, cancel),
            ));
        }
        let receiver = output.as_mut()?;
        let bytes = match tokio::time::timeout(KEEPALIVE, receiver.recv()).await {
            Ok(Some(Outbound::Text(message))) => event(&message),
            // The answer went out: the stream ends.
            Ok(Some(Outbound::Close(_)) | None) => return None,
            Err(_) => Bytes::from_static(b": keep-alive\n\n"),
        };
        Some((Ok(Frame::data(bytes)), (head, output, cancel)))
    });
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(ACCEL_BUFFERING, HeaderValue::from_static("no"));
    response
}

fn event(data: &str) -> Bytes {
    Bytes::from(format!("event: message\ndata: {data}\n\n"))
}
