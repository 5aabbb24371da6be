//! The example servers, as a user runs them: the binary started on port 0, then called with
//! the Rust client, with progress and with a cancellation.

#![allow(clippy::unwrap_used)]

use std::process::Stdio;

use mcp_client::{CallEvent, Client, Options};
use mcp_test_support::{HANG, wait_for_metric};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// Starts the example on port 0; the child and the address it prints.
async fn start(binary: &str) -> (Child, String) {
    let mut child = Command::new(binary)
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(HANG, lines.next_line())
        .await
        .expect("the example printed nothing")
        .unwrap()
        .unwrap();
    let addr = first
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_owned();
    (child, addr)
}

fn args(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

#[tokio::test]
async fn count_primes_reports_progress_and_stops_when_cancelled() {
    let (_child, addr) = start(env!("CARGO_BIN_EXE_count-primes")).await;
    let client = Client::connect(Options::new(format!("ws://{addr}/mcp")))
        .await
        .unwrap();
    let tools = client.list_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["count_primes"]);
    assert!(tools[0].input_schema["properties"]["below"].is_object());

    // A call with progress, then its result.
    let mut call = client
        .call("count_primes", args(json!({"below": 100_000})))
        .await
        .unwrap();
    let mut reports = 0;
    let result = loop {
        match tokio::time::timeout(HANG, call.next()).await.unwrap() {
            CallEvent::Progress(p) => {
                assert_eq!(p.total, Some(100_000.0));
                reports += 1;
            }
            CallEvent::Done(result) => break result.unwrap(),
        }
    };
    assert!(reports > 0, "no progress was reported");
    let count = result.structured_content.unwrap();
    assert_eq!(count, json!({"below": 100_000, "primes": 9592}));

    // A call too long to wait for, cancelled after its first progress report: dropping the
    // call tells the server, and the work stops.
    let mut long = client
        .call("count_primes", args(json!({"below": 10_000_000_000u64})))
        .await
        .unwrap();
    match tokio::time::timeout(HANG, long.next()).await.unwrap() {
        CallEvent::Progress(_) => {}
        CallEvent::Done(result) => panic!("the long call ended: {result:?}"),
    }
    drop(long);
    // The server gets there by itself once the cancelled call has stopped.
    wait_for_metric(addr.parse().unwrap(), "mcp_inflight_requests", 0.0).await;
    client.close().await;
}
