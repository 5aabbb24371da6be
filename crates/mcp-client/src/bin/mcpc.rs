//! `mcpc`: an MCP client for the terminal. Lists and calls tools (arguments as `key=value`,
//! parsed by the tool's schema, or JSON), reads and watches resources, and manages the
//! server's agents. A long call shows a progress bar with rate and ETA; Ctrl-C cancels the
//! call on the server and exits 130. It speaks MCP 2026-07-28 with a server that does, and
//! the 2025 handshake with older servers or with `--legacy`, whose resumable session lets a
//! call carry on across a dropped connection (the bar too).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mcp_client::{CallEvent, Client, Options, Progress, Started, Status, Task, TaskStatus};
use mcp_protocol::{CallToolResult, Content, Tool};
use serde_json::{Map, Value, json};

/// An MCP client for the terminal.
#[derive(Parser)]
#[command(name = "mcpc", version)]
struct Cli {
    /// The server's MCP endpoint (ws:// or wss://).
    #[arg(
        long,
        env = "MCP_URL",
        default_value = "ws://127.0.0.1:8080/mcp",
        global = true
    )]
    url: String,

    /// A bearer token for the server.
    #[arg(long, env = "MCP_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,

    /// A CA certificate (PEM) to trust for wss:// and https://, beside the system's.
    #[arg(long, env = "MCP_CA_CERT", global = true, value_name = "PATH")]
    ca_cert: Option<PathBuf>,

    /// Speak the 2025 handshake (`initialize`) even to a server of 2026-07-28: its session
    /// is resumable, so a call in flight survives a dropped connection. Without it, a
    /// 2026-07-28 call fails when its connection drops.
    #[arg(long, env = "MCP_LEGACY", global = true, value_parser = clap::builder::BoolishValueParser::new())]
    legacy: bool,

    /// Print JSON (one document per result) instead of text.
    #[arg(long, global = true)]
    json: bool,

    /// How to show a call's progress on stderr: a bar, a line per report, or nothing.
    /// Default: a bar on a terminal, lines otherwise.
    #[arg(long, global = true, value_enum)]
    progress: Option<ProgressMode>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProgressMode {
    Bar,
    Lines,
    None,
}

#[derive(Subcommand)]
enum Command {
    /// List the tools.
    Tools,
    /// Call a tool: `mcpc call add a=5 b=3`; values are parsed by the tool's input schema.
    Call {
        /// The tool.
        tool: String,
        /// Arguments as key=value.
        args: Vec<String>,
        /// All arguments as one JSON object instead (`-` reads it from stdin).
        #[arg(long = "input", value_name = "JSON")]
        input: Option<String>,
        /// Run it as a task (MCP 2026-07-28 tasks extension) when the tool can be one: its
        /// id is printed first, it is polled to its result (across a server restart), and
        /// Ctrl-C cancels it. `mcpc task wait ID` takes it up again.
        #[arg(long)]
        task: bool,
    },
    /// A task started with `call --task` (by its id).
    Task {
        #[command(subcommand)]
        command: TaskCommand,
    },
    /// List the resources.
    Resources,
    /// Read a resource.
    Read {
        /// The resource's URI.
        uri: String,
    },
    /// Subscribe to a resource and print it each time it changes, until Ctrl-C.
    Watch {
        /// The resource's URI.
        uri: String,
    },
    /// The seed's agents (durable sessions), over the HTTP API.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
}

#[derive(Subcommand)]
enum TaskCommand {
    /// Show its state (status, message, and its result or error once it ended).
    Get {
        /// The task's id.
        id: String,
    },
    /// Follow it to its result, with its progress (Ctrl-C cancels it).
    Wait {
        /// The task's id.
        id: String,
    },
    /// Ask the server to stop it.
    Cancel {
        /// The task's id.
        id: String,
    },
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Create an agent; prints its id.
    Create {
        /// Its name.
        #[arg(long, default_value = "mcpc")]
        name: String,
    },
    /// Show an agent: its history and running operations.
    Show {
        /// The agent's id.
        id: String,
    },
    /// Delete an agent.
    Delete {
        /// The agent's id.
        id: String,
    },
}

/// Exit codes: 0 success, 1 the tool reported an error, 2 anything else went wrong, 130
/// interrupted (Ctrl-C).
const TOOL_ERROR: u8 = 1;
const FAILURE: u8 = 2;
const INTERRUPTED: u8 = 130;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "mcpc: {e:#}");
            ExitCode::from(FAILURE)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let roots = match &cli.ca_cert {
        Some(path) => read_roots(path)?,
        None => Vec::new(),
    };
    if let Command::Agent { command } = &cli.command {
        return agent(&cli, command, &roots).await;
    }
    let mut options = Options::new(cli.url.clone());
    options.token = cli.token.clone();
    options.extra_roots = roots;
    options.legacy = cli.legacy;
    options.client_info.name = "mcpc".to_owned();
    let client = Client::connect(options)
        .await
        .with_context(|| format!("cannot connect to {}", cli.url))?;
    let code = match &cli.command {
        Command::Tools => tools(&cli, &client).await,
        Command::Call {
            tool,
            args,
            input,
            task,
        } => call(&cli, &client, tool, args, input.as_deref(), *task).await,
        Command::Task { command } => task(&cli, &client, command).await,
        Command::Resources => resources(&cli, &client).await,
        Command::Read { uri } => read(&cli, &client, uri).await,
        Command::Watch { uri } => watch(&cli, &client, uri).await,
        Command::Agent { .. } => unreachable_agent(),
    };
    client.close().await;
    code
}

fn unreachable_agent() -> anyhow::Result<u8> {
    bail!("agent commands are handled before connecting")
}

fn read_roots(path: &PathBuf) -> anyhow::Result<Vec<Vec<u8>>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let certs: Vec<Vec<u8>> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("--ca-cert {}", path.display()))?
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("--ca-cert {}", path.display()))?;
    if certs.is_empty() {
        bail!("--ca-cert {}: no certificate in it", path.display());
    }
    Ok(certs)
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

async fn tools(cli: &Cli, client: &Client) -> anyhow::Result<u8> {
    let tools = client.list_tools().await?;
    if cli.json {
        print_json(&tools)?;
        return Ok(0);
    }
    let width = tools.iter().map(|t| t.name.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for tool in &tools {
        let summary = tool
            .description
            .as_deref()
            .unwrap_or("")
            .split(". ")
            .next()
            .unwrap_or("");
        writeln!(out, "{:width$}  {summary}", tool.name)?;
    }
    Ok(0)
}

/// The arguments: `--input` JSON, or `key=value` pairs parsed by the tool's schema.
fn arguments(
    tool: &Tool,
    pairs: &[String],
    input: Option<&str>,
) -> anyhow::Result<Map<String, Value>> {
    if let Some(input) = input {
        let text = if input == "-" {
            std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?
        } else {
            input.to_owned()
        };
        let value: Value = serde_json::from_str(&text).context("--input is not JSON")?;
        let Value::Object(map) = value else {
            bail!("--input must be a JSON object");
        };
        return Ok(map);
    }
    let properties = tool
        .input_schema
        .get("properties")
        .and_then(Value::as_object);
    let mut map = Map::new();
    for pair in pairs {
        let Some((key, text)) = pair.split_once('=') else {
            bail!("`{pair}`: arguments are key=value");
        };
        let schema = properties.and_then(|p| p.get(key));
        let Some(schema) = schema else {
            let known: Vec<&String> = properties.map(|p| p.keys().collect()).unwrap_or_default();
            bail!(
                "`{}` has no argument `{key}`; it takes: {}",
                tool.name,
                join(&known)
            );
        };
        map.insert(key.to_owned(), parse_value(key, text, schema)?);
    }
    let required = tool.input_schema.get("required").and_then(Value::as_array);
    let missing: Vec<&str> = required
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|r| !map.contains_key(*r))
        .collect();
    if !missing.is_empty() {
        bail!("`{}` needs {}", tool.name, missing.join(", "));
    }
    Ok(map)
}

fn join(names: &[&String]) -> String {
    if names.is_empty() {
        return "nothing".to_owned();
    }
    names
        .iter()
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value as the schema's type says: numbers, booleans, JSON for arrays and objects, text
/// for strings.
fn parse_value(key: &str, text: &str, schema: &Value) -> anyhow::Result<Value> {
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    for kind in &types {
        let parsed = match *kind {
            "integer" => text.parse::<i64>().ok().map(Value::from),
            "number" => text
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number)),
            "boolean" => text.parse::<bool>().ok().map(Value::Bool),
            "array" | "object" => serde_json::from_str::<Value>(text).ok().filter(|v| {
                (v.is_array() && *kind == "array") || (v.is_object() && *kind == "object")
            }),
            "null" => (text == "null").then_some(Value::Null),
            "string" => Some(Value::String(text.to_owned())),
            _ => None,
        };
        if let Some(value) = parsed {
            if let Some(allowed) = schema["enum"].as_array()
                && !allowed.contains(&value)
            {
                bail!("`{key}` must be one of {}", Value::Array(allowed.clone()));
            }
            return Ok(value);
        }
    }
    if types.is_empty() {
        // No type: JSON if it is JSON, text otherwise.
        return Ok(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())));
    }
    bail!("`{key}` must be {} (got `{text}`)", types.join(" or "))
}

async fn call(
    cli: &Cli,
    client: &Client,
    name: &str,
    pairs: &[String],
    input: Option<&str>,
    as_task: bool,
) -> anyhow::Result<u8> {
    let tools = client.list_tools().await?;
    let Some(tool) = tools.iter().find(|t| t.name == name) else {
        let names: Vec<&String> = tools.iter().map(|t| &t.name).collect();
        bail!("no tool `{name}`; the tools are: {}", join(&names));
    };
    let arguments = arguments(tool, pairs, input)?;
    if as_task {
        if !client.is_modern() {
            bail!("--task needs a server of MCP 2026-07-28 (and not --legacy)");
        }
        return match client.start_task(name, arguments).await? {
            Started::Done(result) => finish(cli, &result),
            Started::Task(task) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "task {} (mcpc task wait|get|cancel {})",
                    task.id(),
                    task.id()
                );
                follow(cli, client, task).await
            }
        };
    }
    let mode = progress_mode(cli);
    let mut display = Display::new(mode, client.is_modern());
    let mut status = client.status();
    let mut call = client.call(name, arguments).await?;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let result = loop {
        tokio::select! {
            event = call.next() => match event {
                CallEvent::Progress(p) => display.progress(&p),
                CallEvent::Done(Err(e @ mcp_client::Error::Interrupted(_))) => {
                    display.finish("interrupted");
                    return Err(anyhow::Error::new(e).context(
                        "the call's connection dropped (with --legacy, a call resumes after a dropped connection)",
                    ));
                }
                CallEvent::Done(result) => break result?,
            },
            changed = status.changed() => {
                if changed.is_ok() {
                    let now = status.borrow_and_update().clone();
                    display.status(&now);
                }
            }
            _ = &mut interrupted => {
                display.finish("cancelled");
                // Dropping the call sends the cancellation; closing waits until it is out.
                drop(call);
                client.close().await;
                let _ = writeln!(std::io::stderr(), "mcpc: interrupted; the call was cancelled");
                return Ok(INTERRUPTED);
            }
        }
    };
    display.finish("done");
    finish(cli, &result)
}

/// Prints a call's result; the exit code it makes.
fn finish(cli: &Cli, result: &CallToolResult) -> anyhow::Result<u8> {
    show_result(cli, result)?;
    Ok(if result.is_error == Some(true) {
        TOOL_ERROR
    } else {
        0
    })
}

fn progress_mode(cli: &Cli) -> ProgressMode {
    cli.progress.unwrap_or(if std::io::stderr().is_terminal() {
        ProgressMode::Bar
    } else {
        ProgressMode::Lines
    })
}

/// Polls a task to its end, showing its progress (or its status line); Ctrl-C cancels it.
async fn follow(cli: &Cli, client: &Client, mut task: Task) -> anyhow::Result<u8> {
    let mut display = Display::new(progress_mode(cli), true);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut last_message = None;
    loop {
        let state = tokio::select! {
            state = task.next() => state.with_context(|| format!("task {}", task.id()))?,
            _ = &mut interrupted => {
                display.finish("cancelled");
                task.cancel().await?;
                client.close().await;
                let _ = writeln!(std::io::stderr(), "mcpc: interrupted; task {} was cancelled", task.id());
                return Ok(INTERRUPTED);
            }
        };
        match (state.progress, &state.status_message) {
            (Some((progress, total)), message) => display.progress(&Progress {
                progress_token: mcp_protocol::RequestId::from(task.id()),
                progress,
                total,
                message: message.clone(),
            }),
            (None, Some(message)) if last_message.as_ref() != Some(message) => {
                display.line(message);
            }
            _ => {}
        }
        last_message.clone_from(&state.status_message);
        match state.status {
            TaskStatus::Working | TaskStatus::InputRequired => {}
            TaskStatus::Completed => {
                display.finish("done");
                let result = state
                    .result
                    .context("the server said the task completed, without its result")?;
                return finish(cli, &result);
            }
            TaskStatus::Failed => {
                display.finish("failed");
                let error = state
                    .error
                    .map_or_else(|| "no reason given".to_owned(), |e| e.to_string());
                bail!("task {} failed: {error}", task.id());
            }
            TaskStatus::Cancelled => {
                display.finish("cancelled");
                bail!("task {} was cancelled", task.id());
            }
        }
    }
}

async fn task(cli: &Cli, client: &Client, command: &TaskCommand) -> anyhow::Result<u8> {
    if !client.is_modern() {
        bail!("tasks need a server of MCP 2026-07-28 (and not --legacy)");
    }
    match command {
        TaskCommand::Get { id } => {
            let state = client.task(id).get().await?;
            if cli.json {
                print_json(&state.raw)?;
            } else {
                let mut out = std::io::stdout().lock();
                let status = serde_json::to_value(state.status)?;
                let status = status.as_str().unwrap_or_default();
                match &state.status_message {
                    Some(message) => writeln!(out, "{status}: {message}")?,
                    None => writeln!(out, "{status}")?,
                }
                if let Some(result) = &state.result {
                    drop(out);
                    show_result(cli, result)?;
                } else if let Some(error) = &state.error {
                    writeln!(out, "error: {error}")?;
                }
            }
            Ok(0)
        }
        TaskCommand::Wait { id } => follow(cli, client, client.task(id)).await,
        TaskCommand::Cancel { id } => {
            client.task(id).cancel().await?;
            let _ = writeln!(std::io::stdout(), "cancel requested for task {id}");
            Ok(0)
        }
    }
}

fn show_result(cli: &Cli, result: &CallToolResult) -> anyhow::Result<()> {
    if cli.json {
        return print_json(result);
    }
    let mut out = std::io::stdout().lock();
    if let (Some(structured), false) = (&result.structured_content, result.is_error == Some(true)) {
        writeln!(out, "{}", serde_json::to_string_pretty(structured)?)?;
        return Ok(());
    }
    for content in &result.content {
        match content {
            Content::Text { text, .. } => writeln!(out, "{text}")?,
            other => writeln!(out, "{}", serde_json::to_string(other)?)?,
        }
    }
    Ok(())
}

/// A call's progress on stderr.
struct Display {
    mode: ProgressMode,
    /// Speaking 2026-07-28: a reconnection resumes no session.
    modern: bool,
    bar: Option<ProgressBar>,
    started: Instant,
    /// The last progress shown and when, for the rate and the ETA.
    first: Option<(f64, Instant)>,
}

impl Display {
    fn new(mode: ProgressMode, modern: bool) -> Self {
        Self {
            mode,
            modern,
            bar: None,
            started: Instant::now(),
            first: None,
        }
    }

    fn progress(&mut self, p: &Progress) {
        let now = Instant::now();
        let (first, since) = *self.first.get_or_insert((p.progress, now));
        let elapsed = now.duration_since(since).as_secs_f64();
        let rate = (elapsed > 0.0).then(|| (p.progress - first) / elapsed);
        match self.mode {
            ProgressMode::None => {}
            ProgressMode::Lines => {
                let mut line = format!("progress {}", p.progress);
                if let Some(total) = p.total {
                    line.push_str(&format!(
                        "/{total} ({:.0}%)",
                        100.0 * p.progress / total.max(1.0)
                    ));
                }
                if let Some(rate) = rate.filter(|r| *r > 0.0) {
                    line.push_str(&format!(" {rate:.0}/s"));
                    if let Some(total) = p.total {
                        line.push_str(&format!(
                            " eta {:.0}s",
                            (total - p.progress).max(0.0) / rate
                        ));
                    }
                }
                if let Some(message) = &p.message {
                    line.push_str(&format!(" {message}"));
                }
                let _ = writeln!(std::io::stderr(), "{line}");
            }
            ProgressMode::Bar => {
                let bar = self.bar.get_or_insert_with(|| {
                    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner} [{elapsed_precise}] {bar:40} {human_pos}/{human_len} ({percent}%) {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.enable_steady_tick(Duration::from_millis(200));
                    bar
                });
                if let Some(total) = p.total {
                    bar.set_length(total as u64);
                }
                bar.set_position(p.progress as u64);
                // The rate and ETA since the first report: a resumed call's do not restart.
                if let Some(rate) = rate.filter(|r| *r > 0.0) {
                    let mut message = format!("{}/s", group(rate.round() as u64));
                    if let Some(total) = p.total {
                        message.push_str(&format!(
                            ", eta {:.0}s",
                            (total - p.progress).max(0.0) / rate
                        ));
                    }
                    bar.set_message(message);
                }
            }
        }
    }

    fn status(&mut self, status: &Status) {
        let text = match status {
            Status::Connected if self.modern => "reconnected".to_owned(),
            Status::Connected => "reconnected; the session was resumed".to_owned(),
            Status::Reconnecting { attempt, reason } => {
                format!("connection lost ({reason}); reconnecting, attempt {attempt}")
            }
            Status::Closed(reason) => format!("closed: {reason}"),
        };
        match (&self.bar, self.mode) {
            (Some(bar), _) => bar.println(text),
            (None, ProgressMode::None) => {}
            (None, _) => {
                let _ = writeln!(std::io::stderr(), "{text}");
            }
        }
    }

    /// A line of its own (a task's status when it reports no numbers).
    fn line(&mut self, text: &str) {
        match (&self.bar, self.mode) {
            (Some(bar), _) => bar.println(text),
            (None, ProgressMode::None) => {}
            (None, _) => {
                let _ = writeln!(std::io::stderr(), "{text}");
            }
        }
    }

    fn finish(&mut self, how: &str) {
        if let Some(bar) = self.bar.take() {
            bar.abandon_with_message(how.to_owned());
        } else if self.mode == ProgressMode::Lines && self.first.is_some() {
            let _ = writeln!(
                std::io::stderr(),
                "{how} after {:.1}s",
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

/// `1234567` as `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

async fn resources(cli: &Cli, client: &Client) -> anyhow::Result<u8> {
    let resources = client.list_resources().await?;
    if cli.json {
        print_json(&resources)?;
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    for resource in &resources {
        writeln!(out, "{}  {}", resource.uri, resource.name)?;
    }
    Ok(0)
}

async fn read(cli: &Cli, client: &Client, uri: &str) -> anyhow::Result<u8> {
    let result = client.read_resource(uri).await?;
    if cli.json {
        print_json(&result)?;
        return Ok(0);
    }
    show_contents(&serde_json::to_value(&result)?)?;
    Ok(0)
}

/// Each content's text (JSON text pretty-printed), or its JSON when it is binary.
fn show_contents(result: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for content in result["contents"].as_array().into_iter().flatten() {
        match content["text"].as_str() {
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(json) => writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?,
                Err(_) => writeln!(out, "{text}")?,
            },
            None => writeln!(out, "{content}")?,
        }
    }
    Ok(())
}

async fn watch(cli: &Cli, client: &Client, uri: &str) -> anyhow::Result<u8> {
    let mut notifications = client.notifications();
    client.subscribe(uri).await?;
    let show = |result: Value| -> anyhow::Result<()> {
        if cli.json {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{}",
                json!({"uri": uri, "contents": result["contents"]})
            )?;
            out.flush()?;
            Ok(())
        } else {
            show_contents(&result)
        }
    };
    show(serde_json::to_value(client.read_resource(uri).await?)?)?;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            notification = notifications.recv() => match notification {
                Ok(n) if n.method == "notifications/resources/updated"
                    && n.params.as_ref().and_then(|p| p["uri"].as_str()) == Some(uri) =>
                {
                    show(serde_json::to_value(client.read_resource(uri).await?)?)?;
                }
                Ok(_) => {}
                // Fell behind: read it now, which is all that matters for a watch.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    show(serde_json::to_value(client.read_resource(uri).await?)?)?;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => bail!("the connection closed"),
            },
            _ = &mut interrupted => {
                client.close().await;
                return Ok(INTERRUPTED);
            }
        }
    }
}

/// The agent API's base (`http(s)://host/agent`) for an MCP endpoint URL.
fn agent_base(url: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .with_context(|| format!("`{url}` is not a URL"))?;
    let scheme = match scheme {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        other => bail!("`{other}://`: use ws://, wss://, http:// or https://"),
    };
    let host = rest.split('/').next().unwrap_or(rest);
    Ok(format!("{scheme}://{host}/agent"))
}

async fn agent(cli: &Cli, command: &AgentCommand, roots: &[Vec<u8>]) -> anyhow::Result<u8> {
    use hyper::Method;
    let base = agent_base(&cli.url)?;
    let token = cli.token.as_deref();
    let (method, url, body) = match command {
        AgentCommand::Create { name } => (Method::POST, base, Some(json!({"name": name}))),
        AgentCommand::Show { id } => (Method::GET, format!("{base}/{id}"), None),
        AgentCommand::Delete { id } => (Method::DELETE, format!("{base}/{id}"), None),
    };
    let answer = mcp_client::http::request(method, &url, token, body.as_ref(), roots).await?;
    if !(200..300).contains(&answer.status) {
        let why = answer.body["error"]
            .as_str()
            .map_or_else(|| answer.body.to_string(), str::to_owned);
        bail!("{url}: {} {}", answer.status, why.trim());
    }
    match command {
        AgentCommand::Create { .. } if !cli.json => {
            println_out(answer.body["agentId"].as_str().unwrap_or_default())?;
        }
        AgentCommand::Delete { id } if !cli.json => println_out(&format!("deleted {id}"))?,
        _ => print_json(&answer.body)?,
    }
    Ok(0)
}

fn println_out(text: &str) -> anyhow::Result<()> {
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}
