//! What the peers share: the `add` tool's arguments, how a peer says where it listens
//! (`listening on ADDR` on its first line, as `cargo xtask bench` reads it), and the
//! allocator, mimalloc, the same as our server's, so that no server is measured with an
//! allocator the others do not have.

use schemars::JsonSchema;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use serde::Deserialize;

/// The arguments of `add`, the same as our server's.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct AddArgs {
    /// The first addend.
    pub a: f64,
    /// The second addend.
    pub b: f64,
}

/// Binds loopback on an ephemeral port and says where.
pub async fn listen() -> std::io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    Ok(listener)
}
