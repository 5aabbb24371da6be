//! The tasks extension (2026-07-28) over WebSocket: a task followed on a
//! `subscriptions/listen` stream through its input request to its result; the per-principal
//! limit; expiry. Against the real server on port 0 (the kill -9 and HTTP tests are in
//! `mcp-server`'s own tests, against the binary).

use std::time::Duration;

use mcp_server::Config;
use serde_json::{Value, json};

use crate::client_requests::with_fixtures;
use crate::support::{Client, TestServer};

const TASKS: &str = "io.modelcontextprotocol/tasks";

/// A modern request whose client takes tasks and answers elicitations.
fn request(id: i64, method: &str, mut params: Value) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {
            "elicitation": {},
            "extensions": {TASKS: {}}
        },
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// The next `notifications/tasks` of the stream.
async fn next_state(client: &mut Client) -> Value {
    loop {
        let message = client.recv().await;
        if message["method"] == "notifications/tasks" {
            return message["params"].clone();
        }
    }
}

#[tokio::test]
async fn a_task_is_followed_on_a_listen_stream_through_its_input_to_its_result() {
    let server = TestServer::with_config(with_fixtures()).await;
    let mut client = Client::connect(&server).await;
    let params = json!({"name": "confirm_delete", "arguments": {"filename": "a.txt"}});
    let created = client.request(request(1, "tools/call", params)).await;
    assert_eq!(created["result"]["resultType"], "task", "{created}");
    let task = created["result"]["taskId"].as_str().unwrap().to_owned();
    assert_eq!(task.len(), 32, "{created}");

    // A listen stream of the task: acknowledged with it, then its state, then its changes.
    let params = json!({"notifications": {"taskIds": [task, "0123456789abcdef0123456789abcdef"]}});
    client
        .send(request(2, "subscriptions/listen", params))
        .await;
    let ack = client.recv().await;
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    // Only the caller's existing task: the other id names nothing.
    assert_eq!(
        ack["params"]["notifications"]["taskIds"],
        json!([task]),
        "{ack}"
    );
    let mut state = next_state(&mut client).await;
    while state["status"] != "input_required" {
        state = next_state(&mut client).await;
    }
    assert_eq!(state["taskId"], task);
    assert_eq!(
        state["_meta"]["io.modelcontextprotocol/subscriptionId"], 2,
        "{state}"
    );
    let key = state["inputRequests"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    assert_eq!(
        state["inputRequests"][&key]["method"], "elicitation/create",
        "{state}"
    );

    // The answer, by key: the task goes on to its result.
    let answer = json!({"taskId": task, "inputResponses": {
        key.clone(): {"action": "accept", "content": {"confirm": true}},
        "not-asked": {"action": "accept"}
    }});
    let ack = client.request(request(3, "tasks/update", answer)).await;
    assert_eq!(ack["result"]["resultType"], "complete", "{ack}");
    let done = loop {
        let state = next_state(&mut client).await;
        if state["status"] == "completed" {
            break state;
        }
        assert_ne!(state["status"], "failed", "{state}");
    };
    assert_eq!(
        done["result"]["content"][0]["text"], "Deleted a.txt",
        "{done}"
    );
    // The result as the call would have answered it: a complete modern result.
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    // tasks/get says the same.
    let got = client
        .request(request(4, "tasks/get", json!({"taskId": task})))
        .await;
    assert_eq!(got["result"]["status"], "completed", "{got}");
    assert_eq!(got["result"]["result"], done["result"]);
    // Cancelling an ended task is acknowledged and changes nothing.
    let ack = client
        .request(request(5, "tasks/cancel", json!({"taskId": task})))
        .await;
    assert_eq!(ack["result"]["resultType"], "complete", "{ack}");
    let got = client
        .request(request(6, "tasks/get", json!({"taskId": task})))
        .await;
    assert_eq!(got["result"]["status"], "completed", "{got}");
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn a_principal_keeps_at_most_its_limit_of_tasks() {
    let mut config = Config::default();
    config.session.max_tasks_per_principal = 2;
    let server = TestServer::with_config(config).await;
    let mut client = Client::connect(&server).await;
    let sleep = json!({"name": "sleep", "arguments": {"ms": 300_000}});
    let mut tasks = Vec::new();
    for id in 1..=2 {
        let created = client
            .request(request(id, "tools/call", sleep.clone()))
            .await;
        assert_eq!(created["result"]["resultType"], "task", "{created}");
        tasks.push(created["result"]["taskId"].clone());
    }
    let refused = client
        .request(request(3, "tools/call", sleep.clone()))
        .await;
    assert_eq!(refused["error"]["code"], -32001, "{refused}");
    assert_eq!(refused["error"]["data"]["limit"], "tasks", "{refused}");
    // A call that is not a task is not counted.
    let sum = json!({"name": "add", "arguments": {"a": 1, "b": 2}});
    let sum = client.request(request(4, "tools/call", sum)).await;
    assert_eq!(sum["result"]["structuredContent"]["result"], 3.0, "{sum}");
    for (id, task) in (5..).zip(&tasks) {
        let ack = client
            .request(request(id, "tasks/cancel", json!({"taskId": task})))
            .await;
        assert_eq!(ack["result"]["resultType"], "complete", "{ack}");
    }
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn an_expired_task_is_unknown() {
    let mut config = Config::default();
    // Expired as soon as it exists.
    config.session.task_ttl = Duration::ZERO;
    let server = TestServer::with_config(config).await;
    let mut client = Client::connect(&server).await;
    let sleep = json!({"name": "sleep", "arguments": {"ms": 300_000}});
    let created = client.request(request(1, "tools/call", sleep)).await;
    let task = created["result"]["taskId"].clone();
    let got = client
        .request(request(2, "tasks/get", json!({"taskId": task})))
        .await;
    assert_eq!(got["error"]["code"], -32602, "{got}");
    // As unknown as an id that never was, or one that is not even an id.
    for (id, other) in [
        (3, json!("0123456789abcdef0123456789abcdef")),
        (4, json!("../x")),
    ] {
        let unknown = client
            .request(request(id, "tasks/get", json!({"taskId": other})))
            .await;
        assert_eq!(
            unknown["error"]["message"]
                .as_str()
                .map(|m| m.split(" `").next()),
            got["error"]["message"]
                .as_str()
                .map(|m| m.split(" `").next()),
            "{unknown}"
        );
    }
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn tools_say_whether_they_run_as_tasks_to_modern_clients_only() {
    let server = TestServer::start().await;
    let mut client = Client::connect(&server).await;
    let listed = client.request(request(1, "tools/list", json!({}))).await;
    let execution = |tools: &Value, name: &str| {
        tools["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()["execution"]
            .clone()
    };
    assert_eq!(
        execution(&listed, "process_batch"),
        json!({"taskSupport": "optional"})
    );
    assert_eq!(execution(&listed, "add"), Value::Null);
    // A 2025 session is not told: it has no tasks.
    client.initialize("2025-11-25").await;
    let legacy = client
        .request(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await;
    assert_eq!(execution(&legacy, "process_batch"), Value::Null, "{legacy}");
    drop(client);
    server.shutdown().await;
}

/// A task is its owner's: another principal gets the same -32602 as for an id that names
/// nothing, cannot cancel it, and is not acknowledged for it on a listen stream.
#[tokio::test]
async fn another_principal_learns_nothing_of_a_task() {
    const ALICE: &str = "alice-token-0123456789";
    const BOB: &str = "bob-token-9876543210";
    let auth =
        mcp_server::Auth::new(&[format!("alice={ALICE}"), format!("bob={BOB}")], None).unwrap();
    let server = TestServer::with_config(Config {
        auth,
        ..Config::default()
    })
    .await;
    let connect = |token: &'static str| {
        let server = &server;
        async move {
            let bearer = format!("Bearer {token}");
            let headers = [
                ("Sec-WebSocket-Protocol", "mcp"),
                ("Authorization", bearer.as_str()),
            ];
            Client::connect_with_headers(server, "/mcp", &headers)
                .await
                .unwrap()
                .0
        }
    };
    let mut alice = connect(ALICE).await;
    let mut bob = connect(BOB).await;
    let sleep = json!({"name": "sleep", "arguments": {"ms": 300_000}});
    let created = alice.request(request(1, "tools/call", sleep)).await;
    let task = created["result"]["taskId"].clone();
    assert!(task.is_string(), "{created}");
    let nothing = json!("0123456789abcdef0123456789abcdef");
    let unknown = bob
        .request(request(1, "tasks/get", json!({"taskId": nothing})))
        .await;
    let foreign = bob
        .request(request(2, "tasks/get", json!({"taskId": task})))
        .await;
    assert_eq!(foreign["error"]["code"], -32602, "{foreign}");
    // The same words, but for the id itself.
    let words = |answer: &Value| {
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .replace(task.as_str().unwrap(), "ID")
            .replace(nothing.as_str().unwrap(), "ID")
    };
    assert_eq!(words(&foreign), words(&unknown));
    let cancel = bob
        .request(request(3, "tasks/cancel", json!({"taskId": task})))
        .await;
    assert_eq!(cancel["error"]["code"], -32602, "{cancel}");
    let params = json!({"notifications": {"taskIds": [task]}});
    bob.send(request(4, "subscriptions/listen", params)).await;
    let ack = bob.recv().await;
    assert_eq!(ack["params"]["notifications"], json!({}), "{ack}");
    // Alice's task still runs: Bob's cancel did nothing.
    let state = alice
        .request(request(2, "tasks/get", json!({"taskId": task})))
        .await;
    assert_eq!(state["result"]["status"], "working", "{state}");
    let ack = alice
        .request(request(3, "tasks/cancel", json!({"taskId": task})))
        .await;
    assert_eq!(ack["result"]["resultType"], "complete", "{ack}");
    drop((alice, bob));
    server.shutdown().await;
}
