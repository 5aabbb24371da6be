//! Malformed and hostile input, table-driven: each gets its documented answer or close code,
//! and the connection (when it stays open), the other sessions and the server carry on.

use futures_util::SinkExt;
use mcp_server::Config;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::support::{Client, HANG, TestServer};

/// What a case must get back.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A JSON-RPC error with this code (and the id, when given).
    Error(i64),
    /// A successful result.
    Result,
    /// A tool result with `isError: true`.
    ToolError,
    /// Nothing at all: a ping sent next is answered first.
    Nothing,
    /// This many responses, for floods.
    Results(usize),
}

fn deep(depth: usize, open: &str, close: &str) -> String {
    format!("{}{}", open.repeat(depth), close.repeat(depth))
}

fn cases() -> Vec<(&'static str, String, Expect)> {
    let ping = |id: Value| json!({"jsonrpc":"2.0","id":id,"method":"ping"}).to_string();
    let call = |args: Value| {
        json!({"jsonrpc":"2.0","id":"c","method":"tools/call","params":{"name":"add","arguments":args}})
            .to_string()
    };
    let mut flood = String::new();
    flood.push('[');
    vec![
        ("truncated JSON", r#"{"jsonrpc":"2.0","id":1,"meth"#.to_owned(), Expect::Error(-32700)),
        ("empty frame", String::new(), Expect::Error(-32700)),
        ("only whitespace", "  \n\t ".to_owned(), Expect::Error(-32700)),
        ("deeply nested arrays", deep(100_000, "[", "]"), Expect::Error(-32600)),
        ("deeply nested objects", format!("{}1{}", "{\"a\":".repeat(50_000), "}".repeat(50_000)), Expect::Error(-32600)),
        // Deeper than 64 levels is refused before parsing, however it is made; 64 is served.
        ("arguments nested 61 levels (64 in all)", call(json!({"a": 1, "b": 2, "x": serde_json::from_str::<Value>(&deep(61, "[", "]")).unwrap()})), Expect::ToolError),
        ("arguments nested 62 levels (65 in all)", call(json!({"a": 1, "b": 2, "x": serde_json::from_str::<Value>(&deep(62, "[", "]")).unwrap()})), Expect::Error(-32600)),
        ("brackets inside strings do not nest", call(json!({"a": 1, "b": 2, "x": "[".repeat(1_000)})), Expect::ToolError),
        ("number out of range", r#"{"jsonrpc":"2.0","id":1e400,"method":"ping"}"#.to_owned(), Expect::Error(-32700)),
        ("integer id beyond 64 bits", r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}"#.to_owned(), Expect::Error(-32600)),
        ("jsonrpc 1.0", r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#.to_owned(), Expect::Error(-32600)),
        ("jsonrpc as a number", r#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#.to_owned(), Expect::Error(-32600)),
        ("no jsonrpc", r#"{"id":1,"method":"ping"}"#.to_owned(), Expect::Error(-32600)),
        ("no method, no result", r#"{"jsonrpc":"2.0","id":1}"#.to_owned(), Expect::Error(-32600)),
        ("null id on a request", r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#.to_owned(), Expect::Error(-32600)),
        ("boolean id", r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#.to_owned(), Expect::Error(-32600)),
        ("object id", r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#.to_owned(), Expect::Error(-32600)),
        ("a 256-byte string id", ping(json!("i".repeat(256))), Expect::Result),
        ("a 257-byte string id", ping(json!("i".repeat(257))), Expect::Error(-32600)),
        ("a 1 MB string id", ping(json!("i".repeat(1 << 20))), Expect::Error(-32600)),
        ("a subscription to a 2 KB URI", json!({"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri": format!("mcp://operations/{}", "o".repeat(2048))}}).to_string(), Expect::Error(-32602)),
        ("a 257-byte progress token", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2},"_meta":{"progressToken":"TOKEN"}}}"#.replace("TOKEN", &"t".repeat(257)), Expect::Error(-32602)),
        ("fractional id", r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#.to_owned(), Expect::Error(-32600)),
        ("result without id", r#"{"jsonrpc":"2.0","result":{}}"#.to_owned(), Expect::Error(-32600)),
        ("result and error together", r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}"#.to_owned(), Expect::Error(-32600)),
        ("a top-level string", r#""hello""#.to_owned(), Expect::Error(-32600)),
        ("a top-level number", "42".to_owned(), Expect::Error(-32600)),
        ("null", "null".to_owned(), Expect::Error(-32600)),
        ("params as a string", r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#.to_owned(), Expect::Error(-32600)),
        ("params as a number", r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":7}"#.to_owned(), Expect::Error(-32600)),
        ("params as an array", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["add"]}"#.to_owned(), Expect::Error(-32602)),
        ("method as a number", r#"{"jsonrpc":"2.0","id":1,"method":7}"#.to_owned(), Expect::Error(-32600)),
        ("empty method", r#"{"jsonrpc":"2.0","id":1,"method":""}"#.to_owned(), Expect::Error(-32601)),
        ("unknown method", r#"{"jsonrpc":"2.0","id":1,"method":"admin/exec"}"#.to_owned(), Expect::Error(-32601)),
        ("huge method name", json!({"jsonrpc":"2.0","id":1,"method":"m".repeat(100_000)}).to_string(), Expect::Error(-32601)),
        ("tool name of the wrong type", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":[]}}"#.to_owned(), Expect::Error(-32602)),
        ("arguments as a string", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":"a=1"}}"#.to_owned(), Expect::Error(-32602)),
        ("unknown tool", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm -rf /"}}"#.to_owned(), Expect::Error(-32602)),
        ("arguments of the wrong type", call(json!({"a": "1", "b": 2})), Expect::ToolError),
        ("an oversized string argument", call(json!({"a": "x".repeat(1_000_000), "b": 2})), Expect::ToolError),
        ("extra arguments", call(json!({"a": 1, "b": 2, "c": 3})), Expect::ToolError),
        ("cursor of the wrong type", r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":{}}}"#.to_owned(), Expect::Error(-32602)),
        ("forged cursor", r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"tools:999999"}}"#.to_owned(), Expect::Error(-32602)),
        ("log level array", r#"{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":["debug"]}}"#.to_owned(), Expect::Error(-32602)),
        ("a second initialize", r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}"#.to_owned(), Expect::Error(-32600)),
        ("an empty batch", "[]".to_owned(), Expect::Error(-32600)),
        ("a batch in 2025-11-25", format!("[{},{}]", ping(json!(1)), ping(json!(2))), Expect::Error(-32600)),
        ("byte order mark", format!("\u{feff}{}", ping(json!(1))), Expect::Error(-32700)),
        ("lone surrogate escape", r#"{"jsonrpc":"2.0","id":1,"method":"\ud800"}"#.to_owned(), Expect::Error(-32700)),
        ("NaN literal", r#"{"jsonrpc":"2.0","id":NaN,"method":"ping"}"#.to_owned(), Expect::Error(-32700)),
        ("trailing garbage", format!("{} trailing", ping(json!(1))), Expect::Error(-32700)),
        ("two messages in one frame", format!("{}{}", ping(json!(1)), ping(json!(2))), Expect::Error(-32700)),
        ("raw control character in a string", "{\"jsonrpc\":\"2.0\",\"id\":\"a\u{1}b\",\"method\":\"ping\"}".to_owned(), Expect::Error(-32700)),
        ("duplicate keys: the last one counts", r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#.to_owned(), Expect::Result),
        ("an error response with a null id", r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#.to_owned(), Expect::Nothing),
        ("a response to a request never sent", r#"{"jsonrpc":"2.0","id":"never","result":{"x":1}}"#.to_owned(), Expect::Nothing),
        ("an unknown notification", r#"{"jsonrpc":"2.0","method":"notifications/explode","params":{"x":1}}"#.to_owned(), Expect::Nothing),
        ("a malformed cancel", r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":[1]}}"#.to_owned(), Expect::Nothing),
        ("a cancel for an unknown id", r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"ghost"}}"#.to_owned(), Expect::Nothing),
        ("a progress notification from the client", r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":5}}"#.to_owned(), Expect::Nothing),
        ("a flood of pings", (0..1000).map(|i| ping(json!(i))).collect::<Vec<_>>().join("\n"), Expect::Results(1000)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_input_gets_its_documented_answer() {
    let server = TestServer::start().await;
    let mut bystander = Client::initialized(&server).await;
    let mut client = Client::initialized(&server).await;
    let table = cases();
    assert!(table.len() >= 40, "the table has {} cases", table.len());
    for (name, input, expect) in table {
        if let Expect::Results(n) = expect {
            // One frame per ping.
            for line in input.lines() {
                client.send_text(line).await;
            }
            for _ in 0..n {
                let response = client.recv().await;
                assert_eq!(response["result"], json!({}), "{name}: {response}");
            }
            continue;
        }
        client.send_text(input.clone()).await;
        let sentinel = json!({"jsonrpc":"2.0","id":"sentinel","method":"ping"});
        match expect {
            Expect::Nothing => {
                client.send(sentinel).await;
                let next = client.recv().await;
                assert_eq!(
                    next["id"], "sentinel",
                    "{name}: expected no answer, got {next}"
                );
                continue;
            }
            Expect::Error(code) => {
                let response = client.recv().await;
                assert_eq!(response["error"]["code"], code, "{name}: {response}");
                let message = response["error"]["message"].as_str().unwrap();
                assert!(
                    !message.is_empty() && message.len() < 1_000,
                    "{name}: message of {} bytes",
                    message.len()
                );
            }
            Expect::Result => {
                let response = client.recv().await;
                assert!(response.get("result").is_some(), "{name}: {response}");
            }
            Expect::ToolError => {
                let response = client.recv().await;
                assert_eq!(response["result"]["isError"], true, "{name}: {response}");
                let text = response["result"]["content"][0]["text"].as_str().unwrap();
                assert!(
                    text.len() < 1_000,
                    "{name}: an error text of {} bytes",
                    text.len()
                );
            }
            Expect::Results(_) => unreachable!(),
        }
        // The connection is still open and in order.
        client.send(sentinel).await;
        assert_eq!(
            client.recv().await["id"],
            "sentinel",
            "{name}: the connection did not carry on"
        );
    }
    // Other sessions never noticed.
    let pong = bystander
        .request(json!({"jsonrpc":"2.0","id":"b","method":"ping"}))
        .await;
    assert_eq!(pong["id"], "b");
    drop((client, bystander));
    server.shutdown().await;
}

#[tokio::test]
async fn frames_that_end_the_connection() {
    let config = Config {
        ws: mcp_ws::WsConfig {
            max_message_size: 64 * 1024,
            ..mcp_ws::WsConfig::default()
        },
        ..Config::default()
    };
    let server = TestServer::with_config(config).await;

    let mut binary = Client::initialized(&server).await;
    binary
        .socket
        .send(Frame::binary(vec![0xff, 0x00]))
        .await
        .unwrap();
    assert_eq!(binary.expect_close().await.0, 1003, "binary frame");

    let mut big = Client::initialized(&server).await;
    big.send_text("x".repeat(100 * 1024)).await;
    assert_eq!(big.expect_close().await.0, 1009, "oversized frame");

    assert_eq!(
        raw_frame(&server, 0x1, &[0x7b, 0xff, 0xfe, 0x7d]).await,
        Some(1007),
        "invalid UTF-8 text"
    );
    assert_eq!(
        raw_frame(&server, 0x3, b"?").await,
        Some(1002),
        "reserved opcode"
    );

    // The server carries on.
    let mut fine = Client::initialized(&server).await;
    assert_eq!(
        fine.request(json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
            .await["id"],
        1
    );
    drop((binary, big, fine));
    server.shutdown().await;
}

/// Upgrades a raw TCP connection by hand, sends one frame with `opcode` and `payload` (which
/// a WebSocket library would refuse to send), and returns the close code the server answers.
async fn raw_frame(server: &TestServer, opcode: u8, payload: &[u8]) -> Option<u16> {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let handshake = format!(
        "GET /mcp HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mcp\r\n\r\n",
        server.addr
    );
    tcp.write_all(handshake.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // A client frame: FIN + opcode, masked, short length, mask key, masked payload.
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    tcp.write_all(&frame).await.unwrap();
    // Read server frames until a close frame (0x88) comes, or the connection ends.
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(HANG, tcp.read(&mut chunk))
            .await
            .unwrap()
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        while at + 2 <= buffer.len() {
            let (op, len) = (buffer[at] & 0x0f, usize::from(buffer[at + 1] & 0x7f));
            if len > 125 || at + 2 + len > buffer.len() {
                break;
            }
            if op == 0x8 && len >= 2 {
                return Some(u16::from_be_bytes([buffer[at + 2], buffer[at + 3]]));
            }
            at += 2 + len;
        }
    }
}
