//! The WebSocket transport alone: a real session over an in-memory duplex stream on a paused
//! clock, so that every close code, the heartbeat, a client that stops reading and the close
//! handshake are decided by the transport's own timers, without a socket or a wall clock.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used)]

mod closing;
mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use hyper_tungstenite::WebSocketStream;
use hyper_tungstenite::tungstenite::Message as Frame;
use hyper_tungstenite::tungstenite::protocol::Role;
use hyper_tungstenite::tungstenite::protocol::frame::CloseFrame;
use hyper_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use mcp_session::{Hub, Principal, ServerConfig};
use mcp_ws::{Connection, ConnectionObserver, WsConfig};
use tokio::io::AsyncReadExt as _;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

/// What the transport told its observer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Closed(u16),
    HeartbeatTimeout,
}

struct Observer(mpsc::UnboundedSender<Event>);

impl ConnectionObserver for Observer {
    fn closed(&self, code: u16) {
        let _ = self.0.send(Event::Closed(code));
    }

    fn heartbeat_timeout(&self) {
        let _ = self.0.send(Event::HeartbeatTimeout);
    }
}

/// A connection under test: the client's end of the stream, what the transport reported,
/// and the connection's task.
struct Served {
    hub: Hub,
    io: Option<DuplexStream>,
    events: mpsc::UnboundedReceiver<Event>,
    done: JoinHandle<()>,
}

/// Serves one connection over a duplex stream whose buffers hold `buffer` bytes each way.
fn serve(config: WsConfig, session: ServerConfig, buffer: usize) -> Served {
    let hub = Hub::builder(session).build();
    let (client, server) = tokio::io::duplex(buffer);
    let (tx, events) = mpsc::unbounded_channel();
    let connection = Connection {
        session: hub.reserve_session().unwrap(),
        config,
        remote: SocketAddr::from(([127, 0, 0, 1], 50000)),
        place: Box::new(()),
        dialect: None,
        principal: Principal::anonymous(),
        observer: Arc::new(Observer(tx)),
        tracker: TaskTracker::new(),
    };
    let done = tokio::spawn(mcp_ws::serve_stream(server, connection));
    Served {
        hub,
        io: Some(client),
        events,
        done,
    }
}

impl Served {
    /// The client's end as a WebSocket client.
    async fn client(&mut self) -> WebSocketStream<DuplexStream> {
        let io = self.io.take().expect("the client's end was taken");
        WebSocketStream::from_raw_socket(io, Role::Client, None).await
    }

    /// The next thing the transport reports (the paused clock runs to it).
    async fn event(&mut self) -> Event {
        self.events.recv().await.expect("the observer was dropped")
    }

    /// How the connection ended: its close code, once its task is done.
    async fn closed(&mut self) -> u16 {
        loop {
            if let Event::Closed(code) = self.event().await {
                return code;
            }
        }
    }
}

/// The next close frame the client reads: its code and reason.
async fn close_frame(client: &mut WebSocketStream<DuplexStream>) -> (u16, String) {
    while let Some(frame) = client.next().await {
        match frame {
            Ok(Frame::Close(Some(frame))) => {
                return (u16::from(frame.code), frame.reason.to_string());
            }
            Ok(Frame::Close(None)) => return (1005, String::new()),
            Ok(_) => {}
            Err(e) => panic!("the client's stream failed before a close frame: {e}"),
        }
    }
    panic!("the stream ended without a close frame")
}

/// The close frame among raw server frames (unmasked, as a server sends them).
fn raw_close(mut bytes: &[u8]) -> Option<(u16, String)> {
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let len = usize::from(bytes[1] & 0x7f);
        assert!(len < 126, "a long frame where control frames were expected");
        let payload = bytes.get(2..2 + len)?;
        if opcode == 0x8 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            return Some((code, String::from_utf8_lossy(&payload[2..]).into_owned()));
        }
        bytes = &bytes[2 + len..];
    }
    None
}

/// The next text frame, as JSON.
async fn text(client: &mut WebSocketStream<DuplexStream>) -> serde_json::Value {
    loop {
        match client.next().await {
            Some(Ok(Frame::Text(text))) => return serde_json::from_str(text.as_str()).unwrap(),
            Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

const BUFFER: usize = 64 * 1024;

#[tokio::test(start_paused = true)]
async fn a_session_runs_over_any_stream_and_a_client_close_is_answered_with_1000() {
    let mut served = serve(WsConfig::default(), ServerConfig::default(), BUFFER);
    let mut client = served.client().await;
    client
        .send(Frame::text(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"duplex","version":"1"}}}"#,
        ))
        .await
        .unwrap();
    let answer = text(&mut client).await;
    assert_eq!(
        answer["result"]["protocolVersion"], "2025-11-25",
        "{answer}"
    );
    client
        .send(Frame::text(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(text(&mut client).await["id"], 2);
    let normal = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    client.close(Some(normal)).await.unwrap();
    assert_eq!(close_frame(&mut client).await.0, 1000);
    assert_eq!(served.closed().await, 1000);
    (&mut served.done).await.unwrap();
    // The session ended with its connection.
    served.hub.all_sessions_ended().await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_closed_by_the_heartbeat_with_1001() {
    let config = WsConfig {
        ping_interval: Duration::from_secs(1),
        ping_timeout: Duration::from_secs(3),
        ..WsConfig::default()
    };
    let mut served = serve(config, ServerConfig::default(), BUFFER);
    // The client reads nothing, so it answers no ping.
    let started = tokio::time::Instant::now();
    assert_eq!(served.event().await, Event::HeartbeatTimeout);
    let silent = started.elapsed();
    assert!(
        silent > Duration::from_secs(3) && silent <= Duration::from_secs(5),
        "closed after {silent:?}"
    );
    // No close handshake is waited for: the client is gone.
    assert_eq!(served.closed().await, 1001);
    (&mut served.done).await.unwrap();
    // What the server wrote, read raw: a WebSocket client would answer the pings first and
    // fail on the closed stream.
    let mut io = served.io.take().unwrap();
    let mut written = Vec::new();
    io.read_to_end(&mut written).await.unwrap();
    assert_eq!(
        raw_close(&written),
        Some((1001, "heartbeat timeout".to_owned()))
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_answers_pings_stays() {
    let config = WsConfig {
        ping_interval: Duration::from_secs(1),
        ping_timeout: Duration::from_secs(3),
        ..WsConfig::default()
    };
    let mut served = serve(config, ServerConfig::default(), BUFFER);
    let mut client = served.client().await;
    // Reading answers the server's pings (tungstenite does), for 20 s of the paused clock
    // (within the 30 s the session waits for `initialize`).
    let reading = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match client.next().await {
                Some(Ok(Frame::Ping(_))) => {}
                other => return other,
            }
        }
    })
    .await;
    assert!(reading.is_err(), "the connection ended: {reading:?}");
    assert!(
        served.events.try_recv().is_err(),
        "the transport reported an event"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_closed_with_1008() {
    let config = WsConfig {
        stall_timeout: Duration::from_secs(5),
        ..WsConfig::default()
    };
    // Small buffers: the answers fill the client's side quickly.
    let mut served = serve(config, ServerConfig::default(), 2048);
    let mut client = served.client().await;
    for id in 0..200 {
        let ping = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
        client.send(Frame::text(ping)).await.unwrap();
    }
    let started = tokio::time::Instant::now();
    assert_eq!(served.closed().await, 1008);
    assert!(started.elapsed() >= Duration::from_secs(5));
    (&mut served.done).await.unwrap();
    // The session ended with it, and so did its calls.
    served.hub.all_sessions_ended().await;
}

/// Tells when it is dropped.
struct Place(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_connection_holds_its_place_until_it_ends() {
    let hub = Hub::builder(ServerConfig::default()).build();
    let (client, server) = tokio::io::duplex(BUFFER);
    let (tx, _events) = mpsc::unbounded_channel();
    let (released, mut place_gone) = tokio::sync::oneshot::channel();
    let connection = Connection {
        session: hub.reserve_session().unwrap(),
        config: WsConfig::default(),
        remote: SocketAddr::from(([127, 0, 0, 1], 50000)),
        place: Box::new(Place(Some(released))),
        dialect: None,
        principal: Principal::anonymous(),
        observer: Arc::new(Observer(tx)),
        tracker: TaskTracker::new(),
    };
    let done = tokio::spawn(mcp_ws::serve_stream(server, connection));
    let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
    client
        .send(Frame::text(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(text(&mut client).await["id"], 1);
    assert!(
        place_gone.try_recv().is_err(),
        "the place went while the connection is open"
    );
    drop(client);
    done.await.unwrap();
    place_gone
        .await
        .expect("the place is given back when the connection ends");
}
