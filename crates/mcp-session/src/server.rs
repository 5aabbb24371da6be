//! What all sessions of one server share: configuration, the tools, and the root of the
//! cancellation tree.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mcp_protocol::Implementation;
use mcp_tools::ToolRegistry;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Outbound, Session};

/// Settings of the protocol core.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Who the server says it is in `initialize`.
    pub server_info: Implementation,
    /// Usage notes for the client's model, sent in `initialize`.
    pub instructions: Option<String>,
    /// How many tools one `tools/list` page holds.
    pub page_size: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            server_info: Implementation {
                name: "mcp-server".to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                title: Some("MCP WebSocket server".to_owned()),
                extra: Default::default(),
            },
            instructions: Some(
                "Math tools: add, subtract, multiply, divide, power, modulo (two numbers `a` and `b`) and sqrt (one number `a`). \
                 Each returns {result, operation, a, b}; a failure (such as division by zero) is a result with isError set. \
                 `sleep` waits a given number of milliseconds."
                    .to_owned(),
            ),
            page_size: 50,
        }
    }
}

pub(crate) struct ServerInner {
    pub(crate) config: ServerConfig,
    pub(crate) tools: ToolRegistry,
    /// The root of the cancellation tree: server, then session, then request.
    pub(crate) shutdown: CancellationToken,
    next_session: AtomicU64,
}

/// A server: the state that every session shares. Cheap to clone.
#[derive(Clone)]
pub struct Server {
    pub(crate) inner: Arc<ServerInner>,
}

impl Server {
    /// A server offering `tools`.
    pub fn new(config: ServerConfig, tools: ToolRegistry) -> Self {
        Self {
            inner: Arc::new(ServerInner {
                config,
                tools,
                shutdown: CancellationToken::new(),
                next_session: AtomicU64::new(1),
            }),
        }
    }

    /// The root cancellation token. Cancelling it ends every session: each sends
    /// [`Outbound::Close`] with [`crate::CloseReason::ShuttingDown`] and cancels its requests.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// Starts a session whose output goes to `outbound`.
    ///
    /// The channel's capacity bounds what the session buffers for a slow client: when it is
    /// full, the session stops reading input until the transport catches up.
    pub fn open_session(&self, outbound: mpsc::Sender<Outbound>) -> Session {
        let id = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        Session::new(self.clone(), id, outbound)
    }
}
