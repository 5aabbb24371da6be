//! Command line and environment configuration.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use mcp_session::ServerConfig;
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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            session: ServerConfig::default(),
            ws: WsConfig::default(),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl Cli {
    /// The server configuration these options describe.
    pub fn config(&self) -> Config {
        let defaults = Config::default();
        Config {
            session: ServerConfig {
                page_size: self.page_size.max(1),
                ..defaults.session
            },
            ws: WsConfig {
                max_message_size: self.max_message_size,
                outbound_queue: self.outbound_queue.max(1),
                ..defaults.ws
            },
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout),
        }
    }
}
