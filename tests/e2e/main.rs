//! End-to-end tests of the server: `serve()` on 127.0.0.1 port 0, real WebSocket clients
//! (tokio-tungstenite) and raw HTTP. One test binary, one module per area.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used)]

mod agents;
mod auth;
mod client_requests;
mod concurrency;
mod console;
mod dialects;
mod errors;
mod handshake;
mod hostile;
mod images;
mod jwt;
mod lifecycle;
mod limits;
mod long_running;
mod modern;
mod notices;
mod resources;
mod resume;
mod streamable;
mod support;
mod tasks;
mod tools;
