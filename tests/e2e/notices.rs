//! Server push: broadcasts from the admin endpoint, and log messages with `logging/setLevel`.

use serde_json::{Value, json};

use crate::support::{Client, TestServer, post};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_a_hundred_sessions() {
    let server = TestServer::start().await;
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(Client::initialized(&server).await);
    }
    let (status, body) = post(
        &server,
        "/admin/broadcast",
        "application/json",
        r#"{"message":"Server will restart in 5 minutes","level":"warning"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer, json!({"delivered": 100, "sessions": 100}));
    for client in &mut clients {
        let notice = client.recv().await;
        assert_eq!(notice["method"], "notifications/message");
        assert_eq!(
            notice["params"],
            json!({"level":"warning","logger":"server","data":"Server will restart in 5 minutes"})
        );
    }
    drop(clients);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_broadcasts_get_clear_http_errors() {
    let server = TestServer::start().await;
    let cases = [
        ("application/json", "{\"message\": 5}", 400, "message"),
        (
            "application/json",
            "{\"message\": \"x\", \"level\": \"loud\"}",
            400,
            "level",
        ),
        ("application/json", "not json", 400, "not JSON"),
        (
            "text/plain",
            "{\"message\": \"x\"}",
            415,
            "application/json",
        ),
    ];
    for (content_type, body, status, mentions) in cases {
        let (got, text) = post(&server, "/admin/broadcast", content_type, body).await;
        assert_eq!(got, status, "{body}: {text}");
        assert!(
            text.contains(mentions),
            "{body}: `{text}` does not mention `{mentions}`"
        );
    }
    let (status, _, _) = crate::support::http(&server, "GET /admin/broadcast HTTP/1.1").await;
    assert_eq!(status, 405);
    server.shutdown().await;
}

#[tokio::test]
async fn log_messages_follow_the_level_the_client_sets() {
    let server = TestServer::start().await;
    let mut client = Client::initialized(&server).await;
    // By default (warning) tools' info messages are not sent.
    let result = client.call(0, "process_batch", json!({"count": 10})).await;
    assert_eq!(result["structuredContent"]["succeeded"], 10);
    let set = client
        .request(json!({"jsonrpc":"2.0","id":"lvl","method":"logging/setLevel","params":{"level":"info"}}))
        .await;
    assert_eq!(set["result"], json!({}));
    client
        .send(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"process_batch","arguments":{"count":10}}}))
        .await;
    let mut logs = Vec::new();
    let response = loop {
        let message = client.recv().await;
        if message["method"] == "notifications/message" {
            logs.push(message["params"].clone());
        } else {
            break message;
        }
    };
    assert_eq!(response["id"], 1);
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert_eq!(
        logs[0],
        json!({"level":"info","logger":"process_batch","data":"batch 1: started, 10 items"})
    );
    // At `error`, neither tool logs nor a warning broadcast come through.
    let set = client
        .request(
            json!({"jsonrpc":"2.0","id":2,"method":"logging/setLevel","params":{"level":"error"}}),
        )
        .await;
    assert_eq!(set["result"], json!({}));
    let result = client.call(3, "process_batch", json!({"count": 10})).await;
    assert_eq!(result["structuredContent"]["succeeded"], 10);
    let (_, body) = post(
        &server,
        "/admin/broadcast",
        "application/json",
        r#"{"message":"m"}"#,
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["delivered"],
        0
    );
    let bad = client
        .request(json!({"jsonrpc":"2.0","id":4,"method":"logging/setLevel","params":{"level":"verbose"}}))
        .await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    drop(client);
    server.shutdown().await;
}
