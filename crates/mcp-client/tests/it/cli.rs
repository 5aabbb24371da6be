//! `mcpc` against the real server: listing, calling with schema-parsed arguments, progress
//! lines, tool errors and usage errors with their exit codes, Ctrl-C cancelling the call
//! (exit 130), watching a resource, the agent commands, a dropped connection resumed
//! mid-call with `--legacy`, and the hint to use it when a 2026-07-28 call's connection drops.

use std::process::Stdio;
use std::time::Duration;

use mcp_server::Config;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

use mcp_test_support::{HANG, Relay, TestServer as Server, wait_for_metric};

fn mcpc(url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mcpc"));
    command
        .arg("--url")
        .arg(url)
        .args(args)
        .env_remove("MCP_TOKEN")
        .env_remove("MCP_LEGACY")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs `mcpc` to the end: exit code, stdout, stderr.
async fn run(url: &str, args: &[&str]) -> (i32, String, String) {
    let output = tokio::time::timeout(HANG, mcpc(url, args).output())
        .await
        .expect("mcpc hung")
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Starts `mcpc` with piped output.
fn spawn(url: &str, args: &[&str]) -> Child {
    mcpc(url, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads lines until one contains `needle`; all lines read.
async fn until<R: AsyncRead + Unpin>(lines: &mut Lines<BufReader<R>>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let line = tokio::time::timeout(HANG, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no line with {needle:?}: {seen:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("output ended before {needle:?}: {seen:?}"));
        let found = line.contains(needle);
        seen.push(line);
        if found {
            return seen;
        }
    }
}

fn interrupt(child: &Child) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn tools_and_calls_with_their_exit_codes() {
    let server = Server::with_config(Config::default()).await;
    let url = format!("ws://{}/mcp", server.addr);
    let (code, out, err) = run(&url, &["tools"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with("add ")), "{out}");
    let (code, out, _) = run(&url, &["--json", "tools"]).await;
    assert_eq!(code, 0);
    let tools: Value = serde_json::from_str(&out).unwrap();
    assert!(
        tools
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "sqrt")
    );

    // Arguments are parsed by the schema: numbers are numbers. Over Streamable HTTP too.
    let http_url = format!("http://{}/mcp", server.addr);
    for url in [&url, &http_url] {
        let (code, out, err) = run(url, &["call", "add", "a=5", "b=3"]).await;
        assert_eq!(code, 0, "{url}: {err}");
        let result: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(result["result"], 8, "{out}");
    }
    let (code, out, _) = run(
        &url,
        &["--json", "call", "add", "--input", r#"{"a": 1.5, "b": 2}"#],
    )
    .await;
    assert_eq!(code, 0);
    let result: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["structuredContent"]["result"], 3.5, "{out}");

    // A tool error: its text, exit 1.
    let (code, out, _) = run(&url, &["call", "divide", "a=1", "b=0"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.to_lowercase().contains("zero"), "{out}");
    // Usage errors: exit 2, saying what is wrong.
    for (args, why) in [
        (&["call", "add", "a=x", "b=1"][..], "`a` must be number"),
        (&["call", "add", "a=1"][..], "`add` needs b"),
        (&["call", "add", "a=1", "c=2"][..], "no argument `c`"),
        (&["call", "nope"][..], "no tool `nope`"),
    ] {
        let (code, _, err) = run(&url, args).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    let (code, _, err) = run("ws://127.0.0.1:1/mcp", &["tools"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("cannot connect"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_long_call_shows_progress_with_rate_and_eta() {
    let server = Server::with_config(Config::default()).await;
    let url = format!("ws://{}/mcp", server.addr);
    let (code, out, err) = run(
        &url,
        &[
            "--progress",
            "lines",
            "call",
            "process_batch",
            "count=300000",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let result: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["processed"], 300_000, "{out}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("progress ")).collect();
    assert!(!lines.is_empty(), "{err}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("/300000 (") && l.contains("/s eta ")),
        "{err}"
    );
    assert!(err.contains("done after"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn ctrl_c_cancels_the_call_on_the_server_and_exits_130() {
    let server = Server::with_config(Config::default()).await;
    let url = format!("ws://{}/mcp", server.addr);
    let mut child = spawn(&url, &["--progress", "lines", "call", "sleep", "ms=60000"]);
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    until(&mut err, "progress ").await;
    interrupt(&child);
    let status = tokio::time::timeout(HANG, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(130));
    let rest = until(&mut err, "interrupted").await;
    assert!(
        rest.iter().any(|l| l.contains("the call was cancelled")),
        "{rest:?}"
    );
    // The server stopped the call.
    wait_for_metric(server.addr, "mcp_inflight_requests", 0.0).await;
    server.shutdown().await;
}

/// Starts a long `process_batch` call through a relay, with `era` options, and cuts the
/// connection at its first progress; the server, the running `mcpc`, and its stderr lines.
async fn cut_a_long_call(era: &[&str]) -> (Server, Child, Lines<BufReader<ChildStderr>>) {
    let server = Server::with_config(Config::default()).await;
    let relay = Relay::start(server.addr).await;
    let url = format!("ws://{}/mcp", relay.addr);
    let mut args = era.to_vec();
    args.extend([
        "--progress",
        "lines",
        "call",
        "process_batch",
        "count=300000",
    ]);
    let mut child = spawn(&url, &args);
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    until(&mut err, "progress ").await;
    relay.cut();
    // The relay's task outlives the handle: the client reconnects through it.
    (server, child, err)
}

#[tokio::test]
async fn a_dropped_connection_is_resumed_and_the_call_carries_on() {
    let (server, child, mut err) = cut_a_long_call(&["--legacy"]).await;
    until(&mut err, "reconnecting").await;
    let after = until(&mut err, "reconnected; the session was resumed").await;
    assert!(after.iter().all(|l| !l.contains("closed")), "{after:?}");
    let output = tokio::time::timeout(HANG, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["processed"], 300_000);
    server.shutdown().await;
}

#[tokio::test]
async fn a_dropped_connection_fails_a_modern_call_with_a_hint() {
    let (server, mut child, mut err) = cut_a_long_call(&[]).await;
    let lines = until(&mut err, "--legacy").await;
    assert!(
        lines.iter().any(|l| l.contains("may or may not have run")),
        "{lines:?}"
    );
    let status = tokio::time::timeout(HANG, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(2));
    server.shutdown().await;
}

#[tokio::test]
async fn resources_watch_and_agents() {
    let server = Server::with_config(Config {
        stats_interval: Duration::from_millis(20),
        ..Config::default()
    })
    .await;
    let url = format!("ws://{}/mcp", server.addr);
    let (code, out, _) = run(&url, &["resources"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("mcp://server/stats"), "{out}");
    let (code, out, _) = run(&url, &["read", "mcp://server/stats"]).await;
    assert_eq!(code, 0);
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert!(stats["sessions"].as_u64().is_some(), "{out}");

    // Watch: the resource now, then again when it changes (another connection opens).
    let mut child = spawn(&url, &["--json", "watch", "mcp://server/stats"]);
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = until(&mut out, "contents").await;
    assert!(
        first.last().unwrap().contains("mcp://server/stats"),
        "{first:?}"
    );
    // A second connection is a change the watch prints.
    let other = mcp_client::Client::connect(mcp_client::Options::new(url.clone()))
        .await
        .unwrap();
    until(&mut out, r#"\"connections\":2"#).await;
    other.close().await;
    interrupt(&child);
    let status = tokio::time::timeout(HANG, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(130));

    // Agents over the HTTP API.
    let (code, out, err) = run(&url, &["agent", "create", "--name", "MathAgent"]).await;
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_owned();
    assert_eq!(id.len(), 32, "{out}");
    let (code, out, _) = run(&url, &["agent", "show", &id]).await;
    assert_eq!(code, 0);
    let agent: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(agent["name"], "MathAgent", "{out}");
    let (code, out, _) = run(&url, &["agent", "delete", &id]).await;
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("deleted {id}"));
    let (code, _, err) = run(&url, &["agent", "show", &id]).await;
    assert_eq!(code, 2);
    assert!(err.contains("404 no such agent"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_call_as_a_task_is_followed_to_its_result_and_found_again_by_id() {
    let server = Server::with_config(Config::default()).await;
    let url = format!("http://{}/mcp", server.addr);
    let (code, out, err) = run(
        &url,
        &[
            "--progress",
            "lines",
            "call",
            "--task",
            "process_batch",
            "count=200000",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let result: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["processed"], 200_000, "{out}");
    // The task's id comes first, with what to do with it.
    let id = err
        .lines()
        .find_map(|l| l.strip_prefix("task "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no task id: {err}"))
        .to_owned();
    assert_eq!(id.len(), 32, "{err}");
    // Found again by id: ended, with its result.
    let (code, out, _) = run(&url, &["--json", "task", "get", &id]).await;
    assert_eq!(code, 0);
    let task: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(task["status"], "completed", "{out}");
    assert_eq!(task["result"]["structuredContent"]["processed"], 200_000);
    // A tool that is never a task answers as usual.
    let (code, out, _) = run(&url, &["call", "--task", "add", "a=1", "b=2"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("\"result\": 3"), "{out}");
    // Cancelled by id: `task wait` then sees it cancelled.
    let mut child = spawn(&url, &["call", "--task", "sleep", "ms=300000"]);
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let lines = until(&mut err, "task ").await;
    let id = lines
        .last()
        .and_then(|l| l.strip_prefix("task "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let (code, out, _) = run(&url, &["task", "cancel", &id]).await;
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("cancel requested for task {id}"));
    let status = tokio::time::timeout(HANG, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(2),
        "the follower sees the task cancelled"
    );
    let (code, _, err) = run(&url, &["task", "wait", &id]).await;
    assert_eq!(code, 2);
    assert!(err.contains("was cancelled"), "{err}");
    server.shutdown().await;
}
