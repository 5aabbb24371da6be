//! What all sessions of one server share: configuration, the tools, and the root of the
//! cancellation tree.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mcp_protocol::Implementation;
use mcp_tools::{Scheduler, ToolRegistry};
use tokio_util::sync::CancellationToken;

use crate::Session;
use crate::metrics::Metrics;
use crate::outbound::{self, OutboundReceiver};

/// Settings of the protocol core.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Who the server says it is in `initialize`.
    pub server_info: Implementation,
    /// Usage notes for the client's model, sent in `initialize`.
    pub instructions: Option<String>,
    /// How many tools one `tools/list` page holds.
    pub page_size: usize,
    /// How many messages a session queues for a slow client before it stops reading input.
    /// Progress notifications do not count: they coalesce instead.
    pub outbound_capacity: usize,
    /// The shortest time between two progress notifications of one call (the first and the
    /// final one always go out).
    pub progress_interval: Duration,
    /// How long a tool call may run before it is stopped with an error.
    pub call_timeout: Duration,
    /// How long a stopped call gets to wind down and say how far it got.
    pub stop_grace: Duration,
    /// How many heavy calls (batches) run at once across all sessions; the rest queue fairly.
    pub heavy_concurrency: usize,
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
            outbound_capacity: 256,
            progress_interval: Duration::from_millis(100),
            call_timeout: Duration::from_secs(600),
            stop_grace: Duration::from_secs(5),
            heavy_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

pub(crate) struct ServerInner {
    pub(crate) config: ServerConfig,
    pub(crate) tools: ToolRegistry,
    /// The root of the cancellation tree: server, then session, then request.
    pub(crate) shutdown: CancellationToken,
    pub(crate) scheduler: Scheduler,
    pub(crate) metrics: Metrics,
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
        let scheduler = Scheduler::new(config.heavy_concurrency);
        Self {
            inner: Arc::new(ServerInner {
                config,
                tools,
                shutdown: CancellationToken::new(),
                scheduler,
                metrics: Metrics::new(),
                next_session: AtomicU64::new(1),
            }),
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        self.inner.metrics.render()
    }

    /// How many client requests are being worked on, across all sessions.
    pub fn inflight_requests(&self) -> i64 {
        self.inner.metrics.inflight()
    }

    /// Counts an open connection until the returned guard is dropped.
    pub fn connection_opened(&self) -> ConnectionGuard {
        self.inner.metrics.connection_opened();
        ConnectionGuard {
            metrics: self.inner.metrics.clone(),
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

    /// Starts a session. The transport sends what the returned receiver yields.
    ///
    /// The queue's capacity bounds what the session buffers for a slow client: when it is
    /// full, the session stops reading input until the transport catches up.
    pub fn open_session(&self) -> (Session, OutboundReceiver) {
        let id = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        let (queue, receiver) = outbound::channel(
            self.inner.config.outbound_capacity,
            self.inner.metrics.clone(),
        );
        (Session::new(self.clone(), id, queue), receiver)
    }
}

/// Keeps a connection counted in `mcp_connections` while it lives.
pub struct ConnectionGuard {
    metrics: Metrics,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics.connection_closed();
    }
}
