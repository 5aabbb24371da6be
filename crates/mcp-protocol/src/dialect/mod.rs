//! The seeds' wire dialects, as pure translations to and from standard MCP messages.
//!
//! A dialect sits between a connection and its session: what the client sends is turned into
//! JSON-RPC messages for the session (or answered on the spot), and what the session sends is
//! turned into the dialect's frames. The session only ever sees standard MCP; no IO happens
//! here, and the time is passed in, so every translation is a function of its inputs and the
//! dialect's own small state (which requests are running, which were cancelled).
//!
//! - [`Envelope`]: the math-mcp seed's `{"type": "mcp_request" | ...}` envelopes, on an
//!   agent's own WebSocket.
//! - [`Tutorial`]: the real-time tutorial's JSON-RPC extras (`connected`, `progress`,
//!   `cancel`, `ping`/`pong`, `notification`), chosen per connection.

mod envelope;
mod tutorial;

#[cfg(test)]
mod tests;

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub use envelope::Envelope;
pub use tutorial::Tutorial;

/// What one step of a translation produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Translated {
    /// JSON-RPC messages for the session, in order.
    pub to_session: Vec<String>,
    /// Frames for the client, in order.
    pub to_client: Vec<String>,
    /// Close the connection (normally) after `to_client`, for this reason.
    pub close: Option<String>,
}

impl Translated {
    fn session(&mut self, message: &Value) {
        self.to_session.push(message.to_string());
    }

    fn client(&mut self, message: &Value) {
        self.to_client.push(message.to_string());
    }
}

/// A connection's dialect, with its state.
#[derive(Debug)]
pub enum Dialect {
    /// The math-mcp seed's envelopes.
    Envelope(Envelope),
    /// The tutorial's JSON-RPC extras.
    Tutorial(Tutorial),
}

impl Dialect {
    /// What to send when the connection opens.
    pub fn open(&mut self, now: SystemTime) -> Translated {
        match self {
            Self::Envelope(d) => d.open(),
            Self::Tutorial(d) => d.open(now),
        }
    }

    /// Translates one text frame from the client.
    pub fn on_client(&mut self, text: &str, now: SystemTime) -> Translated {
        match self {
            Self::Envelope(d) => d.on_client(text, now),
            Self::Tutorial(d) => d.on_client(text, now),
        }
    }

    /// Translates one message of the session.
    pub fn on_session(&mut self, text: &str, now: SystemTime) -> Translated {
        match self {
            Self::Envelope(d) => d.on_session(text, now),
            Self::Tutorial(d) => d.on_session(text, now),
        }
    }
}

/// How many cancelled requests a dialect remembers, to drop an answer the session had
/// already sent when the cancel arrived.
const CANCELLED_MEMORY: usize = 1024;

/// Milliseconds since the Unix epoch.
fn millis(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The ISO-8601 timestamp of `now`, in UTC with milliseconds, as JavaScript's
/// `toISOString()` writes it.
fn timestamp(now: SystemTime) -> String {
    humantime::format_rfc3339_millis(now).to_string()
}

/// A tool result's text content, joined by newlines.
fn result_text(result: &Value) -> String {
    result
        .get("content")
        .and_then(Value::as_array)
        .map(|content| {
            content
                .iter()
                .filter_map(|c| c.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Whether `message` is a JSON-RPC response (it has an id and no method).
fn is_response(message: &Value) -> bool {
    message.get("method").is_none()
        && message.get("id").is_some()
        && (message.get("result").is_some() || message.get("error").is_some())
}
