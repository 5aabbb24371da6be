//! tower-mcp's WebSocket transport with an `add` tool, at `ws://ADDR/`.

use axum::serve::ListenerExt as _;
use mcp_peers::AddArgs;
use tower_mcp::transport::websocket::WebSocketTransport;
use tower_mcp::{CallToolResult, McpRouter, ToolBuilder};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let add = ToolBuilder::new("add")
        .description("Adds two numbers.")
        .handler(|args: AddArgs| async move {
            Ok(CallToolResult::text((args.a + args.b).to_string()))
        })
        .build();
    let router = McpRouter::new()
        .server_info("tower-mcp-peer", "1")
        .tool(add);
    // The transport's `serve` takes an address; port 0 needs the listener bound here. Every
    // server of the benchmarks sets TCP_NODELAY on its connections; axum does not by itself.
    let listener = mcp_peers::listen().await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, WebSocketTransport::new(router).into_router()).await?;
    Ok(())
}
