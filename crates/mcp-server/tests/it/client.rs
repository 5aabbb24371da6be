//! The Rust client (`mcp-client`), over WebSocket and over Streamable HTTP, against the real
//! binary killed with SIGKILL mid-batch and restarted on the same address: it reconnects,
//! resumes its session, and the batch's result arrives as if nothing had happened.

use std::time::Duration;

use mcp_client::{CallEvent, Client, Options, Reconnect, Status};
use serde_json::{Map, Value, json};

use crate::{HANG, get_json, start};

fn args(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

#[tokio::test]
async fn the_client_resumes_across_a_kill_9_restart_and_the_batch_completes() {
    across_a_restart("ws").await;
}

#[tokio::test]
async fn over_streamable_http_the_client_resumes_across_a_kill_9_restart() {
    across_a_restart("http").await;
}

async fn across_a_restart(scheme: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let (mut child, address) = start(&["--data-dir", &data]).await;
    let mut options = Options::new(format!("{scheme}://{address}/mcp"));
    // The 2025 session, which resumes; a 2026-07-28 request does not outlive its connection.
    options.legacy = true;
    options.reconnect = Reconnect {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        attempts: Some(200),
    };
    let client = Client::connect(options).await.unwrap();
    let mut status = client.status();
    let batch = json!({"count": 100_000, "cost": 3_000});
    // What the batch gives when nothing interrupts it.
    let expected = client
        .call_tool("process_batch", args(batch.clone()))
        .await
        .unwrap()
        .structured_content
        .unwrap();

    let mut call = client.call("process_batch", args(batch)).await.unwrap();
    let agent = format!("/agent/{}", client.session_id().unwrap());
    let mut last = -1.0;
    let mut killed = false;
    let mut progress_after_restart = 0;
    let result = loop {
        match tokio::time::timeout(HANG, call.next()).await.unwrap() {
            CallEvent::Progress(p) => {
                assert!(
                    p.progress > last,
                    "progress went from {last} to {}",
                    p.progress
                );
                last = p.progress;
                if killed {
                    progress_after_restart += 1;
                    continue;
                }
                // Kill once the batch has saved a checkpoint to resume from.
                let state = get_json(&address, &agent).await;
                if state["operations"][0]["checkpoint"]["processed"]
                    .as_u64()
                    .is_none()
                {
                    continue;
                }
                child.start_kill().unwrap();
                child.wait().await.unwrap();
                killed = true;
                loop {
                    status.changed().await.unwrap();
                    if matches!(*status.borrow(), Status::Reconnecting { .. }) {
                        break;
                    }
                }
                // The server comes back on the same address, from the same data.
                child = crate::restart(&address, &data).await;
            }
            CallEvent::Done(result) => break result.unwrap(),
        }
    };
    assert!(killed, "the batch ended before the kill");
    assert!(progress_after_restart > 0);
    let result = result.structured_content.unwrap();
    assert_eq!(result["processed"], expected["processed"], "{result}");
    assert_eq!(result["checksum"], expected["checksum"], "{result}");
    assert!(
        result["resumedFrom"].as_u64().is_some(),
        "it resumed: {result}"
    );
    assert_eq!(*status.borrow(), Status::Connected);
    client.close().await;
    crate::sigterm(&child);
}
