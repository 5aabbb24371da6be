//! The server as a gateway (`--upstream`), with the Rust client over WebSocket and HTTP, in
//! both eras: a stdio server on the official Python SDK (tests/upstreams/stdio_server.py)
//! served as `python.*` beside the server's own tools.

use mcp_client::{Client, Options};
use mcp_gateway::config::Upstream;
use mcp_server::Config;
use serde_json::{Map, Value, json};

use mcp_test_support::{HANG, TestServer as Server, sdk_python, tests_file};

fn args(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn python_upstream() -> Upstream {
    // As the flag would be written, with the paths quoted.
    let flag = format!(
        "python='{}' '{}'",
        sdk_python().display(),
        tests_file("upstreams/stdio_server.py").display()
    );
    Upstream::from_flag(&flag).unwrap()
}

/// Lists the server's tools until `name` is among them: the server connects its upstreams
/// in the background, and a 2025 session is told when its list changed.
async fn wait_for_tool(client: &Client, name: &str) {
    let mut notifications = client.notifications();
    tokio::time::timeout(HANG, async {
        loop {
            let tools = client.list_tools().await.unwrap();
            if tools.iter().any(|t| t.name == name) {
                return;
            }
            assert!(
                !client.is_modern(),
                "a modern client has no session to be told in: wait with a 2025 one first"
            );
            while let Ok(n) = notifications.recv().await {
                if n.method == "notifications/tools/list_changed" {
                    break;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{name} never listed"));
}

#[tokio::test]
async fn a_stdio_upstream_is_served_over_websocket_and_http_in_both_eras() {
    let config = Config {
        upstreams: vec![python_upstream()],
        ..Config::default()
    };
    let server = Server::with_config(config).await;
    for scheme in ["ws", "http"] {
        for legacy in [true, false] {
            let mut options = Options::new(format!("{scheme}://{}/mcp", server.addr));
            options.legacy = legacy;
            let client = Client::connect(options).await.unwrap();
            // The 2025 session (first) waits for the upstream; the modern one finds it.
            wait_for_tool(&client, "python.add").await;
            let tools = client.list_tools().await.unwrap();
            assert!(
                tools.iter().any(|t| t.name == "add"),
                "the server's own tools went"
            );
            let sum = client
                .call_tool("python.add", args(json!({"a": 40, "b": 2})))
                .await
                .unwrap();
            assert_eq!(
                sum.structured_content.unwrap()["result"],
                42,
                "{scheme} legacy={legacy}"
            );
            client.close().await;
        }
    }
    server.shutdown().await;
}

/// The official reference server from npm, over stdio, through the gateway: its tools as
/// `everything.*`, a long-running operation's progress, and its sampling request answered
/// by the client that called it.
#[tokio::test]
async fn the_reference_server_is_served_with_progress_and_sampling() {
    let program = mcp_test_support::server_everything();
    let flag = format!("everything=node '{}' stdio", program.display());
    let config = Config {
        upstreams: vec![Upstream::from_flag(&flag).unwrap()],
        ..Config::default()
    };
    let server = Server::with_config(config).await;
    let mut options = Options::new(format!("ws://{}/mcp", server.addr));
    options.legacy = true;
    options.handler = Some(std::sync::Arc::new(crate::client::Model));
    let client = Client::connect(options).await.unwrap();
    wait_for_tool(&client, "everything.echo").await;
    let tools = client.list_tools().await.unwrap();
    assert!(
        tools
            .iter()
            .any(|t| t.name == "everything.trigger-sampling-request"),
        "the gateway declares sampling upstream: {:?}",
        tools.iter().map(|t| &t.name).collect::<Vec<_>>()
    );

    let echoed = client
        .call_tool("everything.echo", args(json!({"message": "hello"})))
        .await
        .unwrap();
    assert_eq!(
        echoed.content[0].as_text(),
        Some("Echo: hello"),
        "{echoed:?}"
    );

    let mut call = client
        .call(
            "everything.trigger-long-running-operation",
            args(json!({"duration": 1, "steps": 4})),
        )
        .await
        .unwrap();
    let mut reports = Vec::new();
    let done = loop {
        match tokio::time::timeout(HANG, call.next()).await.unwrap() {
            mcp_client::CallEvent::Progress(p) => reports.push(p.progress),
            mcp_client::CallEvent::Done(result) => break result.unwrap(),
        }
    };
    assert!(!reports.is_empty(), "no progress came through");
    assert!(reports.windows(2).all(|w| w[0] < w[1]), "{reports:?}");
    assert_eq!(done.is_error, None, "{done:?}");

    let sampled = tokio::time::timeout(
        HANG,
        client.call_tool(
            "everything.trigger-sampling-request",
            args(json!({"prompt": "hello"})),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let text = sampled
        .content
        .iter()
        .filter_map(|c| c.as_text())
        .collect::<String>();
    assert!(
        text.contains("you said Resource trigger-sampling-request context: hello"),
        "{text}"
    );
    client.close().await;
    server.shutdown().await;
}
