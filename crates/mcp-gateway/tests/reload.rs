//! Reloading the configuration while an upstream is still being connected: what was
//! removed or configured anew is given up, never connected later behind the operator's back.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used)]

use mcp_gateway::Gateway;
use mcp_gateway::config::Upstream;
use mcp_session::{Hub, ServerConfig};

#[tokio::test]
async fn an_upstream_removed_or_changed_before_it_connected_is_given_up() {
    let hub = Hub::builder(ServerConfig::default())
        .tools_may_change()
        .build();
    let gateway = Gateway::new(hub);
    // A program that does not exist: connecting it is tried again and again.
    let missing = Upstream::from_flag("missing=/nonexistent/mcp-server-program").unwrap();
    gateway.apply(vec![missing.clone()]).await;
    assert_eq!(gateway.connecting(), ["missing"]);
    // The same configuration again: the attempts already running are left alone.
    gateway.apply(vec![missing]).await;
    assert_eq!(gateway.connecting(), ["missing"]);
    // Configured anew under the same name: one attempt, the new one.
    let changed = Upstream::from_flag("missing=/nonexistent/other-program").unwrap();
    gateway.apply(vec![changed]).await;
    assert_eq!(gateway.connecting(), ["missing"]);
    // Removed: given up.
    gateway.apply(Vec::new()).await;
    assert!(gateway.connecting().is_empty());
    assert!(gateway.links().is_empty());
    gateway.shutdown().await;
}
