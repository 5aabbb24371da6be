//! A small WebSocket client for the tests, and the shared test support (the server on port
//! 0, raw HTTP) bound to it.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) use mcp_test_support::{HANG, TestServer, metric};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client speaking raw JSON-RPC.
pub(crate) struct Client {
    pub(crate) socket: Socket,
}

impl Client {
    /// Connects to `/mcp`, offering the `mcp` subprotocol.
    pub(crate) async fn connect(server: &TestServer) -> Self {
        Self::connect_with(server, "/mcp", Some("mcp"))
            .await
            .unwrap()
            .0
    }

    pub(crate) async fn connect_with(
        server: &TestServer,
        path: &str,
        subprotocol: Option<&str>,
    ) -> Result<(Self, Response), tokio_tungstenite::tungstenite::Error> {
        let headers: Vec<(&str, &str)> = subprotocol
            .map(|p| ("Sec-WebSocket-Protocol", p))
            .into_iter()
            .collect();
        Self::connect_with_headers(server, path, &headers).await
    }

    /// Connects to `path` with extra handshake headers.
    pub(crate) async fn connect_with_headers(
        server: &TestServer,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(Self, Response), tokio_tungstenite::tungstenite::Error> {
        let mut request = server.url(path).into_client_request().unwrap();
        for (name, value) in headers {
            let name =
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .unwrap();
            request
                .headers_mut()
                .insert(name, HeaderValue::from_str(value).unwrap());
        }
        let (socket, response) =
            tokio::time::timeout(HANG, tokio_tungstenite::connect_async(request))
                .await
                .expect("connect hung")?;
        Ok((Self { socket }, response))
    }

    /// Connects and completes the initialize handshake.
    pub(crate) async fn initialized(server: &TestServer) -> Self {
        let mut client = Self::connect(server).await;
        client.initialize("2025-11-25").await;
        client
    }

    pub(crate) async fn initialize(&mut self, version: &str) -> Value {
        let response = self
            .request(json!({"jsonrpc":"2.0","id":"init","method":"initialize","params":{
                "protocolVersion": version, "capabilities": {}, "clientInfo": {"name":"e2e","version":"1"}}}))
            .await;
        self.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
        response
    }

    pub(crate) async fn send(&mut self, message: Value) {
        self.send_text(message.to_string()).await;
    }

    pub(crate) async fn send_text(&mut self, text: impl Into<String>) {
        self.socket.send(Frame::text(text.into())).await.unwrap();
    }

    /// The next frame, whatever it is.
    pub(crate) async fn next_frame(&mut self) -> Option<Frame> {
        tokio::time::timeout(HANG, self.socket.next())
            .await
            .expect("no frame from the server")
            .map(|f| f.unwrap())
    }

    /// The next message, as JSON.
    pub(crate) async fn recv(&mut self) -> Value {
        loop {
            match self.next_frame().await {
                Some(Frame::Text(t)) => return serde_json::from_str(t.as_str()).unwrap(),
                Some(Frame::Ping(_) | Frame::Pong(_)) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Sends a request and returns the next message (the caller has nothing else in flight).
    pub(crate) async fn request(&mut self, message: Value) -> Value {
        self.send(message).await;
        self.recv().await
    }

    /// Calls a tool and returns the JSON-RPC `result`.
    pub(crate) async fn call(&mut self, id: i64, tool: &str, arguments: Value) -> Value {
        let response = self
            .request(json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":arguments}}))
            .await;
        assert_eq!(response["id"], id, "{response}");
        response["result"].clone()
    }

    /// Waits for the server's close frame and returns its code and reason.
    pub(crate) async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.next_frame().await {
                Some(Frame::Close(Some(frame))) => {
                    // Sends tungstenite's queued reply, completing the close handshake.
                    let _ = self.socket.flush().await;
                    return (frame.code.into(), frame.reason.to_string());
                }
                Some(Frame::Close(None)) => panic!("close frame without a code"),
                Some(Frame::Ping(_) | Frame::Pong(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }
}

/// A plain HTTP/1.1 request; returns the status code, the headers and the body.
pub(crate) async fn http(server: &TestServer, request_head: &str) -> (u16, String, String) {
    exchange(server, request_head, "").await
}

/// Sends one request (`head` without Host and Connection, then `body`) on a new connection
/// and reads the whole response.
pub(crate) async fn exchange(server: &TestServer, head: &str, body: &str) -> (u16, String, String) {
    mcp_test_support::exchange(server.addr, head, body).await
}

/// The server's metrics, as Prometheus text.
pub(crate) async fn metrics(server: &TestServer) -> String {
    mcp_test_support::metrics(server.addr).await
}

/// Waits until an unlabelled metric has `value` (see [`mcp_test_support::wait_for_metric`]).
pub(crate) async fn wait_for_metric(server: &TestServer, name: &str, value: f64) {
    mcp_test_support::wait_for_metric(server.addr, name, value).await;
}

/// A plain HTTP/1.1 POST; returns the status code and the body.
pub(crate) async fn post(
    server: &TestServer,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nContent-Type: {content_type}\r\nContent-Length: {}",
        body.len()
    );
    let (status, _, body) = exchange(server, &head, body).await;
    (status, body)
}

/// Broadcasts `message` at level warning through the admin endpoint.
pub(crate) async fn broadcast(server: &TestServer, message: &str) {
    let body = json!({"message": message, "level": "warning"}).to_string();
    let (status, answer) = post(server, "/admin/broadcast", "application/json", &body).await;
    assert_eq!(status, 200, "{answer}");
}

/// The tools of an agent's history (`GET /agent/{id}`), in order.
pub(crate) fn history_tools(state: &Value) -> Vec<String> {
    state["history"]
        .as_array()
        .unwrap_or_else(|| panic!("no history: {state}"))
        .iter()
        .map(|h| h["tool"].as_str().unwrap_or_default().to_owned())
        .collect()
}
