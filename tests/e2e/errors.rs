//! Every protocol error the foundation defines, over a real socket; the connection stays open.

use serde_json::{Value, json};

use crate::support::{Client, TestServer};

async fn expect_error(client: &mut Client, message: Value, id: Value, code: i64, mentions: &str) {
    let response = client.request(message.clone()).await;
    assert_eq!(response["id"], id, "{message} -> {response}");
    assert_eq!(response["error"]["code"], code, "{message} -> {response}");
    let text = response["error"]["message"].as_str().unwrap();
    assert!(
        text.contains(mentions),
        "{message}: `{text}` does not mention `{mentions}`"
    );
}

#[tokio::test]
async fn errors_before_initialize() {
    let server = TestServer::start().await;
    let mut client = Client::connect(&server).await;
    assert_eq!(
        client
            .request(json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
            .await["result"],
        json!({})
    );
    expect_error(
        &mut client,
        json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
        json!(2),
        -32600,
        "initialize",
    )
    .await;
    expect_error(&mut client, json!({"jsonrpc":"2.0","id":3,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{}}}), json!(3), -32602, "clientInfo").await;
    client.initialize("2025-11-25").await;
    expect_error(
        &mut client,
        json!({"jsonrpc":"2.0","id":4,"method":"initialize","params":{}}),
        json!(4),
        -32600,
        "already initialized",
    )
    .await;
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_messages_keep_the_connection_open() {
    let server = TestServer::start().await;
    let mut client = Client::initialized(&server).await;

    client.send_text("{\"jsonrpc\":\"2.0\",").await;
    let response = client.recv().await;
    assert_eq!(response["id"], Value::Null);
    assert_eq!(response["error"]["code"], -32700);

    // A batch is refused outside 2025-03-26.
    client
        .send(json!([{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]))
        .await;
    let response = client.recv().await;
    assert_eq!(response["error"]["code"], -32600);
    assert!(
        response["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2025-03-26")
    );

    expect_error(
        &mut client,
        json!({"jsonrpc":"1.0","id":5,"method":"ping"}),
        json!(5),
        -32600,
        "jsonrpc",
    )
    .await;
    expect_error(
        &mut client,
        json!({"jsonrpc":"2.0","id":6,"method":"tools/explode"}),
        json!(6),
        -32601,
        "tools/explode",
    )
    .await;
    expect_error(
        &mut client,
        json!({"jsonrpc":"2.0","id":"7","method":"tools/call","params":{"name":true}}),
        json!("7"),
        -32602,
        "`name`",
    )
    .await;
    expect_error(&mut client, json!({"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"nope","arguments":{}}}), json!(8), -32602, "unknown tool").await;
    expect_error(
        &mut client,
        json!({"jsonrpc":"2.0","id":9,"method":"tools/list","params":{"cursor":"forged"}}),
        json!(9),
        -32602,
        "cursor",
    )
    .await;

    // Still open and serving.
    assert_eq!(
        client
            .request(json!({"jsonrpc":"2.0","id":10,"method":"ping"}))
            .await["result"],
        json!({})
    );
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn batches_in_2025_03_26() {
    let server = TestServer::start().await;
    let mut client = Client::connect(&server).await;
    client.initialize("2025-03-26").await;
    client
        .send(json!([
            {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}},
            {"jsonrpc":"2.0","id":2,"method":"ping"}
        ]))
        .await;
    let response = client.recv().await;
    let mut ids: Vec<i64> = response
        .as_array()
        .expect("a batch response is an array")
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, [1, 2]);
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn duplicate_in_flight_id() {
    let server = TestServer::start().await;
    let mut client = Client::initialized(&server).await;
    let call = json!({"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":200}}});
    client.send(call.clone()).await;
    client.send(call).await;
    let first = client.recv().await;
    assert_eq!(first["id"], 42);
    assert_eq!(first["error"]["code"], -32600, "{first}");
    assert!(
        first["error"]["message"]
            .as_str()
            .unwrap()
            .contains("duplicate")
    );
    let second = client.recv().await;
    assert_eq!(
        second["result"]["structuredContent"]["sleptMs"], 200,
        "{second}"
    );
    drop(client);
    server.shutdown().await;
}
