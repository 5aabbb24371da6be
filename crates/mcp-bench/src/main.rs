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
//! - `mcp-bench wrong`: a deliberately wrong server, for the test that `load` fails on it.
//!
//! `load` checks every answer against its call (the id of a call in flight, and the sum of
//! `add`); a wrong, missing or unasked-for answer is an error, and any error fails the run.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message as Frame;

mod sessions;
mod soak;
mod tasks;
mod tools;
mod wrong;

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
    /// Serve deliberately wrong answers (for the test that the load generator fails on them).
    Wrong(wrong::Wrong),
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
    /// MCP 2026-07-28: no `initialize` and no session, every request stands alone (over
    /// HTTP, a load balancer may send each to another instance).
    #[arg(long)]
    modern: bool,
    /// Over WebSocket, a resumable 2025 session (the `resume` capability): the server writes
    /// every message to its store before it sends it.
    #[arg(long)]
    resumable: bool,
    /// How long answers may come after the measurement ends; calls still unanswered then
    /// are errors.
    #[arg(long, default_value_t = 10.0)]
    drain: f64,
    /// A bearer token to send (`Authorization`); repeat for several, and connection N uses
    /// the Nth (in turn): one principal per connection.
    #[arg(long = "token")]
    tokens: Vec<String>,
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
        Command::Wrong(args) => wrong::serve(args).await,
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

/// How many calls one connection may have unanswered (open loop): past that the server is
/// so far behind that more calls are counted as failed rather than sent.
const OUTSTANDING_MAX: usize = 100_000;

/// What every connection records.
struct Shared {
    histogram: Mutex<Histogram<u64>>,
    errors: std::sync::atomic::AtomicU64,
    /// What the first error was.
    first_error: std::sync::Mutex<Option<String>>,
    /// When measuring starts and ends.
    start: Instant,
    end: Instant,
}

impl Shared {
    /// Counts `n` errors; the first one's description is kept for the report.
    fn error(&self, n: u64, what: impl FnOnce() -> String) {
        if n == 0 {
            return;
        }
        self.errors
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(what());
        }
    }

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
        first_error: Default::default(),
        start,
        end,
    });
    let http = load.url.starts_with("http://");
    let mut tasks = Vec::new();
    let mut pace_senders = Vec::new();
    for n in 0..load.connections {
        let load = load.clone();
        let token = match load.tokens.is_empty() {
            true => None,
            false => Some(load.tokens[n % load.tokens.len()].clone()),
        };
        let shared = Arc::clone(&shared);
        let pace = load.rate.map(|_| {
            let (tx, rx) = tokio::sync::mpsc::channel(PACE_QUEUE);
            pace_senders.push(tx);
            rx
        });
        tasks.push(tokio::spawn(async move {
            if http {
                http_connection(&load, token.as_deref(), &shared, pace).await
            } else {
                ws_connection(&load, token.as_deref(), &shared, pace).await
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
    let errors = shared.errors.load(std::sync::atomic::Ordering::Relaxed);
    if errors > 0 {
        let first = shared.first_error.lock().unwrap_or_else(|e| e.into_inner());
        bail!(
            "{errors} calls went wrong (a wrong or missing answer, or an answer to no call); the first: {}",
            first.as_deref().unwrap_or("?")
        );
    }
    let histogram = shared.histogram.lock().await;
    let calls = histogram.len();
    if calls == 0 {
        bail!("no call was answered within the measurement");
    }
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

/// Call `id` in the era the load speaks.
fn call_in_era(load: &Load, id: u64) -> String {
    match load.modern {
        true => modern_call(id),
        false => call(id),
    }
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

/// What a message from the server is to the load: the right answer to call `id`, a wrong
/// one (to call `id`, when it names one), or something else (a notification).
#[derive(Debug, PartialEq)]
enum Reply {
    Right(u64),
    Wrong(Option<u64>, String),
    Other,
}

/// Checks a message against the call it answers: [`call`] `id` is `add(id % 1000, 3)`, so its
/// answer must carry that sum (as `structuredContent.result`, or as the text of its first
/// content, a number or a JSON object with `result`, as the peers answer). The raw echo
/// answers with the call itself.
fn verify(text: &str, raw: bool) -> Reply {
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => return Reply::Wrong(None, format!("not JSON ({e}): {}", clip(text))),
    };
    let id = value.get("id").and_then(Value::as_u64);
    if raw {
        let arguments = &value["params"]["arguments"];
        return match id {
            Some(id) if arguments["a"] == json!(id % 1000) && arguments["b"] == json!(3) => {
                Reply::Right(id)
            }
            _ => Reply::Wrong(id, format!("not the call echoed: {}", clip(text))),
        };
    }
    if value.get("method").is_some() {
        return Reply::Other;
    }
    let Some(id) = id else {
        return Reply::Wrong(
            None,
            format!("an answer without a numeric id: {}", clip(text)),
        );
    };
    let result = &value["result"];
    if value.get("error").is_some() || result["isError"] == json!(true) {
        return Reply::Wrong(Some(id), format!("an error: {}", clip(text)));
    }
    let expected = (id % 1000 + 3) as f64;
    let text_sum = || {
        let text = result["content"][0]["text"].as_str()?;
        text.trim()
            .parse::<f64>()
            .ok()
            .or_else(|| serde_json::from_str::<Value>(text).ok()?["result"].as_f64())
    };
    match result["structuredContent"]["result"]
        .as_f64()
        .or_else(text_sum)
    {
        Some(sum) if sum == expected => Reply::Right(id),
        Some(sum) => Reply::Wrong(Some(id), format!("add({}, 3) answered {sum}", id % 1000)),
        None => Reply::Wrong(Some(id), format!("an answer without a sum: {}", clip(text))),
    }
}

/// The start of `text`, for an error message.
fn clip(text: &str) -> &str {
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

async fn ws_connection(
    load: &Load,
    token: Option<&str>,
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
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse()?);
    }
    // TCP_NODELAY, as every server measured sets it: Nagle's algorithm would hold a call
    // written while another is unacknowledged.
    let authority = request
        .uri()
        .authority()
        .context("a URL without a host")?
        .to_string();
    let tcp = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .with_context(|| format!("cannot connect to {}", load.url))?;
    tcp.set_nodelay(true)?;
    let (mut socket, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .with_context(|| format!("cannot open a WebSocket at {}", load.url))?;
    // A 2026-07-28 client sends no `initialize`: each request stands alone.
    if !load.raw && !load.modern {
        let capabilities = match load.resumable {
            true => json!({"experimental": {"resume": {}}}),
            false => json!({}),
        };
        handshake_with(&mut socket, capabilities).await?;
    }
    let (mut sink, mut stream) = socket.split();
    // The calls sent and not answered yet, by id, with when each was due.
    let mut outstanding: std::collections::HashMap<u64, Instant> = Default::default();
    let drained = shared.end + Duration::from_secs_f64(load.drain);
    let mut next_id: u64 = 1;
    let open_loop = pace.is_some();
    loop {
        let now = Instant::now();
        if now >= shared.end && outstanding.is_empty() {
            break;
        }
        if now >= drained {
            // Answers that never came are errors, not a hang.
            shared.error(outstanding.len() as u64, || {
                format!("{} calls never answered", outstanding.len())
            });
            break;
        }
        // Closed loop: keep `inflight` outstanding. Open loop: send each call when due.
        if !open_loop && now < shared.end {
            while outstanding.len() < load.inflight {
                outstanding.insert(next_id, Instant::now());
                sink.feed(Frame::text(call_in_era(load, next_id))).await?;
                next_id += 1;
            }
            sink.flush().await?;
        }
        let wait = drained.saturating_duration_since(now);
        let frame = tokio::select! {
            frame = stream.next() => frame,
            due = async { pace.as_mut()?.recv().await }, if pace.is_some() => {
                match due {
                    Some(due) if outstanding.len() < OUTSTANDING_MAX => {
                        outstanding.insert(next_id, due);
                        sink.send(Frame::text(call_in_era(load, next_id))).await?;
                        next_id += 1;
                    }
                    // The server is far behind: this call is not sent, and counts as failed.
                    Some(_) => shared.error(1, || {
                        format!("{OUTSTANDING_MAX} calls unanswered at once")
                    }),
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
        match verify(&text, load.raw) {
            Reply::Right(id) => match outstanding.remove(&id) {
                Some(due) => shared.record(due, done).await,
                None => shared.error(1, || {
                    format!("an answer to no call in flight: {}", clip(&text))
                }),
            },
            Reply::Wrong(Some(id), _) if outstanding.remove(&id).is_none() => shared
                .error(1, || {
                    format!("an answer to no call in flight: {}", clip(&text))
                }),
            Reply::Wrong(_, what) => shared.error(1, || what),
            Reply::Other => {}
        }
    }
    let _ = sink.close().await;
    Ok(())
}

async fn http_connection(
    load: &Load,
    token: Option<&str>,
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
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
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
        let body = call_in_era(load, next_id);
        let (_, text) = post(body, &session).await?;
        let id = next_id;
        next_id += 1;
        // An SSE answer carries its messages after `data:`; a JSON answer is the body. One
        // of them must answer this call, and rightly.
        let mut messages: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .collect();
        if messages.is_empty() && !text.trim().is_empty() {
            messages.push(text.as_str());
        }
        let replies: Vec<Reply> = messages
            .iter()
            .map(|m| verify(m, false))
            .filter(|r| *r != Reply::Other)
            .collect();
        match replies.as_slice() {
            [Reply::Right(answered)] if *answered == id => {
                shared.record(due, Instant::now()).await;
            }
            [Reply::Right(answered) | Reply::Wrong(Some(answered), _)] if *answered != id => {
                shared.error(1, || format!("call {id} was answered as call {answered}"))
            }
            [Reply::Wrong(_, what)] => shared.error(1, || what.clone()),
            _ => shared.error(1, || {
                format!("call {id}: {} answers in: {}", replies.len(), clip(&text))
            }),
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
                        // Writes as the product does: what has arrived already (up to 64
                        // frames) goes out in one flush.
                        while let Some(Ok(frame)) = stream.next().await {
                            let mut batch = vec![frame];
                            let mut ended = false;
                            while batch.len() < 64 {
                                match stream.next().now_or_never() {
                                    Some(Some(Ok(frame))) => batch.push(frame),
                                    Some(_) => {
                                        ended = true;
                                        break;
                                    }
                                    None => break,
                                }
                            }
                            for frame in batch.into_iter().filter(|f| f.is_text()) {
                                if sink.feed(frame).await.is_err() {
                                    return;
                                }
                            }
                            if sink.flush().await.is_err() || ended {
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
