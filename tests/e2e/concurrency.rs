//! Many connections at once, and concurrent requests on one connection.

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::support::{Client, HANG, TestServer};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_does_not_hold_up_others() {
    let server = TestServer::start().await;
    let stalled = Client::initialized(&server).await;
    let (mut sink, mut stream) = stalled.socket.split();
    // Thousands of responses of several kilobytes each, more than the socket buffers and the
    // session's outbound queue hold, while this client reads nothing. The requests go out from
    // their own task, since the server stops reading them once its output is stuck.
    const REQUESTS: i64 = 3000;
    let sender = tokio::spawn(async move {
        for id in 0..REQUESTS {
            let request = json!({"jsonrpc":"2.0","id":id,"method":"tools/list"});
            sink.send(Frame::text(request.to_string())).await.unwrap();
        }
        sink
    });
    let mut other = Client::initialized(&server).await;
    for k in 0..20_i64 {
        let result = other.call(k, "add", json!({"a": k, "b": 1})).await;
        assert_eq!(result["structuredContent"]["result"], k + 1);
    }
    // Nothing was dropped: once the stalled client reads, every response is there, in order.
    for id in 0..REQUESTS {
        let frame = tokio::time::timeout(HANG, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let response: serde_json::Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
        assert_eq!(response["id"], id);
        assert!(response["result"]["tools"].is_array(), "{response}");
    }
    let sink = sender.await.unwrap();
    drop((sink, stream, other));
    server.shutdown().await;
}
