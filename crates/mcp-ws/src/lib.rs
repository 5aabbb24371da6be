//! The WebSocket transport: upgrade, subprotocol selection, frames to session input and
//! session output to frames, and the close handshake.
//!
//! It is deliberately thin: one JSON-RPC message travels in one UTF-8 text frame, and every
//! protocol decision (what a message means, what to answer) is the session's. This crate only
//! decides what is a WebSocket matter: which frames are acceptable and which close code ends
//! the connection.

#![warn(missing_docs)]

mod connection;
mod upgrade;

pub use connection::{
    Connection, ConnectionObserver, Heartbeat, Translate, WsConfig, close_codes, connection_id,
    serve_connection, serve_stream,
};
pub use mcp_protocol::dialect::Translated;
pub use upgrade::{
    MODERN_SUBPROTOCOL, SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX, UpgradeError, accept,
    is_upgrade_request, offered_subprotocols, subprotocol_token,
};
