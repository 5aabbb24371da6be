//! Tasks (the 2026-07-28 tasks extension) against the real binary over Streamable HTTP: a
//! `process_batch` task survives `kill -9` and a restart on the same data directory and
//! ends with the result of an uninterrupted run; one whose tool cannot resume ends failed,
//! clearly; a cancelled task stops its work. A resumable 2025 session's long call is a task
//! underneath: it carries on after `kill -9` without its client, which gets its outcome
//! when it resumes the session.

use serde_json::{Value, json};

use crate::{HANG, exchange, get_json, initialize_resumable, recv, send, start};

/// The `_meta` of a modern request whose client takes tasks.
pub(crate) fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {
            "extensions": {"io.modelcontextprotocol/tasks": {}}
        },
    })
}

/// POSTs one modern request and returns its result (see [`answer`]); an error fails the test.
pub(crate) async fn request(
    address: &str,
    method: &str,
    params: Value,
    name: Option<&str>,
) -> Value {
    let answer = answer(address, method, params, name).await;
    assert!(answer.get("error").is_none(), "{method}: {answer}");
    answer["result"].clone()
}

/// POSTs one modern request with the headers the binding requires; its answer (the last
/// message of an SSE body, or the JSON body).
pub(crate) async fn answer(
    address: &str,
    method: &str,
    mut params: Value,
    name: Option<&str>,
) -> Value {
    params["_meta"] = meta();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let name = name.map_or(String::new(), |n| format!("Mcp-Name: {n}\r\n"));
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\n\
         Mcp-Method: {method}\r\n{name}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, text) = exchange(address, &head).await;
    let message = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .unwrap_or(&text);
    serde_json::from_str(message.trim())
        .unwrap_or_else(|e| panic!("HTTP {status}: not JSON ({e}): {text}"))
}

pub(crate) async fn create(address: &str, tool: &str, arguments: Value) -> String {
    let params = json!({"name": tool, "arguments": arguments});
    let created = request(address, "tools/call", params, Some(tool)).await;
    assert_eq!(created["resultType"], "task", "{created}");
    created["taskId"].as_str().unwrap().to_owned()
}

async fn get(address: &str, task: &str) -> Value {
    request(address, "tasks/get", json!({"taskId": task}), Some(task)).await
}

/// Polls the task until `done` says so.
pub(crate) async fn until(address: &str, task: &str, done: impl Fn(&Value) -> bool) -> Value {
    let last = std::sync::Mutex::new(Value::Null);
    let polled = tokio::time::timeout(HANG * 4, async {
        loop {
            let state = get(address, task).await;
            if done(&state) {
                return state;
            }
            *last.lock().unwrap() = state;
            // The client's poll interval (the protocol is polling).
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    polled.unwrap_or_else(|_| panic!("task {task} never got there: {}", last.lock().unwrap()))
}

pub(crate) fn terminal(task: &Value) -> bool {
    matches!(
        task["status"].as_str(),
        Some("completed" | "failed" | "cancelled")
    )
}

#[tokio::test]
async fn a_task_survives_kill_9_and_ends_as_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    task_survives_kill_9(&["--data-dir", &data]).await;
}

/// The same on Redis: the server that finishes the task is another process on another port,
/// as another instance would be.
#[tokio::test]
async fn a_task_kept_in_redis_survives_kill_9_and_ends_on_another_instance() {
    let redis = mcp_store_redis::testing::RedisServer::start().await;
    task_survives_kill_9(&["--store", &redis.url()]).await;
}

/// What a `process_batch` task gives when nothing interrupts it (run at `address`), and the
/// id of the same batch started at `started_at`, once `watched_at` shows a checkpoint of it
/// in the store while it still works.
async fn a_batch_checkpointed(
    address: &str,
    started_at: &str,
    watched_at: &str,
) -> (Value, String) {
    let batch = json!({"count": 2_000_000, "cost": 200});
    let task = create(address, "process_batch", batch.clone()).await;
    let expected = until(address, &task, terminal).await;
    assert_eq!(expected["status"], "completed", "{expected}");
    let task = create(started_at, "process_batch", batch).await;
    let saved = until(watched_at, &task, |t| {
        terminal(t) || t["_meta"]["mcp-server/checkpointedProgress"].is_number()
    })
    .await;
    assert_eq!(
        saved["status"], "working",
        "it ended before the kill: {saved}"
    );
    (expected["result"]["structuredContent"].clone(), task)
}

/// Waits for the task to end at `address`, resumed, with the `expected` result.
async fn ends_resumed_as(address: &str, task: &str, expected: &Value) {
    let ended = until(address, task, terminal).await;
    assert_eq!(ended["status"], "completed", "{ended}");
    let result = &ended["result"]["structuredContent"];
    assert_eq!(result["processed"], expected["processed"], "{result}");
    assert_eq!(result["checksum"], expected["checksum"], "{result}");
    assert!(
        result["resumedFrom"].as_u64().is_some(),
        "it resumed: {result}"
    );
}

/// A task killed with its server once a checkpoint is stored, ended by a server started with
/// the same `store` arguments as an uninterrupted run would end.
async fn task_survives_kill_9(store: &[&str]) {
    let (mut child, address) = start(store).await;
    let (expected, task) = a_batch_checkpointed(&address, &address, &address).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    // A server comes back from the same store, and carries on.
    let (restarted, address) = start(store).await;
    ends_resumed_as(&address, &task, &expected).await;
    crate::sigterm(&restarted);
}

/// Issue 20: two instances on one Redis, both running. The one running a task is killed with
/// SIGKILL; the other takes the task up once its lease runs out (never before: the first
/// holds it), and it ends as an uninterrupted run would.
#[tokio::test]
async fn another_instance_takes_up_the_task_of_an_instance_killed_with_sigkill() {
    let redis = mcp_store_redis::testing::RedisServer::start().await;
    let url = redis.url();
    let shared = ["--store", url.as_str(), "--task-lease", "2"];
    let (mut a, at_a) = start(&shared).await;
    let (b, at_b) = start(&shared).await;
    // Started on A; B sees it running all along (A holds its lease).
    let (expected, task) = a_batch_checkpointed(&at_b, &at_a, &at_b).await;
    let claims = || async {
        let (_, metrics) = crate::get(&at_b, "/metrics").await;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("mcp_task_lease_claims_total "))
            .and_then(|n| n.parse::<f64>().ok())
    };
    assert_eq!(
        claims().await,
        Some(1.0),
        "B took nothing of A's while A lived"
    );
    a.start_kill().unwrap();
    a.wait().await.unwrap();
    ends_resumed_as(&at_b, &task, &expected).await;
    assert_eq!(
        claims().await,
        Some(2.0),
        "its own task and the one it took up"
    );
    crate::sigterm(&b);
}

#[tokio::test]
async fn a_task_whose_tool_cannot_resume_fails_clearly_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let (mut child, address) = start(&["--data-dir", &data]).await;
    let task = create(&address, "sleep", json!({"ms": 300_000})).await;
    assert_eq!(get(&address, &task).await["status"], "working");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let restarted = crate::restart(&address, &data).await;
    // Ended at the start, never reported completed.
    let ended = get(&address, &task).await;
    assert_eq!(ended["status"], "failed", "{ended}");
    assert_eq!(ended["error"]["code"], -32004, "{ended}");
    assert!(
        ended["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`sleep` cannot resume"),
        "{ended}"
    );
    assert!(ended.get("result").is_none(), "{ended}");
    crate::sigterm(&restarted);
}

#[tokio::test]
async fn a_cancelled_task_stops_its_work() {
    // One heavy call at a time: the next batch runs only once the cancelled one let go.
    let (child, address) = start(&["--heavy-concurrency", "1"]).await;
    let task = create(
        &address,
        "process_batch",
        json!({"count": 100_000_000, "cost": 1_000}),
    )
    .await;
    until(&address, &task, |t| {
        t["statusMessage"].as_str().is_some_and(|m| m.contains('/'))
    })
    .await;
    let ack = request(
        &address,
        "tasks/cancel",
        json!({"taskId": task}),
        Some(&task),
    )
    .await;
    assert_eq!(ack["resultType"], "complete", "{ack}");
    let ended = until(&address, &task, terminal).await;
    assert_eq!(ended["status"], "cancelled", "{ended}");
    // Nothing of it runs on: the only heavy-work slot is free for the next batch.
    let next = create(&address, "process_batch", json!({"count": 1_000})).await;
    let next = until(&address, &next, terminal).await;
    assert_eq!(next["status"], "completed", "{next}");
    crate::sigterm(&child);
}

#[tokio::test]
async fn a_session_call_is_a_task_that_ends_while_its_client_is_away() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let (mut child, address) = start(&["--data-dir", &data]).await;
    let (mut socket, response) = initialize_resumable(&address, None).await;
    let session = response["mcpSessionId"].as_str().unwrap().to_owned();
    send(
        &mut socket,
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await;
    let count = 2_000_000;
    send(&mut socket, json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{
        "name":"process_batch","arguments":{"count":count,"cost":200},"_meta":{"progressToken":"t"}}}))
    .await;
    let progress = recv(&mut socket).await;
    assert_eq!(progress["method"], "notifications/progress", "{progress}");
    // What the client saw last: the rest is replayed when it resumes.
    let last_seq = progress["seq"].as_u64().unwrap();
    // The session's record names the call's task; the task's record has its checkpoint.
    let agent = format!("/agent/{session}");
    let task = tokio::time::timeout(HANG, async {
        loop {
            let state = get_json(&address, &agent).await;
            let op = &state["operations"][0];
            if op["checkpoint"].is_object() {
                return op["task"].as_str().unwrap().to_owned();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("no checkpoint");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    drop(socket);

    // The task resumes at the restart, with nobody connected, and ends.
    let restarted = crate::restart(&address, &data).await;
    let ended = until(&address, &task, terminal).await;
    assert_eq!(ended["status"], "completed", "{ended}");

    // The client comes back: the call's answer is the task's result.
    let (mut socket, response) = initialize_resumable(&address, Some((&session, last_seq))).await;
    assert_eq!(response["mcpSessionId"], session.as_str(), "{response}");
    let mut notice = None;
    let result = loop {
        let message = recv(&mut socket).await;
        match message["method"].as_str() {
            Some("notifications/message") => notice = Some(message["params"]["data"].clone()),
            Some(_) => {}
            None => break message,
        }
    };
    let notice = notice.expect("the interruption was reported");
    assert_eq!(notice["task"], task.as_str(), "{notice}");
    assert_eq!(notice["resumed"], true, "{notice}");
    assert_eq!(result["id"], 7, "{result}");
    let summary = &result["result"]["structuredContent"];
    assert_eq!(summary["processed"], count, "{summary}");
    assert!(summary["resumedFrom"].is_number(), "resumed: {summary}");
    assert!(
        result["result"].get("resultType").is_none(),
        "a 2025 result, not a task's: {result}"
    );
    // Answered in the session's log, the task is let go: nobody finds it any more.
    tokio::time::timeout(HANG, async {
        loop {
            let got = answer(&address, "tasks/get", json!({"taskId": task}), Some(&task)).await;
            if got["error"]["code"] == -32602 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the answered task was kept");
    assert_eq!(get_json(&address, &agent).await["operations"], json!([]));
    crate::sigterm(&restarted);
}
