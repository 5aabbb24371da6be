//! The stdio transport: a server run as a child process, one JSON-RPC message per line on
//! its standard input and output (MCP's stdio transport). Its standard error goes to the
//! log, a line at a time, under the server's name.
//!
//! Closing follows the specification's order: standard input closed, then SIGTERM if the
//! server has not exited in time, then SIGKILL. A child whose handle is dropped without a
//! close is killed, never left behind.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

use crate::Error;

/// The longest line a server may send, in bytes (16 MiB): a longer one ends the connection,
/// since its answer cannot be read.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// The longest line of standard error logged; the rest is cut.
const MAX_STDERR_LINE: usize = 4096;

/// How long a server has to exit after its input closes, and again after SIGTERM.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// A server to run as a child process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// What its log lines are tagged with (`server`).
    pub name: String,
    /// The program, found on `PATH` unless it is a path.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables set for it, beside the inherited ones.
    pub env: Vec<(String, String)>,
    /// Its working directory; the client's when `None`.
    pub cwd: Option<PathBuf>,
}

impl Command {
    /// `program` with `args`, named `name`, in the client's environment and directory.
    pub fn new(
        name: impl Into<String>,
        program: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            name: name.into(),
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: None,
        }
    }

    /// The command line, for messages.
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A running server process.
pub(crate) struct Process {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: FramedRead<ChildStdout, LinesCodec>,
    name: String,
}

/// What the server sent next.
pub(crate) enum Incoming {
    /// One message.
    Text(String),
    /// The connection ended, and why.
    Ended(String),
}

impl Process {
    /// Starts `command`.
    pub(crate) fn spawn(command: &Command) -> Result<Self, Error> {
        let mut process = tokio::process::Command::new(&command.program);
        process
            .args(&command.args)
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &command.cwd {
            process.current_dir(dir);
        }
        let mut child = process
            .spawn()
            .map_err(|e| Error::Connect(format!("cannot start `{}`: {e}", command.display())))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(Error::Connect(format!(
                "`{}` started without its pipes",
                command.display()
            )));
        };
        let name = command.name.clone();
        tokio::spawn(log_stderr(stderr, name.clone(), child.id()));
        Ok(Self {
            child,
            stdin: Some(stdin),
            lines: FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE)),
            name,
        })
    }

    /// The next message; blank lines are skipped.
    pub(crate) async fn next(&mut self) -> Incoming {
        loop {
            match self.lines.next().await {
                Some(Ok(line)) if line.trim().is_empty() => continue,
                Some(Ok(line)) => return Incoming::Text(line),
                Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                    self.child.start_kill().ok();
                    return Incoming::Ended(format!(
                        "the server `{}` sent a message longer than {MAX_LINE} bytes",
                        self.name
                    ));
                }
                Some(Err(LinesCodecError::Io(e))) => {
                    return Incoming::Ended(format!("reading from `{}`: {e}", self.name));
                }
                None => return Incoming::Ended(self.exit_reason().await),
            }
        }
    }

    /// Why the server's output ended: its exit status, once it exited.
    async fn exit_reason(&mut self) -> String {
        match tokio::time::timeout(EXIT_GRACE, self.child.wait()).await {
            Ok(Ok(status)) => format!("the server `{}` exited ({status})", self.name),
            Ok(Err(e)) => format!("the server `{}` is gone: {e}", self.name),
            Err(_) => {
                self.child.start_kill().ok();
                format!(
                    "the server `{}` closed its output and was stopped",
                    self.name
                )
            }
        }
    }

    /// Sends one message, a line (JSON text has no raw line breaks).
    pub(crate) async fn send(&mut self, text: &str) -> Result<(), String> {
        let Some(stdin) = &mut self.stdin else {
            return Err("the server's input is closed".to_owned());
        };
        let mut line = Vec::with_capacity(text.len() + 1);
        line.extend_from_slice(text.as_bytes());
        line.push(b'\n');
        stdin
            .write_all(&line)
            .await
            .map_err(|e| format!("writing to `{}`: {e}", self.name))?;
        stdin
            .flush()
            .await
            .map_err(|e| format!("writing to `{}`: {e}", self.name))
    }

    /// Stops the server: its input closed, then SIGTERM, then SIGKILL, each after
    /// [`EXIT_GRACE`].
    pub(crate) async fn close(&mut self) {
        drop(self.stdin.take());
        if let Ok(Ok(status)) = tokio::time::timeout(EXIT_GRACE, self.child.wait()).await {
            tracing::debug!(server = %self.name, %status, "the server exited");
            return;
        }
        let pid = self.child.id().and_then(|pid| i32::try_from(pid).ok());
        if let Some(pid) = pid.and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            if let Ok(Ok(status)) = tokio::time::timeout(EXIT_GRACE, self.child.wait()).await {
                tracing::info!(server = %self.name, %status, "the server exited on SIGTERM");
                return;
            }
        }
        tracing::warn!(server = %self.name, "the server did not exit; killing it");
        let _ = self.child.kill().await;
    }
}

/// Logs the server's standard error a line at a time, each cut at [`MAX_STDERR_LINE`].
async fn log_stderr(stderr: tokio::process::ChildStderr, name: String, pid: Option<u32>) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Reads a line whatever its length, keeping only the start of a long one.
        let mut kept = 0;
        let mut ended = false;
        loop {
            let buffer = match reader.fill_buf().await {
                Ok(buffer) => buffer,
                Err(_) => return,
            };
            if buffer.is_empty() {
                ended = true;
                break;
            }
            let (chunk, found) = match buffer.iter().position(|&b| b == b'\n') {
                Some(at) => (&buffer[..at], Some(at + 1)),
                None => (buffer, None),
            };
            let room = MAX_STDERR_LINE.saturating_sub(kept);
            line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            kept += chunk.len();
            let used = found.unwrap_or(buffer.len());
            reader.consume(used);
            if found.is_some() {
                break;
            }
        }
        if kept > 0 {
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end();
            if kept > MAX_STDERR_LINE {
                tracing::info!(server = %name, pid, cut = kept - MAX_STDERR_LINE, "{text}");
            } else {
                tracing::info!(server = %name, pid, "{text}");
            }
        }
        if ended {
            return;
        }
    }
}
