//! Transcript tests: client lines in, server lines out, from files under `test_data/`.
//!
//! A transcript is a sequence of blocks. Lines starting with `->` are sent to the session
//! one after another without waiting; the `<-` lines after them are everything the session
//! sends until it has nothing left to do. Other directives:
//! - `# ...` is a comment;
//! - `!page_size N` sets the `tools/list` page size (before the first message);
//! - `!close` ends the client's input; the session's remaining output follows as `<-` lines;
//! - `!drop` drops the connection: its input ends and its output is no longer read (a
//!   resumable session waits to be resumed);
//! - `!connect` opens a new connection, to which the following `->` lines go;
//! - `!restart` stops the server as a kill -9 would (every session dropped where it stands,
//!   nothing flushed) and starts a new one on the same store; `!connect` follows.
//!
//! The `<-` lines right before a `!drop` or a `!restart` are what the session sent before it:
//! everything runs until it waits, but the clock moves by a millisecond at most, so calls that
//! wait on a timer are still running when the connection drops or the server stops.
//!
//! A session id the server announces (`mcpSessionId`) is written `$SESSION` in `<-` lines,
//! and `$SESSION` in a `->` line is replaced by the last one announced, so that a resume can
//! name the session it resumes.
//!
//! The test runs on a paused tokio clock, so "nothing left to do" is decided by the runtime
//! going idle (the clock then jumps to the next timer), not by waiting: a `sleep` tool call
//! of 200 ms finishes after one of 100 ms, deterministically and instantly.
//! Outputs are compared as JSON with sorted keys. `UPDATE_EXPECT=1 cargo test` rewrites the
//! `<-` lines from the actual output.
//!
//! What the session says each message answers (the [`Regarding`] a transport routes by) is
//! checked against the message itself; the refusal of a duplicate id, which says so, is
//! written `<- duplicate {...}`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mcp_protocol::methods;
use mcp_tools::ToolRegistry;
use serde_json::{Value, json};

use crate::{
    Answered, Hub, MemoryStore, Outbound, OutboundReceiver, PeerError, Regarding, ServerConfig,
    SessionEnd, SessionStore,
};

/// One line of a transcript file.
#[derive(Debug, Clone)]
enum Line {
    Comment(String),
    PageSize(usize),
    Send(String),
    Close,
    Drop,
    Connect,
    Restart,
    Expect(String),
}

fn parse_transcript(text: &str) -> Vec<Line> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            if let Some(rest) = l.strip_prefix("-> ") {
                Line::Send(rest.to_owned())
            } else if let Some(rest) = l.strip_prefix("<- ") {
                Line::Expect(rest.to_owned())
            } else if l == "!close" {
                Line::Close
            } else if l == "!drop" {
                Line::Drop
            } else if l == "!connect" {
                Line::Connect
            } else if l == "!restart" {
                Line::Restart
            } else if let Some(n) = l.strip_prefix("!page_size ") {
                Line::PageSize(n.trim().parse().expect("!page_size takes a number"))
            } else if l.starts_with('#') {
                Line::Comment(l.to_owned())
            } else {
                panic!("unrecognized transcript line: {l}")
            }
        })
        .collect()
}

/// Canonical form of one output item: JSON with sorted keys (behind `duplicate ` for the
/// refusal of a duplicate id), or `close <reason>`. An announced session id is kept in
/// `session` and written `$SESSION`.
fn canonical((item, regarding): (Outbound, Regarding), session: &mut Option<String>) -> String {
    match item {
        Outbound::Text(text) => {
            let mut value: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("the session sent invalid JSON ({e}): {text}"));
            let duplicate = check_regarding(&value, &regarding);
            if let Some(id) = value.get_mut("mcpSessionId")
                && let Some(text) = id.as_str()
            {
                *session = Some(text.to_owned());
                *id = Value::from(SESSION);
            }
            // Task ids are random too.
            if let Some(task) = value.pointer_mut("/params/data/task")
                && task.is_string()
            {
                *task = Value::from("$TASK");
            }
            match duplicate {
                true => format!("duplicate {value}"),
                false => value.to_string(),
            }
        }
        Outbound::Close(reason) => format!("close {reason:?}"),
    }
}

/// Checks that `regarding` says what `message` answers; returns whether it says that the
/// message refuses a duplicate id.
fn check_regarding(message: &Value, regarding: &Regarding) -> bool {
    let id = |m: &Value| mcp_protocol::RequestId::from_value(m.get("id")?);
    let answers = |m: &Value| m.get("method").is_none() && id(m).is_some();
    let (expected, duplicate) = match (message, regarding) {
        (_, Regarding::Restored) => return false,
        (Value::Array(items), Regarding::Batch(answered)) => {
            let ids: Vec<_> = items.iter().filter_map(id).collect();
            let got: Vec<_> = answered.iter().map(|a| a.id.clone()).collect();
            assert_eq!(got, ids, "a batch regards its answers' ids: {message}");
            assert!(answered.iter().all(|a| !a.duplicate), "{message}");
            return false;
        }
        (m, Regarding::Answer(a)) if answers(m) => (
            Regarding::Answer(Answered::to(id(m).unwrap_or(a.id.clone()))),
            a.duplicate,
        ),
        (m, _) if m["method"] == methods::PROGRESS => {
            let token = mcp_protocol::RequestId::from_value(&m["params"]["progressToken"]);
            (token.map_or(Regarding::Other, Regarding::Progress), false)
        }
        _ => (Regarding::Other, false),
    };
    let got = match regarding {
        Regarding::Answer(a) => Regarding::Answer(Answered::to(a.id.clone())),
        other => other.clone(),
    };
    assert_eq!(got, expected, "what the session says it answers: {message}");
    duplicate
}

fn canonical_expected(line: &str) -> String {
    let (prefix, json) = match line.strip_prefix("duplicate ") {
        Some(rest) => ("duplicate ", rest),
        None => ("", line),
    };
    match serde_json::from_str::<Value>(json) {
        Ok(value) => format!("{prefix}{value}"),
        Err(_) => line.to_owned(),
    }
}

/// How an announced session id is written in transcripts.
const SESSION: &str = "$SESSION";

/// Everything the session sends until the runtime has nothing left to do.
async fn drain(rx: &mut OutboundReceiver, session: &mut Option<String>) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    loop {
        // On the paused clock this timeout fires only once every task is idle.
        match tokio::time::timeout(Duration::from_secs(24 * 3600), rx.recv_with_regarding()).await {
            Ok(Some(item)) => out.push(canonical(item, session)),
            Ok(None) => return (out, true),
            Err(_) => return (out, false),
        }
    }
}

/// What the session sends until the runtime has nothing left to do at this instant: the
/// clock moves by a millisecond at most, so calls that wait on a timer are still running.
async fn settle(rx: &mut OutboundReceiver, session: &mut Option<String>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(Some(item)) =
        tokio::time::timeout(Duration::from_millis(1), rx.recv_with_regarding()).await
    {
        out.push(canonical(item, session));
    }
    out
}

/// A timeout longer than any transcript's quiescence wait, so that only the timers a
/// transcript exercises on purpose can fire.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

async fn run_transcript(lines: &[Line]) -> Vec<Line> {
    let mut config = ServerConfig {
        init_timeout: NEVER,
        idle_timeout: NEVER,
        call_timeout: NEVER,
        ..ServerConfig::default()
    };
    for line in lines {
        if let Line::PageSize(n) = line {
            config.page_size = *n;
        }
    }
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::default());
    // Each server reaches the store through a line of its own, cut when it "dies".
    let start = |config: &ServerConfig| {
        let line = Arc::new(StoreLine::to(Arc::clone(&store)));
        let hub = Hub::builder(config.clone())
            .tools(ToolRegistry::builtin(&mcp_tools::ToolsConfig::default()))
            .store(Arc::clone(&line) as Arc<dyn SessionStore>)
            .build();
        (hub, line)
    };
    let (mut server, mut line) = start(&config);
    let mut connection = Some(Connection::open(&server));
    let mut sessions = Vec::new();
    let mut session_id: Option<String> = None;
    let directives = lines
        .iter()
        .any(|l| matches!(l, Line::Drop | Line::Connect | Line::Restart));

    let mut actual = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        match &lines[i] {
            Line::Expect(_) => {}
            Line::Comment(_) | Line::PageSize(_) => actual.push(lines[i].clone()),
            Line::Drop => {
                actual.push(Line::Drop);
                let dropped = connection.take().expect("!drop without a connection");
                sessions.push(dropped.run);
            }
            Line::Connect => {
                actual.push(Line::Connect);
                if let Some(previous) = connection.replace(Connection::open(&server)) {
                    sessions.push(previous.run);
                }
            }
            Line::Restart => {
                actual.push(Line::Restart);
                // As a kill -9: the dead server writes nothing more, and everything it ran
                // (sessions, tasks) stops where it stands.
                line.cut();
                server.shutdown_token().cancel();
                sessions.extend(connection.take().map(|c| c.run));
                for run in sessions.drain(..) {
                    run.abort();
                    let _ = run.await;
                }
                (server, line) = start(&config);
                server.recover_tasks().await.expect("recover the tasks");
            }
            Line::Send(_) | Line::Close => {
                let c = connection.as_mut().expect("input without a connection");
                // Send every consecutive input line, then collect what comes back.
                while let Some(line @ (Line::Send(_) | Line::Close)) = lines.get(i) {
                    actual.push(line.clone());
                    match line {
                        Line::Send(text) => {
                            let text = match &session_id {
                                Some(id) => text.replace(SESSION, id.as_str()),
                                None => text.clone(),
                            };
                            c.input
                                .as_ref()
                                .expect("input after !close")
                                .send(text)
                                .await
                                .expect("session stopped reading");
                        }
                        _ => c.input = None,
                    }
                    i += 1;
                }
                let next = lines[i..]
                    .iter()
                    .find(|l| !matches!(l, Line::Comment(_) | Line::Expect(_)));
                let out = if matches!(next, Some(Line::Drop | Line::Restart)) {
                    settle(&mut c.output, &mut session_id).await
                } else {
                    drain(&mut c.output, &mut session_id).await.0
                };
                actual.extend(out.into_iter().map(Line::Expect));
                continue;
            }
        }
        i += 1;
    }
    if let Some(mut last) = connection {
        last.input = None;
        let (rest, closed) = drain(&mut last.output, &mut session_id).await;
        assert!(
            rest.is_empty(),
            "output after the end of the transcript: {rest:?}"
        );
        assert!(closed, "the session did not end when its input closed");
        let end = last.run.await.unwrap();
        if !directives {
            assert_eq!(end, SessionEnd::InputClosed);
        }
    }
    for run in sessions {
        // Resumable sessions without a connection end when their grace period passes.
        run.await.unwrap();
    }
    drop(server);
    actual
}

/// One connection of a transcript: its input, its output, and its session's task.
struct Connection {
    input: Option<crate::InboundSender>,
    output: OutboundReceiver,
    run: tokio::task::JoinHandle<SessionEnd>,
}

impl Connection {
    fn open(server: &Hub) -> Self {
        let (input, in_rx) = crate::inbound::channel(64);
        let (session, output) = server.open_session();
        Self {
            input: Some(input),
            output,
            run: tokio::spawn(session.run(in_rx)),
        }
    }
}

fn render(lines: &[Line]) -> String {
    let mut s = String::new();
    for line in lines {
        match line {
            Line::Comment(c) => writeln!(s, "{c}"),
            Line::PageSize(n) => writeln!(s, "!page_size {n}"),
            Line::Send(t) => writeln!(s, "-> {t}"),
            Line::Close => writeln!(s, "!close"),
            Line::Drop => writeln!(s, "!drop"),
            Line::Connect => writeln!(s, "!connect"),
            Line::Restart => writeln!(s, "!restart"),
            Line::Expect(t) => writeln!(s, "<- {t}"),
        }
        .unwrap();
    }
    s
}

fn normalized(lines: &[Line]) -> Vec<String> {
    lines
        .iter()
        .map(|l| match l {
            Line::Expect(t) => format!("<- {}", canonical_expected(t)),
            other => render(std::slice::from_ref(other)).trim_end().to_owned(),
        })
        .collect()
}

fn test_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data")
}

#[tokio::test(start_paused = true)]
async fn transcripts() {
    let mut files: Vec<_> = std::fs::read_dir(test_data())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "transcript"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "transcripts are missing from {}",
        test_data().display()
    );
    let bless = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failures = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = parse_transcript(&text);
        let actual = run_transcript(&expected).await;
        if normalized(&expected) != normalized(&actual) {
            if bless {
                std::fs::write(&file, render(&actual)).unwrap();
            } else {
                failures.push(format!(
                    "{}:\n--- expected\n{}\n--- actual\n{}",
                    file.display(),
                    normalized(&expected).join("\n"),
                    normalized(&actual).join("\n")
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "transcripts differ (re-bless with UPDATE_EXPECT=1 after checking the output):\n\n{}",
        failures.join("\n\n")
    );
}

/// Starts an initialized session and returns its channels.
async fn initialized() -> (
    Hub,
    crate::Peer,
    crate::InboundSender,
    OutboundReceiver,
    tokio::task::JoinHandle<SessionEnd>,
) {
    let server = Hub::new(
        ServerConfig::default(),
        ToolRegistry::builtin(&mcp_tools::ToolsConfig::default()),
    );
    let (in_tx, in_rx) = crate::inbound::channel(16);
    let (session, mut out_rx) = server.open_session();
    let peer = session.peer();
    let run = tokio::spawn(session.run(in_rx));
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    in_tx.send(init.to_string()).await.unwrap();
    assert!(matches!(out_rx.recv().await, Some(Outbound::Text(_))));
    (server, peer, in_tx, out_rx, run)
}

fn text(item: Option<Outbound>) -> Value {
    match item {
        Some(Outbound::Text(t)) => serde_json::from_str(&t).unwrap(),
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn server_ping_is_correlated_with_the_client_response() {
    let (_server, peer, in_tx, mut out_rx, _run) = initialized().await;
    let ping = tokio::spawn({
        let peer = peer.clone();
        async move { peer.ping().await }
    });
    let request = text(out_rx.recv().await);
    assert_eq!(request["method"], methods::PING);
    // A response for an id the server never used is ignored, and the ping keeps waiting.
    in_tx
        .send(json!({"jsonrpc":"2.0","id":"nope","result":{}}).to_string())
        .await
        .unwrap();
    let reply = json!({"jsonrpc":"2.0","id":request["id"],"result":{}});
    in_tx.send(reply.to_string()).await.unwrap();
    assert_eq!(ping.await.unwrap(), Ok(()));
    // A second response with the same id is not delivered anywhere (at most once).
    in_tx.send(reply.to_string()).await.unwrap();

    let rejected = tokio::spawn(async move { peer.request("roots/list", None).await });
    let request = text(out_rx.recv().await);
    let error =
        json!({"jsonrpc":"2.0","id":request["id"],"error":{"code":-32601,"message":"no roots"}});
    in_tx.send(error.to_string()).await.unwrap();
    match rejected.await.unwrap() {
        Err(PeerError::Rejected(e)) => assert_eq!(e.code, -32601),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn server_requests_fail_when_the_session_ends() {
    let (_server, peer, in_tx, mut out_rx, run) = initialized().await;
    let ping = tokio::spawn({
        let peer = peer.clone();
        async move { peer.ping().await }
    });
    let _request = text(out_rx.recv().await);
    drop(in_tx);
    assert_eq!(run.await.unwrap(), SessionEnd::InputClosed);
    assert_eq!(ping.await.unwrap(), Err(PeerError::Closed));
    assert_eq!(peer.ping().await, Err(PeerError::Closed));
    // The peer does not keep the output channel open once the session is gone.
    assert!(out_rx.recv().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_running_calls_and_closes() {
    let (server, _peer, in_tx, mut out_rx, run) = initialized().await;
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":60000}}});
    in_tx.send(call.to_string()).await.unwrap();
    tokio::task::yield_now().await;
    server.shutdown_token().cancel();
    assert_eq!(
        out_rx.recv().await,
        Some(Outbound::Close(crate::CloseReason::ShuttingDown))
    );
    assert_eq!(run.await.unwrap(), SessionEnd::ShuttingDown);
    assert!(out_rx.recv().await.is_none(), "no response after the close");
}

/// A session on a server with `config`, and its channels; not initialized.
fn open(
    config: ServerConfig,
) -> (
    Hub,
    crate::InboundSender,
    OutboundReceiver,
    tokio::task::JoinHandle<SessionEnd>,
) {
    let server = Hub::new(
        config,
        ToolRegistry::builtin(&mcp_tools::ToolsConfig::default()),
    );
    let (in_tx, in_rx) = crate::inbound::channel(16);
    let (session, out_rx) = server.open_session();
    let run = tokio::spawn(session.run(in_rx));
    (server, in_tx, out_rx, run)
}

async fn init(in_tx: &crate::InboundSender, out_rx: &mut OutboundReceiver) {
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    in_tx.send(init.to_string()).await.unwrap();
    assert_eq!(text(out_rx.recv().await)["id"], 0);
}

fn sleep_call(id: i64, ms: u64) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":ms}}}).to_string()
}

#[tokio::test(start_paused = true)]
async fn a_session_that_never_initializes_is_closed() {
    let config = ServerConfig {
        init_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    };
    let (_server, _in_tx, mut out_rx, run) = open(config);
    let started = tokio::time::Instant::now();
    assert_eq!(
        out_rx.recv().await,
        Some(Outbound::Close(crate::CloseReason::InitTimeout))
    );
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(run.await.unwrap(), SessionEnd::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn an_idle_session_is_closed_but_not_while_a_call_runs() {
    let config = ServerConfig {
        idle_timeout: Duration::from_secs(60),
        ..ServerConfig::default()
    };
    let (_server, in_tx, mut out_rx, run) = open(config);
    init(&in_tx, &mut out_rx).await;
    let started = tokio::time::Instant::now();
    in_tx.send(sleep_call(1, 100_000)).await.unwrap();
    assert_eq!(
        text(out_rx.recv().await)["id"],
        1,
        "the long call is answered, not cut off"
    );
    assert_eq!(
        out_rx.recv().await,
        Some(Outbound::Close(crate::CloseReason::Idle))
    );
    assert_eq!(started.elapsed(), Duration::from_secs(160));
    assert_eq!(run.await.unwrap(), SessionEnd::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn too_many_calls_in_flight_are_refused_naming_the_limit() {
    let config = ServerConfig {
        max_inflight_per_session: 2,
        ..ServerConfig::default()
    };
    let (_server, in_tx, mut out_rx, _run) = open(config);
    init(&in_tx, &mut out_rx).await;
    for id in 1..=3 {
        in_tx.send(sleep_call(id, 1000)).await.unwrap();
    }
    let refused = text(out_rx.recv().await);
    assert_eq!(refused["id"], 3);
    assert_eq!(refused["error"]["code"], -32001);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-inflight")
    );
    assert_eq!(text(out_rx.recv().await)["id"], 1);
    assert_eq!(text(out_rx.recv().await)["id"], 2);
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_lets_calls_finish_within_grace_and_cancels_the_rest() {
    let (server, in_tx, mut out_rx, run) = open(ServerConfig {
        stop_grace: Duration::from_secs(1),
        ..ServerConfig::default()
    });
    init(&in_tx, &mut out_rx).await;
    in_tx.send(sleep_call(1, 2_000)).await.unwrap();
    in_tx.send(sleep_call(2, 60_000)).await.unwrap();
    tokio::task::yield_now().await;
    server.begin_shutdown(Duration::from_secs(10));
    let notice = text(out_rx.recv().await);
    assert_eq!(notice["method"], "notifications/message");
    assert_eq!(notice["params"]["level"], "warning");
    assert!(
        notice["params"]["data"]
            .as_str()
            .unwrap()
            .starts_with("server shutting down")
    );
    // New requests are refused; pings still work.
    in_tx.send(sleep_call(3, 1)).await.unwrap();
    let refused = text(out_rx.recv().await);
    assert_eq!(
        (refused["id"].as_i64(), refused["error"]["code"].as_i64()),
        (Some(3), Some(-32000))
    );
    in_tx
        .send(json!({"jsonrpc":"2.0","id":4,"method":"ping"}).to_string())
        .await
        .unwrap();
    assert_eq!(text(out_rx.recv().await)["id"], 4);
    // The short call finishes within the grace period and gets its result.
    let finished = text(out_rx.recv().await);
    assert_eq!(finished["id"], 1);
    assert_eq!(finished["result"]["structuredContent"]["sleptMs"], 2000);
    // The long one is cancelled when the grace period ends, and its caller told.
    let cancelled = text(out_rx.recv().await);
    assert_eq!(cancelled["id"], 2);
    assert_eq!(cancelled["error"]["code"], -32000);
    assert_eq!(
        out_rx.recv().await,
        Some(Outbound::Close(crate::CloseReason::ShuttingDown))
    );
    assert_eq!(run.await.unwrap(), SessionEnd::ShuttingDown);
    assert!(
        server
            .render_metrics()
            .contains("mcp_shutdown_drains_total 1")
    );
}

#[tokio::test(start_paused = true)]
async fn abandoning_a_running_session_releases_everything() {
    let (server, in_tx, mut out_rx, run) = open(ServerConfig::default());
    init(&in_tx, &mut out_rx).await;
    in_tx.send(sleep_call(1, 60_000)).await.unwrap();
    in_tx
        .send(json!({"jsonrpc":"2.0","id":2,"method":"ping"}).to_string())
        .await
        .unwrap();
    assert_eq!(text(out_rx.recv().await)["id"], 2);
    assert_eq!((server.sessions(), server.inflight_requests()), (1, 1));
    // As when a connection task is aborted: `run` never reaches its end.
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    assert_eq!((server.sessions(), server.inflight_requests()), (0, 0));
    assert_eq!(out_rx.recv().await, None, "the output ended");
    server.all_sessions_ended().await;
}

#[tokio::test]
async fn the_memory_store_conforms() {
    crate::store::conformance::run(&crate::MemoryStore::default()).await;
}

/// A tool that panics: when first polled (so it runs without a task), or after yielding once
/// (so it runs as one).
struct Panics {
    at_once: bool,
}

impl mcp_tools::Tool for Panics {
    type Params = mcp_tools::UnaryParams;
    type Output = mcp_tools::MathResult;

    fn name(&self) -> &str {
        if self.at_once {
            "panics_at_once"
        } else {
            "panics_later"
        }
    }

    fn description(&self) -> &str {
        "Panics."
    }

    async fn call(
        &self,
        _: Self::Params,
        _: mcp_tools::ToolContext,
    ) -> Result<Self::Output, mcp_tools::ToolError> {
        if !self.at_once {
            tokio::task::yield_now().await;
        }
        panic!("the tool broke");
    }
}

#[tokio::test]
async fn a_panicking_tool_is_an_internal_error_and_the_session_goes_on() {
    let mut tools = ToolRegistry::builtin(&mcp_tools::ToolsConfig::default());
    tools.register(Panics { at_once: true }).unwrap();
    tools.register(Panics { at_once: false }).unwrap();
    let server = Hub::new(ServerConfig::default(), tools);
    let (in_tx, in_rx) = crate::inbound::channel(16);
    let (session, mut out_rx) = server.open_session();
    let _run = tokio::spawn(session.run(in_rx));
    init(&in_tx, &mut out_rx).await;
    let call = |id: i64, name: &str| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":{"a":1}}})
            .to_string()
    };
    for (id, tool) in [(1, "panics_at_once"), (2, "panics_later")] {
        in_tx.send(call(id, tool)).await.unwrap();
        let answer = text(out_rx.recv().await);
        assert_eq!(answer["id"], id, "{answer}");
        assert_eq!(answer["error"]["code"], -32603, "{answer}");
        assert_eq!(
            answer["error"]["message"],
            "internal error: the handler panicked"
        );
    }
    in_tx
        .send(json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}).to_string())
        .await
        .unwrap();
    let answer = text(out_rx.recv().await);
    assert_eq!(answer["result"]["structuredContent"]["result"], 3.0);
}

#[test]
fn concurrent_reservations_never_overshoot_the_session_limit() {
    let server = Hub::new(
        ServerConfig {
            max_sessions: 10,
            ..ServerConfig::default()
        },
        ToolRegistry::new(),
    );
    // Eight threads race for the ten places and keep what they get: checking and counting
    // are one step, so exactly ten are handed out.
    let held: Vec<Vec<crate::SessionSlot>> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let server = server.clone();
                scope.spawn(move || {
                    (0..100)
                        .filter_map(|_| server.reserve_session())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(held.iter().map(Vec::len).sum::<usize>(), 10);
    assert_eq!(server.sessions(), 10);
    assert!(server.reserve_session().is_none());
    // A place comes back when its slot is dropped, and when its session ends.
    let mut held: Vec<crate::SessionSlot> = held.into_iter().flatten().collect();
    held.pop();
    assert_eq!(server.sessions(), 9);
    let slot = server.reserve_session().expect("a place was given back");
    let (session, _output) = slot.open();
    assert_eq!(server.sessions(), 10);
    drop(session);
    assert_eq!(server.sessions(), 9);
}

/// A server's line to the store, which a kill -9 cuts: from then on nothing it does reaches
/// the store.
struct StoreLine {
    store: Arc<dyn SessionStore>,
    cut: std::sync::atomic::AtomicBool,
}

impl StoreLine {
    fn to(store: Arc<dyn SessionStore>) -> Self {
        Self {
            store,
            cut: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn open(&self) -> Result<&dyn SessionStore, crate::StoreError> {
        match self.cut.load(std::sync::atomic::Ordering::SeqCst) {
            true => Err(crate::StoreError::Backend("the server is dead".to_owned())),
            false => Ok(self.store.as_ref()),
        }
    }
}

/// What a cut line answers.
fn dead<'a, T: Send + 'a>(e: crate::StoreError) -> crate::store::StoreFuture<'a, T> {
    Box::pin(std::future::ready(Err(e)))
}

impl SessionStore for StoreLine {
    fn create<'a>(&'a self, record: &'a crate::SessionRecord) -> crate::store::StoreFuture<'a, ()> {
        self.open().map_or_else(dead, |s| s.create(record))
    }
    fn load<'a>(
        &'a self,
        id: &'a crate::SessionId,
    ) -> crate::store::StoreFuture<'a, Option<crate::SessionRecord>> {
        self.open().map_or_else(dead, |s| s.load(id))
    }
    fn update<'a>(
        &'a self,
        id: &'a crate::SessionId,
        update: &'a crate::Update,
    ) -> crate::store::StoreFuture<'a, ()> {
        self.open().map_or_else(dead, |s| s.update(id, update))
    }
    fn replay<'a>(
        &'a self,
        id: &'a crate::SessionId,
        after: u64,
    ) -> crate::store::StoreFuture<'a, crate::Replay> {
        self.open().map_or_else(dead, |s| s.replay(id, after))
    }
    fn delete<'a>(&'a self, id: &'a crate::SessionId) -> crate::store::StoreFuture<'a, ()> {
        self.open().map_or_else(dead, |s| s.delete(id))
    }
    fn idle_since<'a>(
        &'a self,
        before_ms: u64,
    ) -> crate::store::StoreFuture<'a, Vec<crate::SessionId>> {
        self.open().map_or_else(dead, |s| s.idle_since(before_ms))
    }
    fn save_task<'a>(
        &'a self,
        record: &'a crate::store::TaskRecord,
    ) -> crate::store::StoreFuture<'a, ()> {
        self.open().map_or_else(dead, |s| s.save_task(record))
    }
    fn load_task<'a>(
        &'a self,
        id: &'a crate::store::TaskId,
    ) -> crate::store::StoreFuture<'a, Option<crate::store::TaskRecord>> {
        self.open().map_or_else(dead, |s| s.load_task(id))
    }
    fn delete_task<'a>(
        &'a self,
        id: &'a crate::store::TaskId,
    ) -> crate::store::StoreFuture<'a, ()> {
        self.open().map_or_else(dead, |s| s.delete_task(id))
    }
    fn usage<'a>(&'a self, owner: &'a str) -> crate::store::StoreFuture<'a, crate::Usage> {
        self.open().map_or_else(dead, |s| s.usage(owner))
    }
    fn tasks<'a>(&'a self) -> crate::store::StoreFuture<'a, Vec<crate::store::TaskRecord>> {
        self.open().map_or_else(dead, |s| s.tasks())
    }
}

/// A resumable tool's call whose task never reached the store starts over after a restart
/// (here, the server died before the task's first write): its client saw progress 2,000, so
/// the new run sends none until it passes that, and progress only goes up.
#[tokio::test]
async fn a_call_started_over_after_a_restart_sends_no_progress_below_what_was_seen() {
    use mcp_protocol::RequestId;

    let store = Arc::new(MemoryStore::default());
    let id = crate::SessionId::random().unwrap();
    let mut record = crate::SessionRecord::new(id.clone(), crate::ANONYMOUS, None, 1);
    record.protocol_version = Some("2025-11-25".to_owned());
    store.create(&record).await.unwrap();
    let seen = json!({"jsonrpc":"2.0","method":"notifications/progress","params":{
        "progressToken":"t","progress":2000,"total":3000},"seq":1});
    let operation = crate::OperationRecord {
        request_id: RequestId::Number(7),
        tool: "process_batch".to_owned(),
        arguments: json!({"count": 3000, "cost": 1}),
        progress_token: Some(RequestId::String("t".to_owned())),
        task: Some(crate::TaskId::random().unwrap()),
        started_ms: 1,
    };
    let update = crate::Update {
        operations: Some(vec![operation]),
        entries: vec![crate::LogEntry {
            seq: 1,
            text: seen.to_string(),
        }],
        log_cap: 100,
        ..Default::default()
    };
    store.update(&id, &update).await.unwrap();

    let config = ServerConfig {
        progress_interval: Duration::ZERO,
        ..ServerConfig::default()
    };
    let server = Hub::builder(config)
        .tools(ToolRegistry::builtin(&mcp_tools::ToolsConfig::default()))
        .store(store)
        .build();
    let (in_tx, in_rx) = crate::inbound::channel(16);
    let (session, mut out_rx) = server.open_session();
    let _run = tokio::spawn(session.run(in_rx));
    let resume = json!({"jsonrpc":"2.0","id":"init","method":"initialize","mcpSessionId":id.as_str(),
        "params":{"protocolVersion":"2025-11-25","capabilities":{"experimental":{"resume":{"lastSeq":1}}},
        "clientInfo":{"name":"t","version":"1"}}});
    in_tx.send(resume.to_string()).await.unwrap();
    assert_eq!(text(out_rx.recv().await)["id"], "init");
    let mut progress = Vec::new();
    let answer = loop {
        let message = text(out_rx.recv().await);
        if message["method"] == methods::PROGRESS {
            progress.push(message["params"]["progress"].as_f64().unwrap());
        } else if message.get("id").is_some() {
            break message;
        }
    };
    assert_eq!(
        answer["result"]["structuredContent"]["processed"], 3000,
        "{answer}"
    );
    assert!(!progress.is_empty(), "it sent progress past 2,000");
    assert!(
        progress.iter().all(|&p| p > 2000.0) && progress.is_sorted(),
        "progress went back: {progress:?}"
    );
}

/// A tool known only at run time: answers with its arguments.
struct Echo;

impl mcp_tools::DynamicTool for Echo {
    fn call(
        &self,
        arguments: serde_json::Map<String, Value>,
        _ctx: mcp_tools::ToolContext,
    ) -> mcp_tools::BoxFuture<mcp_protocol::CallToolResult> {
        Box::pin(async move {
            mcp_protocol::CallToolResult {
                content: vec![mcp_protocol::Content::text(
                    Value::Object(arguments).to_string(),
                )],
                structured_content: None,
                is_error: None,
            }
        })
    }
}

#[tokio::test]
async fn replaced_tools_are_listed_called_and_announced_once() {
    let builtin = ToolRegistry::builtin(&mcp_tools::ToolsConfig::default());
    let hub = Hub::builder(ServerConfig::default())
        .tools(builtin.clone())
        .tools_may_change()
        .build();
    let (in_tx, in_rx) = crate::inbound::channel(16);
    let (session, mut out_rx) = hub.open_session();
    let _run = tokio::spawn(session.run(in_rx));
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    in_tx.send(init.to_string()).await.unwrap();
    let answer = text(out_rx.recv().await);
    assert_eq!(
        answer["result"]["capabilities"]["tools"]["listChanged"],
        true
    );

    let mut tools = builtin.clone();
    let descriptor: mcp_protocol::Tool = serde_json::from_value(json!({
        "name": "up.echo", "description": "echoes", "inputSchema": {"type": "object"}}))
    .unwrap();
    tools
        .register_dynamic(descriptor, std::sync::Arc::new(Echo))
        .unwrap();
    // Changed twice before the session reads: announced once.
    assert_eq!(hub.set_tools(builtin.clone()), 1);
    assert_eq!(hub.set_tools(tools), 1);
    let notice = text(out_rx.recv().await);
    assert_eq!(notice["method"], methods::TOOLS_LIST_CHANGED);

    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
    in_tx.send(list.to_string()).await.unwrap();
    let listed = text(out_rx.recv().await);
    assert_eq!(listed["id"], 1, "{listed}");
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"up.echo") && names.contains(&"add"),
        "{names:?}"
    );

    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
        "params":{"name":"up.echo","arguments":{"x":1}}});
    in_tx.send(call.to_string()).await.unwrap();
    let called = text(out_rx.recv().await);
    assert_eq!(called["id"], 2, "{called}");
    assert_eq!(called["result"]["content"][0]["text"], r#"{"x":1}"#);
}
