//! Many connections at once, and concurrent requests on one connection.

use serde_json::json;

use crate::support::{Client, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_connections_calling_tools() {
    let server = TestServer::start().await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..200_i64 {
        let url_server = &server;
        let mut client = Client::initialized(url_server).await;
        tasks.spawn(async move {
            for k in 0..5_i64 {
                let result = client.call(k, "multiply", json!({"a": n, "b": k})).await;
                assert_eq!(result["structuredContent"]["result"], n * k, "{result}");
            }
            let result = client.call(5, "add", json!({"a": n, "b": 0.5})).await;
            assert_eq!(result["structuredContent"]["result"], n as f64 + 0.5);
        });
    }
    let mut done = 0;
    while let Some(outcome) = tasks.join_next().await {
        outcome.unwrap();
        done += 1;
    }
    assert_eq!(done, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_answer_as_they_finish() {
    let server = TestServer::start().await;
    let mut client = Client::initialized(&server).await;
    client
        .send(json!({"jsonrpc":"2.0","id":"slow","method":"tools/call","params":{"name":"sleep","arguments":{"ms":1500}}}))
        .await;
    client
        .send(json!({"jsonrpc":"2.0","id":"medium","method":"tools/call","params":{"name":"sleep","arguments":{"ms":100}}}))
        .await;
    client
        .send(json!({"jsonrpc":"2.0","id":"fast","method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":1}}}))
        .await;
    client
        .send(json!({"jsonrpc":"2.0","id":"ping","method":"ping"}))
        .await;
    let mut order = Vec::new();
    for _ in 0..4 {
        let response = client.recv().await;
        assert!(response.get("error").is_none(), "{response}");
        order.push(response["id"].as_str().unwrap().to_owned());
    }
    // The instant ones may come in either order; the sleeps come after them, shortest first.
    assert_eq!(order[2..], ["medium", "slow"], "{order:?}");
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn cancelled_call_gets_no_response() {
    let server = TestServer::start().await;
    let mut client = Client::initialized(&server).await;
    client
        .send(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":300000}}}))
        .await;
    client
        .send(json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"reason":"test"}}))
        .await;
    // Notifications are handled in order, so by the time this ping is answered the cancel has
    // been processed; had the call answered, its response would come before later ones.
    assert_eq!(
        client
            .request(json!({"jsonrpc":"2.0","id":2,"method":"ping"}))
            .await["id"],
        2
    );
    let result = client.call(3, "add", json!({"a": 2, "b": 2})).await;
    assert_eq!(result["structuredContent"]["result"], 4, "{result}");
    let result = client.call(4, "sleep", json!({"ms": 50})).await;
    assert_eq!(result["structuredContent"]["sleptMs"], 50, "{result}");
    drop(client);
    server.shutdown().await;
}
