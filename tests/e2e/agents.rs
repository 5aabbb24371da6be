//! The math-mcp seed's HTTP API, used as its example code does.

use mcp_server::Config;
use serde_json::{Value, json};

use crate::support::{TestServer, http, post};

pub(crate) async fn create(server: &TestServer) -> String {
    let (status, body) = post(
        server,
        "/agent",
        "application/json",
        r#"{"name":"MathAgent"}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["agentId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 32, "{id}");
    id
}

async fn seed_call(server: &TestServer, agent: &str, method: &str, params: Value) -> (u16, Value) {
    let body =
        json!({"agentId": agent, "request": {"method": method, "params": params}}).to_string();
    let (status, body) = post(server, "/mcp", "application/json", &body).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

async fn show(server: &TestServer, agent: &str) -> (u16, Value) {
    let (status, _, body) = http(server, &format!("GET /agent/{agent} HTTP/1.1")).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

#[tokio::test]
async fn the_seed_examples_work_as_written() {
    let server = TestServer::start().await;
    let agent = create(&server).await;
    let (status, result) = seed_call(&server, &agent, "add", json!({"a": 5, "b": 3})).await;
    assert_eq!(status, 200);
    assert_eq!(
        result,
        json!({"result": 8, "operation": "add", "a": 5, "b": 3})
    );
    let (status, failure) = seed_call(&server, &agent, "divide", json!({"a": 1, "b": 0})).await;
    assert_eq!(status, 422);
    assert!(
        failure["error"]
            .as_str()
            .unwrap()
            .contains("division by zero"),
        "{failure}"
    );
    let (status, via_mcp) = seed_call(
        &server,
        &agent,
        "tools/call",
        json!({"name": "sqrt", "arguments": {"a": 9}}),
    )
    .await;
    assert_eq!((status, &via_mcp["result"]), (200, &json!(3)), "{via_mcp}");
    assert_eq!(
        seed_call(&server, &agent, "tools/call", json!({"name": 5}))
            .await
            .0,
        400
    );
    let (status, listed) = seed_call(&server, &agent, "tools/list", json!({})).await;
    assert_eq!(status, 200);
    assert!(
        listed["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "add")
    );

    let (status, state) = show(&server, &agent).await;
    assert_eq!(status, 200);
    assert_eq!(state["agentId"], agent.as_str());
    assert_eq!(state["name"], "MathAgent");
    let history = state["history"].as_array().unwrap();
    assert_eq!(history.len(), 3, "{state}");
    assert_eq!(history[0]["tool"], "add");
    assert_eq!(history[0]["arguments"], json!({"a": 5, "b": 3}));
    assert_eq!(history[0]["result"]["structuredContent"]["result"], 8);
    assert_eq!(history[1]["result"]["isError"], true);
    assert_eq!(history[2]["tool"], "sqrt");
    assert_eq!(state["lastResult"]["structuredContent"]["result"], 3);

    let (status, _, _) = http(&server, &format!("DELETE /agent/{agent} HTTP/1.1")).await;
    assert_eq!(status, 204);
    assert_eq!(show(&server, &agent).await.0, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let server = TestServer::start().await;
    let agent = create(&server).await;
    let (status, body) = seed_call(
        &server,
        "0123456789abcdef0123456789abcdef",
        "add",
        json!({}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("no such agent"))
    );
    assert_eq!(
        seed_call(&server, "../../etc", "add", json!({})).await.0,
        404
    );
    let (status, body) = seed_call(&server, &agent, "teleport", json!({})).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("unknown method"));
    let (status, body) = post(&server, "/mcp", "application/json", r#"{"agentId": 5}"#).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = post(&server, "/mcp", "application/json", "not json").await;
    assert_eq!(status, 400);
    let (status, _) = post(&server, "/mcp", "text/plain", "{}").await;
    assert_eq!(status, 415);
    let (status, body) = post(
        &server,
        "/mcp",
        "application/json",
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    // A JSON-RPC body is Streamable HTTP: without a session it must be `initialize`.
    assert_eq!(status, 400);
    assert!(body.contains("Mcp-Session-Id"), "{body}");
    assert_eq!(show(&server, "not-an-id").await.0, 404);
    let (status, _, _) = http(
        &server,
        &format!("PUT /agent/{agent} HTTP/1.1\r\nContent-Length: 0"),
    )
    .await;
    assert_eq!(status, 405);
    server.shutdown().await;
}

#[tokio::test]
async fn an_agents_history_survives_a_restart_on_the_same_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let config = || Config {
        data_dir: Some(dir.path().to_path_buf()),
        ..Config::default()
    };
    let server = TestServer::with_config(config()).await;
    let agent = create(&server).await;
    assert_eq!(
        seed_call(&server, &agent, "multiply", json!({"a": 6, "b": 7}))
            .await
            .0,
        200
    );
    server.shutdown().await;

    let server = TestServer::with_config(config()).await;
    let (status, state) = show(&server, &agent).await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(
        state["history"][0]["result"]["structuredContent"]["result"],
        42
    );
    assert_eq!(
        seed_call(&server, &agent, "add", json!({"a": 1, "b": 1}))
            .await
            .0,
        200
    );
    assert_eq!(
        show(&server, &agent).await.1["history"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    server.shutdown().await;
}

/// Issue 19, item 1: arguments nested 124 levels were kept in the history, one level deeper
/// than the store reads back; from then on the agent answered 500 and the idle sweep stopped
/// for everyone. Now such input is refused where it arrives, and the agent stays readable.
#[tokio::test]
async fn input_nested_too_deep_is_refused_and_poisons_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::with_config(Config {
        data_dir: Some(dir.path().to_path_buf()),
        ..Config::default()
    })
    .await;
    let agent = create(&server).await;
    let deep: Value =
        serde_json::from_str(&format!("{}{}", "[".repeat(124), "]".repeat(124))).unwrap();
    let (status, body) =
        seed_call(&server, &agent, "add", json!({"a": 1, "b": 2, "x": deep})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("deeper than 64 levels"),
        "{body}"
    );
    // The deepest input accepted is kept and reads back.
    let deep: Value =
        serde_json::from_str(&format!("{}{}", "[".repeat(58), "]".repeat(58))).unwrap();
    let (status, body) =
        seed_call(&server, &agent, "add", json!({"a": 1, "b": 2, "x": deep})).await;
    assert_eq!(
        status, 422,
        "a tool error (an extra argument), answered: {body}"
    );
    let (status, state) = show(&server, &agent).await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["history"].as_array().unwrap().len(), 1, "{state}");
    let (status, _, body) = http(&server, &format!("DELETE /agent/{agent} HTTP/1.1")).await;
    assert_eq!(status, 204, "{body}");
    // A creation body nested too deep is refused as clearly.
    let name = format!("{{\"name\": {}\"x\"{}}}", "[".repeat(70), "]".repeat(70));
    let (status, body) = post(&server, "/agent", "application/json", &name).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("deeper than 64 levels"), "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_unused_agent_expires_and_its_data_is_removed() {
    let server = TestServer::with_config(Config {
        session_ttl: std::time::Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let agent = create(&server).await;
    assert_eq!(show(&server, &agent).await.0, 200);
    // Expiry happens on the server's own timer; wait for its effect, bounded.
    let deadline = tokio::time::Instant::now() + crate::support::HANG;
    while show(&server, &agent).await.0 != 404 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, body) = seed_call(&server, &agent, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("no such agent"))
    );
    server.shutdown().await;
}

/// The agent API's long calls are tasks underneath: kept in the store, counted against the
/// principal's tasks; its quick calls are not.
#[tokio::test]
async fn the_agent_api_s_long_calls_are_tasks_underneath() {
    let mut config = Config::default();
    config.session.max_tasks_per_principal = 1;
    let server = TestServer::with_config(config).await;
    let agent = create(&server).await;
    let (status, result) =
        seed_call(&server, &agent, "process_batch", json!({"count": 1000})).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["processed"], 1000, "{result}");
    // The first task is kept until it expires: a second one is over the limit.
    let (status, refused) =
        seed_call(&server, &agent, "process_batch", json!({"count": 1000})).await;
    assert_eq!(status, 429, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("tasks"),
        "{refused}"
    );
    // A quick call is no task.
    let (status, sum) = seed_call(&server, &agent, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(status, 200, "{sum}");
    server.shutdown().await;
}

/// A call that fails inside the server is a 500 naming the failure, not a 403.
#[tokio::test]
async fn a_call_that_fails_inside_the_server_is_a_500() {
    let server = TestServer::with_config(crate::client_requests::with_fixtures()).await;
    let agent = create(&server).await;
    let (status, failed) = seed_call(&server, &agent, "protocol_error_job", json!({})).await;
    assert_eq!(status, 500, "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("a deliberate internal failure"),
        "{failed}"
    );
    server.shutdown().await;
}
