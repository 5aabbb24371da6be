//! `mcp-bench`: the load generator of `cargo xtask bench`, and the ceiling it is measured
//! against.
//!
//! - `mcp-bench load`: `tools/call add` over WebSocket (`ws://`) or Streamable HTTP
//!   (`http://`), closed loop (N connections, M requests in flight on each) or open loop (a
//!   fixed offered rate, latency measured from when each call was due, so a stalled server
//!   cannot hide its queue: no coordinated omission). Latencies go into an HDR histogram;
//!   the summary is one JSON object on stdout.
//! - `mcp-bench echo`: a WebSocket echo server on the same stack as the product (hyper +
//!   hyper-tungstenite) that returns every text frame unparsed: what the product would
//!   reach if MCP cost nothing.
//! - `mcp-bench sessions`: capacity (N idle initialized sessions: server memory per session,
//!   time to establish, `ping` round trips) and broadcast fan-out to all of them.
//! - `mcp-bench batch`: `process_batch` with and without progress.
//! - `mcp-bench images`: `process_images` against a bare loop over the `image` crate.
//! - `mcp-bench soak`: one principal abuses the server while another works (`cargo xtask
//!   soak`).
//! - `mcp-bench tasks`: 2026-07-28 tasks created, polled to their end and checked.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message as Frame;

mod sessions;
mod soak;
mod tasks;
mod tools;

/// The server's allocator: the bare image loop does the same work as the server's tool, so it
/// must allocate the same way (glibc maps and unmaps every decoded image's buffer).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "mcp-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drive a server with `tools/call add` and print a JSON summary.
    Load(Load),
    /// Serve a raw WebSocket echo on the product's stack; prints `listening on ADDR`.
    Echo {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Hold N idle sessions (capacity), then time broadcasts to all of them (fan-out).
    Sessions(sessions::Sessions),
    /// Run `process_batch`, with or without progress, and count the notifications.
    Batch(tools::Batch),
    /// Run `process_images` on generated images, then the same work as a bare loop.
    Images(tools::Images),
    /// One principal abuses the server every way it can while another makes ordinary calls.
    Soak(soak::Soak),
    /// Create 2026-07-28 tasks over HTTP, poll each to its end, and check its result.
    Tasks(tasks::Tasks),
}

#[derive(clap::Args, Clone)]
struct Load {
    /// `ws://host:port/path` or `http://host:port/path`.
    #[arg(long)]
    url: String,
    /// Connections.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Requests in flight per connection (WebSocket; HTTP/1.1 has one per connection).
    #[arg(long, default_value_t = 1)]
    inflight: usize,
    /// How long to measure, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// How long to run before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Offer this many calls per second in all (open loop); without it, closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Skip `initialize` (for the echo server, which speaks no MCP).
    #[arg(long)]
    raw: bool,
    /// The WebSocket subprotocol to ask for; `none` asks for none (servers that do not
    /// select one, which a client asking for one must refuse).
    #[arg(long, default_value = "mcp")]
    subprotocol: String,
    /// Over HTTP, MCP 2026-07-28: no session, every request stands alone (so a load
    /// balancer may send each to another instance).
    #[arg(long)]
    modern: bool,
    /// Over WebSocket, a resumable 2025 session (the `resume` capability): the server writes
    /// every message to its store before it sends it.
    #[arg(long)]
    resumable: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Load(load) => {
            let summary = run(load).await?;
            println!("{summary}");
            Ok(())
        }
        Command::Echo { listen } => echo(listen).await,
        Command::Sessions(args) => print(sessions::run(args).await),
        Command::Batch(args) => print(tools::batch(args).await),
        Command::Images(args) => print(tools::images(args).await),
        Command::Soak(args) => print(soak::run(args).await),
        Command::Tasks(args) => print(tasks::run(args).await),
    }
}

fn print(summary: anyhow::Result<Value>) -> anyhow::Result<()> {
    println!("{}", summary?);
    Ok(())
}

/// Calls due that a connection has not sent yet (open loop); a connection this far behind
/// is held back by its server, and the pacer waits for it.
const PACE_QUEUE: usize = 4096;

/// Open loop: the times calls are due, `rate` a second until `end`, dealt to the connections
/// in turn. A thread of its own, sleeping with the operating system's timers: tokio's
/// timers round up to the millisecond, which would make every call late by up to 1 ms
/// before it was sent (and latency is counted from when a call was due).
fn pace(rate: f64, end: Instant, connections: Vec<tokio::sync::mpsc::Sender<Instant>>) {
    let every = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut due = Instant::now();
    let mut next = 0usize;
    while due < end && !connections.is_empty() {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if connections[next].blocking_send(due).is_err() {
            return;
        }
        next = (next + 1) % connections.len();
        due += every;
    }
}

/// How long answers may come after the measurement ends.
const DRAIN: Duration = Duration::from_secs(10);

/// What every connection records.
struct Shared {
    histogram: Mutex<Histogram<u64>>,
    errors: std::sync::atomic::AtomicU64,
    /// When measuring starts and ends.
    start: Instant,
    end: Instant,
}

impl Shared {
    async fn record(&self, due: Instant, done: Instant) {
        if due < self.start || due >= self.end {
            return;
        }
        let micros = u64::try_from(done.duration_since(due).as_micros()).unwrap_or(u64::MAX);
        let _ = self.histogram.lock().await.record(micros.max(1));
    }
}

async fn run(load: Load) -> anyhow::Result<Value> {
    let start = Instant::now() + Duration::from_secs_f64(load.warmup);
    let end = start + Duration::from_secs_f64(load.seconds);
    let shared = Arc::new(Shared {
        histogram: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        errors: Default::default(),
        start,
        end,
    });
    let http = load.url.starts_with("http://");
    let mut tasks = Vec::new();
    let mut pace_senders = Vec::new();
    for _ in 0..load.connections {
        let load = load.clone();
        let shared = Arc::clone(&shared);
        let pace = load.rate.map(|_| {
            let (tx, rx) = tokio::sync::mpsc::channel(PACE_QUEUE);
            pace_senders.push(tx);
            rx
        });
        tasks.push(tokio::spawn(async move {
            if http {
                http_connection(&load, &shared, pace).await
            } else {
                ws_connection(&load, &shared, pace).await
            }
        }));
    }
    if let Some(rate) = load.rate {
        let end = shared.end;
        std::thread::spawn(move || pace(rate, end, pace_senders));
    }
    for task in tasks {
        task.await.context("a connection task panicked")??;
    }
    let histogram = shared.histogram.lock().await;
    let calls = histogram.len();
    let errors = shared.errors.load(std::sync::atomic::Ordering::Relaxed);
    Ok(json!({
        "calls": calls,
        "errors": errors,
        "seconds": load.seconds,
        "callsPerSecond": calls as f64 / load.seconds,
        "p50Us": histogram.value_at_quantile(0.5),
        "p99Us": histogram.value_at_quantile(0.99),
        "p999Us": histogram.value_at_quantile(0.999),
        "maxUs": histogram.max(),
        "connections": load.connections,
        "inflight": load.inflight,
        "offeredRate": load.rate,
    }))
}

fn call(id: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "add", "arguments": {"a": id % 1000, "b": 3}}})
    .to_string()
}

/// [`call`] as a 2026-07-28 request: its revision and client in `_meta`.
fn modern_call(id: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "add", "arguments": {"a": id % 1000, "b": 3}, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "mcp-bench", "version": "1"}}}})
    .to_string()
}

fn initialized() -> String {
    json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string()
}

fn initialize() -> String {
    initialize_with(json!({}))
}

/// `initialize` declaring `capabilities`.
fn initialize_with(capabilities: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": capabilities,
        "clientInfo": {"name": "mcp-bench", "version": "1"}}})
    .to_string()
}

/// Initializes the session on `socket`: `initialize`, its answer, `notifications/initialized`.
async fn handshake<S>(socket: &mut tokio_tungstenite::WebSocketStream<S>) -> anyhow::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    handshake_with(socket, json!({})).await
}

/// [`handshake`] declaring `capabilities`.
async fn handshake_with<S>(
    socket: &mut tokio_tungstenite::WebSocketStream<S>,
    capabilities: Value,
) -> anyhow::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    socket
        .send(Frame::text(initialize_with(capabilities)))
        .await?;
    loop {
        let Some(frame) = socket.next().await else {
            bail!("closed during initialize")
        };
        if let Frame::Text(text) = frame?
            && answer(&text).is_some_and(|(id, _)| id == 0)
        {
            break;
        }
    }
    socket.send(Frame::text(initialized())).await?;
    Ok(())
}

/// The id of an answer, and whether it is a result (not an error).
fn answer(text: &str) -> Option<(u64, bool)> {
    let value: Value = serde_json::from_str(text).ok()?;
    let id = value.get("id")?.as_u64()?;
    let ok = value.get("error").is_none() && value["result"]["isError"] != json!(true);
    Some((id, ok))
}

async fn ws_connection(
    load: &Load,
    shared: &Shared,
    mut pace: Option<tokio::sync::mpsc::Receiver<Instant>>,
) -> anyhow::Result<()> {
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            load.url.as_str(),
        )?;
    if !load.raw && load.subprotocol != "none" {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", load.subprotocol.parse()?);
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("cannot connect to {}", load.url))?;
    if !load.raw {
        let capabilities = match load.resumable {
            true => json!({"experimental": {"resume": {}}}),
            false => json!({}),
        };
        handshake_with(&mut socket, capabilities).await?;
    }
    let (mut sink, mut stream) = socket.split();
    // Sent times by id (ids are sequential per connection, so a ring indexed by id works).
    let capacity = (load.inflight.max(1) * 4).next_power_of_two().max(1024);
    let mut due_at: Vec<Option<Instant>> = vec![None; capacity];
    let mut next_id: u64 = 1;
    let mut outstanding = 0usize;
    let open_loop = pace.is_some();
    loop {
        let now = Instant::now();
        if now >= shared.end && outstanding == 0 {
            break;
        }
        if now >= shared.end + DRAIN {
            // Answers that never came are errors, not a hang.
            shared
                .errors
                .fetch_add(outstanding as u64, std::sync::atomic::Ordering::Relaxed);
            break;
        }
        // Closed loop: keep `inflight` outstanding. Open loop: send each call when due.
        let can_send = now < shared.end && outstanding < capacity / 2;
        if !open_loop {
            while can_send && outstanding < load.inflight {
                due_at[(next_id as usize) % capacity] = Some(Instant::now());
                sink.feed(Frame::text(call(next_id))).await?;
                next_id += 1;
                outstanding += 1;
            }
            sink.flush().await?;
        }
        let wait = (shared.end + DRAIN).saturating_duration_since(now);
        let frame = tokio::select! {
            frame = stream.next() => frame,
            due = async { pace.as_mut()?.recv().await }, if pace.is_some() => {
                match due {
                    Some(due) if outstanding < capacity / 2 => {
                        due_at[(next_id as usize) % capacity] = Some(due);
                        sink.send(Frame::text(call(next_id))).await?;
                        next_id += 1;
                        outstanding += 1;
                    }
                    // More unanswered calls than the ring tracks: the server is far behind.
                    Some(_) => {
                        shared.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    None => pace = None,
                }
                continue;
            }
            () = tokio::time::sleep(wait) => continue,
        };
        let Some(frame) = frame else {
            bail!("the server closed the connection")
        };
        let Frame::Text(text) = frame? else { continue };
        let done = Instant::now();
        if let Some((id, ok)) = answer(&text)
            && let Some(due) = due_at[(id as usize) % capacity].take()
        {
            outstanding -= 1;
            if ok {
                shared.record(due, done).await;
            } else if shared
                .errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                == 0
            {
                eprintln!("mcp-bench: first error: {}", &text[..text.len().min(300)]);
            }
        }
    }
    let _ = sink.close().await;
    Ok(())
}

async fn http_connection(
    load: &Load,
    shared: &Shared,
    mut pace: Option<tokio::sync::mpsc::Receiver<Instant>>,
) -> anyhow::Result<()> {
    use http_body_util::{BodyExt as _, Full};
    use hyper::body::Bytes;
    let uri: hyper::Uri = load.url.parse()?;
    let authority = uri.authority().context("no host")?.to_string();
    let path = uri.path().to_owned();
    let tcp = tokio::net::TcpStream::connect(authority.as_str()).await?;
    tcp.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    let mut post = async |body: String,
                          session: &Option<String>|
           -> anyhow::Result<(Option<String>, String)> {
        let mut request = hyper::Request::post(path.as_str())
            .header("host", authority.as_str())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if load.modern {
            request = request
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/call")
                .header("mcp-name", "add");
        }
        if let Some(id) = session {
            request = request
                .header("mcp-session-id", id)
                .header("mcp-protocol-version", "2025-11-25");
        }
        let response = sender
            .send_request(request.body(Full::new(Bytes::from(body)))?)
            .await?;
        let id = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((id, String::from_utf8_lossy(&bytes).into_owned()))
    };
    let session = match load.modern {
        true => None,
        false => {
            let (session, _) = post(initialize(), &None).await?;
            post(initialized(), &session).await?;
            session
        }
    };
    let mut next_id = 1u64;
    while Instant::now() < shared.end {
        let due = match &mut pace {
            Some(pace) => match pace.recv().await {
                Some(due) => due,
                None => break,
            },
            None => Instant::now(),
        };
        let body = match load.modern {
            true => modern_call(next_id),
            false => call(next_id),
        };
        let (_, text) = post(body, &session).await?;
        next_id += 1;
        // An SSE answer carries the JSON after `data:`.
        let json = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .find(|d| !d.is_empty())
            .map_or(text.as_str(), |d| d);
        match answer(json) {
            Some((_, true)) => shared.record(due, Instant::now()).await,
            _ => {
                shared
                    .errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

/// The ceiling: a WebSocket echo on hyper + hyper-tungstenite, frames returned unparsed.
async fn echo(listen: SocketAddr) -> anyhow::Result<()> {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let service = service_fn(
                |mut request: hyper::Request<hyper::body::Incoming>| async move {
                    let (response, websocket) = hyper_tungstenite::upgrade(&mut request, None)?;
                    tokio::spawn(async move {
                        let Ok(socket) = websocket.await else { return };
                        let (mut sink, mut stream) = socket.split();
                        while let Some(Ok(frame)) = stream.next().await {
                            if frame.is_text() && sink.send(frame).await.is_err() {
                                return;
                            }
                        }
                    });
                    Ok::<_, hyper_tungstenite::tungstenite::Error>(response)
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

/// POSTs `body` to `url` (plain HTTP/1.1) and returns the status and the answer's text.
async fn post_json(url: &str, body: &Value) -> anyhow::Result<(u16, String)> {
    http_request("POST", url, None, Some(body.to_string())).await
}

/// One HTTP/1.1 request on a new connection, with a bearer `token` when given: the status and
/// the answer's text.
async fn http_request(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<String>,
) -> anyhow::Result<(u16, String)> {
    use http_body_util::{BodyExt as _, Full};
    use hyper::body::Bytes;
    let uri: hyper::Uri = url.parse()?;
    let authority = uri.authority().context("no host")?.to_string();
    let tcp = tokio::net::TcpStream::connect(authority.as_str()).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(uri.path())
        .header("host", authority.as_str())
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}
