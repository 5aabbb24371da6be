//! Bearer tokens on every path and transport, and sessions bound to their owner: another
//! principal finds nothing where the owner's sessions and agents are.

use http_body_util::BodyExt as _;
use mcp_server::{Auth, Config};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Error as WsError;

use crate::support::{Client, TestServer, exchange, http};

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-9876543210";

async fn server() -> TestServer {
    let auth = Auth::new(&[format!("alice={ALICE}"), format!("bob={BOB}")], None).unwrap();
    TestServer::with_config(Config {
        auth,
        admins: vec!["alice".to_owned()],
        ..Config::default()
    })
    .await
}

pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A plain HTTP request with a token; status and body.
pub(crate) async fn request(
    server: &TestServer,
    line: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, String) {
    let mut head = line.to_owned();
    if let Some(token) = token {
        head.push_str(&format!("\r\nAuthorization: Bearer {token}"));
    }
    let body = body.map(Value::to_string).unwrap_or_default();
    if !body.is_empty() {
        head.push_str(&format!(
            "\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}",
            body.len()
        ));
    }
    let (status, _, body) = exchange(server, &head, &body).await;
    (status, body)
}

pub(crate) fn status_of(result: Result<(Client, impl Sized), WsError>) -> u16 {
    match result {
        Ok(_) => 101,
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn every_path_but_the_probes_needs_a_valid_token() {
    let server = server().await;
    let upgrade = |headers: Vec<(&'static str, String)>| {
        let server = &server;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            status_of(Client::connect_with_headers(server, "/mcp", &headers).await)
        }
    };
    assert_eq!(upgrade(vec![]).await, 401);
    assert_eq!(upgrade(vec![("Authorization", bearer("wrong"))]).await, 401);
    assert_eq!(upgrade(vec![("Authorization", bearer(ALICE))]).await, 101);
    // A browser's way: the token as a subprotocol beside `mcp`, which is the one selected.
    let (_, response) =
        Client::connect_with(&server, "/mcp", Some(&format!("mcp, mcp.auth.{ALICE}")))
            .await
            .unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "mcp");
    let refused = Client::connect_with(&server, "/mcp", Some("mcp, mcp.auth.nope")).await;
    assert_eq!(status_of(refused), 401);

    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}});
    for (line, body) in [
        ("POST /mcp HTTP/1.1", Some(&init)),
        ("POST /agent HTTP/1.1", Some(&json!({"name": "MathAgent"}))),
        ("GET /metrics HTTP/1.1", None),
        (
            "POST /admin/broadcast HTTP/1.1",
            Some(&json!({"message": "hi"})),
        ),
    ] {
        let (status, text) = request(&server, line, None, body).await;
        assert_eq!(status, 401, "{line}: {text}");
        let (status, _) = request(&server, line, Some("wrong"), body).await;
        assert_eq!(status, 401, "{line}");
        let (status, text) = request(&server, line, Some(ALICE), body).await;
        assert!((200..300).contains(&status), "{line}: {status} {text}");
    }
    let (_, head, _) = http(&server, "GET /metrics HTTP/1.1").await;
    assert!(head.contains("www-authenticate: Bearer"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'; frame-ancestors 'none'"),
        "{head}"
    );
    assert!(!head.contains("server:"), "no version leaks: {head}");
    // Admin endpoints need an admin principal, not just any valid token.
    let (status, text) = request(
        &server,
        "POST /admin/broadcast HTTP/1.1",
        Some(BOB),
        Some(&json!({"message": "hi"})),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("--admin"), "{text}");
    // Probes stay open.
    assert_eq!(http(&server, "GET /healthz HTTP/1.1").await.0, 200);
    assert_eq!(http(&server, "GET /readyz HTTP/1.1").await.0, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn another_principal_finds_nothing_of_the_owner_s() {
    let server = server().await;
    // An agent of alice's.
    let (status, body) = request(
        &server,
        "POST /agent HTTP/1.1",
        Some(ALICE),
        Some(&json!({"name": "MathAgent"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let agent = serde_json::from_str::<Value>(&body).unwrap()["agentId"]
        .as_str()
        .unwrap()
        .to_owned();
    let call = json!({"agentId": agent, "request": {"method": "add", "params": {"a": 1, "b": 2}}});
    for token in [ALICE, BOB] {
        let expected = if token == ALICE { 200 } else { 404 };
        let show = format!("GET /agent/{agent} HTTP/1.1");
        assert_eq!(request(&server, &show, Some(token), None).await.0, expected);
        let (status, _) = request(&server, "POST /mcp HTTP/1.1", Some(token), Some(&call)).await;
        assert_eq!(status, expected);
        let ws = Client::connect_with_headers(
            &server,
            &format!("/agent/{agent}/websocket"),
            &[("Authorization", &bearer(token))],
        )
        .await;
        assert_eq!(status_of(ws), if token == ALICE { 101 } else { 404 });
    }
    let delete = format!("DELETE /agent/{agent} HTTP/1.1");
    assert_eq!(request(&server, &delete, Some(BOB), None).await.0, 404);

    // A resumable WebSocket session of alice's: bob cannot resume it, alice can.
    let mut alice =
        Client::connect_with_headers(&server, "/mcp", &[("Authorization", &bearer(ALICE))])
            .await
            .unwrap()
            .0;
    let answer = alice
        .request(
            json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{"experimental":{"resume":{}}},
            "clientInfo":{"name":"e2e","version":"1"}}}),
        )
        .await;
    let session = answer["mcpSessionId"].as_str().unwrap().to_owned();
    drop(alice);
    let resume = |last_seq: u64| {
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","mcpSessionId":session,"params":{
            "protocolVersion":"2025-11-25","capabilities":{"experimental":{"resume":{"lastSeq":last_seq}}},
            "clientInfo":{"name":"e2e","version":"1"}}})
    };
    let mut bob = Client::connect_with_headers(&server, "/mcp", &[("Authorization", &bearer(BOB))])
        .await
        .unwrap()
        .0;
    let refused = bob.request(resume(1)).await;
    assert_eq!(refused["error"]["code"], -32003, "{refused}");
    assert_eq!(refused["error"]["data"]["reason"], "unknown", "{refused}");
    // Not even a position that was never sent tells bob the session exists.
    let refused = bob.request(resume(99)).await;
    assert_eq!(refused["error"]["data"]["reason"], "unknown", "{refused}");
    drop(bob);
    let mut alice =
        Client::connect_with_headers(&server, "/mcp", &[("Authorization", &bearer(ALICE))])
            .await
            .unwrap()
            .0;
    let resumed = alice.request(resume(1)).await;
    assert_eq!(resumed["mcpSessionId"], session.as_str(), "{resumed}");
    drop(alice);

    // An HTTP session of alice's is unknown to bob.
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}});
    let head = format!(
        "POST /mcp HTTP/1.1\r\nAuthorization: Bearer {ALICE}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}",
        init.to_string().len()
    );
    let (status, head, _) = exchange(&server, &head, &init.to_string()).await;
    assert_eq!(status, 200);
    let http_session = head
        .lines()
        .find_map(|l| l.strip_prefix("mcp-session-id: "))
        .unwrap()
        .trim()
        .to_owned();
    let ping = json!({"jsonrpc":"2.0","id":2,"method":"ping"}).to_string();
    for (token, expected) in [(BOB, 404), (ALICE, 200)] {
        let head = format!(
            "POST /mcp HTTP/1.1\r\nAuthorization: Bearer {token}\r\nMcp-Session-Id: {http_session}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}",
            ping.len()
        );
        assert_eq!(exchange(&server, &head, &ping).await.0, expected);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_can_be_kept_for_admins() {
    let auth = Auth::new(&[format!("alice={ALICE}"), format!("bob={BOB}")], None).unwrap();
    let server = TestServer::with_config(Config {
        auth,
        admins: vec!["alice".to_owned()],
        metrics_admin_only: true,
        ..Config::default()
    })
    .await;
    let (status, body) = request(&server, "GET /metrics HTTP/1.1", Some(BOB), None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("--metrics-admin-only"), "{body}");
    let (status, body) = request(&server, "GET /metrics HTTP/1.1", Some(ALICE), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("mcp_sessions"), "{body}");
    server.shutdown().await;
}

/// Issue 19, item 3: one token could take every session of the server. Each principal now
/// has its own limit (429 with Retry-After over it), upgrades and `initialize` are
/// rate-limited like any request, and agent names are capped.
#[tokio::test]
async fn one_principal_cannot_take_every_session() {
    let auth = Auth::new(&[format!("alice={ALICE}"), format!("bob={BOB}")], None).unwrap();
    let mut config = Config {
        auth,
        ..Config::default()
    };
    config.session.max_sessions_per_principal = Some(2);
    config.session.max_stored_sessions_per_principal = Some(2);
    let server = TestServer::with_config(config).await;
    let alice = [("Authorization", format!("Bearer {ALICE}"))];
    let alice: Vec<(&str, &str)> = alice.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = Client::connect_with_headers(&server, "/mcp", &alice)
        .await
        .unwrap();
    let second = Client::connect_with_headers(&server, "/mcp", &alice)
        .await
        .unwrap();
    match Client::connect_with_headers(&server, "/mcp", &alice).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), 429);
            assert!(response.headers().contains_key("retry-after"));
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(body.contains("--max-sessions-per-principal"), "{body}");
        }
        Ok(_) => panic!("a third session of alice was accepted"),
        Err(e) => panic!("unexpected error: {e}"),
    }
    // Over HTTP too.
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}})
    .to_string();
    let head = |token: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}",
            init.len()
        )
    };
    let (status, _, body) = exchange(&server, &head(ALICE), &init).await;
    assert_eq!(status, 429, "{body}");
    // Bob is not held up by Alice.
    let bob = [("Authorization", format!("Bearer {BOB}"))];
    let bob: Vec<(&str, &str)> = bob.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (mut client, _) = Client::connect_with_headers(&server, "/mcp", &bob)
        .await
        .unwrap();
    client.initialize("2025-11-25").await;
    let (status, _, body) = exchange(&server, &head(BOB), &init).await;
    assert_eq!(status, 200, "{body}");
    // A place comes back when a session ends.
    drop(first);
    let deadline = tokio::time::Instant::now() + crate::support::HANG;
    while Client::connect_with_headers(&server, "/mcp", &alice)
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(second);
    // An agent's name is at most 256 bytes.
    let body = json!({"name": "n".repeat(257)}).to_string();
    let head = format!(
        "POST /agent HTTP/1.1\r\nAuthorization: Bearer {BOB}\r\nContent-Type: application/json\r\nContent-Length: {}",
        body.len()
    );
    let (status, _, text) = exchange(&server, &head, &body).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("at most 256"), "{text}");
    // And a principal keeps only so many agents; deleting one makes room.
    let create = |token: &'static str| {
        let body = json!({"name": "a"}).to_string();
        let head = format!(
            "POST /agent HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}",
            body.len()
        );
        let server = &server;
        async move { exchange(server, &head, &body).await }
    };
    let (status, _, first) = create(BOB).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(create(BOB).await.0, 201);
    let (status, head, text) = create(BOB).await;
    assert_eq!(status, 429, "{text}");
    assert!(head.contains("retry-after"), "{head}");
    assert!(
        text.contains("--max-stored-sessions-per-principal"),
        "{text}"
    );
    assert_eq!(create(ALICE).await.0, 201, "alice is not held up by bob");
    let first: Value = serde_json::from_str(&first).unwrap();
    let delete = format!(
        "DELETE /agent/{} HTTP/1.1\r\nAuthorization: Bearer {BOB}",
        first["agentId"].as_str().unwrap()
    );
    assert_eq!(http(&server, &delete).await.0, 204);
    assert_eq!(create(BOB).await.0, 201);
    server.shutdown().await;
}

/// Issue 19, item 3: a principal could keep resumable sessions in the store without limit.
#[tokio::test]
async fn a_principal_keeps_only_so_many_sessions_in_the_store() {
    let auth = Auth::new(&[format!("alice={ALICE}")], None).unwrap();
    let mut config = Config {
        auth,
        ..Config::default()
    };
    config.session.max_stored_sessions_per_principal = Some(1);
    let server = TestServer::with_config(config).await;
    let alice = [("Authorization", format!("Bearer {ALICE}"))];
    let alice: Vec<(&str, &str)> = alice.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let resumable = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{"experimental":{"resume":{}}},
        "clientInfo":{"name":"e2e","version":"1"}}});
    // The first is kept (its record is written with its first message).
    let (mut first, _) = Client::connect_with_headers(&server, "/mcp", &alice)
        .await
        .unwrap();
    let answer = first.request(resumable.clone()).await;
    assert!(
        answer["result"]["mcpSessionId"].is_string() || answer["mcpSessionId"].is_string(),
        "{answer}"
    );
    let deadline = tokio::time::Instant::now() + crate::support::HANG;
    let refused = loop {
        let (mut second, _) = Client::connect_with_headers(&server, "/mcp", &alice)
            .await
            .unwrap();
        let answer = second.request(resumable.clone()).await;
        if answer["error"].is_object() {
            break answer;
        }
        // The first record may not be written yet: try again.
        assert!(
            tokio::time::Instant::now() < deadline,
            "never refused: {answer}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(refused["error"]["code"], -32001, "{refused}");
    assert_eq!(
        refused["error"]["data"]["limit"], "stored_sessions_per_principal",
        "{refused}"
    );
    // A session that is not resumable is not stored: it is served.
    let (mut plain, _) = Client::connect_with_headers(&server, "/mcp", &alice)
        .await
        .unwrap();
    plain.initialize("2025-11-25").await;
    drop((first, plain));
    server.shutdown().await;
}

/// Issue 19, item 3: a principal could fill the store with bytes (an agent keeps 1,000
/// calls of any size). What each principal keeps is counted in bytes, and past
/// `max_stored_bytes_per_principal` nothing new is kept for it (a new agent or an agent's
/// call: 429; a new resumable session, its tool calls, a task: -32001), while the others
/// are served; deleting makes room again.
#[tokio::test]
async fn a_principal_keeps_only_so_many_bytes_in_the_store() {
    let auth = Auth::new(&[format!("alice={ALICE}"), format!("bob={BOB}")], None).unwrap();
    let mut config = Config {
        auth,
        ..crate::client_requests::with_fixtures()
    };
    config.session.max_stored_bytes_per_principal = Some(8 * 1024);
    let server = TestServer::with_config(config).await;
    let post = |path: &'static str, token: &'static str, body: Value| {
        let body = body.to_string();
        let head = format!(
            "POST {path} HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}",
            body.len()
        );
        let server = &server;
        async move { exchange(server, &head, &body).await }
    };
    let headers = |token: &str| vec![("Authorization".to_owned(), format!("Bearer {token}"))];
    let connect = |token: &'static str| {
        let server = &server;
        async move {
            let headers = headers(token);
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            Client::connect_with_headers(server, "/mcp", &headers)
                .await
                .unwrap()
                .0
        }
    };
    // A resumable session of alice's, started while she keeps little.
    let mut session = connect(ALICE).await;
    let answer = session
        .request(
            json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{"experimental":{"resume":{}}},
            "clientInfo":{"name":"e2e","version":"1"}}}),
        )
        .await;
    assert!(answer["result"].is_object(), "{answer}");
    session
        .send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;

    let (status, _, created) = post("/agent", ALICE, json!({"name": "filler"})).await;
    assert_eq!(status, 201, "{created}");
    let agent: Value = serde_json::from_str(&created).unwrap();
    let agent = agent["agentId"].as_str().unwrap().to_owned();
    // Each call keeps its 2 KB of arguments in the agent's history.
    let call = |token: &'static str, agent: String| {
        post(
            "/mcp",
            token,
            json!({"agentId": agent, "request": {"method": "add",
                "params": {"a": 1, "b": 2, "note": "x".repeat(2000)}}}),
        )
    };
    let mut kept = 0;
    let (head, refused) = loop {
        let (status, head, text) = call(ALICE, agent.clone()).await;
        match status {
            429 => break (head, text),
            200 | 422 => kept += 1,
            other => panic!("{other}: {text}"),
        }
        assert!(kept <= 8, "8 KB never filled: {text}");
    };
    assert!(kept >= 3, "refused after {kept} calls: {refused}");
    assert!(head.contains("retry-after"), "{head}");
    assert!(
        refused.contains("--max-stored-bytes-per-principal"),
        "{refused}"
    );
    let (status, _, text) = post("/agent", ALICE, json!({"name": "another"})).await;
    assert_eq!(status, 429, "a new agent: {text}");

    // Her resumable session's calls, a new resumable session and a task are refused too.
    let answer = session
        .request(json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
            "params":{"name":"add","arguments":{"a":1,"b":2}}}))
        .await;
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    assert_eq!(
        answer["error"]["data"]["limit"], "stored_bytes_per_principal",
        "{answer}"
    );
    let mut second = connect(ALICE).await;
    let answer = second
        .request(
            json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{"experimental":{"resume":{}}},
            "clientInfo":{"name":"e2e","version":"1"}}}),
        )
        .await;
    assert_eq!(
        answer["error"]["data"]["limit"], "stored_bytes_per_principal",
        "{answer}"
    );
    let task_call = |id: i64| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
            "name":"confirm_delete","arguments":{"filename":"a.txt"},
            "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",
                "io.modelcontextprotocol/clientCapabilities":{"elicitation":{},
                    "extensions":{"io.modelcontextprotocol/tasks":{}}}}}})
    };
    let mut modern = connect(ALICE).await;
    let answer = modern.request(task_call(1)).await;
    assert_eq!(
        answer["error"]["data"]["limit"], "stored_bytes_per_principal",
        "{answer}"
    );

    // Bob is served all the while.
    let (status, _, text) = post("/agent", BOB, json!({"name": "bob's"})).await;
    assert_eq!(status, 201, "{text}");
    let bobs: Value = serde_json::from_str(&text).unwrap();
    let (status, _, text) = call(BOB, bobs["agentId"].as_str().unwrap().to_owned()).await;
    assert!(status == 200 || status == 422, "{status}: {text}");
    let mut bob = connect(BOB).await;
    let answer = bob.request(task_call(1)).await;
    assert_eq!(answer["result"]["resultType"], "task", "{answer}");

    // Deleting the agent makes room.
    let delete = format!("DELETE /agent/{agent} HTTP/1.1\r\nAuthorization: Bearer {ALICE}");
    assert_eq!(http(&server, &delete).await.0, 204);
    let answer = modern.request(task_call(2)).await;
    assert_eq!(answer["result"]["resultType"], "task", "{answer}");
    let (status, _, text) = post("/agent", ALICE, json!({"name": "again"})).await;
    assert_eq!(status, 201, "{text}");
    drop((session, second, modern, bob));
    server.shutdown().await;
}

/// Issue 19, item 3: one principal could hold every connection of the server, each with a
/// `subscriptions/listen` stream or a WebSocket. A principal now holds at most
/// `max_connections_per_principal` at once (WebSockets, and HTTP requests with their
/// streams; 429 over it), the others are served, and one that ends frees its place.
#[tokio::test]
async fn one_principal_cannot_hold_every_connection() {
    let auth = Auth::new(&[format!("alice={ALICE}"), format!("bob={BOB}")], None).unwrap();
    let mut config = Config {
        auth,
        ..Config::default()
    };
    config.session.max_connections_per_principal = Some(2);
    let server = TestServer::with_config(config).await;
    let (alice, bob) = (format!("Bearer {ALICE}"), format!("Bearer {BOB}"));
    let listen = |id: i64, token: &str| {
        let headers = [("Authorization", token.to_owned())];
        let server = &server;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let params = json!({"notifications": {"toolsListChanged": true}});
            crate::modern::request(server, id, "subscriptions/listen", params, &headers).await
        }
    };
    let mut stream = crate::streamable::Sse::new(listen(1, &alice).await);
    let ack = stream.message().await;
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    let headers = [("Authorization", alice.as_str())];
    let (websocket, _) = Client::connect_with_headers(&server, "/mcp", &headers)
        .await
        .unwrap();

    // A third of any kind is refused.
    let refused = listen(2, &alice).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let bytes = refused.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("--max-connections-per-principal"), "{text}");
    match Client::connect_with_headers(&server, "/mcp", &headers).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 429),
        Ok(_) => panic!("a third connection of alice's was accepted"),
        Err(e) => panic!("unexpected error: {e}"),
    }
    let metrics = format!("GET /metrics HTTP/1.1\r\nAuthorization: {alice}");
    assert_eq!(http(&server, &metrics).await.0, 429);

    // Bob is served.
    let mut bobs = crate::streamable::Sse::new(listen(1, &bob).await);
    assert_eq!(
        bobs.message().await["method"],
        "notifications/subscriptions/acknowledged"
    );

    // A connection that ends gives its place back.
    drop(websocket);
    let deadline = tokio::time::Instant::now() + crate::support::HANG;
    while http(&server, &metrics).await.0 == 429 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop((stream, bobs));
    server.shutdown().await;
}
