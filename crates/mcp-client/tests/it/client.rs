//! The client against the real server (`mcp_server::serve` on port 0), in both eras (2026-07-28
//! by default, the 2025 session with `legacy`): typed calls, progress, cancellation by
//! dropping, server requests (answered as input-required rounds in 2026-07-28),
//! subscriptions and log levels, resuming a 2025 session after the network cut the
//! connection (a TCP relay between the two that drops every connection on demand), and what
//! a cut does to a 2026-07-28 request.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use mcp_client::{
    CallEvent, Client, Error, Handler, Options, Reconnect, Started, Status, TaskStatus,
};
use mcp_protocol::{ClientCapabilities, ErrorObject};
use mcp_server::Config;
use serde_json::{Map, Value, json};

use mcp_test_support::{HANG, Relay, TestServer as Server, wait_for_metric};

fn args(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn era(url: String, legacy: bool) -> Options {
    let mut options = Options::new(url);
    options.legacy = legacy;
    options
}

fn fast_reconnect(url: String, legacy: bool) -> Options {
    let mut options = era(url, legacy);
    options.reconnect = Reconnect {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(200),
        attempts: Some(50),
    };
    options
}

#[tokio::test]
async fn typed_calls_progress_and_tool_errors() {
    typed_calls(false).await;
}

#[tokio::test]
async fn typed_calls_progress_and_tool_errors_in_a_2025_session() {
    typed_calls(true).await;
}

async fn typed_calls(legacy: bool) {
    let server = Server::with_config(Config::default()).await;
    let client = Client::connect(era(format!("ws://{}/mcp", server.addr), legacy))
        .await
        .unwrap();
    assert_eq!(client.server().server_info.name, "mcp-server");
    assert_eq!(client.is_modern(), !legacy);
    let version = if legacy { "2025-11-25" } else { "2026-07-28" };
    assert_eq!(client.server().protocol_version, version);
    assert_eq!(client.session_id().is_some(), legacy);
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
    for url in ["ws", "http"] {
        for legacy in [false, true] {
            dropping_cancels(url, legacy).await;
        }
    }
}

async fn dropping_cancels(scheme: &str, legacy: bool) {
    let server = Server::with_config(Config::default()).await;
    let client = Client::connect(era(format!("{scheme}://{}/mcp", server.addr), legacy))
        .await
        .unwrap();
    let call = client
        .call("sleep", args(json!({"ms": 60_000})))
        .await
        .unwrap();
    // Running on the server (its first progress would take 6 s).
    wait_for_metric(server.addr, "mcp_inflight_requests", 1.0).await;
    drop(call);
    // The server stops it: nothing is left running.
    wait_for_metric(server.addr, "mcp_inflight_requests", 0.0).await;
    client.close().await;
    server.shutdown().await;
}

/// Answers sampling requests with a fixed text.
pub(crate) struct Model;

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
    server_requests(false).await;
}

#[tokio::test]
async fn server_requests_go_to_the_handler_in_a_2025_session() {
    server_requests(true).await;
}

async fn server_requests(legacy: bool) {
    let config = Config {
        conformance_fixtures: true,
        ..Config::default()
    };
    let server = Server::with_config(config).await;
    let mut options = era(format!("ws://{}/mcp", server.addr), legacy);
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
    let url = format!("{scheme}://{}/mcp", relay.addr);
    let client = Client::connect(fast_reconnect(url, true)).await.unwrap();
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
    over_http(false).await;
}

#[tokio::test]
async fn over_streamable_http_too_in_a_2025_session() {
    over_http(true).await;
}

async fn over_http(legacy: bool) {
    let config = Config {
        conformance_fixtures: true,
        ..Config::default()
    };
    let server = Server::with_config(config).await;
    let mut options = era(format!("http://{}/mcp", server.addr), legacy);
    options.handler = Some(Arc::new(Model));
    let client = Client::connect(options).await.unwrap();
    assert_eq!(client.server().server_info.name, "mcp-server");
    assert_eq!(client.is_modern(), !legacy);
    assert_eq!(client.session_id().is_some(), legacy);
    // A parameter the tool mirrors in a header (SEP-2243): the client sends it, before it
    // listed the tools (it lists them first by itself).
    let mirrored = client
        .call_tool(
            "test_header_param",
            args(json!({"region": "eu-west 1 ü", "query": "q"})),
        )
        .await
        .unwrap();
    let text = serde_json::to_value(&mirrored.content).unwrap()[0]["text"].clone();
    assert_eq!(text, "region=eu-west 1 ü query=q", "{mirrored:?}");
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

/// With 2026-07-28, a cut connection fails the requests it carried (there is no session to
/// resume them in), clearly; the client reconnects by itself and the next call works.
#[tokio::test]
async fn a_cut_fails_the_modern_requests_in_flight_and_the_client_carries_on() {
    for scheme in ["ws", "http"] {
        let server = Server::with_config(Config::default()).await;
        let relay = Relay::start(server.addr).await;
        let url = format!("{scheme}://{}/mcp", relay.addr);
        let client = Client::connect(fast_reconnect(url, false)).await.unwrap();
        assert!(client.is_modern());
        let mut call = client
            .call("process_batch", args(json!({"count": 300_000})))
            .await
            .unwrap();
        let failed = loop {
            match tokio::time::timeout(HANG, call.next()).await.unwrap() {
                CallEvent::Progress(_) => relay.cut(),
                CallEvent::Done(result) => break result,
            }
        };
        match failed {
            Err(Error::Interrupted(why)) => assert!(!why.is_empty()),
            other => panic!("{scheme}: {other:?}"),
        }
        // The server stops the work whose connection broke.
        wait_for_metric(server.addr, "mcp_inflight_requests", 0.0).await;
        let mut status = client.status();
        tokio::time::timeout(HANG, status.wait_for(|s| *s == Status::Connected))
            .await
            .unwrap()
            .unwrap();
        let sum = client
            .call_tool("add", args(json!({"a": 1, "b": 2})))
            .await
            .unwrap();
        assert_eq!(sum.structured_content.unwrap()["result"], 3, "{scheme}");
        client.close().await;
        server.shutdown().await;
    }
}

/// With 2026-07-28, a subscription is a `subscriptions/listen` stream: updates arrive as
/// `notifications/resources/updated`, and unsubscribing closes the stream on the server.
#[tokio::test]
async fn modern_subscriptions_hear_updates_until_unsubscribed() {
    for scheme in ["ws", "http"] {
        let server = Server::with_config(Config {
            stats_interval: Duration::from_millis(20),
            ..Config::default()
        })
        .await;
        let url = format!("{scheme}://{}/mcp", server.addr);
        let client = Client::connect(era(url.clone(), false)).await.unwrap();
        let mut notes = client.notifications();
        client.subscribe("mcp://server/stats").await.unwrap();
        // A resource the server has not: refused, not silently ignored.
        let refused = client.subscribe("mcp://no/such/thing").await;
        assert!(matches!(refused, Err(Error::Rpc(_))), "{refused:?}");
        // Another client is a change of the statistics.
        let other = Client::connect(era(url, true)).await.unwrap();
        let updated = tokio::time::timeout(HANG, async {
            loop {
                let note = notes.recv().await.unwrap();
                if note.method == "notifications/resources/updated" {
                    return note;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(updated.params.unwrap()["uri"], "mcp://server/stats");
        other.close().await;
        client.unsubscribe("mcp://server/stats").await.unwrap();
        // The stream is gone on the server: nothing in flight.
        wait_for_metric(server.addr, "mcp_inflight_requests", 0.0).await;
        client.close().await;
        server.shutdown().await;
    }
}

/// With 2026-07-28, the log level is per request: none before it is set, then the
/// messages at or above it.
#[tokio::test]
async fn modern_log_levels_ride_on_every_request() {
    let server = Server::with_config(Config {
        conformance_fixtures: true,
        ..Config::default()
    })
    .await;
    let client = Client::connect(era(format!("ws://{}/mcp", server.addr), false))
        .await
        .unwrap();
    let mut notes = client.notifications();
    client
        .call_tool("test_logging_tool", Map::new())
        .await
        .unwrap();
    client.set_log_level("warning").await.unwrap();
    client
        .call_tool("test_logging_tool", Map::new())
        .await
        .unwrap();
    let mut levels = Vec::new();
    while let Ok(note) = notes.try_recv() {
        if note.method == "notifications/message" {
            levels.push(note.params.unwrap()["level"].clone());
        }
    }
    assert_eq!(levels, [json!("warning")]);
    client.close().await;
    server.shutdown().await;
}

/// Confirms every elicitation (the fixtures' `confirm_delete` asks one).
struct Confirm;

impl Handler for Confirm {
    fn capabilities(&self) -> ClientCapabilities {
        ClientCapabilities {
            elicitation: Some(json!({})),
            ..ClientCapabilities::default()
        }
    }

    fn handle(
        &self,
        _method: &str,
        _params: Option<Value>,
    ) -> BoxFuture<'static, Result<Value, ErrorObject>> {
        Box::pin(async { Ok(json!({"action": "accept", "content": {"confirm": true}})) })
    }
}

/// Tasks (2026-07-28): started, polled to their result (answering what they ask), taken up
/// again by id, cancelled; on both transports.
#[tokio::test]
async fn tasks_are_polled_to_their_result_answered_and_cancelled() {
    for scheme in ["ws", "http"] {
        let server = Server::with_config(Config {
            conformance_fixtures: true,
            ..Config::default()
        })
        .await;
        let mut options = era(format!("{scheme}://{}/mcp", server.addr), false);
        options.handler = Some(Arc::new(Confirm));
        let client = Client::connect(options).await.unwrap();
        // A tool that is never a task answers at once.
        match client
            .start_task("add", args(json!({"a": 1, "b": 2})))
            .await
            .unwrap()
        {
            Started::Done(sum) => assert_eq!(sum.structured_content.unwrap()["result"], 3),
            Started::Task(task) => panic!("{scheme}: add became task {}", task.id()),
        }
        let Started::Task(mut task) = client
            .start_task("process_batch", args(json!({"count": 100_000})))
            .await
            .unwrap()
        else {
            panic!("{scheme}: process_batch did not become a task");
        };
        let first = task.next().await.unwrap();
        assert!(
            matches!(first.status, TaskStatus::Working | TaskStatus::Completed),
            "{first:?}"
        );
        // Another handle on the same task, by id, sees it end the same way.
        let again = client.task(task.id());
        let result = task.result().await.unwrap();
        assert_eq!(result.structured_content.unwrap()["processed"], 100_000);
        assert_eq!(again.get().await.unwrap().status, TaskStatus::Completed);
        // A task that asks its client: the handler answers, the task goes on.
        let Started::Task(asking) = client
            .start_task("confirm_delete", args(json!({"filename": "b.txt"})))
            .await
            .unwrap()
        else {
            panic!("{scheme}: confirm_delete did not become a task");
        };
        let deleted = asking.result().await.unwrap();
        let text = serde_json::to_value(&deleted.content).unwrap()[0]["text"].clone();
        assert_eq!(text, "Deleted b.txt", "{scheme}");
        // Cancelled: it ends cancelled.
        let Started::Task(sleeping) = client
            .start_task("sleep", args(json!({"ms": 300_000})))
            .await
            .unwrap()
        else {
            panic!("{scheme}: sleep did not become a task");
        };
        sleeping.cancel().await.unwrap();
        match sleeping.result().await {
            Err(Error::Closed(why)) => assert!(why.contains("cancelled"), "{why}"),
            other => panic!("{scheme}: {other:?}"),
        }
        // An id that names no task of ours.
        match client.task("0123456789abcdef0123456789abcdef").get().await {
            Err(Error::Rpc(error)) => assert_eq!(error.code, -32602, "{error}"),
            other => panic!("{scheme}: {other:?}"),
        }
        client.close().await;
        server.shutdown().await;
    }
}
