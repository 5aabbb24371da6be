//! What routing needs of a message, read without building it: of a POST body (its requests'
//! ids, their progress tokens, the requests a cancellation names) and of the session's
//! output (the ids of responses, the token of a progress notification). The rest of a
//! message (a result may be megabytes) is skipped, not built; the session parses the
//! message itself, once.

use std::borrow::Cow;

use hyper::body::Bytes;
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

/// What routing needs of one message of a POST.
#[derive(Debug, Default)]
pub(crate) struct Inbound {
    pub(crate) method: Option<String>,
    /// A request's id, as JSON text (`null` ids are no ids).
    pub(crate) id: Option<String>,
    pub(crate) progress_token: Option<String>,
    /// The request a `notifications/cancelled` names, as JSON text.
    pub(crate) cancels: Option<String>,
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

/// The same id or token always makes the same key, however the client spelled it.
fn key(raw: &RawValue) -> Option<String> {
    serde_json::from_str::<Value>(raw.get())
        .ok()
        .filter(|v| !v.is_null())
        .map(|v| v.to_string())
}

/// What routing needs of one message, and whether it looks like an agent API body.
fn inbound(peek: PeekIn<'_>) -> (Inbound, bool) {
    let params = peek.params.unwrap_or_default();
    let is_request = peek.method.is_some();
    let message = Inbound {
        id: peek.id.filter(|_| is_request).and_then(key),
        progress_token: params.meta.and_then(|m| m.progress_token).and_then(key),
        cancels: params.request_id.and_then(key),
        method: peek.method.map(Cow::into_owned),
    };
    (message, peek.agent_id.0 && !peek.jsonrpc.0)
}

/// What routing needs of a message of the session; the rest (a result may be megabytes)
/// is skipped, not built.
#[derive(Deserialize)]
pub(crate) struct Peek {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    result: Seen,
    #[serde(default)]
    error: Seen,
    #[serde(default)]
    params: Option<PeekParams>,
}

#[derive(Deserialize)]
struct PeekParams {
    #[serde(default, rename = "progressToken")]
    progress_token: Option<Value>,
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

/// The messages of one text: one, or a batch's.
pub(crate) fn peek(text: &str) -> Vec<Peek> {
    if text.trim_start().starts_with('[') {
        serde_json::from_str(text).unwrap_or_default()
    } else {
        serde_json::from_str(text)
            .map(|p| vec![p])
            .unwrap_or_default()
    }
}

impl Peek {
    pub(crate) fn response_id(&self) -> Option<String> {
        let is_response = self.method.is_none() && (self.result.0 || self.error.0);
        is_response.then(|| self.id.as_ref().map(Value::to_string))?
    }

    pub(crate) fn progress_token(&self) -> Option<String> {
        (self.method.as_deref()? == mcp_protocol::methods::PROGRESS).then(|| {
            self.params
                .as_ref()?
                .progress_token
                .as_ref()
                .map(Value::to_string)
        })?
    }
}

#[cfg(test)]
mod tests;
