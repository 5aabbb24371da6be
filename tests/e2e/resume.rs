//! Resumable sessions: a client that loses its connection resumes on a new one and gets
//! every message it missed exactly once, in order; a second connection replaces the first;
//! a session nobody resumes has its calls cancelled after the grace period.

use std::time::Duration;

use mcp_server::Config;
use serde_json::{Value, json};

use crate::support::{
    Client, TestServer, history_tools, http, metric, metrics, post, wait_for_metric,
};

/// Opens a resumable session; returns the client and the session id.
async fn resumable(server: &TestServer) -> (Client, String) {
    let mut client = Client::connect(server).await;
    let response = client
        .request(
            json!({"jsonrpc":"2.0","id":"init","method":"initialize","params":{
            "protocolVersion":"2025-11-25",
            "capabilities":{"experimental":{"resume":{}}},
            "clientInfo":{"name":"e2e","version":"1"}}}),
        )
        .await;
    let id = response["mcpSessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no mcpSessionId: {response}"))
        .to_owned();
    assert_eq!(id.len(), 32, "{response}");
    assert_eq!(
        response["seq"], 1,
        "the answer is the session's first message"
    );
    client
        .send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    (client, id)
}

/// Resumes session `id` on a new connection after position `last_seq`; returns the client
/// and the answer to its `initialize`.
async fn resume(server: &TestServer, id: &str, last_seq: u64) -> (Client, Value) {
    let mut client = Client::connect(server).await;
    let response = client
        .request(
            json!({"jsonrpc":"2.0","id":"again","method":"initialize","mcpSessionId":id,"params":{
            "protocolVersion":"2025-11-25",
            "capabilities":{"experimental":{"resume":{"lastSeq":last_seq}}},
            "clientInfo":{"name":"e2e","version":"1"}}}),
        )
        .await;
    (client, response)
}

fn batch(id: i64, count: u64, cost: u32) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
        "name":"process_batch","arguments":{"count":count,"cost":cost},
        "_meta":{"progressToken":"t"}}})
}

/// Reads messages until the response to `id`, checking that positions follow `last`
/// without a gap or a repeat. Returns the messages and the last position.
async fn read_until_response(client: &mut Client, id: i64, mut last: u64) -> (Vec<Value>, u64) {
    let mut seen = Vec::new();
    loop {
        let message = client.recv().await;
        let seq = message["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("no seq: {message}"));
        assert_eq!(seq, last + 1, "positions must follow each other: {message}");
        last = seq;
        let done = message["id"] == id;
        seen.push(message);
        if done {
            return (seen, last);
        }
    }
}

#[tokio::test]
async fn a_client_that_drops_mid_batch_resumes_and_misses_nothing() {
    let server = TestServer::start().await;
    let (mut client, id) = resumable(&server).await;
    // About 2 s of work: the connection drops while it runs.
    client.send(batch(7, 100_000, 3_000)).await;
    // Some progress arrives on the first connection, then it breaks without a close.
    let mut first = Vec::new();
    let mut last = 1;
    while first.len() < 3 {
        let message = client.recv().await;
        assert_eq!(message["method"], "notifications/progress", "{message}");
        let seq = message["seq"].as_u64().unwrap();
        assert_eq!(seq, last + 1);
        last = seq;
        first.push(message);
    }
    assert!(
        first[2]["params"]["progress"].as_f64().unwrap() < 100_000.0,
        "the batch must still run when the connection drops"
    );
    drop(client);

    let (mut client, response) = resume(&server, &id, last).await;
    assert_eq!(response["id"], "again", "{response}");
    assert_eq!(response["mcpSessionId"], id.as_str());
    assert!(
        response["result"]["protocolVersion"].is_string(),
        "{response}"
    );
    assert!(
        response.get("seq").is_none(),
        "the answer to a resume has no position"
    );
    let (rest, _) = read_until_response(&mut client, 7, last).await;

    let all: Vec<&Value> = first.iter().chain(&rest).collect();
    let result = all.last().unwrap();
    let summary = &result["result"]["structuredContent"];
    assert_eq!(summary["processed"], 100_000, "{result}");
    assert_eq!(summary["succeeded"], 100_000);
    let progress: Vec<f64> = all
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| m["params"]["progress"].as_f64().unwrap())
        .collect();
    assert!(
        progress.windows(2).all(|w| w[0] < w[1]),
        "progress repeats or goes back: {progress:?}"
    );
    assert_eq!(progress.last(), Some(&100_000.0));
}

#[tokio::test]
async fn a_second_connection_replaces_the_first() {
    let server = TestServer::start().await;
    let (mut first, id) = resumable(&server).await;
    let answer = first.call(1, "add", json!({"a": 5, "b": 3})).await;
    assert_eq!(answer["structuredContent"]["result"], 8.0);

    let (mut second, response) = resume(&server, &id, 2).await;
    assert_eq!(response["mcpSessionId"], id.as_str(), "{response}");
    assert_eq!(
        first.expect_close().await,
        (
            1000,
            "MCP session reconnected on another connection".to_owned()
        )
    );
    let response = second
        .request(json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"multiply","arguments":{"a":6,"b":7}}}))
        .await;
    assert_eq!(response["seq"], 3, "{response}");
    assert_eq!(response["result"]["structuredContent"]["result"], 42.0);
}

#[tokio::test]
async fn resuming_what_cannot_be_resumed_is_a_clear_error() {
    let mut config = Config::default();
    config.session.resume_log = 16;
    let server = TestServer::with_config(config).await;
    let (_, response) = resume(&server, "0123456789abcdef0123456789abcdef", 0).await;
    assert_eq!(response["error"]["code"], -32003, "{response}");
    assert_eq!(response["error"]["data"]["reason"], "unknown");
    assert!(
        response["error"]["message"]
            .as_str()
            .unwrap()
            .contains("start a new session")
    );

    // A hostile id is not echoed in full.
    let huge = "x".repeat(100_000);
    let (_, response) = resume(&server, &huge, 0).await;
    assert_eq!(response["error"]["data"]["reason"], "unknown", "{response}");
    assert!(
        response.to_string().len() < 1_000,
        "the answer echoes the id in full"
    );

    let (mut client, id) = resumable(&server).await;
    for n in 0..20 {
        client.call(n, "add", json!({"a": n, "b": 1})).await;
    }
    let (mut late, response) = resume(&server, &id, 1).await;
    assert_eq!(response["error"]["code"], -32003, "{response}");
    assert_eq!(response["error"]["data"]["reason"], "truncated");
    assert_eq!(response["error"]["data"]["oldestSeq"], 6);
    let (_, response) = resume(&server, &id, 500).await;
    assert_eq!(response["error"]["data"]["reason"], "ahead", "{response}");
    // A refused resume leaves the connection usable for a new session.
    late.initialize("2025-11-25").await;
    assert_eq!(
        late.call(1, "add", json!({"a": 1, "b": 1})).await["structuredContent"]["result"],
        2.0
    );
}

#[tokio::test]
async fn calls_of_a_session_nobody_resumes_are_cancelled_after_the_grace_period() {
    let mut config = Config::default();
    config.session.resume_grace = Duration::from_millis(200);
    let server = TestServer::with_config(config).await;
    let (mut client, id) = resumable(&server).await;
    client
        .send(json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":60000}}}))
        .await;
    drop(client);
    // The session ends once its call was cancelled.
    wait_for_metric(&server, "mcp_sessions", 0.0).await;
    assert_eq!(
        metric(&metrics(&server).await, "mcp_inflight_requests"),
        0.0
    );

    // Its outcome waits in the store for the client.
    let (mut client, response) = resume(&server, &id, 1).await;
    assert_eq!(response["mcpSessionId"], id.as_str(), "{response}");
    let message = client.recv().await;
    assert_eq!(message["id"], 9, "{message}");
    assert_eq!(message["seq"], 2);
    assert_eq!(message["error"]["code"], -32000);
    assert!(
        message["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no connection resumed its session"),
        "{message}"
    );
}

#[tokio::test]
async fn a_session_that_is_not_resumable_ends_with_its_connection() {
    let server = TestServer::start().await;
    let mut client = Client::initialized(&server).await;
    let response = client
        .request(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}))
        .await;
    assert!(response.get("seq").is_none(), "{response}");
    assert!(response.get("mcpSessionId").is_none());
    drop(client);
    wait_for_metric(&server, "mcp_sessions", 0.0).await;
}

#[tokio::test]
async fn an_agent_made_over_http_is_resumed_over_websocket_and_keeps_one_history() {
    let server = TestServer::start().await;
    let (status, body) = post(
        &server,
        "/agent",
        "application/json",
        r#"{"name":"MathAgent"}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let agent: Value = serde_json::from_str(&body).unwrap();
    let id = agent["agentId"].as_str().unwrap().to_owned();
    let call =
        format!(r#"{{"agentId":"{id}","request":{{"method":"add","params":{{"a":5,"b":3}}}}}}"#);
    let (status, body) = post(&server, "/mcp", "application/json", &call).await;
    assert_eq!(status, 200, "{body}");

    let (mut client, response) = resume(&server, &id, 0).await;
    assert_eq!(response["mcpSessionId"], id.as_str(), "{response}");
    let product = client
        .request(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"multiply","arguments":{"a":6,"b":7}}}))
        .await;
    assert_eq!(product["seq"], 1, "{product}");
    assert_eq!(product["result"]["structuredContent"]["result"], 42.0);
    // Calls over HTTP and over the socket land in one history, neither losing the other's.
    let (status, body) = post(&server, "/mcp", "application/json", &call).await;
    assert_eq!(status, 200, "{body}");
    let (_, _, body) = http(&server, &format!("GET /agent/{id} HTTP/1.1")).await;
    let state: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(history_tools(&state), ["add", "multiply", "add"], "{state}");

    // Deleting the agent ends its live session.
    let (status, _, _) = http(&server, &format!("DELETE /agent/{id} HTTP/1.1")).await;
    assert_eq!(status, 204);
    assert_eq!(
        client.expect_close().await,
        (1000, "session deleted".to_owned())
    );
}

#[tokio::test]
async fn a_call_without_a_progress_token_still_saves_checkpoints() {
    let server = TestServer::start().await;
    let (mut client, id) = resumable(&server).await;
    client
        .send(
            json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{
            "name":"process_batch","arguments":{"count":100_000_000u64,"cost":10}}}),
        )
        .await;
    // Polls the agent API for a condition the server reaches on its own timer.
    let head = format!("GET /agent/{id} HTTP/1.1");
    let processed = tokio::time::timeout(crate::support::HANG, async {
        loop {
            let (_, _, body) = http(&server, &head).await;
            let state: Value = serde_json::from_str(&body).unwrap();
            if let Some(n) = state["operations"][0]["checkpoint"]["processed"].as_u64() {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the running call's checkpoint was never written");
    assert!(processed > 0);
    client
        .send(json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}))
        .await;
}

#[tokio::test]
async fn json_rpc_heartbeats_follow_the_connection_to_the_session_it_resumed() {
    let mut config = Config::default();
    config.ws.heartbeat = mcp_ws::Heartbeat::JsonRpc;
    config.ws.ping_interval = Duration::from_millis(50);
    config.ws.ping_timeout = Duration::from_secs(2);
    let server = TestServer::with_config(config).await;
    let (client, id) = resumable(&server).await;
    drop(client);
    let mut client = Client::connect(&server).await;
    let response = client
        .request(
            json!({"jsonrpc":"2.0","id":"again","method":"initialize","mcpSessionId":id,"params":{
            "protocolVersion":"2025-11-25",
            "capabilities":{"experimental":{"resume":{"lastSeq":"delivered"}}},
            "clientInfo":{"name":"e2e","version":"1"}}}),
        )
        .await;
    assert_eq!(response["mcpSessionId"], id.as_str(), "{response}");
    // The first connection's heartbeat stopped with it, having left at most a ping or two
    // undelivered; the rest come from this connection's heartbeat, through the resumed
    // session. A connection whose pings went nowhere would be closed for silence instead.
    for _ in 0..5 {
        let ping = client.recv().await;
        assert_eq!(ping["method"], "ping", "{ping}");
        assert!(ping["seq"].as_u64().is_some(), "{ping}");
        client
            .send(json!({"jsonrpc":"2.0","id":ping["id"],"result":{}}))
            .await;
    }
    drop(client);
    server.shutdown().await;
}
