//! `mcp-bench wrong`: a deliberately wrong MCP server, so that a test can show the load
//! generator fails on what it must not count (crates/mcp-bench/tests/wrong_server.rs). It
//! speaks just enough MCP for `mcp-bench load`, over WebSocket and over Streamable HTTP on one
//! port: `initialize`, and `tools/call` of `add`, answered with the sum; with a `--fault`,
//! every hundredth call is answered wrongly (or not at all), the others rightly.

use std::net::SocketAddr;

use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Frame;

#[derive(clap::Args, Clone)]
pub(crate) struct Wrong {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// What goes wrong with every hundredth call.
    #[arg(long, value_enum, default_value_t = Fault::None)]
    fault: Fault,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Nothing: every answer is right.
    None,
    /// The sum is off by one.
    Sum,
    /// The answer names a call that was never made.
    Id,
    /// No answer at all (over HTTP: an empty 202).
    Drop,
    /// A JSON-RPC error instead of the result.
    Error,
}

pub(crate) async fn serve(args: Wrong) -> anyhow::Result<()> {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    loop {
        let (stream, _) = listener.accept().await?;
        let (fault, calls) = (args.fault, std::sync::Arc::clone(&calls));
        tokio::spawn(async move {
            let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                let calls = std::sync::Arc::clone(&calls);
                async move {
                    if hyper_tungstenite::is_upgrade_request(&request) {
                        let asked = request.headers().get("sec-websocket-protocol").cloned();
                        let (mut response, websocket) =
                            hyper_tungstenite::upgrade(&mut request, None)?;
                        // It selects what the client offered (the load generator offers `mcp`).
                        if let Some(asked) = asked {
                            response
                                .headers_mut()
                                .insert("sec-websocket-protocol", asked);
                        }
                        tokio::spawn(async move {
                            let Ok(socket) = websocket.await else { return };
                            let (mut sink, mut stream) = socket.split();
                            while let Some(Ok(frame)) = stream.next().await {
                                let Frame::Text(text) = frame else { continue };
                                let n = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                if let Some(answer) = answer(&text, fault, n)
                                    && sink.send(Frame::text(answer)).await.is_err()
                                {
                                    return;
                                }
                            }
                        });
                        let (parts, _) = response.into_parts();
                        return Ok::<_, anyhow::Error>(hyper::Response::from_parts(
                            parts,
                            Full::new(Bytes::new()),
                        ));
                    }
                    let body = request.into_body().collect().await?.to_bytes();
                    let text = String::from_utf8_lossy(&body);
                    let n = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let response = match answer(&text, fault, n) {
                        Some(answer) => hyper::Response::builder()
                            .header("content-type", "application/json")
                            .header("mcp-session-id", "wrong")
                            .body(Full::new(Bytes::from(answer)))?,
                        None => hyper::Response::builder()
                            .status(202)
                            .body(Full::new(Bytes::new()))?,
                    };
                    Ok(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

/// The answer to `text`, the `n`th message received: the fault applies to every hundredth
/// call (never to `initialize`, so that the load gets going).
fn answer(text: &str, fault: Fault, n: u64) -> Option<String> {
    let request: Value = serde_json::from_str(text).ok()?;
    let id = request.get("id")?.clone();
    let result = match request["method"].as_str()? {
        "initialize" => json!({
            "protocolVersion": request["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "wrong", "version": "1"},
        }),
        "tools/call" => {
            let arguments = &request["params"]["arguments"];
            let sum = arguments["a"].as_f64()? + arguments["b"].as_f64()?;
            let faulty = n % 100 == 99;
            match (fault, faulty) {
                (Fault::Sum, true) => {
                    json!({"structuredContent": {"result": sum + 1.0}, "content": []})
                }
                (Fault::Id, true) => {
                    return Some(
                        json!({"jsonrpc": "2.0", "id": 1_000_000_000u64 + n,
                            "result": {"structuredContent": {"result": sum}, "content": []}})
                        .to_string(),
                    );
                }
                (Fault::Drop, true) => return None,
                (Fault::Error, true) => {
                    return Some(
                        json!({"jsonrpc": "2.0", "id": id,
                            "error": {"code": -32603, "message": "wrong on purpose"}})
                        .to_string(),
                    );
                }
                _ => json!({"structuredContent": {"result": sum}, "content": []}),
            }
        }
        _ => json!({}),
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string())
}
