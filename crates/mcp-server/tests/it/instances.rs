//! Issue 20: instances sharing one Redis, all running: what one of them is told reaches the
//! others (a broadcast, a `tasks/cancel`).

use std::time::Duration;

use serde_json::json;

use crate::tasks::{answer, create, terminal, until};
use crate::{HANG, exchange, recv, start};

/// Waits until the instance says it is ready (its store answers and it hears the others).
async fn ready(address: &str) {
    let deadline = tokio::time::Instant::now() + HANG;
    while crate::status(address, "/readyz").await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{address} never got ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two instances on one Redis, both ready.
async fn two_instances(
    redis: &mcp_store_redis::testing::RedisServer,
    extra: &[&str],
) -> (
    (tokio::process::Child, String),
    (tokio::process::Child, String),
) {
    let url = redis.url();
    let mut args = vec!["--store", url.as_str()];
    args.extend_from_slice(extra);
    let (a, b) = (start(&args).await, start(&args).await);
    ready(&a.1).await;
    ready(&b.1).await;
    (a, b)
}

#[tokio::test]
async fn a_broadcast_sent_to_one_instance_reaches_the_clients_of_another() {
    let redis = mcp_store_redis::testing::RedisServer::start().await;
    let ((a, at_a), (b, at_b)) = two_instances(&redis, &[]).await;
    let mut on_b = crate::connect(&at_b).await;
    let body = json!({"message": "from A", "level": "warning"}).to_string();
    let head = format!(
        "POST /admin/broadcast HTTP/1.1\r\nHost: {at_a}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, text) = exchange(&at_a, &head).await;
    assert_eq!(status, 200, "{text}");
    let notice = recv(&mut on_b).await;
    assert_eq!(notice["method"], "notifications/message", "{notice}");
    assert_eq!(
        notice["params"],
        json!({"level": "warning", "logger": "server", "data": "from A"})
    );
    crate::sigterm(&a);
    crate::sigterm(&b);
}

/// The lease is a minute long, so nothing but the signal can stop the task in time.
#[tokio::test]
async fn tasks_cancel_sent_to_one_instance_stops_the_task_running_on_another() {
    let redis = mcp_store_redis::testing::RedisServer::start().await;
    let ((a, at_a), (b, at_b)) = two_instances(&redis, &["--task-lease", "60"]).await;
    let batch = json!({"count": 100_000_000, "cost": 200});
    let task = create(&at_a, "process_batch", batch).await;
    let running = until(&at_b, &task, |t| {
        terminal(t) || t["_meta"]["mcp-server/progress"].is_object()
    })
    .await;
    assert_eq!(running["status"], "working", "{running}");
    let cancelled = answer(&at_b, "tasks/cancel", json!({"taskId": task}), Some(&task)).await;
    assert!(cancelled.get("error").is_none(), "{cancelled}");
    let ended = tokio::time::timeout(Duration::from_secs(10), until(&at_b, &task, terminal))
        .await
        .expect("the task on A did not stop");
    assert_eq!(ended["status"], "cancelled", "{ended}");
    crate::sigterm(&a);
    crate::sigterm(&b);
}

/// A `subscriptions/listen` stream on one instance hears of a task that runs on another, to
/// its end.
#[tokio::test]
async fn a_listen_stream_on_one_instance_follows_a_task_running_on_another() {
    let redis = mcp_store_redis::testing::RedisServer::start().await;
    let ((a, at_a), (b, at_b)) = two_instances(&redis, &[]).await;
    let batch = json!({"count": 3_000_000, "cost": 200});
    let task = create(&at_a, "process_batch", batch).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{at_b}/mcp"))
        .await
        .unwrap();
    let listen = json!({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen",
        "params": {"notifications": {"taskIds": [task]}, "_meta": crate::tasks::meta()}});
    crate::send(&mut socket, listen).await;
    let mut statuses = Vec::new();
    loop {
        let message = recv(&mut socket).await;
        if message["method"] != "notifications/tasks" {
            continue;
        }
        let status = message["params"]["status"].as_str().unwrap().to_owned();
        statuses.dedup();
        statuses.push(status.clone());
        if status != "working" {
            break;
        }
    }
    assert_eq!(statuses.first().map(String::as_str), Some("working"));
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("completed"),
        "{statuses:?}"
    );
    crate::sigterm(&a);
    crate::sigterm(&b);
}

/// Every instance sweeps the store for sessions unused past `--session-ttl`; a session that
/// runs on another instance, however quiet, is not one of them (its instance marks it used).
#[tokio::test]
async fn a_quiet_session_running_on_one_instance_is_not_expired_by_another() {
    let redis = mcp_store_redis::testing::RedisServer::start().await;
    let ((a, at_a), (b, at_b)) = two_instances(&redis, &["--session-ttl", "1"]).await;
    let (socket, response) = crate::initialize_resumable(&at_a, None).await;
    let id = response["mcpSessionId"].as_str().unwrap().to_owned();
    // Time passing is what this is about: three times the session's time to live, in which
    // B sweeps a dozen times.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, text) = crate::get(&at_b, &format!("/agent/{id}")).await;
    assert_eq!(code, 200, "the session running on A was expired: {text}");
    drop(socket);
    crate::sigterm(&a);
    crate::sigterm(&b);
}

/// A 2025 WebSocket client resumes its session on another instance while the first still
/// runs it (its connection there not even closed): the first lets it go (its connection is
/// closed with 1000, the call's task left for the other), and the session carries on on the
/// second with no message lost or repeated, its batch ending as an uninterrupted one.
#[tokio::test]
async fn a_session_resumed_on_another_instance_is_handed_over_by_the_first() {
    let redis = mcp_store_redis::testing::RedisServer::start().await;
    let ((a, at_a), (b, at_b)) = two_instances(&redis, &[]).await;
    let (mut on_a, response) = crate::initialize_resumable(&at_a, None).await;
    let id = response["mcpSessionId"].as_str().unwrap().to_owned();
    crate::send(
        &mut on_a,
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await;
    crate::send(&mut on_a, crate::batch(7, Some("t"))).await;
    let (mut last_seq, mut seen) = (0, 0.0);
    for _ in 0..2 {
        let message = recv(&mut on_a).await;
        assert_eq!(message["method"], "notifications/progress", "{message}");
        last_seq = message["seq"].as_u64().unwrap();
        seen = message["params"]["progress"].as_f64().unwrap();
    }

    let (mut on_b, response) = crate::initialize_resumable(&at_b, Some((&id, last_seq))).await;
    assert_eq!(response["mcpSessionId"], id.as_str(), "{response}");
    // What A still sent before it let go is replayed on B; then A closes.
    let code = tokio::time::timeout(HANG, async {
        use futures_util::StreamExt as _;
        loop {
            match on_a.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => {
                    break frame.map(|f| u16::from(f.code));
                }
                Some(Ok(_)) => {}
                other => panic!("A's connection ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("A never let the session go");
    assert_eq!(code, Some(1000), "A let the session go");
    let (result, _) = crate::follow_resumed(&mut on_b, last_seq, seen).await;
    assert_eq!(result["id"], 7, "{result}");
    assert_eq!(
        result["result"]["structuredContent"]["processed"], 100_000,
        "{result}"
    );
    crate::sigterm(&a);
    crate::sigterm(&b);
}
