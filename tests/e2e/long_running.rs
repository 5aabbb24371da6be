//! Long-running calls: progress, cancellation, disconnects, time limits, fair scheduling,
//! and a client that stops reading.

use std::time::Duration;

use futures_util::StreamExt;
use mcp_server::Config;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::support::{Client, HANG, TestServer, metric, metrics, wait_for_metric};

fn batch(id: Value, count: u64, token: Option<Value>) -> Value {
    let mut params = json!({"name":"process_batch","arguments":{"count":count,"cost":10}});
    if let Some(token) = token {
        params["_meta"] = json!({"progressToken": token});
    }
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":params})
}

/// Reads until the response to `id`, returning the progress notifications seen before it.
async fn progress_until_response(client: &mut Client, id: &Value) -> (Vec<Value>, Value) {
    let mut progress = Vec::new();
    loop {
        let message = client.recv().await;
        if message["method"] == "notifications/progress" {
            progress.push(message["params"].clone());
        } else if &message["id"] == id {
            return (progress, message);
        } else {
            panic!("unexpected message: {message}");
        }
    }
}

#[tokio::test]
async fn batch_progress_increases_and_ends_at_total_before_the_result() {
    let server = TestServer::start().await;
    let mut client = Client::initialized(&server).await;
    client
        .send(batch(json!(42), 200_000, Some(json!("tok"))))
        .await;
    let (progress, response) = progress_until_response(&mut client, &json!(42)).await;
    let summary = &response["result"]["structuredContent"];
    assert_eq!(summary["total"], 200_000, "{response}");
    assert_eq!(summary["succeeded"], 200_000);
    assert_eq!(summary["failed"], 0);
    assert!(!progress.is_empty());
    assert!(
        progress
            .iter()
            .all(|p| p["progressToken"] == "tok" && p["total"] == 200_000.0)
    );
    let values: Vec<f64> = progress
        .iter()
        .map(|p| p["progress"].as_f64().unwrap())
        .collect();
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "not strictly increasing: {values:?}"
    );
    assert_eq!(*values.last().unwrap(), 200_000.0);
    // Time-based: at most one per 100 ms, besides the first and the final one.
    let duration_ms = summary["durationMs"].as_f64().unwrap();
    assert!(
        (values.len() as f64) <= duration_ms / 100.0 + 3.0,
        "{} notifications in {duration_ms} ms",
        values.len()
    );
    let last = progress.last().unwrap()["message"].as_str().unwrap();
    assert!(last.starts_with("batch 42: 200000/200000, "), "{last}");
    assert!(last.contains(" items/s, ETA 0 s"), "{last}");
    let text = response["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("200000 succeeded, 0 failed"), "{text}");
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn no_progress_without_a_token_and_failures_do_not_stop_the_batch() {
    let server = TestServer::start().await;
    let mut client = Client::initialized(&server).await;
    let result = client
        .call(
            1,
            "process_batch",
            json!({"count": 1000, "fail_every": 100}),
        )
        .await;
    let summary = &result["structuredContent"];
    assert_eq!(
        (summary["succeeded"].as_u64(), summary["failed"].as_u64()),
        (Some(990), Some(10))
    );
    let failures: Vec<u64> = summary["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["item"].as_u64().unwrap())
        .collect();
    assert_eq!(failures, (1..=10).map(|k| k * 100).collect::<Vec<_>>());
    // `call` asserts the next message is the response: no progress came before it.
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn cancel_mid_batch_stops_the_work_and_sends_no_response() {
    let server = TestServer::start().await;
    let mut client = Client::initialized(&server).await;
    client
        .send(batch(json!(7), 100_000_000, Some(json!(7))))
        .await;
    // Wait until the batch is really running.
    loop {
        let message = client.recv().await;
        if message["method"] == "notifications/progress"
            && message["params"]["progress"].as_f64() > Some(0.0)
        {
            break;
        }
    }
    client
        .send(json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}))
        .await;
    wait_for_metric(&server, "mcp_inflight_requests", 0.0).await;
    // Whatever progress was queued before the cancel may still arrive; no response does.
    client
        .send(json!({"jsonrpc":"2.0","id":"after","method":"ping"}))
        .await;
    loop {
        let message = client.recv().await;
        assert!(
            message.get("result").is_none() || message["id"] == "after",
            "{message}"
        );
        if message["id"] == "after" {
            break;
        }
        assert_eq!(message["method"], "notifications/progress", "{message}");
    }
    let text = metrics(&server).await;
    assert!(
        text.contains(r#"mcp_requests_total{method="tools/call",outcome="cancelled"} 1"#),
        "{text}"
    );
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn disconnect_mid_batch_cancels_it_and_leaks_nothing() {
    let server = TestServer::start().await;
    let mut client = Client::initialized(&server).await;
    client
        .send(batch(json!(1), 100_000_000, Some(json!("t"))))
        .await;
    let first = client.recv().await;
    assert_eq!(first["method"], "notifications/progress");
    assert_eq!(
        metric(&metrics(&server).await, "mcp_inflight_requests"),
        1.0
    );
    drop(client);
    wait_for_metric(&server, "mcp_inflight_requests", 0.0).await;
    wait_for_metric(&server, "mcp_connections", 0.0).await;
    let text = metrics(&server).await;
    assert_eq!(metric(&text, "mcp_sessions"), 0.0);
    assert_eq!(metric(&text, "mcp_outbound_queue_depth"), 0.0);
    // The heavy slot was given back: another batch runs at once.
    let mut again = Client::initialized(&server).await;
    let result = again.call(2, "process_batch", json!({"count": 10})).await;
    assert_eq!(result["structuredContent"]["succeeded"], 10);
    drop(again);
    server.shutdown().await;
}

#[tokio::test]
async fn a_call_over_its_time_limit_is_stopped_with_a_clear_error() {
    let mut config = Config::default();
    config.session.call_timeout = Duration::from_millis(300);
    let server = TestServer::with_config(config).await;
    let mut client = Client::initialized(&server).await;
    let result = client
        .call(1, "process_batch", json!({"count": 100_000_000u64}))
        .await;
    assert_eq!(result["isError"], true, "{result}");
    let first = result["content"][0]["text"].as_str().unwrap();
    assert_eq!(
        first,
        "the call exceeded its time limit of 300 ms and was stopped"
    );
    let second = result["content"][1]["text"].as_str().unwrap();
    assert!(second.starts_with("batch 1 stopped after "), "{second}");
    let result = client.call(2, "sleep", json!({"ms": 60_000})).await;
    assert_eq!(result["isError"], true, "{result}");
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn heavy_calls_are_queued_fairly_across_sessions() {
    let mut config = Config::default();
    config.session.heavy_concurrency = 1;
    let server = TestServer::with_config(config).await;
    let mut greedy = Client::initialized(&server).await;
    let mut polite = Client::initialized(&server).await;
    // The greedy client hears (at info) when each of its batches gets its slot.
    let set = greedy
        .request(json!({"jsonrpc":"2.0","id":"lvl","method":"logging/setLevel","params":{"level":"info"}}))
        .await;
    assert_eq!(set["result"], json!({}));
    // The greedy session's first batch takes the only slot, and it queues three more.
    greedy
        .send(batch(json!("g1"), 100_000_000, Some(json!("g1"))))
        .await;
    loop {
        let message = greedy.recv().await;
        if message["params"]["progressToken"] == "g1" {
            break;
        }
    }
    for id in ["g2", "g3", "g4"] {
        greedy.send(batch(json!(id), 1_000, Some(json!(id)))).await;
        // Each call is in the queue before the next is sent, so they queue in this order.
        let queued = loop {
            let message = greedy.recv().await;
            if message["params"]["progressToken"] == id {
                break message;
            }
        };
        assert!(
            queued["params"]["message"]
                .as_str()
                .unwrap()
                .contains("queued"),
            "{queued}"
        );
    }
    // The polite session has nothing running, so it is next in line.
    polite
        .send(batch(json!("p1"), 1_000, Some(json!("p1"))))
        .await;
    let queued = polite.recv().await;
    assert_eq!(
        queued["params"]["message"], "batch \"p1\": queued, position 1",
        "{queued}"
    );
    // Free the slot: the polite batch runs before the greedy session's next one.
    greedy
        .send(
            json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"g1"}}),
        )
        .await;
    let (_, response) = progress_until_response(&mut polite, &json!("p1")).await;
    assert_eq!(response["result"]["structuredContent"]["succeeded"], 1_000);
    // The order calls start in is the order the scheduler served them (responses may come in
    // another order: a slot is free as soon as a batch's work ends, before its response).
    let mut started = Vec::new();
    let mut answered = 0;
    while answered < 3 {
        let message = greedy.recv().await;
        if message["id"].is_string() {
            answered += 1;
        } else if message["method"] == "notifications/message" {
            // `batch "g2": started, 1000 items`, logged once the batch has its slot.
            let text = message["params"]["data"].as_str().unwrap();
            if text.contains("started") {
                started.push(text.split('"').nth(1).unwrap().to_owned());
            }
        }
    }
    assert_eq!(started, ["g2", "g3", "g4"]);
    drop((greedy, polite));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_and_memory_stays_bounded() {
    let mut config = Config::default();
    config.session.progress_interval = Duration::ZERO;
    config.ws.stall_timeout = Duration::from_millis(500);
    let server = TestServer::with_config(config).await;
    let mut client = Client::initialized(&server).await;
    client
        .send(batch(json!(1), 1_000_000, Some(json!("flood"))))
        .await;
    // The client reads nothing from here on. Progress coalesces in the queue, the socket
    // buffers fill, one write stalls past the timeout, and the server lets the client go.
    wait_for_metric(&server, "mcp_connections", 0.0).await;
    wait_for_metric(&server, "mcp_inflight_requests", 0.0).await;
    let text = metrics(&server).await;
    assert!(
        metric(&text, "mcp_progress_coalesced_total") > 0.0,
        "{text}"
    );
    assert_eq!(metric(&text, "mcp_outbound_queue_depth"), 0.0);
    // What the client finally reads ends with the connection closing, without a response.
    let mut frames = 0_u64;
    loop {
        match tokio::time::timeout(HANG, client.socket.next())
            .await
            .expect("the server never closed")
        {
            Some(Ok(Frame::Text(t))) => {
                let message: Value = serde_json::from_str(t.as_str()).unwrap();
                assert_eq!(message["method"], "notifications/progress", "{message}");
                frames += 1;
            }
            Some(Ok(Frame::Close(frame))) => {
                if let Some(frame) = frame {
                    assert_eq!(u16::from(frame.code), 1008);
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    assert!(frames > 0);
    server.shutdown().await;
}
