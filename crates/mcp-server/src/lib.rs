//! The MCP server: configuration, HTTP routing, and [`serve`], which runs the server on a
//! bound listener until a shutdown future completes.
//!
//! Tests call [`serve`] with a listener on port 0; the binary in `main.rs` adds the command
//! line, logging and signal handling.

#![warn(missing_docs)]

mod config;
mod http;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use mcp_session::Server;
use mcp_tools::ToolRegistry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Cli, Config};

/// Serves MCP on `listener` until `shutdown` completes, then shuts down gracefully.
///
/// Shutting down stops accepting connections, closes every WebSocket session with 1001
/// "server shutting down" (cancelling its running requests), lets plain HTTP requests in
/// progress finish, and waits up to `config.shutdown_timeout` for all of it.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let server = Server::new(config.session.clone(), ToolRegistry::builtin(&config.tools));
    // hyper forgets a connection once it is upgraded to a WebSocket, so every connection task,
    // upgraded or not, is tracked here to be waited for at shutdown.
    let tracker = TaskTracker::new();
    let stopping = CancellationToken::new();
    let state = http::State::new(server.clone(), config.clone(), tracker.clone());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "could not set TCP_NODELAY");
                    }
                    tracker.spawn(http::serve_http(stream, remote, state.clone(), stopping.clone()));
                }
                Err(e) => {
                    // Typically out of file descriptors: pause rather than spin, and carry on.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    tracing::info!("shutting down");
    drop(listener);
    stopping.cancel();
    server.shutdown_token().cancel();
    tracker.close();
    if tokio::time::timeout(config.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = tracker.len(),
            "connections still open after the shutdown timeout; leaving them"
        );
    }
    Ok(())
}

/// The address the server will listen on when none is configured.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
