//! Tools that ask the client (sampling, elicitation) over WebSocket: the request reaches the
//! client, its answer reaches the tool, and a client without the capability gets a clear
//! tool error. Over Streamable HTTP the official conformance suite checks the same.

use mcp_server::Config;
use serde_json::{Value, json};

use crate::support::{Client, TestServer};

pub(crate) fn with_fixtures() -> Config {
    Config {
        conformance_fixtures: true,
        ..Config::default()
    }
}

async fn initialized(server: &TestServer, capabilities: Value) -> Client {
    let mut client = Client::connect(server).await;
    let answer = client
        .request(
            json!({"jsonrpc":"2.0","id":"init","method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":capabilities,
            "clientInfo":{"name":"e2e","version":"1"}}}),
        )
        .await;
    assert!(answer["result"].is_object(), "{answer}");
    client
        .send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    client
}

#[tokio::test]
async fn a_tool_samples_from_the_client_over_websocket() {
    let server = TestServer::with_config(with_fixtures()).await;
    let mut client = initialized(&server, json!({"sampling": {}, "elicitation": {}})).await;
    client
        .send(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_sampling","arguments":{"prompt":"What is 2+2?"}}}))
        .await;
    let request = client.recv().await;
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    assert_eq!(
        request["params"]["messages"][0]["content"]["text"],
        "What is 2+2?"
    );
    client
        .send(json!({"jsonrpc":"2.0","id":request["id"],"result":{
            "role":"assistant","content":{"type":"text","text":"4"},"model":"test","stopReason":"endTurn"}}))
        .await;
    let answer = client.recv().await;
    assert_eq!(answer["id"], 1, "{answer}");
    assert_eq!(answer["result"]["content"][0]["text"], "LLM response: 4");
    // An elicitation the user declines is reported as such.
    client
        .send(json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"test_elicitation","arguments":{"message":"Who are you?"}}}))
        .await;
    let request = client.recv().await;
    assert_eq!(request["method"], "elicitation/create", "{request}");
    client
        .send(json!({"jsonrpc":"2.0","id":request["id"],"result":{"action":"decline"}}))
        .await;
    let answer = client.recv().await;
    assert_eq!(answer["id"], 2, "{answer}");
    assert!(
        answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("action=decline"),
        "{answer}"
    );
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_without_the_capability_gets_a_tool_error() {
    let server = TestServer::with_config(with_fixtures()).await;
    let mut client = initialized(&server, json!({})).await;
    let result = client
        .call(1, "test_elicitation", json!({"message": "Who are you?"}))
        .await;
    assert_eq!(result["isError"], true, "{result}");
    assert!(
        result["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("does not support elicitation"),
        "{result}"
    );
    drop(client);
    server.shutdown().await;
}
