//! The stdio transport against a real stdio server: the official Python SDK's FastMCP
//! (tests/upstreams/stdio_server.py), as a child process. Calls, progress, a cancellation
//! that reaches the server, sampling answered by the client's handler, and a server that
//! dies mid-call: the call fails clearly, the process is started again, the next call works.

use std::sync::Arc;
use std::time::Duration;

use mcp_client::stdio::Command;
use mcp_client::{CallEvent, Client, Error, Options, Reconnect};
use serde_json::{Map, Value, json};

use mcp_test_support::{HANG, sdk_python, tests_file};

fn args(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn python_server() -> Options {
    let command = Command::new(
        "python-stdio",
        sdk_python().to_string_lossy(),
        [tests_file("upstreams/stdio_server.py").to_string_lossy()],
    );
    let mut options = Options::stdio(command);
    options.reconnect = Reconnect {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(200),
        attempts: Some(5),
    };
    options
}

#[tokio::test]
async fn a_stdio_server_is_called_with_progress_and_cancelled() {
    let client = tokio::time::timeout(HANG, Client::connect(python_server()))
        .await
        .unwrap()
        .unwrap();
    // FastMCP 1.x knows no server/discover: the client fell back to `initialize`.
    assert!(!client.is_modern());
    assert_eq!(client.server().server_info.name, "python-stdio");
    let tools = client.list_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    assert!(
        names.contains(&"add") && names.contains(&"count"),
        "{names:?}"
    );

    let sum = client
        .call_tool("add", args(json!({"a": 20, "b": 22})))
        .await
        .unwrap();
    assert_eq!(sum.structured_content.unwrap()["result"], 42);

    let mut call = client.call("count", args(json!({"n": 5}))).await.unwrap();
    let mut seen = Vec::new();
    let result = loop {
        match tokio::time::timeout(HANG, call.next()).await.unwrap() {
            CallEvent::Progress(p) => seen.push(p.progress),
            CallEvent::Done(result) => break result.unwrap(),
        }
    };
    assert_eq!(seen, [1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(result.structured_content.unwrap()["result"], 5);

    // Dropping a call cancels it in the server process.
    let call = client.call("wait", Map::new()).await.unwrap();
    // The call runs once the server answered something sent after it.
    client
        .call_tool("add", args(json!({"a": 1, "b": 1})))
        .await
        .unwrap();
    drop(call);
    // Asked until the server counts it: each question is a round trip, bounded by HANG.
    tokio::time::timeout(HANG, async {
        loop {
            let count = client.call_tool("cancellations", Map::new()).await.unwrap();
            if count.structured_content.unwrap()["result"] == 1 {
                break;
            }
        }
    })
    .await
    .expect("the server never saw the cancellation");
    client.close().await;
}

/// Answers sampling requests by echoing the question.
struct Model;

impl mcp_client::Handler for Model {
    fn capabilities(&self) -> mcp_protocol::ClientCapabilities {
        mcp_protocol::ClientCapabilities {
            sampling: Some(json!({})),
            ..Default::default()
        }
    }

    fn handle(
        &self,
        method: &str,
        params: Option<Value>,
    ) -> futures_util::future::BoxFuture<'static, Result<Value, mcp_protocol::ErrorObject>> {
        let method = method.to_owned();
        Box::pin(async move {
            if method != "sampling/createMessage" {
                return Err(mcp_protocol::ErrorObject::method_not_found(&method));
            }
            let question = params.unwrap()["messages"][0]["content"]["text"].clone();
            Ok(json!({"role": "assistant", "model": "test",
                "content": {"type": "text", "text": format!("you asked {}", question.as_str().unwrap())}}))
        })
    }
}

#[tokio::test]
async fn a_stdio_servers_sampling_request_reaches_the_handler() {
    let mut options = python_server();
    options.handler = Some(Arc::new(Model));
    let client = Client::connect(options).await.unwrap();
    let answer = tokio::time::timeout(
        HANG,
        client.call_tool("ask", args(json!({"question": "why?"}))),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        answer.structured_content.unwrap()["result"],
        "you asked why?"
    );
    client.close().await;
}

#[tokio::test]
async fn a_stdio_server_that_dies_mid_call_is_started_again() {
    let client = Client::connect(python_server()).await.unwrap();
    let first = client.call_tool("pid", Map::new()).await.unwrap();
    let first = first.structured_content.unwrap()["result"]
        .as_i64()
        .unwrap();
    match tokio::time::timeout(HANG, client.call_tool("crash", Map::new()))
        .await
        .unwrap()
    {
        Err(Error::Interrupted(why)) => assert!(why.contains("ended"), "{why}"),
        other => panic!("expected the call to be interrupted, got {other:?}"),
    }
    // A new process answers the next call.
    let second = tokio::time::timeout(HANG, client.call_tool("pid", Map::new()))
        .await
        .unwrap()
        .unwrap();
    let second = second.structured_content.unwrap()["result"]
        .as_i64()
        .unwrap();
    assert_ne!(first, second, "the same process answered");
    client.close().await;
}
