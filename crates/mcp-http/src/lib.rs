//! The Streamable HTTP transport (MCP revision 2025-11-25) over the same sessions as
//! WebSocket: `POST` carries messages, `GET` opens the standalone SSE stream, `DELETE` ends
//! the session.
//!
//! Like the WebSocket transport it makes no protocol decisions: it reads the ids, methods and
//! progress tokens of what it receives, only to route the answers back, and routes what the
//! session sends by what the session says it is about, without reading it; what a message
//! means is the session's business. [`reply`] holds the responses the server's other
//! endpoints share with it.

#![warn(missing_docs)]

mod post;
pub mod reply;
mod stateless;
mod streamable;

pub use post::{Post, PostError};
pub use reply::{Body, accepts};
pub use streamable::{HttpSessions, SESSION_HEADER, delete, get, limited_response, post};
