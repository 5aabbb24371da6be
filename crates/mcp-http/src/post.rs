//! What routing needs of a POST body, read without building it: its requests' ids, their
//! progress tokens, the requests a cancellation names. The rest of a message (arguments may
//! be megabytes) is skipped, not built; the session parses the message itself, once. What
//! the session sends back needs no reading: it says what each message answers
//! ([`mcp_session::Regarding`]).

use std::borrow::Cow;

use hyper::body::Bytes;
use mcp_protocol::{ErrorObject, ProgressToken, RequestId};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// A POST body: its text, handed to the session as it came, and what routing needs of its
/// messages.
#[derive(Debug)]
pub struct Post {
    text: String,
    messages: Vec<Inbound>,
    /// A single object with `agentId` and without `jsonrpc`.
    agent_request: bool,
}

/// A request whose id is neither an integer nor a string: its answer could not be told
/// apart from others', so it is refused at once, with the error the session would give.
#[derive(Debug)]
pub(crate) struct Unroutable(pub(crate) ErrorObject);

/// What routing needs of one message of a POST.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub(crate) method: Option<String>,
    /// A request's id (`null` ids are no ids), or why it cannot be one.
    pub(crate) id: Result<Option<RequestId>, Unroutable>,
    pub(crate) progress_token: Option<ProgressToken>,
    /// The request a `notifications/cancelled` names.
    pub(crate) cancels: Option<RequestId>,
}

/// Why a POST body is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PostError {
    /// The body is not JSON (the text says where): the client should send a JSON-RPC
    /// message, or an array of them.
    #[error("the body is not JSON: {0}")]
    NotJson(String),
}

impl Post {
    /// Reads a body, building no tree: a single message is one scan that picks out what
    /// routing needs; a batch, or a body that is not an object, is first checked to be JSON.
    pub fn parse(body: Bytes) -> Result<Self, PostError> {
        // The buffer is taken over, not copied, when nothing else holds it.
        let text = String::from_utf8(Vec::from(body))
            .map_err(|e| PostError::NotJson(format!("not UTF-8: {e}")))?;
        // Only an object: serde would read a struct from an array too, by position.
        if text.trim_start().starts_with('{')
            && let Ok(peek) = serde_json::from_str::<PeekIn<'_>>(&text)
        {
            let (message, agent_request) = inbound(peek);
            return Ok(Self {
                messages: vec![message],
                agent_request,
                text,
            });
        }
        let whole: &RawValue =
            serde_json::from_str(&text).map_err(|e| PostError::NotJson(e.to_string()))?;
        let lenient = |text: &str| inbound(serde_json::from_str(text).unwrap_or_default());
        let (messages, agent_request) = if whole.get().starts_with('[') {
            let items: Vec<&RawValue> = serde_json::from_str(whole.get()).unwrap_or_default();
            (items.iter().map(|m| lenient(m.get()).0).collect(), false)
        } else {
            // Something other than an object (a number, a string): the session answers it.
            let (message, agent_request) = lenient(whole.get());
            (vec![message], agent_request)
        };
        Ok(Self {
            text,
            messages,
            agent_request,
        })
    }

    /// Whether this is, by the look of it, the seeds' agent API (`{"agentId", "request"}`,
    /// no `jsonrpc`), which shares the endpoint.
    pub fn is_agent_request(&self) -> bool {
        self.agent_request
    }

    /// The body's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub(crate) fn messages(&self) -> &[Inbound] {
        &self.messages
    }

    pub(crate) fn into_text(self) -> String {
        self.text
    }
}

#[derive(Deserialize, Default)]
struct PeekIn<'a> {
    #[serde(default, borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    params: Option<PeekInParams<'a>>,
    #[serde(default)]
    jsonrpc: Seen,
    #[serde(default, rename = "agentId")]
    agent_id: Seen,
}

#[derive(Deserialize, Default)]
struct PeekInParams<'a> {
    #[serde(default, rename = "_meta", borrow)]
    meta: Option<PeekMeta<'a>>,
    #[serde(default, rename = "requestId", borrow)]
    request_id: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct PeekMeta<'a> {
    #[serde(default, rename = "progressToken", borrow)]
    progress_token: Option<&'a RawValue>,
}

/// An id or token as the session reads it, however the client spelled it.
fn value(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
}

/// What routing needs of one message, and whether it looks like an agent API body.
fn inbound(peek: PeekIn<'_>) -> (Inbound, bool) {
    let params = peek.params.unwrap_or_default();
    let id = match peek.id.filter(|_| peek.method.is_some()) {
        Some(raw) => RequestId::read(Some(&value(raw))).map_err(Unroutable),
        None => Ok(None),
    };
    let token = params.meta.and_then(|m| m.progress_token);
    let message = Inbound {
        id,
        progress_token: token.and_then(|t| RequestId::from_value(&value(t))),
        cancels: params
            .request_id
            .and_then(|r| RequestId::from_value(&value(r))),
        method: peek.method.map(Cow::into_owned),
    };
    (message, peek.agent_id.0 && !peek.jsonrpc.0)
}

/// Whether a member is there, whatever its value (`null` included).
#[derive(Default)]
struct Seen(bool);

impl<'de> Deserialize<'de> for Seen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(Self(true))
    }
}

#[cfg(test)]
mod tests;
