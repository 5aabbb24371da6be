//! What the tests of every crate share: the real server on 127.0.0.1 port 0
//! ([`TestServer`]), a TCP relay that cuts connections as a network failure would
//! ([`Relay`]), plain HTTP/1.1 exchanges, and waiting for a metric to reach a value.
//!
//! A test-only crate: nothing of the product depends on it.

#![warn(missing_docs)]
// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use mcp_server::{Config, Server};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// A guard against a hung test, never a synchronization device: every wait ends on an event,
/// and this only turns "forever" into a failure.
pub const HANG: Duration = Duration::from_secs(20);

/// The real server, serving on 127.0.0.1 with an OS-assigned port.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), mcp_server::Error>>>,
}

impl TestServer {
    /// The server on its default configuration and built-in tools.
    pub async fn start() -> Self {
        Self::with_config(Config::default()).await
    }

    /// The server on `config`, with its built-in tools.
    pub async fn with_config(config: Config) -> Self {
        Self::serving(Server::new().config(config).builtin_tools()).await
    }

    /// `server`, serving.
    pub async fn serving(server: Server) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `ws://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Shuts the server down and waits until `serve` has returned.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().unwrap();
        tokio::time::timeout(HANG, task)
            .await
            .expect("the server did not shut down")
            .unwrap()
            .unwrap();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Sends one HTTP/1.1 request to `addr` (`head` without Host and Connection, then `body`) on
/// a new connection and reads the whole response: the status code, the head and the body.
pub async fn exchange(addr: SocketAddr, head: &str, body: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("{head}\r\nHost: {addr}\r\nConnection: close\r\n\r\n{body}");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(HANG, stream.read_to_string(&mut raw))
        .await
        .expect("HTTP response hung")
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

/// The server's metrics, as Prometheus text.
pub async fn metrics(addr: SocketAddr) -> String {
    let (status, _, body) = exchange(addr, "GET /metrics HTTP/1.1", "").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of an unlabelled metric.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing from:\n{text}"))
}

/// Waits until an unlabelled metric has `value`. The metric changes when the server finishes
/// its clean-up (a cancelled call that stopped, a session that ended), an event the test
/// cannot otherwise observe; [`HANG`] turns a clean-up that never happens into a failure.
pub async fn wait_for_metric(addr: SocketAddr, name: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let text = metrics(addr).await;
        if metric(&text, name) == value {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never reached {value}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP relay that can cut every connection through it, as a network failure would.
pub struct Relay {
    /// Where it listens.
    pub addr: SocketAddr,
    cut: watch::Sender<u64>,
}

impl Relay {
    /// A relay to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = watch::channel(0u64);
        let cuts = cut.clone();
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = listener.accept().await.unwrap();
                let mut cut = cuts.subscribe();
                cut.mark_unchanged();
                tokio::spawn(async move {
                    let mut outbound = TcpStream::connect(upstream).await.unwrap();
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { addr, cut }
    }

    /// Cuts every connection open through the relay now.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

/// The python of a virtualenv with the official MCP Python SDK: `MCP_TEST_PYTHON`, or the
/// one `cargo xtask ci` installs (target/py-venv). Panics, saying how to get one, when
/// there is none: the tests of real upstream servers cannot run without it.
pub fn sdk_python() -> std::path::PathBuf {
    if let Some(python) = std::env::var_os("MCP_TEST_PYTHON") {
        return python.into();
    }
    let python = target_dir().join("py-venv/bin/python");
    assert!(
        python.exists(),
        "no Python with the MCP SDK at {}: run `cargo xtask ci` once (it installs it), or set MCP_TEST_PYTHON",
        python.display()
    );
    python
}

/// The official reference server, `@modelcontextprotocol/server-everything`, installed
/// from npm by `cargo xtask ci` (into target/upstreams, from tests/upstreams' lockfile;
/// `MCP_TEST_UPSTREAMS` names another folder): its program, run with `node`. Panics, saying
/// how to get it, when it is not there.
pub fn server_everything() -> std::path::PathBuf {
    let folder = std::env::var_os("MCP_TEST_UPSTREAMS")
        .map_or_else(|| target_dir().join("upstreams"), Into::into);
    let program = folder.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        program.exists(),
        "no @modelcontextprotocol/server-everything at {}: run `cargo xtask ci` once (it installs it), or set MCP_TEST_UPSTREAMS",
        program.display()
    );
    program
}

/// The workspace's target folder.
fn target_dir() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into)
}

/// A file of the repository's tests/ folder, by its path inside it.
pub fn tests_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests")
        .join(path)
}
