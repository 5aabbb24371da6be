//! Close codes for bad frames, the server's own closes, and the close handshake's bound.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use hyper_tungstenite::tungstenite::Message as Frame;
use mcp_session::ServerConfig;
use mcp_ws::WsConfig;
use tokio::io::AsyncWriteExt as _;

use crate::{BUFFER, close_frame, serve};

/// A client frame as raw bytes: FIN, `opcode`, masked (with `mask`) unless `mask` is None.
fn raw_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    let masked = if mask.is_some() { 0x80 } else { 0 };
    assert!(payload.len() < 126);
    frame.push(masked | payload.len() as u8);
    match mask {
        Some(key) => {
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => frame.extend_from_slice(payload),
    }
    frame
}

#[tokio::test(start_paused = true)]
async fn a_binary_frame_closes_with_1003() {
    let mut served = serve(WsConfig::default(), ServerConfig::default(), BUFFER);
    let mut client = served.client().await;
    client.send(Frame::binary(b"{}".to_vec())).await.unwrap();
    let (code, reason) = close_frame(&mut client).await;
    assert_eq!(code, 1003);
    assert!(reason.contains("text frames"), "{reason}");
    assert_eq!(served.closed().await, 1003);
}

#[tokio::test(start_paused = true)]
async fn invalid_utf8_closes_with_1007() {
    let mut served = serve(WsConfig::default(), ServerConfig::default(), BUFFER);
    let mut io = served.io.take().unwrap();
    io.write_all(&raw_frame(
        0x1,
        &[0x7b, 0xff, 0xfe, 0x7d],
        Some([1, 2, 3, 4]),
    ))
    .await
    .unwrap();
    served.io = Some(io);
    let mut client = served.client().await;
    assert_eq!(close_frame(&mut client).await.0, 1007);
    assert_eq!(served.closed().await, 1007);
}

#[tokio::test(start_paused = true)]
async fn an_unmasked_client_frame_is_a_protocol_error_1002() {
    let mut served = serve(WsConfig::default(), ServerConfig::default(), BUFFER);
    let mut io = served.io.take().unwrap();
    io.write_all(&raw_frame(0x1, b"{}", None)).await.unwrap();
    served.io = Some(io);
    let mut client = served.client().await;
    assert_eq!(close_frame(&mut client).await.0, 1002);
    assert_eq!(served.closed().await, 1002);
}

#[tokio::test(start_paused = true)]
async fn an_oversized_message_closes_with_1009() {
    let config = WsConfig {
        max_message_size: 1024,
        ..WsConfig::default()
    };
    let mut served = serve(config, ServerConfig::default(), BUFFER);
    let mut client = served.client().await;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"{}"}}"#,
        "x".repeat(2000)
    );
    client.send(Frame::text(big)).await.unwrap();
    let (code, reason) = close_frame(&mut client).await;
    assert_eq!((code, reason.as_str()), (1009, "message too big"));
    assert_eq!(served.closed().await, 1009);
}

#[tokio::test(start_paused = true)]
async fn no_initialize_in_time_closes_with_1008() {
    let session = ServerConfig {
        init_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    let mut served = serve(WsConfig::default(), session, BUFFER);
    let mut client = served.client().await;
    let (code, reason) = close_frame(&mut client).await;
    assert_eq!(
        (code, reason.as_str()),
        (1008, "initialize not received in time")
    );
    assert_eq!(served.closed().await, 1008);
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_with_1001_and_the_client_replies() {
    let mut served = serve(WsConfig::default(), ServerConfig::default(), BUFFER);
    let mut client = served.client().await;
    served.hub.shutdown_token().cancel();
    let (code, reason) = close_frame(&mut client).await;
    assert_eq!((code, reason.as_str()), (1001, "server shutting down"));
    // Reading on sends the client's reply: the handshake completes at once.
    let started = tokio::time::Instant::now();
    while client.next().await.is_some() {}
    (&mut served.done).await.unwrap();
    assert!(started.elapsed() < WsConfig::default().close_timeout);
}

#[tokio::test(start_paused = true)]
async fn the_close_handshake_waits_for_the_client_only_so_long() {
    let config = WsConfig {
        close_timeout: Duration::from_secs(5),
        ..WsConfig::default()
    };
    let mut served = serve(config, ServerConfig::default(), BUFFER);
    // The client takes its end but never reads, so it never replies to the close.
    let _client = served.client().await;
    let started = tokio::time::Instant::now();
    served.hub.shutdown_token().cancel();
    (&mut served.done).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "waited {waited:?}"
    );
    assert_eq!(served.closed().await, 1001);
}
