//! The real `mcp-server` binary: its stdout contract, its graceful shutdown on a signal, and
//! TLS.

#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message as Frame;

/// A guard against a hung test, never a synchronization device.
const HANG: Duration = Duration::from_secs(30);

mod balanced;
mod client;
mod disk;
mod gateway;
mod instances;
mod jwt;
mod tasks;
mod tls;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Starts the binary on port 0 and returns it with its address, read from its first line.
async fn start(args: &[&str]) -> (Child, String) {
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let (child, first) = spawn(&all, Stdio::null()).await;
    let address = first
        .trim_end()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
        .to_owned();
    (child, address)
}

/// `GET path`: the status code and the body.
async fn get(address: &str, path: &str) -> (u16, String) {
    exchange(
        address,
        &format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// Sends `request` (whole, with `Connection: close`) on a new connection: the status code
/// and the body.
async fn exchange(address: &str, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(HANG, stream.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

async fn status(address: &str, path: &str) -> u16 {
    get(address, path).await.0
}

async fn connect(address: &str) -> Socket {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{address}/mcp"))
        .await
        .unwrap();
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"it","version":"1"}}});
    socket.send(Frame::text(init.to_string())).await.unwrap();
    assert_eq!(recv(&mut socket).await["id"], 0);
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket.send(Frame::text(message.to_string())).await.unwrap();
}

async fn recv(socket: &mut Socket) -> Value {
    loop {
        match tokio::time::timeout(HANG, socket.next()).await.unwrap() {
            Some(Ok(Frame::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

async fn close_code(socket: &mut Socket) -> (u16, String) {
    loop {
        match tokio::time::timeout(HANG, socket.next()).await.unwrap() {
            Some(Ok(Frame::Close(Some(frame)))) => {
                // Sends tungstenite's queued reply, completing the close handshake.
                let _ = socket.flush().await;
                return (frame.code.into(), frame.reason.to_string());
            }
            Some(Ok(Frame::Text(t))) => panic!("unexpected message before the close: {t}"),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// Starts the binary again on `address`, with the data in `data`.
async fn restart(address: &str, data: &str) -> Child {
    let (child, first) = spawn(&["--listen", address, "--data-dir", data], Stdio::null()).await;
    assert_eq!(first.trim_end(), format!("listening on http://{address}"));
    child
}

fn sigterm(child: &Child) {
    send_signal(child, "-TERM");
}

/// Sends `signal` (`-TERM`, `-HUP`...) to the binary.
fn send_signal(child: &Child, signal: &str) {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_drains_sessions_and_exits_zero() {
    let (mut child, address) = start(&["--shutdown-grace", "2"]).await;
    assert_eq!(status(&address, "/readyz").await, 200);

    // One client's call finishes within the grace period; another's does not.
    let mut quick = connect(&address).await;
    send(&mut quick, json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":800}}})).await;
    let mut slow = connect(&address).await;
    send(&mut slow, json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"process_batch","arguments":{"count":100000000u64}}})).await;
    let mut idle = connect(&address).await;
    for socket in [&mut quick, &mut slow, &mut idle] {
        // A ping answered proves everything sent before it was received.
        send(socket, json!({"jsonrpc":"2.0","id":"p","method":"ping"})).await;
        assert_eq!(recv(socket).await["id"], "p");
    }

    sigterm(&child);
    for socket in [&mut quick, &mut slow, &mut idle] {
        let notice = recv(socket).await;
        assert_eq!(notice["method"], "notifications/message", "{notice}");
        assert_eq!(notice["params"]["level"], "warning");
    }
    // While draining: not ready, still healthy, no new sessions.
    assert_eq!(status(&address, "/readyz").await, 503);
    assert_eq!(status(&address, "/healthz").await, 200);
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{address}/mcp"))
            .await
            .is_err()
    );

    let finished = recv(&mut quick).await;
    assert_eq!(
        finished["result"]["structuredContent"]["sleptMs"], 800,
        "{finished}"
    );
    let cancelled = recv(&mut slow).await;
    assert_eq!(cancelled["error"]["code"], -32000, "{cancelled}");
    for socket in [&mut quick, &mut slow, &mut idle] {
        assert_eq!(
            close_code(socket).await,
            (1001, "server shutting down".to_owned())
        );
    }
    let exit = tokio::time::timeout(HANG, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0));
}

#[tokio::test]
async fn refuses_a_missing_data_root_with_a_clear_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_mcp-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--data-root",
            "/definitely/not/here",
        ])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--data-root /definitely/not/here"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing may claim to listen");
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let (mut child, address) = start(&["--shutdown-grace", "300"]).await;
    let mut client = connect(&address).await;
    send(&mut client, json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":300000}}})).await;
    send(
        &mut client,
        json!({"jsonrpc":"2.0","id":"p","method":"ping"}),
    )
    .await;
    assert_eq!(recv(&mut client).await["id"], "p");
    sigterm(&child);
    // The drain has begun (the notice proves it); the call would hold it for minutes.
    assert_eq!(recv(&mut client).await["method"], "notifications/message");
    sigterm(&child);
    let exit = tokio::time::timeout(HANG, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(130));
}

/// `GET path` as JSON.
async fn get_json(address: &str, path: &str) -> Value {
    let (_, body) = get(address, path).await;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn batch(id: i64, token: Option<&str>) -> Value {
    let mut params = json!({"name":"process_batch","arguments":{"count":100_000,"cost":3_000}});
    if let Some(token) = token {
        params["_meta"] = json!({"progressToken": token});
    }
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":params})
}

async fn initialize_resumable(address: &str, resume: Option<(&str, u64)>) -> (Socket, Value) {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{address}/mcp"))
        .await
        .unwrap();
    let mut init = json!({"jsonrpc":"2.0","id":"init","method":"initialize","params":{
        "protocolVersion":"2025-11-25",
        "capabilities":{"experimental":{"resume":{}}},
        "clientInfo":{"name":"it","version":"1"}}});
    if let Some((id, last_seq)) = resume {
        init["mcpSessionId"] = json!(id);
        init["params"]["capabilities"]["experimental"]["resume"]["lastSeq"] = json!(last_seq);
    }
    send(&mut socket, init).await;
    let response = recv(&mut socket).await;
    (socket, response)
}

#[tokio::test]
async fn a_session_survives_kill_9_and_its_batch_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    survives_kill_9(&["--data-dir", &data]).await;
}

/// The same on Redis (`--store`): the server that resumes the session is another process on
/// another port, as another instance would be.
#[tokio::test]
async fn a_session_kept_in_redis_survives_kill_9_and_resumes_on_another_instance() {
    let redis = mcp_store_redis::testing::RedisServer::start().await;
    survives_kill_9(&["--store", &redis.url()]).await;
}

/// A resumable session with a batch running, its server killed with SIGKILL, then resumed on
/// a server started with the same `store` arguments: no message lost or repeated, the batch
/// resumed from its checkpoint.
async fn survives_kill_9(store: &[&str]) {
    let (mut child, address) = start(store).await;

    // What the batch gives when nothing interrupts it.
    let mut plain = connect(&address).await;
    send(&mut plain, batch(1, None)).await;
    let expected = recv(&mut plain).await["result"]["structuredContent"].clone();
    assert_eq!(expected["processed"], 100_000, "{expected}");

    let (mut socket, response) = initialize_resumable(&address, None).await;
    let id = response["mcpSessionId"].as_str().unwrap().to_owned();
    send(
        &mut socket,
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await;
    send(&mut socket, json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add","arguments":{"a":5,"b":3}}})).await;
    let added = recv(&mut socket).await;
    assert_eq!(
        added["result"]["structuredContent"]["result"], 8.0,
        "{added}"
    );
    let mut last_seq = added["seq"].as_u64().unwrap();
    send(&mut socket, batch(7, Some("t"))).await;
    let mut seen = 0.0;
    for _ in 0..2 {
        let message = recv(&mut socket).await;
        assert_eq!(message["method"], "notifications/progress", "{message}");
        last_seq = message["seq"].as_u64().unwrap();
        seen = message["params"]["progress"].as_f64().unwrap();
    }
    // Wait (on a condition, polling the agent API) until the batch has saved a checkpoint.
    let agent = format!("/agent/{id}");
    let checkpointed = tokio::time::timeout(HANG, async {
        loop {
            let state = get_json(&address, &agent).await;
            if let Some(processed) = state["operations"][0]["checkpoint"]["processed"].as_u64() {
                return processed;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("no checkpoint");
    assert!(
        checkpointed < 100_000,
        "the batch must still run when killed"
    );

    child.start_kill().unwrap();
    child.wait().await.unwrap();
    drop(socket);

    let (_child, address) = start(store).await;
    let state = get_json(&address, &agent).await;
    assert_eq!(
        state["history"][0]["tool"], "add",
        "history survives: {state}"
    );
    let (mut socket, response) = initialize_resumable(&address, Some((&id, last_seq))).await;
    assert_eq!(response["id"], "init", "{response}");
    assert_eq!(response["mcpSessionId"], id.as_str());

    let (result, interrupted) = follow_resumed(&mut socket, last_seq, seen).await;
    let interrupted = interrupted.expect("the interruption was reported");
    assert_eq!(interrupted["event"], "interrupted", "{interrupted}");
    assert_eq!(interrupted["requestId"], 7);
    assert_eq!(interrupted["resumed"], true);
    assert_eq!(result["id"], 7, "{result}");
    let summary = &result["result"]["structuredContent"];
    assert_eq!(summary["processed"], 100_000, "{summary}");
    assert!(
        summary["resumedFrom"].as_u64().unwrap() >= checkpointed,
        "{summary}"
    );
    assert_eq!(
        summary["checksum"], expected["checksum"],
        "resumed, not restarted"
    );
    assert_eq!(summary["succeeded"], expected["succeeded"]);

    let state = get_json(&address, &agent).await;
    let tools: Vec<&str> = state["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["tool"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["add", "process_batch"], "{state}");
    assert_eq!(state["operations"], json!([]));
}

/// Reads a resumed session's messages up to the first response: each follows the last
/// position (`last_seq`) with no gap or repeat, and progress only goes up from `seen`. The
/// response, and the session's report of an interrupted call, if it made one.
async fn follow_resumed(
    socket: &mut Socket,
    mut last_seq: u64,
    mut seen: f64,
) -> (Value, Option<Value>) {
    let mut interrupted = None;
    let result = loop {
        let message = recv(socket).await;
        let seq = message["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("{message}"));
        assert_eq!(seq, last_seq + 1, "positions follow each other: {message}");
        last_seq = seq;
        match message["method"].as_str() {
            Some("notifications/progress") => {
                let progress = message["params"]["progress"].as_f64().unwrap();
                assert!(
                    progress > seen,
                    "progress went back: {progress} after {seen}"
                );
                seen = progress;
            }
            Some("notifications/message") if message["params"]["logger"] == "session" => {
                interrupted = Some(message["params"]["data"].clone());
            }
            Some(_) => {}
            None => break message,
        }
    };
    (result, interrupted)
}

/// Starts the binary with `args`; returns it and its first stdout line (empty when it
/// exited without one).
async fn spawn(args: &[&str], stderr: Stdio) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-server"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut first = String::new();
    tokio::time::timeout(HANG, BufReader::new(stdout).read_line(&mut first))
        .await
        .unwrap()
        .unwrap();
    (child, first)
}

/// Starts the binary with `args` (which name the listen address); its first stdout line, or
/// its stderr when it refused to start.
async fn start_or_refuse(args: &[&str]) -> Result<(Child, String), String> {
    let (child, first) = spawn(args, Stdio::piped()).await;
    if first.is_empty() {
        let output = tokio::time::timeout(HANG, child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert!(!output.status.success());
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok((child, first))
}

#[tokio::test]
async fn a_non_loopback_address_needs_authentication_or_an_explicit_opt_out() {
    let refusal = start_or_refuse(&["--listen", "0.0.0.0:0"])
        .await
        .unwrap_err();
    assert!(
        refusal.contains("refusing to serve 0.0.0.0:0 without authentication"),
        "{refusal}"
    );
    assert!(refusal.contains("--insecure-no-auth"), "{refusal}");
    for args in [
        &[
            "--listen",
            "0.0.0.0:0",
            "--auth-token",
            "ops=some-long-token",
        ][..],
        &["--listen", "0.0.0.0:0", "--insecure-no-auth"][..],
    ] {
        let (child, first) = start_or_refuse(args)
            .await
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(first.starts_with("listening on http://0.0.0.0:"), "{first}");
        sigterm(&child);
        drop(child);
    }
}

/// Issue 19, item 7: what clients send reaches the log escaped, one line per event.
#[tokio::test]
async fn a_client_cannot_forge_log_lines() {
    let (child, first) = spawn(&["--listen", "127.0.0.1:0"], Stdio::piped()).await;
    let address = first.trim_end().rsplit("//").next().unwrap().to_owned();
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{address}/mcp"))
        .await
        .unwrap();
    let forged = "evil\n2026-01-01T00:00:00Z ERROR mcp_server: forged\u{1b}[2J";
    send(
        &mut socket,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},
        "clientInfo":{"name":forged,"version":"1"}}}),
    )
    .await;
    assert_eq!(recv(&mut socket).await["id"], 1);
    drop(socket);
    sigterm(&child);
    let output = tokio::time::timeout(HANG, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8(output.stderr).unwrap();
    assert!(
        log.contains(r"evil\n2026-01-01T00:00:00Z ERROR mcp_server: forged\x1b[2J"),
        "{log}"
    );
    assert!(!log.lines().any(|l| l.starts_with("2026-01-01")), "{log}");
    assert!(!log.contains('\u{1b}'), "{log}");
}
