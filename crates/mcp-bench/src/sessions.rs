//! `mcp-bench sessions`: capacity and broadcast fan-out. Opens N initialized WebSocket
//! sessions and holds them open (each read by its own task, so heartbeats are answered as a
//! real client would), reads the server's resident memory before, half way and after (the
//! second half's growth is the marginal cost of a session), measures `ping`
//! round trips while they are all open, and then, given the admin URL, times broadcasts
//! until the last session has each one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::answer;

#[derive(clap::Args, Clone)]
pub(crate) struct Sessions {
    /// `ws://host:port/path` of the server.
    #[arg(long)]
    url: String,
    /// Sessions to open and hold.
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Sessions being opened at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The server's process id, to read its resident memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// `ping` round trips to time while all sessions are open, spread over them.
    #[arg(long, default_value_t = 2_000)]
    pings: usize,
    /// `http://host:port/admin/broadcast`: time this many broadcasts (`--runs`).
    #[arg(long)]
    broadcast_url: Option<String>,
    /// Broadcasts to time.
    #[arg(long, default_value_t = 20)]
    runs: usize,
}

/// Client source addresses on loopback (127.0.0.0/8): one per this many sessions. A source
/// address has about 28,000 ephemeral ports towards one server port, and finding a free one
/// gets slow long before they run out (the previous run's ports wait in TIME_WAIT).
const SESSIONS_PER_SOURCE: usize = 1_000;

/// What a held session is asked to do.
enum Command {
    /// Send `ping` and say when the answer came.
    Ping(oneshot::Sender<Instant>),
}

/// A broadcast a session saw: which run, and when.
type Seen = (usize, Instant);

pub(crate) async fn run(args: Sessions) -> anyhow::Result<Value> {
    let rss_before = args.server_pid.and_then(rss_kib);
    let (seen_tx, mut seen_rx) = mpsc::channel::<Seen>(args.sessions.max(1));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(args.sessions);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    let mut opening = tokio::task::JoinSet::new();
    let half = args.sessions / 2;
    let mut rss_half = None;
    for index in 0..args.sessions {
        if index == half && half > 0 {
            // The first half open: memory from here on is what each further session costs,
            // without what establishing the first ones left behind in the allocator.
            while let Some(done) = opening.join_next().await {
                handles.push(done??);
            }
            rss_half = args.server_pid.and_then(rss_kib);
        }
        let permit = Arc::clone(&semaphore).acquire_owned().await?;
        let url = args.url.clone();
        let seen = seen_tx.clone();
        let source = source_address(index / SESSIONS_PER_SOURCE);
        opening.spawn(async move {
            let socket = open(&url, source).await;
            drop(permit);
            socket.map(|socket| hold(socket, seen))
        });
        while let Some(done) = opening.try_join_next() {
            handles.push(done??);
        }
    }
    while let Some(done) = opening.join_next().await {
        handles.push(done??);
    }
    drop(seen_tx);
    let establish = started.elapsed();
    let rss_after = args.server_pid.and_then(rss_kib);

    // Ping round trips, one at a time, spread over every session.
    let mut pings = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for i in 0..args.pings {
        let session = &handles[i * handles.len() / args.pings.max(1) % handles.len()];
        let (tx, rx) = oneshot::channel();
        let sent = Instant::now();
        session
            .send(Command::Ping(tx))
            .await
            .context("a held session ended")?;
        let came = tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .context("a ping had no answer in 10 s")??;
        pings.record(micros(came - sent))?;
    }

    let mut summary = json!({
        "sessions": handles.len(),
        "establishSeconds": establish.as_secs_f64(),
        "sessionsPerSecond": handles.len() as f64 / establish.as_secs_f64(),
        "serverRssBeforeKiB": rss_before,
        "serverRssAfterKiB": rss_after,
        "serverBytesPerSession": match (rss_before, rss_after) {
            (Some(b), Some(a)) => json!((a.saturating_sub(b) * 1024) as f64 / handles.len().max(1) as f64),
            _ => Value::Null,
        },
        "serverRssHalfKiB": rss_half,
        "serverBytesPerSessionMarginal": match (rss_half, rss_after) {
            (Some(h), Some(a)) => json!((a.saturating_sub(h) * 1024) as f64 / (handles.len() - half).max(1) as f64),
            _ => Value::Null,
        },
        "pingP50Us": pings.value_at_quantile(0.5),
        "pingP99Us": pings.value_at_quantile(0.99),
        "pingMaxUs": pings.max(),
    });
    if let Some(url) = &args.broadcast_url {
        let server_cpu = args.server_pid.and_then(cpu_seconds);
        let client_cpu = cpu_seconds(std::process::id());
        let mut result = fanout(url, args.runs, handles.len(), &mut seen_rx).await?;
        // Where the time goes: CPU per notification delivered, in the server and here.
        let deliveries = (args.runs * handles.len()).max(1) as f64;
        let per_delivery = |before: Option<f64>, pid: Option<u32>| {
            Some((cpu_seconds(pid?)? - before?) * 1e6 / deliveries)
        };
        result["serverCpuUsPerDelivery"] = json!(per_delivery(server_cpu, args.server_pid));
        result["clientCpuUsPerDelivery"] =
            json!(per_delivery(client_cpu, Some(std::process::id())));
        summary["fanout"] = result;
    }
    drop(handles);
    Ok(summary)
}

/// Times `runs` broadcasts, one after another: from just before the POST until the last
/// session has the notification.
async fn fanout(
    url: &str,
    runs: usize,
    sessions: usize,
    seen: &mut mpsc::Receiver<Seen>,
) -> anyhow::Result<Value> {
    let mut last = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut each = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut missing = 0usize;
    for run in 0..runs {
        let sent = Instant::now();
        let (status, body) = crate::post_json(
            url,
            &json!({"message": format!("mcp-bench fanout {run}"), "level": "warning"}),
        )
        .await?;
        if status != 200 {
            bail!("the broadcast was refused: {status} {body}");
        }
        let mut arrived = 0usize;
        let mut latest = sent;
        let deadline = sent + Duration::from_secs(30);
        while arrived < sessions {
            match tokio::time::timeout_at(deadline.into(), seen.recv()).await {
                Ok(Some((r, at))) if r == run => {
                    arrived += 1;
                    latest = latest.max(at);
                    each.record(micros(at - sent))?;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        missing += sessions - arrived;
        last.record(micros(latest - sent))?;
    }
    Ok(json!({
        "runs": runs,
        "lastP50Us": last.value_at_quantile(0.5),
        "lastP99Us": last.value_at_quantile(0.99),
        "lastMaxUs": last.max(),
        "eachP50Us": each.value_at_quantile(0.5),
        "eachP99Us": each.value_at_quantile(0.99),
        "missing": missing,
    }))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Opens one initialized session from `source`.
pub(crate) async fn open(
    url: &str,
    source: Ipv4Addr,
) -> anyhow::Result<WebSocketStream<TcpStream>> {
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mcp".parse()?);
    let uri = request.uri();
    let target: SocketAddr = tokio::net::lookup_host(format!(
        "{}:{}",
        uri.host().context("no host")?,
        uri.port_u16().unwrap_or(80)
    ))
    .await?
    .next()
    .context("the host has no address")?;
    let tcp = tokio::net::TcpSocket::new_v4()?;
    if target.ip().is_loopback() {
        tcp.bind(SocketAddr::new(IpAddr::V4(source), 0))
            .with_context(|| format!("cannot bind {source}"))?;
    }
    let stream = tcp
        .connect(target)
        .await
        .with_context(|| format!("cannot connect to {target} from {source}"))?;
    stream.set_nodelay(true)?;
    // Small buffers: a held client should not need 128 KiB of them.
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (mut socket, _) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
    crate::handshake(&mut socket).await?;
    Ok(socket)
}

/// Holds a session open on its own task: answers heartbeats (tungstenite does, while the
/// stream is read), reports broadcasts, and sends pings when asked.
fn hold(socket: WebSocketStream<TcpStream>, seen: mpsc::Sender<Seen>) -> mpsc::Sender<Command> {
    let (tx, mut commands) = mpsc::channel::<Command>(1);
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    tokio::spawn(async move {
        let (mut sink, mut stream) = socket.split();
        let mut waiting: Option<(u64, oneshot::Sender<Instant>)> = None;
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Ping(reply)) => {
                        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed) + 1_000_000;
                        let ping = json!({"jsonrpc": "2.0", "id": id, "method": "ping"});
                        if sink.send(Frame::text(ping.to_string())).await.is_err() {
                            return;
                        }
                        waiting = Some((id, reply));
                    }
                    None => {
                        let _ = sink.close().await;
                        return;
                    }
                },
                frame = stream.next() => {
                    let at = Instant::now();
                    let Some(Ok(Frame::Text(text))) = frame else {
                        if matches!(frame, None | Some(Err(_))) { return; }
                        continue;
                    };
                    if let Some(run) = text
                        .find("mcp-bench fanout ")
                        .and_then(|i| text[i + 17..].split('"').next()?.parse::<usize>().ok())
                    {
                        let _ = seen.send((run, at)).await;
                    } else if let Some((id, _)) = answer(&text)
                        && waiting.as_ref().is_some_and(|(w, _)| *w == id)
                        && let Some((_, reply)) = waiting.take()
                    {
                        let _ = reply.send(at);
                    }
                }
            }
        }
    });
    tx
}

/// The CPU time a process has used (user and system), in seconds, from /proc (Linux).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports in clock ticks of 1/100 s (USER_HZ) on every common architecture.
    Some(ticks as f64 / 100.0)
}

/// A process's resident memory in KiB, from /proc (Linux).
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The `n`th loopback source address: 127.0.0.1, 127.0.0.2, ... over all of 127.0.0.0/8.
fn source_address(n: usize) -> Ipv4Addr {
    let n = (n as u32 % 0x00ff_fffe) + 1;
    Ipv4Addr::from(0x7f00_0000 | n)
}
