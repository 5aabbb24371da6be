//! The gateway in front of a real stdio server (the official Python SDK's FastMCP,
//! tests/upstreams/stdio_server.py), driven through a real session of the hub with
//! messages, as a transport would: the upstream's tools listed as `python.*` beside the
//! server's own, called with progress, its sampling request answered by the session's
//! client, a cancellation that reaches the upstream, and an upstream that dies mid-call.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use mcp_client::stdio::Command;
use mcp_gateway::Gateway;
use mcp_gateway::config::{Start, Target, Upstream};
use mcp_session::{Hub, InboundSender, Outbound, OutboundReceiver, ServerConfig};
use mcp_test_support::{HANG, sdk_python, tests_file};
use mcp_tools::ToolRegistry;
use serde_json::{Value, json};

fn python() -> Upstream {
    Upstream {
        name: "python".to_owned(),
        target: Target::Stdio(Command::new(
            "python",
            sdk_python().to_string_lossy(),
            [tests_file("upstreams/stdio_server.py").to_string_lossy()],
        )),
        start: Start::Boot,
        pool: 1,
        idle: mcp_gateway::config::DEFAULT_IDLE,
    }
}

/// A session of the hub, and what its client saw.
struct Client {
    input: InboundSender,
    output: OutboundReceiver,
    notifications: Vec<Value>,
}

impl Client {
    async fn open(hub: &Hub) -> Self {
        let (input, inbound) = mcp_session::inbound::channel(16);
        let (session, output) = hub.open_session();
        tokio::spawn(session.run(inbound));
        let mut client = Self {
            input,
            output,
            notifications: Vec::new(),
        };
        let init = client
            .request(
                0,
                "initialize",
                json!({"protocolVersion": "2025-11-25",
                "capabilities": {"sampling": {}}, "clientInfo": {"name": "t", "version": "1"}}),
            )
            .await;
        assert!(init.get("result").is_some(), "{init}");
        client
            .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        client
    }

    async fn send(&self, message: Value) {
        self.input.send(message.to_string()).await.unwrap();
    }

    /// Sends a request and returns its answer; answers sampling requests on the way (the
    /// model says "you asked ..."), keeps notifications.
    async fn request(&mut self, id: i64, method: &str, params: Value) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        self.answer_of(id).await
    }

    async fn answer_of(&mut self, id: i64) -> Value {
        loop {
            let message = tokio::time::timeout(HANG, self.output.recv())
                .await
                .expect("no answer in time");
            let Some(Outbound::Text(text)) = message else {
                panic!("the session ended: {message:?}");
            };
            let message: Value = serde_json::from_str(&text).unwrap();
            match (message.get("id"), message.get("method")) {
                (Some(answered), None) if *answered == json!(id) => return message,
                (Some(asked), Some(method)) => {
                    assert_eq!(method, "sampling/createMessage", "{message}");
                    let question = message["params"]["messages"][0]["content"]["text"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    self.send(json!({"jsonrpc": "2.0", "id": asked, "result": {
                        "role": "assistant", "model": "test",
                        "content": {"type": "text", "text": format!("you asked {question}")}}}))
                        .await;
                }
                (None, Some(_)) => self.notifications.push(message),
                _ => panic!("unexpected: {message}"),
            }
        }
    }

    async fn call(&mut self, id: i64, tool: &str, arguments: Value) -> Value {
        let answer = self
            .request(
                id,
                "tools/call",
                json!({"name": tool, "arguments": arguments,
                "_meta": {"progressToken": id}}),
            )
            .await;
        answer["result"].clone()
    }
}

async fn gateway() -> (Hub, Arc<Gateway>) {
    let own = ToolRegistry::builtin(&mcp_tools::ToolsConfig::default());
    let hub = Hub::builder(ServerConfig::default())
        .tools(own)
        .tools_may_change()
        .build();
    let gateway = Gateway::new(hub.clone());
    tokio::time::timeout(HANG, gateway.add(python()))
        .await
        .unwrap()
        .unwrap();
    (hub, gateway)
}

#[tokio::test]
async fn a_stdio_servers_tools_are_served_with_progress_sampling_and_cancellation() {
    let (hub, gateway) = gateway().await;
    let mut client = Client::open(&hub).await;
    let listed = client.request(1, "tools/list", json!({})).await;
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for name in [
        "add",
        "python.add",
        "python.count",
        "python.ask",
        "python.wait",
    ] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
    // Own tools first, the upstream's after.
    assert_eq!(names[0], "add");

    let sum = client.call(2, "python.add", json!({"a": 2, "b": 3})).await;
    assert_eq!(sum["structuredContent"]["result"], 5, "{sum}");

    let counted = client.call(3, "python.count", json!({"n": 3})).await;
    assert_eq!(counted["structuredContent"]["result"], 3, "{counted}");
    let progress: Vec<f64> = client
        .notifications
        .iter()
        .filter(|n| n["method"] == "notifications/progress" && n["params"]["progressToken"] == 3)
        .map(|n| n["params"]["progress"].as_f64().unwrap())
        .collect();
    // The first and the last always go; the session spaces the ones between
    // (`progress_interval`).
    assert_eq!(progress.first(), Some(&1.0), "{progress:?}");
    assert_eq!(progress.last(), Some(&3.0), "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");

    let answer = client
        .call(4, "python.ask", json!({"question": "why?"}))
        .await;
    assert_eq!(
        answer["structuredContent"]["result"], "you asked why?",
        "{answer}"
    );

    // A cancellation here reaches the upstream.
    client
        .send(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
            "params": {"name": "python.wait", "arguments": {}}}))
        .await;
    // Running upstream once an answer to a later call came back.
    client.call(6, "python.add", json!({"a": 1, "b": 1})).await;
    client
        .send(
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 5, "reason": "test"}}),
        )
        .await;
    let mut id = 7;
    tokio::time::timeout(HANG, async {
        loop {
            id += 1;
            let count = client.call(id, "python.cancellations", json!({})).await;
            if count["structuredContent"]["result"] == 1 {
                break;
            }
        }
    })
    .await
    .expect("the upstream never saw the cancellation");
    gateway.shutdown().await;
}

#[tokio::test]
async fn an_upstream_that_dies_mid_call_fails_the_call_clearly_and_comes_back() {
    let (hub, gateway) = gateway().await;
    let mut client = Client::open(&hub).await;
    let first = client.call(1, "python.pid", json!({})).await;
    let first = first["structuredContent"]["result"].as_i64().unwrap();
    let crashed = client.call(2, "python.crash", json!({})).await;
    assert_eq!(crashed["isError"], true, "{crashed}");
    let text = crashed["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("the upstream `python` failed during the call"),
        "{text}"
    );
    // While a new process starts, a call is told at once that the upstream is down: it
    // never waits for it.
    let link = gateway.links().pop().unwrap();
    let mut status = link.client().status();
    if matches!(*status.borrow(), mcp_client::Status::Reconnecting { .. }) {
        let answer = client.call(3, "python.pid", json!({})).await;
        let text = answer["content"][0]["text"].as_str().unwrap_or_default();
        assert!(
            answer["isError"] == true && text.contains("is down")
                || answer["structuredContent"]["result"].is_i64(),
            "{answer}"
        );
    }
    tokio::time::timeout(
        HANG,
        status.wait_for(|s| *s == mcp_client::Status::Connected),
    )
    .await
    .expect("the upstream never came back")
    .unwrap();
    let second = client.call(4, "python.pid", json!({})).await;
    let second = second["structuredContent"]["result"].as_i64().unwrap();
    assert_ne!(first, second, "the same process answered");
    gateway.shutdown().await;
}
