//! `mcp-bench tasks`: 2026-07-28 tasks over Streamable HTTP, closed loop. Each worker
//! creates a `process_batch` task, polls `tasks/get` until it ends, and checks its result:
//! completed, every item processed, and the same checksum as every other task of the run
//! (they all do the same work). Anything else is an error, and any error fails the run. What
//! a task costs the server beyond its work is the durable record: created, written as it
//! changes, read by every poll.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(clap::Args, Clone)]
pub(crate) struct Tasks {
    /// `http://host:port/path` of the server.
    #[arg(long)]
    url: String,
    /// Workers, each on a connection of its own with one task at a time.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// How long to measure, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// How long to run before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Items of each task's batch.
    #[arg(long, default_value_t = 100)]
    count: u64,
    /// Work units per item.
    #[arg(long, default_value_t = 10)]
    cost: u32,
}

/// The `_meta` of a 2026-07-28 request from a client that takes tasks.
fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {
            "extensions": {"io.modelcontextprotocol/tasks": {}}
        },
        "io.modelcontextprotocol/clientInfo": {"name": "mcp-bench", "version": "1"},
    })
}

/// What the workers record.
struct Shared {
    latency: Mutex<Histogram<u64>>,
    polls: AtomicU64,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
    /// The checksum every task must end with (the first one's).
    checksum: std::sync::OnceLock<String>,
    start: Instant,
    end: Instant,
}

impl Shared {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(what);
    }
}

pub(crate) async fn run(args: Tasks) -> anyhow::Result<Value> {
    let start = Instant::now() + Duration::from_secs_f64(args.warmup);
    let end = start + Duration::from_secs_f64(args.seconds);
    let shared = Arc::new(Shared {
        latency: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3)?),
        polls: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        first_error: std::sync::Mutex::new(None),
        checksum: std::sync::OnceLock::new(),
        start,
        end,
    });
    let mut workers = Vec::new();
    for _ in 0..args.connections {
        let (args, shared) = (args.clone(), Arc::clone(&shared));
        workers.push(tokio::spawn(async move { worker(&args, &shared).await }));
    }
    for worker in workers {
        worker.await.context("a worker panicked")??;
    }
    let errors = shared.errors.load(Ordering::Relaxed);
    if errors > 0 {
        let first = shared.first_error.lock().unwrap_or_else(|e| e.into_inner());
        bail!(
            "{errors} tasks went wrong; the first: {}",
            first.as_deref().unwrap_or("?")
        );
    }
    let latency = shared.latency.lock().await;
    let tasks = latency.len();
    if tasks == 0 {
        bail!("no task ended within the measurement");
    }
    Ok(json!({
        "tasks": tasks,
        "errors": errors,
        "seconds": args.seconds,
        "tasksPerSecond": tasks as f64 / args.seconds,
        "p50Us": latency.value_at_quantile(0.5),
        "p99Us": latency.value_at_quantile(0.99),
        "maxUs": latency.max(),
        "pollsPerTask": shared.polls.load(Ordering::Relaxed) as f64 / tasks as f64,
        "connections": args.connections,
        "count": args.count,
        "cost": args.cost,
    }))
}

/// One connection: tasks one after another until the measurement ends.
async fn worker(args: &Tasks, shared: &Shared) -> anyhow::Result<()> {
    let mut client = Client::connect(&args.url).await?;
    while Instant::now() < shared.end {
        let started = Instant::now();
        match one_task(&mut client, args, shared).await {
            Ok(polls) => {
                if started >= shared.start {
                    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    let _ = shared.latency.lock().await.record(micros.max(1));
                    shared.polls.fetch_add(polls, Ordering::Relaxed);
                }
            }
            Err(e) => {
                shared.error(format!("{e:#}"));
                // The connection may be what broke.
                client = Client::connect(&args.url).await?;
            }
        }
    }
    Ok(())
}

/// Creates a task, polls it to its end and checks its result; how many polls it took.
async fn one_task(client: &mut Client, args: &Tasks, shared: &Shared) -> anyhow::Result<u64> {
    let arguments = json!({"count": args.count, "cost": args.cost});
    let created = client
        .request(
            "tools/call",
            "process_batch",
            json!({"name": "process_batch", "arguments": arguments}),
        )
        .await?;
    if created["resultType"] != "task" {
        bail!("tools/call did not make a task: {created}");
    }
    let id = created["taskId"]
        .as_str()
        .context("a task without an id")?
        .to_owned();
    let mut polls = 0u64;
    let task = loop {
        let task = client
            .request("tasks/get", &id, json!({"taskId": id}))
            .await?;
        polls += 1;
        match task["status"].as_str() {
            Some("working") => {}
            Some(_) => break task,
            None => bail!("tasks/get answered no status: {task}"),
        }
    };
    if task["status"] != "completed" {
        bail!("task {id} ended {}: {task}", task["status"]);
    }
    let summary = &task["result"]["structuredContent"];
    if summary["processed"].as_u64() != Some(args.count) {
        bail!("task {id} processed the wrong count: {summary}");
    }
    let checksum = summary["checksum"]
        .as_str()
        .context("a result without a checksum")?;
    let expected = shared.checksum.get_or_init(|| checksum.to_owned());
    if checksum != expected {
        bail!("task {id} ended with checksum {checksum}, others with {expected}");
    }
    Ok(polls)
}

/// A keep-alive HTTP/1.1 connection that posts 2026-07-28 requests.
struct Client {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: String,
    path: String,
    next_id: u64,
}

impl Client {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        let uri: hyper::Uri = url.parse()?;
        let authority = uri.authority().context("no host")?.to_string();
        let tcp = tokio::net::TcpStream::connect(authority.as_str()).await?;
        tcp.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            authority,
            path: uri.path().to_owned(),
            next_id: 1,
        })
    }

    /// POSTs `method` (its `Mcp-Name` header: `name`) and returns its result; an error
    /// answer, or an answer to another request, is an error.
    async fn request(
        &mut self,
        method: &str,
        name: &str,
        mut params: Value,
    ) -> anyhow::Result<Value> {
        params["_meta"] = meta();
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let request = hyper::Request::post(self.path.as_str())
            .header("host", self.authority.as_str())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method)
            .header("mcp-name", name)
            .body(Full::new(Bytes::from(body.to_string())))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        // An SSE answer carries the JSON after `data:`; its last message is the answer.
        let json = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .rfind(|d| !d.is_empty())
            .unwrap_or(&text);
        let answer: Value = serde_json::from_str(json)
            .with_context(|| format!("{method}: HTTP {status}, not JSON: {text}"))?;
        if answer["id"] != id {
            bail!("{method}: an answer to another request: {answer}");
        }
        match answer.get("result") {
            Some(result) => Ok(result.clone()),
            None => bail!("{method}: {answer}"),
        }
    }
}
