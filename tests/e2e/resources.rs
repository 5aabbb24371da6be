//! Resources: the live statistics resource and the per-call resources, with subscriptions.

use std::time::Duration;

use mcp_server::Config;
use serde_json::{Value, json};

use crate::support::{Client, TestServer};

fn request(id: &str, method: &str, params: Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":method,"params":params})
}

/// Sends a request and returns its response, setting aside the notifications before it.
async fn ask(client: &mut Client, id: &str, method: &str, params: Value) -> (Value, Vec<Value>) {
    client.send(request(id, method, params)).await;
    let mut notifications = Vec::new();
    loop {
        let message = client.recv().await;
        if message["id"] == id {
            return (message, notifications);
        }
        assert!(
            message.get("method").is_some(),
            "unexpected message: {message}"
        );
        notifications.push(message);
    }
}

fn contents(response: &Value) -> Value {
    let text = response["result"]["contents"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{response}"));
    serde_json::from_str(text).unwrap()
}

/// Reads statistics updates (each must be one) until the statistics show `sessions`.
async fn hear_sessions(client: &mut Client, sessions: u64) {
    loop {
        let message = client.recv().await;
        assert_eq!(
            message["method"], "notifications/resources/updated",
            "{message}"
        );
        assert_eq!(message["params"]["uri"], "mcp://server/stats");
        let (read, _) = ask(
            client,
            "r",
            "resources/read",
            json!({"uri":"mcp://server/stats"}),
        )
        .await;
        if contents(&read)["sessions"] == sessions {
            return;
        }
    }
}

#[tokio::test]
async fn listing_reading_and_templates() {
    let server = TestServer::start().await;
    let mut client = Client::initialized(&server).await;
    let list = client
        .request(request("l", "resources/list", json!({})))
        .await;
    let uris: Vec<&str> = list["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris, ["mcp://server/stats"]);
    let stats = contents(
        &client
            .request(request(
                "r",
                "resources/read",
                json!({"uri":"mcp://server/stats"}),
            ))
            .await,
    );
    assert_eq!(stats["connections"], 1, "{stats}");
    assert_eq!(stats["sessions"], 1);
    let templates = client
        .request(request("t", "resources/templates/list", json!({})))
        .await;
    assert_eq!(
        templates["result"]["resourceTemplates"][0]["uriTemplate"],
        "mcp://session/operations/{requestId}"
    );
    let missing = client
        .request(request("m", "resources/read", json!({"uri":"mcp://nope"})))
        .await;
    assert_eq!(missing["error"]["code"], -32002, "{missing}");
    let bad = client
        .request(request(
            "s",
            "resources/subscribe",
            json!({"uri":"file:///etc/passwd"}),
        ))
        .await;
    assert_eq!(bad["error"]["code"], -32002, "{bad}");
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn subscribers_hear_when_the_statistics_change() {
    let server = TestServer::with_config(Config {
        stats_interval: Duration::from_millis(50),
        ..Config::default()
    })
    .await;
    let mut watcher = Client::initialized(&server).await;
    let (ok, _) = ask(
        &mut watcher,
        "s",
        "resources/subscribe",
        json!({"uri":"mcp://server/stats"}),
    )
    .await;
    assert_eq!(ok["result"], json!({}));
    // Another client comes: the statistics change, and the watcher hears of it.
    let other = Client::initialized(&server).await;
    hear_sessions(&mut watcher, 2).await;
    // After unsubscribing, changes are not announced.
    ask(
        &mut watcher,
        "u",
        "resources/unsubscribe",
        json!({"uri":"mcp://server/stats"}),
    )
    .await;
    // A witness still subscribed sees the next change; once it has, the watcher would have
    // been told before it answers a ping (the session handles updates before new input).
    let mut witness = Client::initialized(&server).await;
    ask(
        &mut witness,
        "s",
        "resources/subscribe",
        json!({"uri":"mcp://server/stats"}),
    )
    .await;
    // The change is a count never seen before: the statistics are sampled (every
    // `stats_interval`), so a session that comes and goes between two samples, or one that
    // leaves as another came, may change nothing the sampler sees.
    let fourth = Client::initialized(&server).await;
    hear_sessions(&mut witness, 4).await;
    let (pong, before) = ask(&mut watcher, "p", "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}));
    assert!(
        before.is_empty(),
        "announced after unsubscribing: {before:?}"
    );
    drop((watcher, witness, other, fourth));
    server.shutdown().await;
}

#[tokio::test]
async fn each_call_is_a_resource_with_its_progress_and_result() {
    let server = TestServer::start().await;
    let mut client = Client::initialized(&server).await;
    let uri = "mcp://session/operations/%22op1%22";
    let (ok, _) = ask(&mut client, "s", "resources/subscribe", json!({"uri": uri})).await;
    assert_eq!(ok["result"], json!({}));
    client
        .send(json!({"jsonrpc":"2.0","id":"op1","method":"tools/call","params":{"name":"sleep","arguments":{"ms":400}}}))
        .await;
    let mut updates = 0;
    let response = loop {
        let message = client.recv().await;
        if message["method"] == "notifications/resources/updated" {
            assert_eq!(message["params"]["uri"], uri);
            updates += 1;
        } else {
            break message;
        }
    };
    assert_eq!(response["id"], "op1");
    assert!(updates >= 1, "no update before the result");
    // The final update (completed) may come right after the response.
    let (read, _) = ask(&mut client, "r", "resources/read", json!({"uri": uri})).await;
    let operation = contents(&read);
    assert_eq!(operation["status"], "completed", "{operation}");
    assert_eq!(operation["tool"], "sleep");
    assert_eq!(operation["requestId"], "op1");
    assert_eq!(operation["progress"], 400.0);
    assert_eq!(operation["result"]["structuredContent"]["sleptMs"], 400);
    let (list, _) = ask(&mut client, "l", "resources/list", json!({})).await;
    assert!(
        list["result"]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["uri"] == uri),
        "{list}"
    );
    drop(client);
    server.shutdown().await;
}
