//! A server on port 0 and a small WebSocket client for the tests.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mcp_server::Config;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A guard against a hung test, never a synchronization device: every wait below ends on an
/// event, and this only turns "forever" into a failure.
pub(crate) const HANG: Duration = Duration::from_secs(20);

/// The real server, serving on 127.0.0.1 with an OS-assigned port.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub(crate) async fn start() -> Self {
        Self::with_config(Config::default()).await
    }

    pub(crate) async fn with_config(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(mcp_server::serve(listener, config, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Shuts the server down and waits until `serve` has returned.
    pub(crate) async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().unwrap();
        tokio::time::timeout(HANG, task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

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
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "{head}\r\nHost: {}\r\nConnection: close\r\n\r\n{body}",
        server.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(HANG, stream.read_to_string(&mut raw))
        .await
        .expect("HTTP response hung")
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

/// The server's metrics, as Prometheus text.
pub(crate) async fn metrics(server: &TestServer) -> String {
    let (status, _, body) = http(server, "GET /metrics HTTP/1.1").await;
    assert_eq!(status, 200);
    body
}

/// The value of an unlabelled metric.
pub(crate) fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing from:\n{text}"))
}

/// Waits until an unlabelled metric has `value`. The metric changes when the server finishes
/// its clean-up, an event the test cannot otherwise observe; `HANG` turns a clean-up that
/// never happens into a failure.
pub(crate) async fn wait_for_metric(server: &TestServer, name: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let text = metrics(server).await;
        if metric(&text, name) == value {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never reached {value}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
