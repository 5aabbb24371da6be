//! A real `redis-server` for tests (feature `test-support`): Debian's `redis-server` on a
//! Unix socket in a directory of its own, started ready and killed when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// A `redis-server` process.
pub struct RedisServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` (from `PATH`) and waits until it accepts connections.
    ///
    /// # Panics
    /// When `redis-server` is missing or does not start: the README's test command installs
    /// it (`apt-get install redis-server`).
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut server = Self { child: None, dir };
        server.restart().await;
        server
    }

    /// The address to give the store: `redis+unix://` and the socket's path.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The value of `key`, read with a connection of its own (what a test checks behind
    /// the server's back: who holds a lease, say).
    pub async fn get(&self, key: &str) -> Option<String> {
        let client = redis::Client::open(self.url()).expect("its address");
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .expect("a connection to it");
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut connection)
            .await
            .expect("GET")
    }

    /// The directory it keeps its files in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops it (SIGKILL), as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Stops it as an operator would (SIGTERM: it writes its append-only file and exits).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            let _ = child.wait().await;
        }
    }

    /// Starts it again (after [`RedisServer::kill`]) on the same socket and directory, with
    /// what its append-only file kept.
    pub async fn restart(&mut self) {
        self.kill().await;
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args(["--unixsocketperm", "700", "--dir"])
            .arg(self.dir.path())
            .args(["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect(
                "cannot run redis-server: install it (apt-get install redis-server), or run the README's test command, which does",
            );
        let stdout = child.stdout.take().expect("its output");
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(line))
                    if line
                        .to_ascii_lowercase()
                        .contains("ready to accept connections") =>
                {
                    break;
                }
                Ok(Some(_)) => {}
                other => panic!("redis-server ended before it was ready: {other:?}"),
            }
        }
        // What it logs from now on is read and dropped, so that it never waits on the pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }
}
