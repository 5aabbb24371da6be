//! Command line and environment configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use mcp_session::ServerConfig;
use mcp_tools::{DataRoot, ToolsConfig};
use mcp_ws::WsConfig;

/// A Model Context Protocol server over WebSocket.
///
/// Every option can also be set through the environment variable named in its help.
#[derive(Debug, Clone, Parser)]
#[command(name = "mcp-server", version)]
pub struct Cli {
    /// Address and port to listen on; port 0 picks a free port.
    #[arg(
        long,
        env = "MCP_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "HOST:PORT"
    )]
    pub listen: SocketAddr,

    /// Largest WebSocket message accepted, in bytes; a larger one closes the connection with 1009.
    #[arg(long, env = "MCP_MAX_MESSAGE_SIZE", default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    pub max_message_size: usize,

    /// Outgoing messages buffered per connection before the session stops reading a slow client.
    #[arg(
        long,
        env = "MCP_OUTBOUND_QUEUE",
        default_value_t = 256,
        value_name = "MESSAGES"
    )]
    pub outbound_queue: usize,

    /// Seconds one WebSocket frame may take to write before the client counts as not reading;
    /// it is then disconnected with close code 1008 and its calls are cancelled.
    #[arg(
        long,
        env = "MCP_STALL_TIMEOUT",
        default_value_t = 30,
        value_name = "SECONDS"
    )]
    pub stall_timeout: u64,

    /// Seconds a tool call may run before it is stopped with an error.
    #[arg(
        long,
        env = "MCP_CALL_TIMEOUT",
        default_value_t = 600,
        value_name = "SECONDS"
    )]
    pub call_timeout: u64,

    /// Shortest time between two progress notifications of one call, in milliseconds
    /// (the first and the final one always go out).
    #[arg(
        long,
        env = "MCP_PROGRESS_INTERVAL_MS",
        default_value_t = 100,
        value_name = "MS"
    )]
    pub progress_interval_ms: u64,

    /// Heavy calls (batches, image jobs) running at once across all sessions; the rest queue
    /// fairly, round-robin across sessions. Default: the number of CPUs.
    #[arg(long, env = "MCP_HEAVY_CONCURRENCY", value_name = "CALLS")]
    pub heavy_concurrency: Option<usize>,

    /// Directory that file tools (`process_images`) may read and write; paths outside it are
    /// refused. Without it, file tools are not offered.
    #[arg(long, env = "MCP_DATA_ROOT", value_name = "DIR")]
    pub data_root: Option<PathBuf>,

    /// Number of tools per `tools/list` page.
    #[arg(
        long,
        env = "MCP_PAGE_SIZE",
        default_value_t = 50,
        value_name = "TOOLS"
    )]
    pub page_size: usize,

    /// Seconds to wait for connections to close at shutdown.
    #[arg(
        long,
        env = "MCP_SHUTDOWN_TIMEOUT",
        default_value_t = 10,
        value_name = "SECONDS"
    )]
    pub shutdown_timeout: u64,

    /// Log format on stderr: `text` or `json`. Filter with RUST_LOG (default `info`).
    #[arg(long, env = "MCP_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// Everything [`crate::serve`] needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// The protocol core's settings.
    pub session: ServerConfig,
    /// The WebSocket transport's settings.
    pub ws: WsConfig,
    /// How long shutdown waits for open connections.
    pub shutdown_timeout: Duration,
    /// What the built-in tools need.
    pub tools: ToolsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            session: ServerConfig::default(),
            ws: WsConfig::default(),
            shutdown_timeout: Duration::from_secs(10),
            tools: ToolsConfig::default(),
        }
    }
}

impl Cli {
    /// The server configuration these options describe. Fails when the data root does not
    /// exist.
    pub fn config(&self) -> std::io::Result<Config> {
        let defaults = Config::default();
        let heavy = self
            .heavy_concurrency
            .unwrap_or(defaults.session.heavy_concurrency);
        let tools = match &self.data_root {
            Some(dir) => {
                let root = DataRoot::new(dir).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("--data-root {}: {e}", dir.display()))
                })?;
                ToolsConfig::with_data_root(root, heavy)?
            }
            None => ToolsConfig::default(),
        };
        Ok(Config {
            session: ServerConfig {
                page_size: self.page_size.max(1),
                outbound_capacity: self.outbound_queue.max(1),
                call_timeout: Duration::from_secs(self.call_timeout.max(1)),
                progress_interval: Duration::from_millis(self.progress_interval_ms),
                heavy_concurrency: heavy.max(1),
                ..defaults.session
            },
            ws: WsConfig {
                max_message_size: self.max_message_size,
                stall_timeout: Duration::from_secs(self.stall_timeout.max(1)),
                ..defaults.ws
            },
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout),
            tools,
        })
    }
}
