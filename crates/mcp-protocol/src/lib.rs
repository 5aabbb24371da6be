//! Wire types of JSON-RPC 2.0 and the Model Context Protocol.
//!
//! This crate does no IO and depends on no async runtime: it turns JSON text into typed
//! messages and back, and describes MCP's request and result shapes.
//! Everything a transport or the session core exchanges is defined here.

#![warn(missing_docs)]

pub mod dialect;
mod jsonrpc;
pub mod methods;
pub mod modern;
mod types;

pub use jsonrpc::{
    ErrorObject, Incoming, InvalidMessage, MAX_DEPTH, MAX_ID_BYTES, Message, Notification, Request,
    RequestId, Response, decode_params, decode_str, decode_value, error_codes, nests_deeper, parse,
    response_text, shorten, too_deep,
};
pub use types::*;
