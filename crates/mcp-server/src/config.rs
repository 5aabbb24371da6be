//! Command line and environment configuration.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::Auth;
use crate::tls::Tls;
use clap::Parser;
use mcp_auth::{AuthError, Jwt, JwtConfig, KeySource};
use mcp_session::{RateLimit, ServerConfig};
use mcp_tools::{DataRoot, ToolsConfig};
use mcp_ws::{Heartbeat, WsConfig};

/// A Model Context Protocol server over WebSocket.
///
/// Every option can also be set through the environment variable named in its help.
#[derive(Debug, Clone, Parser)]
#[command(name = "mcp-server", version)]
pub struct Cli {
    /// Address and port to listen on; port 0 picks a free port.
    #[arg(
        long,
        env = "MCP_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "HOST:PORT"
    )]
    pub listen: SocketAddr,

    /// Largest WebSocket message accepted, in bytes; a larger one closes the connection with 1009.
    #[arg(long, env = "MCP_MAX_MESSAGE_SIZE", default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    pub max_message_size: usize,

    /// Outgoing messages buffered per connection before the session stops reading a slow client.
    #[arg(
        long,
        env = "MCP_OUTBOUND_QUEUE",
        default_value_t = 256,
        value_name = "MESSAGES"
    )]
    pub outbound_queue: usize,

    /// Seconds one WebSocket frame may take to write before the client counts as not reading;
    /// it is then disconnected with close code 1008 and its calls are cancelled.
    #[arg(
        long,
        env = "MCP_STALL_TIMEOUT",
        default_value_t = 30,
        value_name = "SECONDS"
    )]
    pub stall_timeout: u64,

    /// Seconds a tool call may run before it is stopped with an error.
    #[arg(
        long,
        env = "MCP_CALL_TIMEOUT",
        default_value_t = 600,
        value_name = "SECONDS"
    )]
    pub call_timeout: u64,

    /// Shortest time between two progress notifications of one call, in milliseconds
    /// (the first and the final one always go out).
    #[arg(
        long,
        env = "MCP_PROGRESS_INTERVAL_MS",
        default_value_t = 100,
        value_name = "MS"
    )]
    pub progress_interval_ms: u64,

    /// Heavy calls (batches, image jobs) running at once across all sessions; the rest queue
    /// fairly, round-robin across sessions. Default: the number of CPUs.
    #[arg(long, env = "MCP_HEAVY_CONCURRENCY", value_name = "CALLS")]
    pub heavy_concurrency: Option<usize>,

    /// Directory for durable state (the sessions store, `sessions.redb`); created when missing.
    /// Without it, sessions live in memory and are lost at exit.
    #[arg(long, env = "MCP_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Keep sessions, their logs and tasks in Redis (or Valkey) instead of the data
    /// directory, for several instances that any request may reach: `redis://HOST:PORT[/DB]`,
    /// `rediss://` for TLS, `redis+unix:///PATH`. See docs/scale-out.md.
    #[arg(long, env = "MCP_STORE", value_name = "URL")]
    pub store: Option<String>,

    /// How the other instances sharing a --store reach this one (`http://HOST:PORT`): they
    /// forward it the requests of its 2025 Streamable HTTP sessions. Default: the address it
    /// listens on, unless that is a wildcard (0.0.0.0, [::]).
    #[arg(long, env = "MCP_INSTANCE_URL", value_name = "URL")]
    pub instance_url: Option<String>,

    /// This instance's name among those sharing a --store (what its task leases name).
    /// Default: the host name, the process id and a random part.
    #[arg(long, env = "MCP_INSTANCE_ID", value_name = "NAME")]
    pub instance_id: Option<String>,

    /// Seconds a task's lease lasts unless renewed (every third of it): with a shared
    /// --store, how soon another instance takes up the tasks of one that died.
    #[arg(
        long,
        env = "MCP_TASK_LEASE",
        default_value_t = 6,
        value_name = "SECONDS"
    )]
    pub task_lease: u64,

    /// The prefix of every key the server writes in Redis (--store): servers with other
    /// prefixes share a Redis without seeing each other.
    #[arg(
        long,
        env = "MCP_STORE_PREFIX",
        value_name = "PREFIX",
        default_value = "mcp:"
    )]
    pub store_prefix: String,

    /// A file of at least 32 secret bytes that makes the `requestState` of a 2026-07-28
    /// input-required result tamper-proof; instances behind one load balancer share it.
    /// Default: `request-state.key` in the data directory, made at the first start; without
    /// a data directory, a random key that dies with the process.
    #[arg(long, env = "MCP_REQUEST_STATE_KEY_FILE", value_name = "FILE")]
    pub request_state_key_file: Option<PathBuf>,

    /// Seconds a session (agent) may go unused before it expires and its data is removed.
    #[arg(
        long,
        env = "MCP_SESSION_TTL",
        default_value_t = 86_400,
        value_name = "SECONDS"
    )]
    pub session_ttl: u64,

    /// Seconds a resumable session outlives its connection, its calls still running, for the
    /// client to resume it; then its calls are cancelled.
    #[arg(
        long,
        env = "MCP_RESUME_GRACE",
        default_value_t = 300,
        value_name = "SECONDS"
    )]
    pub resume_grace: u64,

    /// Messages a resumable session keeps for a client that resumes; resuming from before
    /// them is refused with -32003.
    #[arg(
        long,
        env = "MCP_RESUME_LOG",
        default_value_t = 4096,
        value_name = "MESSAGES"
    )]
    pub resume_log: usize,

    /// Bytes of messages a resumable session keeps at most, in memory and in the store (the
    /// newest is kept whatever its size); the oldest go first, as beyond --resume-log.
    #[arg(
        long,
        env = "MCP_RESUME_LOG_BYTES",
        default_value_t = 16 * 1024 * 1024,
        value_name = "BYTES"
    )]
    pub resume_log_bytes: usize,

    /// Seconds a task (the 2026-07-28 tasks extension) is kept after its creation, result
    /// included (its `ttlMs`); a task still running then is stopped and removed. It is also
    /// the longest a task may run.
    #[arg(
        long,
        env = "MCP_TASK_TTL",
        default_value_t = 3_600,
        value_name = "SECONDS"
    )]
    pub task_ttl: u64,

    /// How often a task's client is told to poll it (`pollIntervalMs`).
    #[arg(
        long,
        env = "MCP_TASK_POLL_INTERVAL_MS",
        default_value_t = 1_000,
        value_name = "MS"
    )]
    pub task_poll_interval_ms: u64,

    /// Tasks one principal may keep, running or ended, until they expire; more are refused
    /// with -32001 (`data.limit` = `tasks`).
    #[arg(
        long,
        env = "MCP_MAX_TASKS_PER_PRINCIPAL",
        default_value_t = 1_000,
        value_name = "N"
    )]
    pub max_tasks_per_principal: usize,

    /// The largest result a task keeps (its JSON, in bytes); a task whose result is larger
    /// fails with -32603 saying so.
    #[arg(
        long,
        env = "MCP_MAX_TASK_RESULT_BYTES",
        default_value_t = 4 << 20,
        value_name = "BYTES"
    )]
    pub max_task_result_bytes: usize,

    /// Directory that file tools (`process_images`) may read and write; paths outside it are
    /// refused. With authentication, each principal has its own directory in it
    /// (`DIR/<principal>`), where its paths are resolved. Without it, file tools are not
    /// offered.
    #[arg(long, env = "MCP_DATA_ROOT", value_name = "DIR")]
    pub data_root: Option<PathBuf>,

    /// Number of tools per `tools/list` page.
    #[arg(
        long,
        env = "MCP_PAGE_SIZE",
        default_value_t = 50,
        value_name = "TOOLS"
    )]
    pub page_size: usize,

    /// Seconds running requests get to finish after SIGTERM or SIGINT; then they are cancelled
    /// and their callers get a -32000 error.
    #[arg(
        long,
        env = "MCP_SHUTDOWN_GRACE",
        default_value_t = 30,
        value_name = "SECONDS"
    )]
    pub shutdown_grace: u64,

    /// Seconds between heartbeats: the server asks each client for a sign of life this often.
    #[arg(
        long,
        env = "MCP_PING_INTERVAL",
        default_value_t = 20,
        value_name = "SECONDS"
    )]
    pub ping_interval: u64,

    /// Seconds a client may show no sign of life (no frame at all) before it is disconnected
    /// with close code 1001 "heartbeat timeout".
    #[arg(
        long,
        env = "MCP_PING_TIMEOUT",
        default_value_t = 45,
        value_name = "SECONDS"
    )]
    pub ping_timeout: u64,

    /// How the heartbeat asks for a sign of life: WebSocket ping `frames`, MCP `jsonrpc` ping
    /// requests, or `both`.
    #[arg(long, env = "MCP_HEARTBEAT", default_value = "frames", value_parser = ["frames", "jsonrpc", "both"])]
    pub heartbeat: String,

    /// Open connections at most, HTTP and WebSocket alike, counted from accept to close; a
    /// connection over the limit is answered 503 at once and closed.
    #[arg(
        long,
        env = "MCP_MAX_CONNECTIONS",
        default_value_t = 10_000,
        value_name = "CONNECTIONS"
    )]
    pub max_connections: usize,

    /// Seconds a request body may take to arrive, all of it; a slower one gets 408 and its
    /// connection is closed.
    #[arg(
        long,
        env = "MCP_BODY_TIMEOUT",
        default_value_t = 30,
        value_name = "SECONDS"
    )]
    pub body_timeout: u64,

    /// Sessions at most; a new session over the limit gets 503.
    #[arg(
        long,
        env = "MCP_MAX_SESSIONS",
        default_value_t = 10_000,
        value_name = "SESSIONS"
    )]
    pub max_sessions: usize,

    /// Requests one session may have running; more get a -32001 error naming this limit.
    #[arg(
        long,
        env = "MCP_MAX_INFLIGHT",
        default_value_t = 64,
        value_name = "REQUESTS"
    )]
    pub max_inflight: usize,

    /// Seconds a new session may take to send `initialize`; then it is closed with 1008.
    #[arg(
        long,
        env = "MCP_INIT_TIMEOUT",
        default_value_t = 30,
        value_name = "SECONDS"
    )]
    pub init_timeout: u64,

    /// Seconds a session may go without a message while nothing runs; then it is closed with
    /// 1000 "idle timeout". Heartbeats keep the connection alive but do not count.
    #[arg(
        long,
        env = "MCP_IDLE_TIMEOUT",
        default_value_t = 3600,
        value_name = "SECONDS"
    )]
    pub idle_timeout: u64,

    /// A bearer token clients must present, as NAME=TOKEN (the name is the principal that
    /// owns what the client creates); repeat for more. With any token configured, every
    /// request but the health probes needs one.
    #[arg(
        long = "auth-token",
        env = "MCP_AUTH_TOKENS",
        value_delimiter = ',',
        value_name = "NAME=TOKEN"
    )]
    pub auth_tokens: Vec<String>,

    /// A file of tokens, one `NAME SHA256HEX` per line (the SHA-256 of the token, so the file
    /// holds no secret); `#` starts a comment.
    #[arg(long, env = "MCP_AUTH_TOKENS_FILE", value_name = "PATH")]
    pub auth_tokens_file: Option<PathBuf>,

    /// A principal (a token's NAME) that may call the admin endpoints (`/admin/*`); repeat
    /// for more. Without tokens, admin endpoints answer loopback clients only.
    #[arg(
        long = "admin",
        env = "MCP_ADMINS",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub admins: Vec<String>,

    /// Accept JWT access tokens signed with the keys of this JWKS file (RS256, ES256).
    #[arg(
        long,
        env = "MCP_JWT_JWKS_FILE",
        value_name = "PATH",
        group = "jwt_keys"
    )]
    pub jwt_jwks_file: Option<PathBuf>,

    /// Accept JWT access tokens signed with the keys of the JWKS at this URL (RS256, ES256),
    /// fetched at start, every 10 minutes, and when a token names an unknown key. https, or
    /// http to a loopback host only.
    #[arg(long, env = "MCP_JWT_JWKS_URL", value_name = "URL", group = "jwt_keys")]
    pub jwt_jwks_url: Option<String>,

    /// Accept JWT access tokens signed (HS256) with the secret in this file (at least 32
    /// bytes; a trailing newline is ignored).
    #[arg(
        long,
        env = "MCP_JWT_SECRET_FILE",
        value_name = "PATH",
        group = "jwt_keys"
    )]
    pub jwt_secret_file: Option<PathBuf>,

    /// The `iss` JWTs must have: the authorization server.
    #[arg(long, env = "MCP_JWT_ISSUER", value_name = "URL")]
    pub jwt_issuer: Option<String>,

    /// An `aud` JWTs may have (one must match); repeat for more. Default: this server's
    /// resource URL, `--public-url` followed by `/mcp`.
    #[arg(
        long = "jwt-audience",
        env = "MCP_JWT_AUDIENCES",
        value_delimiter = ',',
        value_name = "AUD"
    )]
    pub jwt_audiences: Vec<String>,

    /// The URL clients reach this server at (`https://mcp.example.com`), for the
    /// protected-resource metadata and the default JWT audience. Default: the scheme and
    /// Host of each request.
    #[arg(long, env = "MCP_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// An authorization server to name in the protected-resource metadata; repeat for
    /// more. Default: the JWT issuer.
    #[arg(
        long = "authorization-server",
        env = "MCP_AUTHORIZATION_SERVERS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub authorization_servers: Vec<String>,

    /// Requests (pings aside) each principal may send per second, across its sessions and
    /// the HTTP API; 0 turns the limit off. Bursts of twice as many pass. Default: 1000 with
    /// authentication configured; off without, where every client is the one local principal.
    #[arg(long, env = "MCP_RATE_LIMIT", value_name = "PER_SECOND")]
    pub rate_limit: Option<u32>,

    /// Tool calls each principal may have running at once, across its sessions; 0 turns the
    /// limit off. Default: 256 with authentication configured; off without, where every
    /// client is the one local principal (each session still has --max-inflight).
    #[arg(long, env = "MCP_MAX_CALLS_PER_PRINCIPAL", value_name = "N")]
    pub max_calls_per_principal: Option<usize>,

    /// Sessions (WebSocket, HTTP) each principal may have open at once; 0 turns the limit
    /// off. Over it a new one gets 429 (or -32001). Default: 1000 with authentication
    /// configured; off without, where every client is the one local principal
    /// (--max-sessions still holds).
    #[arg(long, env = "MCP_MAX_SESSIONS_PER_PRINCIPAL", value_name = "N")]
    pub max_sessions_per_principal: Option<usize>,

    /// Connections each principal may hold open at once: WebSockets, and HTTP requests with
    /// their (streamed) responses; 0 turns the limit off. Over it: 429 with Retry-After.
    /// Default: 1000 with authentication configured; off without (--max-connections still
    /// holds).
    #[arg(long, env = "MCP_MAX_CONNECTIONS_PER_PRINCIPAL", value_name = "N")]
    pub max_connections_per_principal: Option<usize>,

    /// Sessions each principal may keep in the store (agents, and resumable sessions); 0
    /// turns the limit off. Over it a new agent gets 429, a new resumable session -32001.
    /// Default: 1000 with authentication configured; off without.
    #[arg(long, env = "MCP_MAX_STORED_SESSIONS_PER_PRINCIPAL", value_name = "N")]
    pub max_stored_sessions_per_principal: Option<usize>,

    /// Bytes each principal may keep in the store (its agents' and resumable sessions'
    /// records and logs, its tasks); 0 turns the limit off. Checked before it keeps more:
    /// over it a new agent or an agent's call gets 429, a new resumable session, a task or a
    /// resumable session's tool call -32001. Default: 268435456 (256 MiB) with
    /// authentication configured; off without.
    #[arg(long, env = "MCP_MAX_STORED_BYTES_PER_PRINCIPAL", value_name = "BYTES")]
    pub max_stored_bytes_per_principal: Option<u64>,

    /// Serve https and wss with this certificate chain (PEM); needs --tls-key. SIGHUP
    /// reloads both files without dropping connections.
    #[arg(long, env = "MCP_TLS_CERT", value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "MCP_TLS_KEY", value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve `/metrics` to admins only (see --admin), not to every authenticated client.
    #[arg(long, env = "MCP_METRICS_ADMIN_ONLY")]
    pub metrics_admin_only: bool,

    /// Serve a non-loopback address without authentication. Without this, the server
    /// refuses to start there unless tokens are configured.
    #[arg(long, env = "MCP_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    /// Also offer the official MCP conformance suite's fixture tools (`test_simple_text`,
    /// `test_tool_with_progress`, ...), for running the suite against this server.
    #[arg(long, env = "MCP_CONFORMANCE_FIXTURES")]
    pub conformance_fixtures: bool,

    /// An origin (`scheme://host[:port]`) browsers may call the server from, besides its own
    /// loopback origins; repeat for more. Requests with another `Origin` get 403.
    #[arg(
        long = "allowed-origin",
        env = "MCP_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub allowed_origins: Vec<String>,

    /// Another MCP server whose tools this one serves, as `NAME.tool`: `NAME=COMMAND [ARGS...]`
    /// runs a stdio server (the command line split as a shell would, never run by one),
    /// `NAME=https://HOST/PATH` reaches a remote one; repeat for more (docs/gateway.md).
    #[arg(
        long = "upstream",
        env = "MCP_UPSTREAM",
        value_name = "NAME=COMMAND|URL"
    )]
    pub upstreams: Vec<String>,

    /// A TOML file of upstreams (`[[upstream]]` entries: docs/gateway.md), read again at
    /// SIGHUP: added, removed and changed upstreams take effect, the others run on.
    #[arg(long, env = "MCP_UPSTREAMS_FILE", value_name = "PATH")]
    pub upstreams_file: Option<PathBuf>,

    /// Log format on stderr: `text` or `json`. Filter with RUST_LOG (default `info`).
    #[arg(long, env = "MCP_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// Everything [`crate::serve`] needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// The protocol core's settings.
    pub session: ServerConfig,
    /// The WebSocket transport's settings.
    pub ws: WsConfig,
    /// How long running requests get to finish at shutdown.
    pub shutdown_grace: Duration,
    /// Open connections at most (HTTP and WebSocket alike).
    pub max_connections: usize,
    /// How long a request body may take to arrive (408 after).
    pub body_timeout: Duration,
    /// How often subscribers of the statistics resource may hear of changes.
    pub stats_interval: Duration,
    /// Where durable state is kept; `None` keeps it in memory.
    pub data_dir: Option<PathBuf>,
    /// The Redis that keeps sessions and tasks instead of the data directory, and the
    /// prefix of its keys (`--store`, `--store-prefix`).
    pub store: Option<(String, String)>,
    /// How the other instances reach this one (`--instance-url`).
    pub instance_url: Option<String>,
    /// The secret of 2026-07-28 `requestState`s (see `--request-state-key-file`); `None`:
    /// `request-state.key` in the data directory, or a random key without one.
    pub request_state_key_file: Option<PathBuf>,
    /// How long an unused session (agent) is kept.
    pub session_ttl: Duration,
    /// What the built-in tools need.
    pub tools: ToolsConfig,
    /// Whether the official conformance suite's fixtures (tools, resources, prompts,
    /// completion) are offered too.
    pub conformance_fixtures: bool,
    /// Origins allowed besides the server's own loopback ones.
    pub allowed_origins: Vec<String>,
    /// Who may call; empty means everyone (loopback only, unless told otherwise).
    pub auth: Auth,
    /// The principals that may call the admin endpoints.
    pub admins: Vec<String>,
    /// Whether `/metrics` needs an admin.
    pub metrics_admin_only: bool,
    /// The URL clients reach the server at, if configured.
    pub public_url: Option<String>,
    /// The authorization servers the protected-resource metadata names (default: the JWT
    /// issuer).
    pub authorization_servers: Vec<String>,
    /// The certificate for https and wss; `None` serves plain http and ws.
    pub tls: Option<Arc<Tls>>,
    /// Other MCP servers whose tools this one serves (`--upstream`), besides those of
    /// `upstreams_file`.
    pub upstreams: Vec<mcp_gateway::config::Upstream>,
    /// The file of more upstreams, read again at SIGHUP (`--upstreams-file`).
    pub upstreams_file: Option<PathBuf>,
}

impl Config {
    /// Whether other servers' tools are served here.
    pub fn has_upstreams(&self) -> bool {
        !self.upstreams.is_empty() || self.upstreams_file.is_some()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            session: ServerConfig::default(),
            ws: WsConfig::default(),
            shutdown_grace: Duration::from_secs(30),
            max_connections: 10_000,
            body_timeout: Duration::from_secs(30),
            stats_interval: Duration::from_secs(1),
            data_dir: None,
            store: None,
            instance_url: None,
            request_state_key_file: None,
            session_ttl: Duration::from_secs(86_400),
            tools: ToolsConfig::default(),
            conformance_fixtures: false,
            allowed_origins: Vec::new(),
            auth: Auth::default(),
            admins: Vec::new(),
            metrics_admin_only: false,
            public_url: None,
            authorization_servers: Vec::new(),
            tls: None,
            upstreams: Vec::new(),
            upstreams_file: None,
        }
    }
}

/// A per-principal limit as given, or its default with authentication (off without: every
/// client is then the one local principal); 0 turns it off.
fn limit<T: Copy + Default + PartialEq>(given: Option<T>, default: T, auth: bool) -> Option<T> {
    let n = given.unwrap_or(if auth { default } else { T::default() });
    (n != T::default()).then_some(n)
}

/// Requests per second per principal when authentication is configured and `--rate-limit`
/// is not given.
const DEFAULT_RATE_LIMIT: u32 = 1000;

/// Tool calls per principal at once when authentication is configured and
/// `--max-calls-per-principal` is not given.
const DEFAULT_CALLS_PER_PRINCIPAL: usize = 256;

/// Sessions per principal with authentication configured (see `--max-sessions-per-principal`).
const DEFAULT_SESSIONS_PER_PRINCIPAL: usize = 1_000;
/// Stored sessions per principal with authentication configured (see
/// `--max-stored-sessions-per-principal`).
const DEFAULT_STORED_SESSIONS_PER_PRINCIPAL: usize = 1_000;
/// What `--max-connections-per-principal` is with authentication.
const DEFAULT_CONNECTIONS_PER_PRINCIPAL: usize = 1_000;
/// What `--max-stored-bytes-per-principal` is with authentication: 256 MiB.
const DEFAULT_STORED_BYTES_PER_PRINCIPAL: u64 = 256 << 20;

impl Cli {
    /// The server configuration these options describe. Fails when the data root does not
    /// exist.
    pub fn config(&self) -> std::io::Result<Config> {
        let defaults = Config::default();
        let heavy = self
            .heavy_concurrency
            .unwrap_or(defaults.session.heavy_concurrency);
        let auth = self.auth().map_err(std::io::Error::other)?;
        let auth_enabled = auth.is_enabled();
        let tools = match &self.data_root {
            Some(dir) => {
                let root = DataRoot::new(dir).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("--data-root {}: {e}", dir.display()))
                })?;
                // With authentication, each principal works in a directory of its own.
                ToolsConfig::with_data_root(root.per_principal(auth_enabled), heavy)?
            }
            None => ToolsConfig::default(),
        };
        let rate = self
            .rate_limit
            .unwrap_or(if auth_enabled { DEFAULT_RATE_LIMIT } else { 0 });
        Ok(Config {
            session: ServerConfig {
                page_size: self.page_size.max(1),
                outbound_capacity: self.outbound_queue.max(1),
                call_timeout: Duration::from_secs(self.call_timeout.max(1)),
                progress_interval: Duration::from_millis(self.progress_interval_ms),
                heavy_concurrency: heavy.max(1),
                max_inflight_per_session: self.max_inflight.max(1),
                max_sessions: self.max_sessions.max(1),
                init_timeout: Duration::from_secs(self.init_timeout.max(1)),
                idle_timeout: Duration::from_secs(self.idle_timeout.max(1)),
                resume_grace: Duration::from_secs(self.resume_grace),
                resume_log: self.resume_log.max(16),
                resume_log_bytes: self.resume_log_bytes.max(1),
                task_ttl: Duration::from_secs(self.task_ttl.max(1)),
                task_poll_interval: Duration::from_millis(self.task_poll_interval_ms.max(1)),
                max_tasks_per_principal: self.max_tasks_per_principal,
                max_task_result_bytes: self.max_task_result_bytes,
                instance_id: self
                    .instance_id
                    .clone()
                    .unwrap_or_else(mcp_session::default_instance_id),
                task_lease: Duration::from_secs(self.task_lease.max(1)),
                rate_limit: NonZeroU32::new(rate).map(|per_second| RateLimit {
                    per_second,
                    burst: per_second.saturating_mul(NonZeroU32::MIN.saturating_add(1)),
                }),
                max_calls_per_principal: limit(
                    self.max_calls_per_principal,
                    DEFAULT_CALLS_PER_PRINCIPAL,
                    auth_enabled,
                ),
                max_stored_sessions_per_principal: limit(
                    self.max_stored_sessions_per_principal,
                    DEFAULT_STORED_SESSIONS_PER_PRINCIPAL,
                    auth_enabled,
                ),
                max_stored_bytes_per_principal: limit(
                    self.max_stored_bytes_per_principal,
                    DEFAULT_STORED_BYTES_PER_PRINCIPAL,
                    auth_enabled,
                ),
                max_connections_per_principal: limit(
                    self.max_connections_per_principal,
                    DEFAULT_CONNECTIONS_PER_PRINCIPAL,
                    auth_enabled,
                ),
                max_sessions_per_principal: limit(
                    self.max_sessions_per_principal,
                    DEFAULT_SESSIONS_PER_PRINCIPAL,
                    auth_enabled,
                ),
                ..defaults.session
            },
            ws: WsConfig {
                max_message_size: self.max_message_size,
                stall_timeout: Duration::from_secs(self.stall_timeout.max(1)),
                ping_interval: Duration::from_secs(self.ping_interval.max(1)),
                ping_timeout: Duration::from_secs(self.ping_timeout.max(1)),
                heartbeat: match self.heartbeat.as_str() {
                    "jsonrpc" => Heartbeat::JsonRpc,
                    "both" => Heartbeat::Both,
                    _ => Heartbeat::Frames,
                },
                ..defaults.ws
            },
            shutdown_grace: Duration::from_secs(self.shutdown_grace),
            max_connections: self.max_connections.max(1),
            body_timeout: Duration::from_secs(self.body_timeout.max(1)),
            stats_interval: defaults.stats_interval,
            data_dir: self.data_dir.clone(),
            store: self
                .store
                .clone()
                .map(|url| (url, self.store_prefix.clone())),
            instance_url: self
                .instance_url
                .as_deref()
                .map(|url| url.trim_end_matches('/').to_owned()),
            request_state_key_file: self.request_state_key_file.clone(),
            session_ttl: Duration::from_secs(self.session_ttl.max(1)),
            tools,
            conformance_fixtures: self.conformance_fixtures,
            allowed_origins: self.allowed_origins.clone(),
            auth,
            admins: self.admins.clone(),
            metrics_admin_only: self.metrics_admin_only,
            public_url: self.public_url.clone(),
            authorization_servers: self.authorization_servers.clone(),
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(Arc::new(
                    Tls::load(cert, key).map_err(std::io::Error::other)?,
                )),
                _ => None,
            },
            upstreams: self.upstreams()?,
            upstreams_file: self.upstreams_file.clone(),
        })
    }

    /// The `--upstream` flags' upstreams. The upstreams file is checked with them now, so
    /// that a server with a bad configuration does not start; the server reads it again
    /// when it starts and at SIGHUP.
    fn upstreams(&self) -> std::io::Result<Vec<mcp_gateway::config::Upstream>> {
        let flags = self
            .upstreams
            .iter()
            .map(|flag| mcp_gateway::config::Upstream::from_flag(flag))
            .collect::<Result<Vec<_>, _>>()
            .map_err(std::io::Error::other)?;
        for upstream in &flags {
            mcp_gateway::config::check_supported(upstream).map_err(std::io::Error::other)?;
        }
        match &self.upstreams_file {
            Some(file) => all_upstreams(&flags, file)?,
            None => mcp_gateway::config::check_unique(&flags)
                .map(|()| flags.clone())
                .map_err(std::io::Error::other)?,
        };
        Ok(flags)
    }

    /// Static tokens, and the JWT verifier when keys are configured.
    fn auth(&self) -> Result<Auth, AuthError> {
        let auth = Auth::new(&self.auth_tokens, self.auth_tokens_file.as_deref())?;
        let keys = if let Some(path) = &self.jwt_secret_file {
            let secret = std::fs::read(path).map_err(|e| {
                AuthError::Config(format!("--jwt-secret-file {}: {e}", path.display()))
            })?;
            let secret = secret.trim_ascii_end().to_vec();
            KeySource::Secret(secret)
        } else if let Some(path) = &self.jwt_jwks_file {
            KeySource::JwksFile(path.clone())
        } else if let Some(url) = &self.jwt_jwks_url {
            KeySource::JwksUrl(url.clone())
        } else {
            if self.jwt_issuer.is_some() || !self.jwt_audiences.is_empty() {
                return Err(AuthError::Config("--jwt-issuer and --jwt-audience need keys: --jwt-jwks-file, --jwt-jwks-url or --jwt-secret-file".to_owned()));
            }
            return Ok(auth);
        };
        let mut audiences = self.jwt_audiences.clone();
        if audiences.is_empty()
            && let Some(url) = &self.public_url
        {
            audiences.push(format!("{}/mcp", url.trim_end_matches('/')));
        }
        let jwt = Jwt::new(JwtConfig {
            keys,
            issuer: self.jwt_issuer.clone(),
            audiences,
            extra_tries_per_second: mcp_auth::EXTRA_TRIES_PER_SECOND,
        })?;
        Ok(auth.with_jwt(jwt))
    }
}

/// The flags' upstreams and the file's, which must not share a name.
pub(crate) fn all_upstreams(
    flags: &[mcp_gateway::config::Upstream],
    file: &std::path::Path,
) -> std::io::Result<Vec<mcp_gateway::config::Upstream>> {
    let mut upstreams = read_upstreams(file)?;
    upstreams.extend(flags.iter().cloned());
    mcp_gateway::config::check_unique(&upstreams).map_err(std::io::Error::other)?;
    Ok(upstreams)
}

/// The upstreams of a TOML file (`--upstreams-file`).
pub(crate) fn read_upstreams(
    file: &std::path::Path,
) -> std::io::Result<Vec<mcp_gateway::config::Upstream>> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("--upstreams-file {}: {e}", file.display()),
        )
    })?;
    let upstreams = mcp_gateway::config::from_toml(&text)
        .map_err(|e| std::io::Error::other(format!("--upstreams-file {}: {e}", file.display())))?;
    for upstream in &upstreams {
        mcp_gateway::config::check_supported(upstream).map_err(|e| {
            std::io::Error::other(format!("--upstreams-file {}: {e}", file.display()))
        })?;
    }
    Ok(upstreams)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(args: &[&str]) -> Option<u32> {
        let cli = Cli::try_parse_from(std::iter::once("mcp-server").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"));
        let config = cli.config().unwrap_or_else(|e| panic!("{e}"));
        config.session.rate_limit.map(|r| r.per_second.get())
    }

    fn calls(args: &[&str]) -> Option<usize> {
        let cli = Cli::try_parse_from(std::iter::once("mcp-server").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"));
        cli.config()
            .unwrap_or_else(|e| panic!("{e}"))
            .session
            .max_calls_per_principal
    }

    /// Found by the benchmark: without authentication every local client is the one
    /// anonymous principal, so a per-principal cap of 256 refused the 1,024 calls that 64
    /// connections with 16 in flight each had running.
    #[test]
    fn the_calls_limit_defaults_on_with_authentication_and_off_without() {
        let token = ["--auth-token", "ops=some-long-token"];
        assert_eq!(calls(&[]), None);
        assert_eq!(calls(&token), Some(DEFAULT_CALLS_PER_PRINCIPAL));
        assert_eq!(
            calls(&[&token[..], &["--max-calls-per-principal", "0"]].concat()),
            None
        );
        assert_eq!(calls(&["--max-calls-per-principal", "8"]), Some(8));
    }

    #[test]
    fn the_rate_limit_defaults_on_with_authentication_and_off_without() {
        let token = ["--auth-token", "ops=some-long-token"];
        assert_eq!(rate(&[]), None);
        assert_eq!(rate(&token), Some(DEFAULT_RATE_LIMIT));
        assert_eq!(rate(&[&token[..], &["--rate-limit", "0"]].concat()), None);
        assert_eq!(rate(&["--rate-limit", "5"]), Some(5));
    }
}
