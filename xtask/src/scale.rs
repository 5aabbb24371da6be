//! A scale-out deployment on this machine for the benchmarks: Debian's `redis-server` on a
//! Unix socket, N instances of the release server on it, and `haproxy` round-robin in front
//! of them (the same shape as the test harness in `crates/mcp-server/tests/it/balanced.rs`).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::spawn_listening;

/// Redis, the instances and the balancer, stopped when dropped.
pub(crate) struct Cluster {
    children: Vec<Child>,
    /// The balancer's address.
    pub(crate) address: String,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Cluster {
    /// Starts Redis, `instances` servers (`server` is the binary) and HAProxy; returns once
    /// the balancer answers `/readyz`.
    pub(crate) fn start(server: &Path, instances: usize) -> anyhow::Result<Self> {
        crate::ci::ensure_services()?;
        let dir = tempfile::tempdir()?;
        let (redis, url) = start_redis(dir.path(), "everysec")?;
        let mut cluster = Self {
            children: vec![redis],
            address: String::new(),
            _dir: dir,
        };
        let mut servers = String::new();
        for n in 0..instances {
            let name = format!("i{n}");
            let (child, address) = spawn_listening(
                Command::new(server)
                    .args([
                        "--listen",
                        "127.0.0.1:0",
                        "--store",
                        &url,
                        "--instance-id",
                        &name,
                    ])
                    .stderr(Stdio::null()),
            )?;
            cluster.children.push(child);
            servers.push_str(&format!(
                "    server {name} {address} check inter 500ms fall 2 rise 1\n"
            ));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        cluster.address = format!("127.0.0.1:{port}");
        let config = cluster._dir.path().join("haproxy.cfg");
        std::fs::write(
            &config,
            format!(
                "global\n    maxconn 4000\n\
                 defaults\n    mode http\n    timeout connect 2s\n    timeout client 60s\n    \
                 timeout server 60s\n\
                 frontend mcp\n    bind {}\n    default_backend instances\n\
                 backend instances\n    balance roundrobin\n    option httpchk\n    \
                 http-check send meth GET uri /readyz hdr Host 127.0.0.1\n{servers}",
                cluster.address
            ),
        )?;
        let haproxy = Command::new("haproxy")
            .arg("-f")
            .arg(&config)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start haproxy")?;
        cluster.children.push(haproxy);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready(&cluster.address) {
            if Instant::now() > deadline {
                bail!("the balancer at {} never got ready", cluster.address);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(cluster)
    }
}

/// Debian's `redis-server` on a Unix socket in `dir` (its data there too), with its AOF
/// fsync'd as `appendfsync` says: `always` (before each write is acknowledged) or `everysec`
/// (the documented deployment's; see docs/scale-out.md). Returns it once it is ready, and its
/// URL.
pub(crate) fn start_redis(dir: &Path, appendfsync: &str) -> anyhow::Result<(Child, String)> {
    let socket = dir.join("redis.sock");
    let mut redis = Command::new("redis-server")
        .args(["--port", "0", "--unixsocket"])
        .arg(&socket)
        .args([
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            appendfsync,
            "--dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start redis-server")?;
    let mut lines = BufReader::new(redis.stdout.take().context("its output")?).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.to_ascii_lowercase().contains("ready to accept") => break,
            Some(Ok(_)) => {}
            _ => bail!("redis-server ended before it was ready"),
        }
    }
    // What it logs from now on is read and dropped, so that it never waits on the pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Ok((redis, format!("redis+unix://{}", socket.display())))
}

/// Whether `address` answers `GET /readyz` with 200.
fn ready(address: &str) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return false;
    };
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}
