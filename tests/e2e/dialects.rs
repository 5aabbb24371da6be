//! The seeds' dialects on real sockets: the math-mcp envelopes on an agent's WebSocket, and
//! the tutorial's JSON-RPC extras on `/mcp?dialect=tutorial`.

use serde_json::{Value, json};

use crate::agents::create;
use crate::support::{Client, TestServer, broadcast, history_tools, http};

/// Connects to an agent's envelope WebSocket as the seed's client does (no subprotocol).
async fn envelopes(server: &TestServer, agent: &str, query: &str) -> Client {
    Client::connect_with(server, &format!("/agent/{agent}/websocket{query}"), None)
        .await
        .unwrap()
        .0
}

fn is_iso_timestamp(value: &Value) -> bool {
    // 2023-05-01T12:34:56.789Z
    value.as_str().is_some_and(|t| {
        t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T' && t.as_bytes()[19] == b'.'
    })
}

/// Reads envelopes until one of `kind` for `request`, returning all of them.
async fn until(client: &mut Client, kind: &str, request: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let envelope = client.recv().await;
        let done = envelope["type"] == kind && envelope["requestId"] == request;
        seen.push(envelope);
        if done {
            return seen;
        }
    }
}

#[tokio::test]
async fn the_seed_websocket_request_gets_the_seed_response_and_is_recorded() {
    let server = TestServer::start().await;
    let agent = create(&server).await;
    let mut ws = envelopes(&server, &agent, "").await;
    // The seed's example, as written.
    ws.send(json!({"type":"mcp_request","request":{"method":"add","params":{"a":5,"b":3}}}))
        .await;
    let response = ws.recv().await;
    assert_eq!(response["type"], "mcp_response", "{response}");
    assert_eq!(
        response["result"],
        json!({"result": 8, "operation": "add", "a": 5, "b": 3})
    );
    assert!(is_iso_timestamp(&response["timestamp"]), "{response}");
    assert!(response.get("requestId").is_none(), "{response}");
    // The answer was committed with the call in the agent's history before it was sent.
    let (status, _, body) = http(&server, &format!("GET /agent/{agent} HTTP/1.1")).await;
    assert_eq!(status, 200);
    let state: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(state["history"][0]["tool"], "add", "{state}");
    assert_eq!(state["lastResult"]["structuredContent"]["result"], 8);

    // The TypeScript transport of the seed correlates by requestId; MCP methods work too.
    ws.send(json!({"type":"mcp_request","request":{"method":"tools/list","params":{}},"requestId":"list-1"}))
        .await;
    let tools = ws.recv().await;
    assert_eq!(tools["requestId"], "list-1", "{tools}");
    assert!(tools["result"]["tools"].as_array().unwrap().len() >= 7);
    // A tool's own failure, and a refused envelope, each get an error envelope.
    ws.send(json!({"type":"mcp_request","request":{"method":"divide","params":{"a":1,"b":0}},"requestId":9}))
        .await;
    let failure = ws.recv().await;
    assert_eq!(failure["type"], "error", "{failure}");
    assert_eq!(failure["requestId"], 9);
    assert!(
        failure["error"]["message"]
            .as_str()
            .unwrap()
            .contains("division by zero"),
        "{failure}"
    );
    ws.send_text("{not json").await;
    let refused = ws.recv().await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["error"]["code"], -32700);
    // Heartbeat and pushes.
    ws.send(json!({"type":"ping"})).await;
    let pong = ws.recv().await;
    assert_eq!(pong["type"], "pong");
    assert!(is_iso_timestamp(&pong["timestamp"]));
    broadcast(&server, "maintenance at noon").await;
    let notice = ws.recv().await;
    assert_eq!(notice["type"], "notification", "{notice}");
    assert_eq!(notice["payload"]["method"], "notifications/message");
    assert_eq!(notice["payload"]["params"]["data"], "maintenance at noon");
    drop(ws);
    server.shutdown().await;
}

#[tokio::test]
async fn envelope_progress_then_cancel_ends_the_call() {
    let server = TestServer::start().await;
    let agent = create(&server).await;
    let mut ws = envelopes(&server, &agent, "").await;
    ws.send(json!({"type":"mcp_request","request":{"method":"process_batch","params":{"count":1_000_000,"cost":3000}},"requestId":"big"}))
        .await;
    let progress = ws.recv().await;
    assert_eq!(progress["type"], "progress", "{progress}");
    assert_eq!(progress["requestId"], "big");
    assert!(progress["total"].as_f64().is_some(), "{progress}");
    ws.send(json!({"type":"cancel","requestId":"big"})).await;
    // Progress already on its way may still arrive; then `cancelled` is the last word.
    let seen = until(&mut ws, "cancelled", "big").await;
    assert!(
        seen[..seen.len() - 1]
            .iter()
            .all(|e| e["type"] == "progress"),
        "{seen:?}"
    );
    ws.send(json!({"type":"ping"})).await;
    let next = ws.recv().await;
    assert_eq!(
        next["type"], "pong",
        "nothing else comes for a cancelled call: {next}"
    );
    // The agent's record shows no running operation once the cancel took effect, and no
    // history entry for the cancelled call.
    ws.send(json!({"type":"mcp_request","request":{"method":"add","params":{"a":1,"b":1}},"requestId":"after"}))
        .await;
    let after = ws.recv().await;
    assert_eq!(after["result"]["result"], 2, "{after}");
    let (_, _, body) = http(&server, &format!("GET /agent/{agent} HTTP/1.1")).await;
    let state: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(history_tools(&state), ["add"], "{state}");
    drop(ws);
    server.shutdown().await;
}

#[tokio::test]
async fn an_envelope_client_that_drops_mid_batch_resumes_with_last_seq() {
    let server = TestServer::start().await;
    let agent = create(&server).await;
    let mut ws = envelopes(&server, &agent, "").await;
    ws.send(json!({"type":"mcp_request","request":{"method":"process_batch","params":{"count":100_000,"cost":3000}},"requestId":"b"}))
        .await;
    let mut last = 0;
    let mut progress = Vec::new();
    while progress.len() < 3 {
        let envelope = ws.recv().await;
        assert_eq!(envelope["type"], "progress", "{envelope}");
        let seq = envelope["seq"].as_u64().unwrap();
        assert!(seq > last, "{envelope}");
        last = seq;
        progress.push(envelope["progress"].as_f64().unwrap());
    }
    assert!(*progress.last().unwrap() < 100_000.0);
    drop(ws);

    let mut ws = envelopes(&server, &agent, &format!("?lastSeq={last}")).await;
    let rest = until(&mut ws, "mcp_response", "b").await;
    for envelope in &rest {
        let seq = envelope["seq"].as_u64().unwrap();
        assert_eq!(seq, last + 1, "no gap and no repeat: {envelope}");
        last = seq;
        if envelope["type"] == "progress" {
            progress.push(envelope["progress"].as_f64().unwrap());
        }
    }
    assert!(
        progress.windows(2).all(|w| w[0] < w[1]),
        "progress repeats or goes back: {progress:?}"
    );
    let result = &rest.last().unwrap()["result"];
    assert_eq!(result["processed"], 100_000, "{result}");
    assert_eq!(result["succeeded"], 100_000);
    drop(ws);
    server.shutdown().await;
}

#[tokio::test]
async fn agent_sockets_are_refused_clearly() {
    let server = TestServer::start().await;
    let unknown = "0123456789abcdef0123456789abcdef";
    let refused = Client::connect_with(&server, &format!("/agent/{unknown}/websocket"), None).await;
    let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = refused else {
        panic!("an unknown agent must be refused");
    };
    assert_eq!(response.status(), 404);
    let agent = create(&server).await;
    let refused = Client::connect_with(
        &server,
        &format!("/agent/{agent}/websocket?lastSeq=x"),
        None,
    )
    .await;
    let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = refused else {
        panic!("a bad lastSeq must be refused");
    };
    assert_eq!(response.status(), 400);
    // A position never sent: an error envelope, then a normal close.
    let mut ws = envelopes(&server, &agent, "?lastSeq=99").await;
    let error = ws.recv().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error"]["code"], -32003);
    assert_eq!(error["error"]["data"]["reason"], "ahead");
    let (code, reason) = ws.expect_close().await;
    assert_eq!(code, 1000);
    assert_eq!(reason, "cannot attach to the agent's session");
    drop(ws);
    server.shutdown().await;
}

/// Connects with the tutorial dialect and initializes; returns the client and its
/// connection id.
async fn tutorial(server: &TestServer) -> (Client, String) {
    let mut client = Client::connect_with(server, "/mcp?dialect=tutorial", None)
        .await
        .unwrap()
        .0;
    let connected = client.recv().await;
    assert_eq!(connected["method"], "connected", "{connected}");
    let id = connected["params"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let init = client.initialize("2024-11-05").await;
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05", "{init}");
    (client, id)
}

#[tokio::test]
async fn tutorial_progress_carries_request_percentage_and_eta() {
    let server = TestServer::start().await;
    let (mut client, first) = tutorial(&server).await;
    let (_, second) = tutorial(&server).await;
    assert_ne!(first, second, "every connection has its own id");
    client
        .send(json!({"jsonrpc":"2.0","id":"req_001","method":"tools/call","params":{"name":"process_batch","arguments":{"count":20_000,"cost":2000}}}))
        .await;
    let mut updates = Vec::new();
    let response = loop {
        let message = client.recv().await;
        if message["id"] == "req_001" {
            break message;
        }
        assert_eq!(message["method"], "progress", "{message}");
        updates.push(message["params"].clone());
    };
    assert!(!updates.is_empty(), "a call without a token gets progress");
    for update in &updates {
        assert_eq!(update["requestId"], "req_001", "{update}");
        assert_eq!(update["total"], 20_000.0, "{update}");
        let percentage = update["percentage"].as_i64().unwrap();
        assert!((0..=100).contains(&percentage), "{update}");
        assert!(update.get("eta").is_some() && update.get("message").is_some());
    }
    assert!(
        updates.iter().any(|u| u["eta"].as_u64().is_some()),
        "some update knows its ETA: {updates:?}"
    );
    // 2024-11-05 has no structured content: the text says it.
    assert!(
        response["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("processed 20000 of 20000"),
        "{response}"
    );
    // Pushes arrive as `notification`, and a ping notification gets a pong.
    broadcast(&server, "Server will restart in 5 minutes").await;
    let notice = client.recv().await;
    assert_eq!(
        notice,
        json!({"jsonrpc":"2.0","method":"notification","params":{
            "type":"server","level":"warning","message":"Server will restart in 5 minutes"}})
    );
    client.send(json!({"jsonrpc":"2.0","method":"ping"})).await;
    assert_eq!(
        client.recv().await,
        json!({"jsonrpc":"2.0","method":"pong"})
    );
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn tutorial_cancel_is_answered_and_ends_the_call_with_a_final_result() {
    let server = TestServer::start().await;
    let (mut client, _) = tutorial(&server).await;
    client
        .send(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"process_batch","arguments":{"count":1_000_000,"cost":3000}}}))
        .await;
    let first = client.recv().await;
    assert_eq!(first["method"], "progress", "{first}");
    client
        .send(json!({"jsonrpc":"2.0","id":2,"method":"cancel","params":{"requestId":1}}))
        .await;
    let mut answers = Vec::new();
    while answers.len() < 2 {
        let message = client.recv().await;
        if message["method"] == "progress" {
            // Sent before the cancel arrived.
            assert!(answers.is_empty(), "progress after the cancel: {message}");
            continue;
        }
        answers.push(message);
    }
    assert_eq!(
        answers[0],
        json!({"jsonrpc":"2.0","id":2,"result":{"cancelled":true}})
    );
    assert_eq!(answers[1]["id"], 1);
    assert_eq!(answers[1]["result"]["isError"], true);
    assert!(
        answers[1]["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("cancelled"),
        "{}",
        answers[1]
    );
    // Nothing more for the cancelled call: the next message answers the next request.
    let pong = client
        .request(json!({"jsonrpc":"2.0","id":3,"method":"ping"}))
        .await;
    assert_eq!(pong, json!({"jsonrpc":"2.0","id":3,"result":{}}));
    let again = client
        .request(json!({"jsonrpc":"2.0","id":4,"method":"cancel","params":{"requestId":1}}))
        .await;
    assert_eq!(again["result"]["cancelled"], false, "{again}");
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn standard_clients_see_none_of_the_dialects() {
    let server = TestServer::start().await;
    let mut client = Client::connect(&server).await;
    // The first message is the answer to initialize: no `connected`.
    let init = client.initialize("2025-11-25").await;
    assert_eq!(init["id"], "init", "{init}");
    client
        .send(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"process_batch","arguments":{"count":2000}}}))
        .await;
    let response = client.recv().await;
    assert_eq!(response["id"], 1, "no progress without a token: {response}");
    let refused = Client::connect_with(&server, "/mcp?dialect=klingon", None).await;
    let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = refused else {
        panic!("an unknown dialect must be refused");
    };
    assert_eq!(response.status(), 400);
    drop(client);
    server.shutdown().await;
}
