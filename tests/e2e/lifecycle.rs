//! Heartbeat, timeouts and limits of a running server.

use std::time::Duration;

use futures_util::SinkExt;
use mcp_server::Config;
use mcp_ws::Heartbeat;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::support::{Client, HANG, TestServer, exchange, http, metric, metrics, wait_for_metric};

fn quick_heartbeat(heartbeat: Heartbeat) -> Config {
    let mut config = Config::default();
    config.ws.ping_interval = Duration::from_millis(100);
    config.ws.ping_timeout = Duration::from_millis(400);
    config.ws.heartbeat = heartbeat;
    config
}

#[tokio::test]
async fn a_peer_that_stops_answering_is_disconnected() {
    let server = TestServer::with_config(quick_heartbeat(Heartbeat::Frames)).await;
    // tungstenite answers pings only while the socket is polled: this client never is again.
    let _silent = Client::initialized(&server).await;
    wait_for_metric(&server, "mcp_heartbeat_timeouts_total", 1.0).await;
    wait_for_metric(&server, "mcp_connections", 0.0).await;
    let text = metrics(&server).await;
    assert!(
        text.contains(r#"mcp_connections_closed_total{code="1001"} 1"#),
        "{text}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_live_client_survives_heartbeats_of_either_kind() {
    for heartbeat in [Heartbeat::Frames, Heartbeat::JsonRpc, Heartbeat::Both] {
        let server = TestServer::with_config(quick_heartbeat(heartbeat)).await;
        let mut client = Client::initialized(&server).await;
        // Keep reading (and so answering) for well over the timeout: a slow call does that.
        client
            .send(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":1200}}}))
            .await;
        let mut saw_jsonrpc_ping = false;
        let response = loop {
            let message = client.recv().await;
            if message["method"] == "ping" {
                // Answer the server's MCP ping.
                saw_jsonrpc_ping = true;
                client
                    .send(json!({"jsonrpc":"2.0","id":message["id"],"result":{}}))
                    .await;
                continue;
            }
            break message;
        };
        assert_eq!(response["id"], 1, "{heartbeat:?}: {response}");
        assert_eq!(
            saw_jsonrpc_ping,
            heartbeat != Heartbeat::Frames,
            "{heartbeat:?}"
        );
        assert_eq!(
            metric(&metrics(&server).await, "mcp_heartbeat_timeouts_total"),
            0.0
        );
        drop(client);
        server.shutdown().await;
    }
}

#[tokio::test]
async fn client_pings_are_answered() {
    let server = TestServer::start().await;
    let mut client = Client::initialized(&server).await;
    client
        .socket
        .send(Frame::Ping(b"hello".to_vec().into()))
        .await
        .unwrap();
    match client.next_frame().await {
        Some(Frame::Pong(payload)) => assert_eq!(&payload[..], b"hello"),
        other => panic!("expected a pong, got {other:?}"),
    }
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn a_session_that_never_initializes_is_closed_with_1008() {
    let mut config = Config::default();
    config.session.init_timeout = Duration::from_millis(200);
    let server = TestServer::with_config(config).await;
    let mut client = Client::connect(&server).await;
    let (code, reason) = client.expect_close().await;
    assert_eq!(
        (code, reason.as_str()),
        (1008, "initialize not received in time")
    );
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_limit_get_503() {
    let server = TestServer::with_config(Config {
        max_connections: 2,
        ..Config::default()
    })
    .await;
    let first = Client::initialized(&server).await;
    let second = Client::initialized(&server).await;
    match Client::connect_with(&server, "/mcp", Some("mcp")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert!(response.headers().contains_key("retry-after"));
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(body.contains("--max-connections"), "{body}");
        }
        Ok(_) => panic!("a third connection was accepted"),
        Err(e) => panic!("unexpected error: {e}"),
    }
    // A place frees up when a client leaves.
    drop(first);
    wait_for_metric(&server, "mcp_connections", 1.0).await;
    let third = Client::initialized(&server).await;
    drop((second, third));
    server.shutdown().await;
}

/// Issue 19, item 9: `--max-connections` counted only upgrades, so plain HTTP connections
/// (idle ones included) were unbounded; and a body could trickle forever.
#[tokio::test]
async fn every_connection_counts_and_a_body_must_arrive_in_time() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = TestServer::with_config(Config {
        max_connections: 2,
        body_timeout: Duration::from_secs(1),
        ..Config::default()
    })
    .await;
    // Two connections that never send a byte hold both places.
    let idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut trickle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (status, _, body) = exchange(&server, "GET /healthz HTTP/1.1", "").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("--max-connections"), "{body}");
    // One of them starts a request whose body never comes: 408 once the timeout passes,
    // and its connection is closed.
    trickle
        .write_all(b"POST /agent HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"na")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(HANG, trickle.read_to_string(&mut answer))
        .await
        .expect("the trickling body was waited for forever")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("--body-timeout"), "{answer}");
    drop(trickle);
    drop(idle);
    // The places are free again.
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let (status, _, _) = exchange(&server, "GET /healthz HTTP/1.1", "").await;
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the places never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn readiness_and_health() {
    let server = TestServer::start().await;
    assert_eq!(http(&server, "GET /readyz HTTP/1.1").await.0, 200);
    assert_eq!(http(&server, "GET /healthz HTTP/1.1").await.0, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn sessions_over_the_limit_get_503() {
    let mut config = Config::default();
    config.session.max_sessions = 1;
    let server = TestServer::with_config(config).await;
    let first = Client::initialized(&server).await;
    match Client::connect_with(&server, "/mcp", Some("mcp")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(body.contains("--max-sessions"), "{body}");
        }
        Ok(_) => panic!("a second session was accepted"),
        Err(e) => panic!("unexpected error: {e}"),
    }
    drop(first);
    server.shutdown().await;
}

#[tokio::test]
async fn requests_over_the_in_flight_limit_are_refused() {
    let mut config = Config::default();
    config.session.max_inflight_per_session = 1;
    let server = TestServer::with_config(config).await;
    let mut client = Client::initialized(&server).await;
    for id in [1, 2] {
        client
            .send(json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":200}}}))
            .await;
    }
    let refused = client.recv().await;
    assert_eq!(
        (refused["id"].as_i64(), refused["error"]["code"].as_i64()),
        (Some(2), Some(-32001)),
        "{refused}"
    );
    assert_eq!(
        refused["error"]["data"]["limit"],
        "max_inflight_per_session"
    );
    assert_eq!(client.recv().await["id"], 1);
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn an_idle_session_is_closed_with_1000() {
    let mut config = Config::default();
    config.session.idle_timeout = Duration::from_millis(300);
    let server = TestServer::with_config(config).await;
    let mut client = Client::initialized(&server).await;
    assert_eq!(
        client.expect_close().await,
        (1000, "idle timeout".to_owned())
    );
    drop(client);
    server.shutdown().await;
}
