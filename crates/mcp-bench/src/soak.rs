//! `mcp-bench soak`: one principal (the attacker) runs every abuse the hardening issue found,
//! all at once, while another (the victim) makes ordinary calls; what the victim sees (its
//! latency and errors), the server's memory and data directory over time, and whether every
//! call the victim was answered for is in the store at the end.
//!
//! Bounded: it runs `--seconds`, on loopback, with at most a few hundred connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// The soak's settings.
#[derive(clap::Args, Clone)]
pub(crate) struct Soak {
    /// The server, `host:port`.
    #[arg(long)]
    address: String,
    /// The victim's bearer token.
    #[arg(long)]
    victim: String,
    /// The attacker's bearer token.
    #[arg(long)]
    attacker: String,
    /// How long to run.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// The server's process id, to sample its memory.
    #[arg(long)]
    pid: u32,
    /// The server's data directory, to sample its size.
    #[arg(long)]
    data_dir: PathBuf,
}

/// What one kind of abuse met: answers by status or error code.
#[derive(Default)]
struct Tally(std::sync::Mutex<std::collections::BTreeMap<String, u64>>);

impl Tally {
    fn count(&self, what: impl Into<String>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(what.into())
            .or_default() += 1;
    }

    fn json(&self) -> Value {
        json!(
            *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        )
    }
}

/// What the victim saw.
struct Victim {
    latency: Mutex<Histogram<u64>>,
    /// The latency of the last second, for the samples.
    window: Mutex<Histogram<u64>>,
    calls: AtomicU64,
    errors: AtomicU64,
    /// Calls answered 200, by agent: each must be in that agent's history.
    acknowledged: Mutex<Vec<(String, u64)>>,
    batches: Mutex<Histogram<u64>>,
}

/// Microseconds from 1 to 10 minutes, 3 significant digits.
fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

pub(crate) async fn run(args: Soak) -> anyhow::Result<Value> {
    let end = Instant::now() + Duration::from_secs_f64(args.seconds);
    let victim = Arc::new(Victim {
        latency: Mutex::new(histogram()?),
        window: Mutex::new(histogram()?),
        calls: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        acknowledged: Mutex::new(Vec::new()),
        batches: Mutex::new(histogram()?),
    });
    let abuse: Arc<std::collections::BTreeMap<&'static str, Tally>> = Arc::new(
        [
            "agent_flood",
            "deep_json",
            "long_ids",
            "session_flood",
            "ping_flood",
            "heavy_calls",
            "slow_connections",
            "bogus_tokens",
            "subscriptions",
            "store_flood",
            "listen_flood",
        ]
        .into_iter()
        .map(|k| (k, Tally::default()))
        .collect(),
    );
    let mut tasks = tokio::task::JoinSet::new();
    // The victim: agent-API calls, a WebSocket session's calls, and a small batch now and
    // then (which queues behind the attacker's heavy calls: fairness decides how long).
    for lane in 0..2 {
        tasks.spawn(victim_http(args.clone(), Arc::clone(&victim), end, lane));
    }
    tasks.spawn(victim_ws(args.clone(), Arc::clone(&victim), end));
    // The attacker's agents to fill the store with, made before its agent flood takes every
    // place.
    let mut fillers = Vec::new();
    for _ in 0..STORE_FLOOD_AGENTS {
        fillers.push(new_agent(&args, &args.attacker).await?);
    }
    let fillers = Arc::new(fillers);
    // The attacker, everything at once: one task per kind of abuse.
    for name in abuse.keys().copied() {
        let fillers = Arc::clone(&fillers);
        let (args, abuse) = (args.clone(), Arc::clone(&abuse));
        tasks.spawn(async move {
            let tally = &abuse[name];
            match name {
                "agent_flood" => agent_flood(args, tally, end).await,
                "deep_json" => deep_json(args, tally, end).await,
                "long_ids" => long_ids(args, tally, end).await,
                "session_flood" => session_flood(args, tally, end).await,
                "ping_flood" => ping_flood(args, tally, end).await,
                "heavy_calls" => heavy_calls(args, tally, end).await,
                "slow_connections" => slow_connections(args, tally, end).await,
                "bogus_tokens" => bogus_tokens(args, tally, end).await,
                "store_flood" => store_flood(args, tally, end, &fillers).await,
                "listen_flood" => listen_flood(args, tally, end).await,
                _ => subscriptions(args, tally, end).await,
            }
        });
    }
    // Samples, once a second.
    let mut samples = Vec::new();
    let started = Instant::now();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let p99 = {
            let mut window = victim.window.lock().await;
            let p99 = window.value_at_quantile(0.99);
            window.reset();
            p99
        };
        samples.push(json!({
            "t": started.elapsed().as_secs(),
            "rssMb": rss_mb(args.pid),
            "dataMb": dir_size(&args.data_dir) as f64 / 1e6,
            "victimP99Ms": p99 as f64 / 1000.0,
        }));
    }
    // Everything stops at `end`; a task stuck on a server that stopped answering is not
    // waited for long.
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();

    // Nothing the victim was answered for is missing.
    let acknowledged = victim.acknowledged.lock().await.clone();
    let mut lost = 0u64;
    for (agent, count) in &acknowledged {
        let url = format!("http://{}/agent/{agent}", args.address);
        let (status, body) = get(&url, &args.victim).await?;
        if status != 200 {
            bail!("the victim's agent {agent} is gone: {status} {body}");
        }
        let state: Value = serde_json::from_str(&body)?;
        let kept = state["history"].as_array().map_or(0, Vec::len) as u64;
        lost += count.saturating_sub(kept);
    }
    let latency = victim.latency.lock().await;
    let batches = victim.batches.lock().await;
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(json!({
        "seconds": args.seconds,
        "victim": {
            "calls": victim.calls.load(Ordering::Relaxed),
            "errors": victim.errors.load(Ordering::Relaxed),
            "p50Ms": ms(&latency, 0.5),
            "p99Ms": ms(&latency, 0.99),
            "maxMs": latency.max() as f64 / 1000.0,
            "batches": batches.len(),
            "batchP99Ms": ms(&batches, 0.99),
            "acknowledged": acknowledged.iter().map(|(_, n)| n).sum::<u64>(),
            "lost": lost,
        },
        "abuse": abuse.iter().map(|(k, t)| (k.to_string(), t.json())).collect::<serde_json::Map<_, _>>(),
        "samples": samples,
    }))
}

/// The server's resident memory, in megabytes.
fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The bytes under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

async fn get(url: &str, token: &str) -> anyhow::Result<(u16, String)> {
    crate::http_request("GET", url, Some(token), None).await
}

async fn post(url: &str, token: &str, body: &Value) -> anyhow::Result<(u16, String)> {
    crate::http_request("POST", url, Some(token), Some(body.to_string())).await
}

async fn new_agent(args: &Soak, token: &str) -> anyhow::Result<String> {
    let url = format!("http://{}/agent", args.address);
    let (status, body) = post(&url, token, &json!({"name": "soak"})).await?;
    if status != 201 {
        bail!("cannot create an agent: {status} {body}");
    }
    let id: Value = serde_json::from_str(&body)?;
    Ok(id["agentId"].as_str().context("no agentId")?.to_owned())
}

/// The victim's agent-API calls; a new agent every 500 calls, so that its history (which
/// keeps 1,000) holds every call to check.
async fn victim_http(args: Soak, victim: Arc<Victim>, end: Instant, lane: u64) {
    let url = format!("http://{}/mcp", args.address);
    let mut agent = None;
    let mut on_agent = 0u64;
    let mut n = 0u64;
    while Instant::now() < end {
        if agent.is_none() || on_agent == 500 {
            match new_agent(&args, &args.victim).await {
                Ok(id) => {
                    victim.acknowledged.lock().await.push((id.clone(), 0));
                    agent = Some(id);
                    on_agent = 0;
                }
                Err(e) => {
                    eprintln!("victim: {e}");
                    victim.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let Some(id) = &agent else { continue };
        n += 1;
        let call = json!({"agentId": id, "request": {"method": "add",
                          "params": {"a": lane * 1_000_000 + n, "b": 1}}});
        let started = Instant::now();
        let answered = post(&url, &args.victim, &call).await;
        let took = started.elapsed().as_micros() as u64;
        victim.calls.fetch_add(1, Ordering::Relaxed);
        match answered {
            Ok((200, _)) => {
                let _ = victim.latency.lock().await.record(took.max(1));
                let _ = victim.window.lock().await.record(took.max(1));
                on_agent += 1;
                if let Some(last) = victim
                    .acknowledged
                    .lock()
                    .await
                    .iter_mut()
                    .rfind(|(a, _)| a == id)
                {
                    last.1 += 1;
                }
            }
            Ok((status, body)) => {
                eprintln!("victim call: {status} {body}");
                victim.errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                eprintln!("victim call: {e}");
                victim.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A WebSocket connection with a bearer token; initialized unless `raw`.
async fn ws(
    args: &Soak,
    token: &str,
) -> anyhow::Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
> {
    let mut request = format!("ws://{}/mcp", args.address).into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "mcp".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    crate::handshake(&mut socket).await?;
    Ok(socket)
}

/// Sends `message` and waits for the answer with its id (other messages are skipped).
async fn ask<S>(
    socket: &mut tokio_tungstenite::WebSocketStream<S>,
    message: Value,
) -> anyhow::Result<Value>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let id = message["id"].clone();
    socket.send(Frame::text(message.to_string())).await?;
    loop {
        let Some(frame) = socket.next().await else {
            bail!("the connection closed");
        };
        if let Frame::Text(text) = frame? {
            let value: Value = serde_json::from_str(&text)?;
            if value["id"] == id && value.get("method").is_none() {
                return Ok(value);
            }
        }
    }
}

/// The victim's WebSocket session: `add` calls, and a small batch every 20th call.
async fn victim_ws(args: Soak, victim: Arc<Victim>, end: Instant) {
    let mut socket = match ws(&args, &args.victim).await {
        Ok(socket) => socket,
        Err(e) => {
            eprintln!("victim websocket: {e}");
            victim.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let mut id = 0u64;
    while Instant::now() < end {
        id += 1;
        let batch = id.is_multiple_of(20);
        let params = match batch {
            true => json!({"name": "process_batch", "arguments": {"count": 1000, "cost": 100}}),
            false => json!({"name": "add", "arguments": {"a": id, "b": 1}}),
        };
        let started = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(60),
            ask(
                &mut socket,
                json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}),
            ),
        )
        .await;
        let took = started.elapsed().as_micros() as u64;
        victim.calls.fetch_add(1, Ordering::Relaxed);
        match answer {
            Ok(Ok(answer)) if answer.get("result").is_some() => {
                let target = match batch {
                    true => &victim.batches,
                    false => &victim.latency,
                };
                let _ = target.lock().await.record(took.max(1));
                if !batch {
                    let _ = victim.window.lock().await.record(took.max(1));
                }
            }
            other => {
                eprintln!("victim websocket call: {other:?}");
                victim.errors.fetch_add(1, Ordering::Relaxed);
                if !matches!(other, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}

fn status(answer: &anyhow::Result<(u16, String)>) -> String {
    match answer {
        Ok((status, _)) => status.to_string(),
        Err(_) => "connection error".to_owned(),
    }
}

fn code(answer: &Value) -> String {
    match answer["error"]["code"].as_i64() {
        Some(code) => format!(
            "{code} {}",
            answer["error"]["data"]["limit"]
                .as_str()
                .unwrap_or_default()
        )
        .trim()
        .to_owned(),
        None => "ok".to_owned(),
    }
}

/// Agents until the limit, and on.
async fn agent_flood(args: Soak, tally: &Tally, end: Instant) {
    let url = format!("http://{}/agent", args.address);
    let name = "n".repeat(256);
    while Instant::now() < end {
        tally.count(status(
            &post(&url, &args.attacker, &json!({"name": name})).await,
        ));
    }
}

/// Agent-API calls nested far deeper than the limit (the poisoning of issue 19).
async fn deep_json(args: Soak, tally: &Tally, end: Instant) {
    let url = format!("http://{}/mcp", args.address);
    let deep: Value = serde_json::from_str(&format!("{}{}", "[".repeat(124), "]".repeat(124)))
        .unwrap_or_default();
    let Ok(agent) = new_agent(&args, &args.attacker).await else {
        tally.count("no agent");
        return;
    };
    while Instant::now() < end {
        let call = json!({"agentId": agent, "request": {"method": "add",
                          "params": {"a": 1, "b": 2, "x": deep}}});
        tally.count(status(&post(&url, &args.attacker, &call).await));
    }
}

/// Megabyte request ids.
async fn long_ids(args: Soak, tally: &Tally, end: Instant) {
    let Ok(mut socket) = ws(&args, &args.attacker).await else {
        tally.count("refused");
        return;
    };
    let id = "i".repeat(1 << 20);
    while Instant::now() < end {
        let message = json!({"jsonrpc": "2.0", "id": id, "method": "ping"}).to_string();
        if socket.send(Frame::text(message)).await.is_err() {
            tally.count("closed");
            return;
        }
        match socket.next().await {
            Some(Ok(Frame::Text(text))) => {
                tally.count(code(&serde_json::from_str(&text).unwrap_or_default()))
            }
            _ => {
                tally.count("closed");
                return;
            }
        }
    }
}

/// Sessions until the principal's limit, held open.
async fn session_flood(args: Soak, tally: &Tally, end: Instant) {
    let mut held = Vec::new();
    while Instant::now() < end {
        match ws(&args, &args.attacker).await {
            Ok(socket) if held.len() < 300 => {
                tally.count("101");
                held.push(socket);
            }
            Ok(_) => tally.count("101"),
            Err(e) => {
                let text = e.to_string();
                tally.count(match () {
                    () if text.contains("429") => "429",
                    () if text.contains("503") => "503",
                    () => "refused",
                });
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Pings as fast as the socket takes them.
async fn ping_flood(args: Soak, tally: &Tally, end: Instant) {
    let Ok(mut socket) = ws(&args, &args.attacker).await else {
        tally.count("refused");
        return;
    };
    let mut id = 0u64;
    while Instant::now() < end {
        id += 1;
        match ask(
            &mut socket,
            json!({"jsonrpc": "2.0", "id": id, "method": "ping"}),
        )
        .await
        {
            Ok(answer) => tally.count(code(&answer)),
            Err(_) => {
                tally.count("closed");
                return;
            }
        }
    }
}

/// Heavy calls from many sessions at once, to take every heavy slot.
async fn heavy_calls(args: Soak, tally: &Tally, end: Instant) {
    let mut lanes = Vec::new();
    for _ in 0..20 {
        let Ok(socket) = ws(&args, &args.attacker).await else {
            tally.count("refused");
            continue;
        };
        lanes.push(socket);
    }
    let runs = lanes.into_iter().map(|mut socket| async move {
        let mut id = 0u64;
        while Instant::now() < end {
            id += 1;
            let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": "process_batch", "arguments": {"count": 200_000, "cost": 1_000}}});
            let left = end.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, ask(&mut socket, call)).await {
                Ok(Ok(answer)) => tally.count(code(&answer)),
                _ => return,
            }
        }
    });
    futures_util::future::join_all(runs).await;
}

/// Connections that send half a request and then trickle, or nothing at all.
async fn slow_connections(args: Soak, tally: &Tally, end: Instant) {
    let mut held = Vec::new();
    while Instant::now() < end {
        if held.len() >= 200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            held.retain(|s: &tokio::net::TcpStream| s.peer_addr().is_ok());
            continue;
        }
        let Ok(mut stream) = tokio::net::TcpStream::connect(args.address.as_str()).await else {
            tally.count("refused");
            continue;
        };
        let head = format!(
            "POST /agent HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{",
            args.address, args.attacker
        );
        if stream.write_all(head.as_bytes()).await.is_err() {
            tally.count("closed");
            continue;
        }
        tally.count("opened");
        held.push(stream);
        // Read what the server said to the ones it gave up on.
        for stream in &mut held {
            let mut buf = [0u8; 256];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await
                && n > 0
            {
                let text = String::from_utf8_lossy(&buf[..n]);
                if let Some(status) = text.strip_prefix("HTTP/1.1 ") {
                    tally.count(status.split(' ').next().unwrap_or("?").to_owned());
                }
            }
        }
    }
}

/// Requests with made-up tokens.
async fn bogus_tokens(args: Soak, tally: &Tally, end: Instant) {
    let url = format!("http://{}/agent", args.address);
    let mut n = 0u64;
    while Instant::now() < end {
        n += 1;
        let token = format!("made-up-{n}-{}", "x".repeat(100));
        tally.count(status(&post(&url, &token, &json!({"name": "x"})).await));
    }
}

/// Subscriptions to long URIs, and to many.
async fn subscriptions(args: Soak, tally: &Tally, end: Instant) {
    let Ok(mut socket) = ws(&args, &args.attacker).await else {
        tally.count("refused");
        return;
    };
    let mut id = 0u64;
    while Instant::now() < end {
        id += 1;
        let length = if id.is_multiple_of(2) { 100_000 } else { 100 };
        let uri = format!("mcp://operations/{id}-{}", "o".repeat(length));
        let message = json!({"jsonrpc": "2.0", "id": id, "method": "resources/subscribe",
                             "params": {"uri": uri}});
        match ask(&mut socket, message).await {
            Ok(answer) => tally.count(code(&answer)),
            Err(_) => {
                tally.count("closed");
                return;
            }
        }
    }
}

/// How many agents the store flood spreads its calls over: each keeps a megabyte of history
/// at most, so together they keep more than the limit the soak runs with.
const STORE_FLOOD_AGENTS: usize = 40;

/// Agent calls of 256 KB each, round the attacker's agents, until its stored bytes reach
/// the limit, and on.
async fn store_flood(args: Soak, tally: &Tally, end: Instant, agents: &[String]) {
    let url = format!("http://{}/mcp", args.address);
    let note = "s".repeat(256 << 10);
    let mut n = 0;
    while Instant::now() < end {
        let agent = &agents[n % agents.len()];
        n += 1;
        let call = json!({"agentId": agent, "request": {"method": "add",
                          "params": {"a": 1, "b": 2, "note": note}}});
        tally.count(status(&post(&url, &args.attacker, &call).await));
    }
}

/// `subscriptions/listen` streams over HTTP, each on a connection of its own, held open
/// until the principal's connection limit, and on.
async fn listen_flood(args: Soak, tally: &Tally, end: Instant) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen",
        "params": {"notifications": {"toolsListChanged": true}, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "soak", "version": "1"}}}})
    .to_string();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\n\
         Mcp-Method: subscriptions/listen\r\nContent-Length: {}\r\n\r\n{body}",
        args.address,
        args.attacker,
        body.len()
    );
    let mut held = Vec::new();
    while Instant::now() < end && held.len() < 2_000 {
        let Ok(mut stream) = tokio::net::TcpStream::connect(args.address.as_str()).await else {
            tally.count("refused");
            continue;
        };
        if stream.write_all(request.as_bytes()).await.is_err() {
            tally.count("closed");
            continue;
        }
        let mut head = [0u8; 64];
        let status =
            match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut head)).await {
                Ok(Ok(n)) if n > 0 => String::from_utf8_lossy(&head[..n])
                    .strip_prefix("HTTP/1.1 ")
                    .and_then(|rest| rest.split(' ').next())
                    .unwrap_or("?")
                    .to_owned(),
                _ => "no answer".to_owned(),
            };
        tally.count(status.clone());
        if status == "200" {
            held.push(stream);
        } else {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
