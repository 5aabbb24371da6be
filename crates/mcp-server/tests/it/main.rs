//! The real `mcp-server` binary: its stdout contract and its graceful shutdown on a signal.

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

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Starts the binary on port 0 and returns it with its address, read from its first line.
async fn start(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-server"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut first = String::new();
    tokio::time::timeout(HANG, BufReader::new(stdout).read_line(&mut first))
        .await
        .unwrap()
        .unwrap();
    let address = first
        .trim_end()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
        .to_owned();
    (child, address)
}

async fn status(address: &str, path: &str) -> u16 {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(HANG, stream.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    raw.split(' ').nth(1).unwrap().parse().unwrap()
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

fn sigterm(child: &Child) {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
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
