//! The client against the real server (`mcp_server::serve` on port 0): typed calls,
//! progress, cancellation by dropping, server requests, and resuming after the network cut
//! the connection (a TCP relay between the two that drops every connection on demand).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use mcp_client::{CallEvent, Client, Error, Handler, Options, Reconnect, Status};
use mcp_protocol::{ClientCapabilities, ErrorObject};
use mcp_server::Config;
use serde_json::{Map, Value, json};

use mcp_test_support::{HANG, Relay, TestServer as Server, wait_for_metric};

fn args(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn fast_reconnect(url: String) -> Options {
    let mut options = Options::new(url);
    options.reconnect = Reconnect {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(200),
        attempts: Some(50),
    };
    options
}

#[tokio::test]
async fn typed_calls_progress_and_tool_errors() {
    let server = Server::with_config(Config::default()).await;
    let client = Client::connect(Options::new(format!("ws://{}/mcp", server.addr)))
        .await
        .unwrap();
    assert_eq!(client.server().server_info.name, "mcp-server");
    let tools = client.list_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "add"), "{tools:?}");
    let sum = client
        .call_tool("add", args(json!({"a": 5, "b": 3})))
        .await
        .unwrap();
    assert_eq!(sum.structured_content.unwrap()["result"], 8);
    let failed = client
        .call_tool("divide", args(json!({"a": 1, "b": 0})))
        .await
        .unwrap();
    assert_eq!(failed.is_error, Some(true));
    // A protocol error is an error.
    match client.call_tool("no_such_tool", Map::new()).await {
        Err(Error::Rpc(error)) => assert_eq!(error.code, -32602, "{error}"),
        other => panic!("{other:?}"),
    }
    // Progress, then the result.
    let mut call = client
        .call("process_batch", args(json!({"count": 200_000})))
        .await
        .unwrap();
    let mut reports = 0;
    let result = loop {
        match call.next().await {
            CallEvent::Progress(p) => {
                assert_eq!(p.total, Some(200_000.0));
                reports += 1;
            }
            CallEvent::Done(result) => break result.unwrap(),
        }
    };
    assert!(reports > 0);
    assert_eq!(result.structured_content.unwrap()["processed"], 200_000);
    let resources = client.list_resources().await.unwrap();
    assert!(
        resources.iter().any(|r| r.uri == "mcp://server/stats"),
        "{resources:?}"
    );
    let stats = client.read_resource("mcp://server/stats").await.unwrap();
    assert_eq!(stats.contents.len(), 1);
    client.close().await;
    assert!(matches!(*client.status().borrow(), Status::Closed(_)));
    server.shutdown().await;
}

#[tokio::test]
async fn dropping_a_call_cancels_it_on_the_server() {
    let server = Server::with_config(Config::default()).await;
    let client = Client::connect(Options::new(format!("ws://{}/mcp", server.addr)))
        .await
        .unwrap();
    let mut call = client
        .call("sleep", args(json!({"ms": 60_000})))
        .await
        .unwrap();
    // Running once its first progress is out.
    assert!(matches!(call.next().await, CallEvent::Progress(_)));
    drop(call);
    // The server stops it: nothing is left running.
    wait_for_metric(server.addr, "mcp_inflight_requests", 0.0).await;
    client.close().await;
    server.shutdown().await;
}

/// Answers sampling requests with a fixed text.
struct Model;

impl Handler for Model {
    fn capabilities(&self) -> ClientCapabilities {
        ClientCapabilities {
            sampling: Some(json!({})),
            ..ClientCapabilities::default()
        }
    }

    fn handle(
        &self,
        method: &str,
        params: Option<Value>,
    ) -> BoxFuture<'static, Result<Value, ErrorObject>> {
        let method = method.to_owned();
        Box::pin(async move {
            if method != "sampling/createMessage" {
                return Err(ErrorObject::method_not_found(&method));
            }
            let prompt = params.unwrap()["messages"][0]["content"]["text"].clone();
            Ok(json!({"role": "assistant", "model": "test",
                "content": {"type": "text", "text": format!("you said {}", prompt.as_str().unwrap())}}))
        })
    }
}

#[tokio::test]
async fn server_requests_go_to_the_handler() {
    let config = Config {
        conformance_fixtures: true,
        ..Config::default()
    };
    let server = Server::with_config(config).await;
    let mut options = Options::new(format!("ws://{}/mcp", server.addr));
    options.handler = Some(Arc::new(Model));
    let client = Client::connect(options).await.unwrap();
    let answer = client
        .call_tool("test_sampling", args(json!({"prompt": "hello"})))
        .await
        .unwrap();
    let text = serde_json::to_value(&answer.content).unwrap()[0]["text"].clone();
    assert_eq!(text, "LLM response: you said hello", "{answer:?}");
    client.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_cut_connection_is_resumed_and_the_call_completes_with_nothing_missed_or_repeated() {
    cut_mid_call("ws").await;
}

#[tokio::test]
async fn a_cut_http_stream_is_continued_and_the_call_completes() {
    cut_mid_call("http").await;
}

/// Cuts every connection at the call's first progress: the client notices, reconnects and
/// resumes (over HTTP, continues the broken stream), and progress goes on strictly upwards
/// to the result, in the same session.
async fn cut_mid_call(scheme: &str) {
    let server = Server::with_config(Config::default()).await;
    let relay = Relay::start(server.addr).await;
    let client = Client::connect(fast_reconnect(format!("{scheme}://{}/mcp", relay.addr)))
        .await
        .unwrap();
    let session = client.session_id();
    let mut status = client.status();
    let mut call = client
        .call("process_batch", args(json!({"count": 300_000})))
        .await
        .unwrap();
    let mut last = -1.0;
    let mut cut = false;
    let result = loop {
        match tokio::time::timeout(HANG, call.next()).await.unwrap() {
            CallEvent::Progress(p) => {
                assert!(
                    p.progress > last,
                    "progress went from {last} to {}",
                    p.progress
                );
                last = p.progress;
                if !cut {
                    relay.cut();
                    cut = true;
                    // The client notices (a dropped WebSocket, or a broken event stream).
                    if scheme == "ws" {
                        status
                            .wait_for(|s| matches!(s, Status::Reconnecting { .. }))
                            .await
                            .unwrap();
                    }
                }
            }
            CallEvent::Done(result) => break result.unwrap(),
        }
    };
    assert!(cut);
    let result = result.structured_content.unwrap();
    assert_eq!(result["processed"], 300_000, "{result}");
    // The session is the same one, and it still answers.
    assert_eq!(client.session_id(), session);
    let sum = client
        .call_tool("add", args(json!({"a": 1, "b": 2})))
        .await
        .unwrap();
    assert_eq!(sum.structured_content.unwrap()["result"], 3);
    // Every stream the cut broke is back (the standing GET stream, over HTTP).
    tokio::time::timeout(HANG, status.wait_for(|s| *s == Status::Connected))
        .await
        .unwrap()
        .unwrap();
    client.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn over_streamable_http_too_calls_progress_and_server_requests() {
    let config = Config {
        conformance_fixtures: true,
        ..Config::default()
    };
    let server = Server::with_config(config).await;
    let mut options = Options::new(format!("http://{}/mcp", server.addr));
    options.handler = Some(Arc::new(Model));
    let client = Client::connect(options).await.unwrap();
    assert_eq!(client.server().server_info.name, "mcp-server");
    assert!(client.session_id().is_some());
    assert!(
        client
            .list_tools()
            .await
            .unwrap()
            .iter()
            .any(|t| t.name == "add")
    );
    let sum = client
        .call_tool("add", args(json!({"a": 5, "b": 3})))
        .await
        .unwrap();
    assert_eq!(sum.structured_content.unwrap()["result"], 8);
    let mut call = client
        .call("process_batch", args(json!({"count": 200_000})))
        .await
        .unwrap();
    let mut reports = 0;
    let result = loop {
        match tokio::time::timeout(HANG, call.next()).await.unwrap() {
            CallEvent::Progress(_) => reports += 1,
            CallEvent::Done(result) => break result.unwrap(),
        }
    };
    assert!(reports > 0);
    assert_eq!(result.structured_content.unwrap()["processed"], 200_000);
    let answer = client
        .call_tool("test_sampling", args(json!({"prompt": "hi"})))
        .await
        .unwrap();
    let text = serde_json::to_value(&answer.content).unwrap()[0]["text"].clone();
    assert_eq!(text, "LLM response: you said hi");
    client.close().await;
    server.shutdown().await;
}
