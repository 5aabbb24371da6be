//! The HTTP side: upgrade, subprotocol, routes, frames and close codes.

use mcp_server::Config;
use serde_json::json;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::support::{Client, TestServer, http};

#[tokio::test]
async fn selects_the_mcp_subprotocol_when_offered() {
    let server = TestServer::start().await;
    let (mut client, response) = Client::connect_with(&server, "/mcp", Some("mcp"))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["sec-websocket-protocol"], "mcp");
    let init = client.initialize("2025-11-25").await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");

    // Among several offers, `mcp` is picked.
    let (second, response) = Client::connect_with(&server, "/mcp", Some("chat, mcp"))
        .await
        .unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "mcp");
    drop((client, second));
    server.shutdown().await;
}

#[tokio::test]
async fn accepts_a_client_offering_no_subprotocol() {
    let server = TestServer::start().await;
    let (mut client, response) = Client::connect_with(&server, "/mcp", None).await.unwrap();
    assert!(response.headers().get("sec-websocket-protocol").is_none());
    let init = client.initialize("2025-06-18").await;
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn a_modern_client_s_subprotocol_is_selected_over_mcp() {
    let server = TestServer::start().await;
    let offered = "mcp, mcp.version.2026-07-28";
    let (mut client, response) = Client::connect_with(&server, "/mcp", Some(offered))
        .await
        .unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "mcp.version.2026-07-28"
    );
    // The era is still the request's: a 2025 client may start a session on it.
    let init = client.initialize("2025-11-25").await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn refuses_other_subprotocols_with_400() {
    let server = TestServer::start().await;
    match Client::connect_with(&server, "/mcp", Some("graphql-ws")).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), 400);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(body.contains("offer `mcp`"), "{body}");
        }
        Ok(_) => panic!("the upgrade was accepted"),
        Err(e) => panic!("unexpected error: {e}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn upgrade_on_another_path_is_404() {
    let server = TestServer::start().await;
    for path in ["/", "/mcp/x", "/agent/1/websocket"] {
        match Client::connect_with(&server, path, Some("mcp")).await {
            Err(WsError::Http(response)) => assert_eq!(response.status(), 404, "{path}"),
            Ok(_) => panic!("upgrade on {path} was accepted"),
            Err(e) => panic!("unexpected error on {path}: {e}"),
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn http_routes() {
    let server = TestServer::start().await;
    let (status, _, body) = http(&server, "GET /healthz HTTP/1.1").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, head, _) = http(&server, "GET /mcp HTTP/1.1").await;
    assert_eq!(status, 426);
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    let (status, _, _) = http(&server, "GET /nope HTTP/1.1").await;
    assert_eq!(status, 404);
    let (status, _, _) = http(&server, "POST /healthz HTTP/1.1\r\nContent-Length: 0").await;
    assert_eq!(status, 405);
    server.shutdown().await;
}

#[tokio::test]
async fn binary_frame_closes_with_1003() {
    let server = TestServer::start().await;
    let mut client = Client::initialized(&server).await;
    client.socket.send_binary_frame().await;
    let (code, reason) = client.expect_close().await;
    assert_eq!(code, 1003);
    assert!(reason.contains("text frames"), "{reason}");
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_message_closes_with_1009() {
    let mut config = Config::default();
    config.ws.max_message_size = 1024;
    let server = TestServer::with_config(config).await;
    let mut client = Client::initialized(&server).await;
    let big = "x".repeat(4096);
    client
        .send(json!({"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":big}}))
        .await;
    assert_eq!(client.expect_close().await.0, 1009);
    // The server carries on for others.
    let mut other = Client::initialized(&server).await;
    assert_eq!(
        other
            .request(json!({"jsonrpc":"2.0","id":2,"method":"ping"}))
            .await["result"],
        json!({})
    );
    drop(client);
    drop(other);
    server.shutdown().await;
}

#[tokio::test]
async fn client_close_is_answered() {
    let server = TestServer::start().await;
    let mut client = Client::initialized(&server).await;
    client.socket.close(None).await.unwrap();
    // The server echoes the close; then the stream ends.
    match client.next_frame().await {
        Some(Frame::Close(_)) | None => {}
        Some(other) => panic!("unexpected frame after close: {other:?}"),
    }
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_tells_clients_cancels_calls_and_closes_with_1001() {
    let server = TestServer::with_config(Config {
        shutdown_grace: std::time::Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = Client::initialized(&server).await;
        client
            .send(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":300000}}}))
            .await;
        // A ping answered proves the call above was received before the shutdown starts.
        assert_eq!(
            client
                .request(json!({"jsonrpc":"2.0","id":2,"method":"ping"}))
                .await["id"],
            2
        );
        clients.push(client);
    }
    // Each client reads (and so answers the close handshake) while the server shuts down.
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let notice = client.recv().await;
                let cancelled = client.recv().await;
                (notice, cancelled, client.expect_close().await)
            })
        })
        .collect();
    server.shutdown().await;
    for reader in readers {
        let (notice, cancelled, close) = reader.await.unwrap();
        assert_eq!(notice["method"], "notifications/message", "{notice}");
        assert_eq!(notice["params"]["level"], "warning");
        assert_eq!(cancelled["id"], 1, "{cancelled}");
        assert_eq!(cancelled["error"]["code"], -32000, "{cancelled}");
        assert_eq!(close, (1001, "server shutting down".to_owned()));
    }
}

/// Sends a frame a conforming MCP client never sends.
trait SendBinary {
    async fn send_binary_frame(&mut self);
}

impl<S> SendBinary for tokio_tungstenite::WebSocketStream<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    async fn send_binary_frame(&mut self) {
        use futures_util::SinkExt;
        self.send(Frame::binary(b"{\"jsonrpc\":\"2.0\"}".to_vec()))
            .await
            .unwrap();
    }
}
