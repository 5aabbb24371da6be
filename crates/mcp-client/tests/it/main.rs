//! The client against the real server (the library's `serve` on port 0): the Rust client
//! (`client`) and `mcpc`, the command-line client (`cli`). One test binary, so that the two
//! link once.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used)]

mod cli;
mod client;
mod gateway;
mod stdio;
