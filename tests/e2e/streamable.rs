//! Streamable HTTP on `/mcp`, driven by hyper's HTTP/1.1 client: sessions by header, JSON
//! and SSE answers, the standalone stream, deletion, and every refusal.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mcp_server::Config;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::support::{HANG, TestServer, broadcast};

pub(crate) const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// Sends one request on a new connection; `headers` are added to Host.
pub(crate) async fn send(
    server: &TestServer,
    method: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Response<Incoming> {
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri("/mcp")
        .header("Host", server.addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    let request = request.body(Full::new(body)).unwrap();
    tokio::time::timeout(HANG, sender.send_request(request))
        .await
        .expect("no answer")
        .unwrap()
}

/// POSTs `body` in session `session` (none for initialize), accepting JSON and SSE.
async fn post(server: &TestServer, session: Option<&str>, body: Value) -> Response<Incoming> {
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", ACCEPT_BOTH),
    ];
    if let Some(id) = session {
        headers.push(("Mcp-Session-Id", id));
        headers.push(("MCP-Protocol-Version", "2025-11-25"));
    }
    send(server, "POST", &headers, Some(body)).await
}

pub(crate) fn header(response: &Response<Incoming>, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

pub(crate) async fn json_of(response: Response<Incoming>) -> Value {
    assert_eq!(header(&response, "content-type"), "application/json");
    let bytes = tokio::time::timeout(HANG, response.into_body().collect())
        .await
        .expect("body hung")
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// One SSE event: its id, `retry`, and data.
#[derive(Debug, Default)]
pub(crate) struct Event {
    pub(crate) id: Option<String>,
    pub(crate) retry: Option<u64>,
    pub(crate) data: String,
}

/// Reads an SSE body event by event.
pub(crate) struct Sse {
    body: Incoming,
    buffer: String,
}

impl Sse {
    pub(crate) fn new(response: Response<Incoming>) -> Self {
        assert_eq!(header(&response, "content-type"), "text/event-stream");
        Self {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` when the stream ended.
    pub(crate) async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Event::default();
                let mut any = false;
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => event.id = Some(value.to_owned()),
                        "retry" => event.retry = value.parse().ok(),
                        "data" => event.data.push_str(value),
                        _ => continue,
                    }
                    any = true;
                }
                if any {
                    return Some(event);
                }
                continue;
            }
            let frame = tokio::time::timeout(HANG, self.body.frame())
                .await
                .expect("SSE stream hung")?
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    /// The next message event, as JSON.
    pub(crate) async fn message(&mut self) -> Value {
        let event = self.next().await.expect("the stream ended");
        serde_json::from_str(&event.data).unwrap_or_else(|e| panic!("{e}: {event:?}"))
    }
}

/// Opens session `id`'s standalone stream (resuming after `last_event`) and reads its
/// priming event.
async fn standalone_stream(server: &TestServer, id: &str, last_event: Option<&str>) -> Sse {
    let mut headers = vec![("Mcp-Session-Id", id), ("Accept", "text/event-stream")];
    if let Some(last) = last_event {
        headers.push(("Last-Event-ID", last));
    }
    let response = send(server, "GET", &headers, None).await;
    assert_eq!(response.status(), 200);
    let mut stream = Sse::new(response);
    let priming = stream.next().await.unwrap();
    assert!(
        priming.id.is_some() && priming.data.is_empty(),
        "{priming:?}"
    );
    stream
}

/// Initializes a session; returns its id.
async fn initialize(server: &TestServer) -> String {
    let response = post(
        server,
        None,
        json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let id = header(&response, "mcp-session-id");
    assert_eq!(id.len(), 32, "a 128-bit id: {id}");
    let answer = json_of(response).await;
    assert_eq!(
        answer["result"]["protocolVersion"], "2025-11-25",
        "{answer}"
    );
    let response = post(
        server,
        Some(&id),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await;
    assert_eq!(response.status(), 202);
    id
}

#[tokio::test]
async fn a_session_over_http_answers_in_json_or_streams_progress() {
    let server = TestServer::start().await;
    let id = initialize(&server).await;
    // An answer with nothing before it is plain JSON.
    let response = post(
        &server,
        Some(&id),
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":5,"b":3}}}),
    )
    .await;
    let answer = json_of(response).await;
    assert_eq!(
        answer["result"]["structuredContent"]["result"], 8,
        "{answer}"
    );
    // Progress before the answer: an SSE stream, primed first.
    let response = post(
        &server,
        Some(&id),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":300},"_meta":{"progressToken":"p"}}}),
    )
    .await;
    let mut sse = Sse::new(response);
    let priming = sse.next().await.unwrap();
    assert!(
        priming.id.is_some() && priming.data.is_empty(),
        "{priming:?}"
    );
    assert_eq!(priming.retry, Some(1000));
    let mut progress = Vec::new();
    let answer = loop {
        let message = sse.message().await;
        if message["id"] == 2 {
            break message;
        }
        assert_eq!(message["method"], "notifications/progress", "{message}");
        assert_eq!(message["params"]["progressToken"], "p");
        progress.push(message["params"]["progress"].as_f64().unwrap());
    };
    assert_eq!(answer["result"]["structuredContent"]["sleptMs"], 300);
    assert!(!progress.is_empty() && progress.windows(2).all(|w| w[0] < w[1]));
    assert!(
        sse.next().await.is_none(),
        "the stream ends with its answer"
    );
    // Deleted, the session is gone.
    let response = send(&server, "DELETE", &[("Mcp-Session-Id", &id)], None).await;
    assert_eq!(response.status(), 204);
    let response = post(
        &server,
        Some(&id),
        json!({"jsonrpc":"2.0","id":3,"method":"ping"}),
    )
    .await;
    assert_eq!(response.status(), 404);
    server.shutdown().await;
}

#[tokio::test]
async fn the_standalone_stream_gets_pushes_and_what_a_lost_stream_missed() {
    let server = TestServer::start().await;
    let id = initialize(&server).await;
    let mut standalone = standalone_stream(&server, &id, None).await;
    broadcast(&server, "maintenance at noon").await;
    let notice = standalone.message().await;
    assert_eq!(notice["method"], "notifications/message", "{notice}");
    assert_eq!(notice["params"]["data"], "maintenance at noon");
    drop(standalone);

    // A client that drops a call's stream finds the answer on its next GET stream.
    let response = post(
        &server,
        Some(&id),
        json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":300},"_meta":{"progressToken":"t"}}}),
    )
    .await;
    let mut call = Sse::new(response);
    call.next().await.unwrap();
    let seen = call.next().await.unwrap();
    let first: Value = serde_json::from_str(&seen.data).unwrap();
    assert_eq!(first["method"], "notifications/progress", "{first}");
    drop(call);
    let last_event = seen.id.unwrap();
    let mut resumed = standalone_stream(&server, &id, Some(&last_event)).await;
    // Everything after the last event seen, and nothing seen again.
    let mut progress = vec![first["params"]["progress"].as_f64().unwrap()];
    let answer = loop {
        let message = resumed.message().await;
        if message["id"] == 7 {
            break message;
        }
        assert_eq!(message["method"], "notifications/progress", "{message}");
        progress.push(message["params"]["progress"].as_f64().unwrap());
    };
    assert!(
        progress.windows(2).all(|w| w[0] < w[1]),
        "progress repeats or goes back: {progress:?}"
    );
    assert_eq!(
        answer["result"]["structuredContent"]["sleptMs"], 300,
        "{answer}"
    );
    drop(resumed);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_http_requests_get_clear_refusals() {
    let config = Config {
        allowed_origins: vec!["https://app.example.com".to_owned()],
        ..Config::default()
    };
    let server = TestServer::with_config(config).await;
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
    // No session and no revision: a modern request without its headers (-32020), which
    // tells a 2025 client to initialize first.
    let response = post(&server, None, ping.clone()).await;
    assert_eq!(response.status(), 400);
    let refusal = json_of(response).await;
    assert_eq!(refusal["error"]["code"], -32020, "{refusal}");
    assert_eq!(refusal["id"], 1, "{refusal}");
    let message = refusal["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("initialize") && message.contains("Mcp-Session-Id"),
        "{message}"
    );
    let response = post(
        &server,
        Some("0123456789abcdef0123456789abcdef"),
        ping.clone(),
    )
    .await;
    assert_eq!(response.status(), 404);
    let id = initialize(&server).await;
    let cases: [(&[(&str, &str)], u16); 6] = [
        // A client must accept both JSON and SSE.
        (
            &[
                ("Content-Type", "application/json"),
                ("Accept", "application/json"),
            ],
            406,
        ),
        (
            &[("Content-Type", "text/plain"), ("Accept", ACCEPT_BOTH)],
            415,
        ),
        (
            &[
                ("Content-Type", "application/json"),
                ("Accept", ACCEPT_BOTH),
                ("MCP-Protocol-Version", "1999-01-01"),
            ],
            400,
        ),
        // DNS rebinding: a foreign origin, or a foreign host on a loopback server.
        (
            &[
                ("Content-Type", "application/json"),
                ("Accept", ACCEPT_BOTH),
                ("Origin", "http://evil.example.com"),
            ],
            403,
        ),
        (
            &[
                ("Content-Type", "application/json"),
                ("Accept", ACCEPT_BOTH),
                ("Origin", "https://app.example.com"),
            ],
            200,
        ),
        (
            &[
                ("Content-Type", "application/json"),
                ("Accept", ACCEPT_BOTH),
                ("Origin", "http://localhost"),
            ],
            403,
        ),
    ];
    for (headers, status) in cases {
        let mut headers = headers.to_vec();
        headers.push(("Mcp-Session-Id", &id));
        let response = send(&server, "POST", &headers, Some(ping.clone())).await;
        assert_eq!(response.status(), status, "{headers:?}");
    }
    // A foreign Host header is refused on a loopback server, WebSocket upgrades included.
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .method("GET")
        .uri("/mcp")
        .header("Host", "evil.example.com")
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 403);
    // GET needs a session; DELETE of an unknown one is 404.
    let response = send(&server, "GET", &[("Accept", "text/event-stream")], None).await;
    assert_eq!(response.status(), 400);
    let response = send(
        &server,
        "DELETE",
        &[("Mcp-Session-Id", "0123456789abcdef0123456789abcdef")],
        None,
    )
    .await;
    assert_eq!(response.status(), 404);
    server.shutdown().await;
}

#[tokio::test]
async fn a_session_started_on_websocket_resumes_over_http() {
    let server = TestServer::start().await;
    let mut ws = crate::support::Client::connect(&server).await;
    let answer = ws
        .request(
            json!({"jsonrpc":"2.0","id":"init","method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{"experimental":{"resume":{}}},
            "clientInfo":{"name":"e2e","version":"1"}}}),
        )
        .await;
    let id = answer["mcpSessionId"].as_str().unwrap().to_owned();
    ws.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    ws.send(json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":300}}}))
        .await;
    drop(ws);

    let response = post(
        &server,
        None,
        json!({"jsonrpc":"2.0","id":"again","method":"initialize","mcpSessionId":id,"params":{
            "protocolVersion":"2025-11-25","capabilities":{"experimental":{"resume":{"lastSeq":1}}},
            "clientInfo":{"name":"e2e-http","version":"1"}}}),
    )
    .await;
    assert_eq!(
        header(&response, "mcp-session-id"),
        id,
        "the HTTP session is the resumed one"
    );
    let answer = json_of(response).await;
    assert_eq!(answer["mcpSessionId"], id.as_str(), "{answer}");
    // The call made over WebSocket is answered on the standalone stream, in its position.
    let mut stream = standalone_stream(&server, &id, None).await;
    let result = stream.message().await;
    assert_eq!(result["id"], 7, "{result}");
    assert_eq!(result["seq"], 2, "{result}");
    assert_eq!(result["result"]["structuredContent"]["sleptMs"], 300);
    drop(stream);
    server.shutdown().await;
}

#[tokio::test]
async fn a_cancelled_call_s_stream_ends_without_an_answer() {
    let server = TestServer::start().await;
    let id = initialize(&server).await;
    let response = post(
        &server,
        Some(&id),
        json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"process_batch","arguments":{"count":100_000_000},"_meta":{"progressToken":"s"}}}),
    )
    .await;
    let mut stream = Sse::new(response);
    stream.next().await.unwrap();
    let progress = stream.message().await;
    assert_eq!(progress["method"], "notifications/progress", "{progress}");
    let response = post(
        &server,
        Some(&id),
        json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":5,"reason":"test"}}),
    )
    .await;
    assert_eq!(response.status(), 202);
    // Progress already sent may still come; the stream then ends, with no answer.
    while let Some(event) = stream.next().await {
        let message: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(message["method"], "notifications/progress", "{message}");
    }
    // The session carries on.
    let response = post(
        &server,
        Some(&id),
        json!({"jsonrpc":"2.0","id":6,"method":"ping"}),
    )
    .await;
    assert_eq!(json_of(response).await["result"], json!({}));
    drop(stream);
    server.shutdown().await;
}

#[tokio::test]
async fn a_request_id_still_running_is_refused_without_disturbing_it() {
    let server = TestServer::start().await;
    let id = initialize(&server).await;
    let response = post(
        &server,
        Some(&id),
        json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":300},"_meta":{"progressToken":"p"}}}),
    )
    .await;
    let mut running = Sse::new(response);
    running.next().await.unwrap();
    let response = post(
        &server,
        Some(&id),
        json!({"jsonrpc":"2.0","id":9,"method":"ping"}),
    )
    .await;
    let refusal = json_of(response).await;
    assert_eq!(refusal["id"], 9, "{refusal}");
    assert_eq!(refusal["error"]["code"], -32600, "{refusal}");
    // An id no answer could be routed back by is refused at once, as the session would.
    let response = post(
        &server,
        Some(&id),
        json!({"jsonrpc":"2.0","id":{"x":9},"method":"ping"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let refusal = json_of(response).await;
    assert_eq!(refusal["id"], Value::Null, "{refusal}");
    assert_eq!(refusal["error"]["code"], -32600, "{refusal}");
    // The first request still gets its own answer.
    let answer = loop {
        let message = running.message().await;
        if message["id"] == 9 {
            break message;
        }
    };
    assert_eq!(
        answer["result"]["structuredContent"]["sleptMs"], 300,
        "{answer}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_lost_stream_s_answer_waits_for_the_get_stream_not_another_request_s() {
    let server = TestServer::start().await;
    let id = initialize(&server).await;
    let call = |request: i64, ms: u64| {
        json!({"jsonrpc":"2.0","id":request,"method":"tools/call","params":{
            "name":"sleep","arguments":{"ms":ms},"_meta":{"progressToken":request}}})
    };
    // Call 1's stream is dropped after its first progress; call 2 runs past call 1's end.
    let mut first = Sse::new(post(&server, Some(&id), call(1, 300)).await);
    first.next().await.unwrap();
    first.message().await;
    drop(first);
    let mut second = Sse::new(post(&server, Some(&id), call(2, 900)).await);
    second.next().await.unwrap();
    loop {
        let message = second.message().await;
        assert_ne!(
            message["id"], 1,
            "call 1's answer on call 2's stream: {message}"
        );
        if message["id"] == 2 {
            break;
        }
        assert_eq!(message["params"]["progressToken"], 2, "{message}");
    }
    let mut stream = standalone_stream(&server, &id, None).await;
    let answer = loop {
        let message = stream.message().await;
        if message["id"] == 1 {
            break message;
        }
    };
    assert_eq!(
        answer["result"]["structuredContent"]["sleptMs"], 300,
        "{answer}"
    );
    drop(stream);
    server.shutdown().await;
}
