//! The hub: what all sessions of one server share (configuration, the catalog of tools and
//! providers, the router, the store, limits, metrics, the registries of running sessions, and
//! the root of the cancellation tree). It is not a server: it has no listener and no
//! transport; transports open sessions on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mcp_protocol::{
    Implementation, InitializeResult, LoggingLevel, LoggingMessageParams, Message, Notification,
    ProtocolVersion, RequestId, ResourcesCapability, Response, ServerCapabilities, ToolsCapability,
    methods,
};
use mcp_tools::{Logger, Progress, Provider, Scheduler, ToolContext, ToolRegistry};
use tokio_util::sync::CancellationToken;

use tokio::sync::mpsc;

use crate::catalog::Catalog;
use crate::metrics::Metrics;
use crate::outbound::with_member;
use crate::outbound::{self, OutboundReceiver};
use crate::resumable::Control;
use crate::router::{Router, to_value};
use crate::{MemoryStore, Principal, Session, SessionId, SessionStore};

/// Settings of the protocol core.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Who the server says it is in `initialize`.
    pub server_info: Implementation,
    /// Usage notes for the client's model, sent in `initialize`.
    pub instructions: Option<String>,
    /// How many tools one `tools/list` page holds.
    pub page_size: usize,
    /// How many messages a session queues for a slow client before it stops reading input.
    /// Progress notifications do not count: they coalesce instead.
    pub outbound_capacity: usize,
    /// The shortest time between two progress notifications of one call (the first and the
    /// final one always go out).
    pub progress_interval: Duration,
    /// How long a tool call may run before it is stopped with an error.
    pub call_timeout: Duration,
    /// How long a stopped call gets to wind down and say how far it got.
    pub stop_grace: Duration,
    /// How many heavy calls (batches) run at once across all sessions; the rest queue fairly.
    pub heavy_concurrency: usize,
    /// How many requests one session may have running; more are refused with -32001.
    pub max_inflight_per_session: usize,
    /// How many sessions may exist at once; [`Hub::reserve_session`] takes a place for one
    /// more.
    pub max_sessions: usize,
    /// How long a new session may take to send `initialize` before it is closed.
    pub init_timeout: Duration,
    /// How long a session may go without any message from its client, while nothing runs,
    /// before it is closed.
    pub idle_timeout: Duration,
    /// How long a resumable session outlives its connection, its calls still running, for
    /// the client to resume it; then its calls are cancelled.
    pub resume_grace: Duration,
    /// How many messages a resumable session keeps for a client that resumes; resuming from
    /// before them is refused.
    pub resume_log: usize,
    /// How many bytes of messages it keeps at most, in memory and in the store (the newest
    /// message is kept whatever its size).
    pub resume_log_bytes: usize,
    /// How many requests per second each principal may send (pings aside); `None` (the
    /// default): no limit.
    pub rate_limit: Option<crate::RateLimit>,
    /// How many tool calls one principal may have running at once, across its sessions;
    /// `None` (the default): no limit.
    pub max_calls_per_principal: Option<usize>,
    /// How many sessions (WebSocket, HTTP, resumable while live) one principal may have open
    /// at once; `None` (the default): no limit but `max_sessions`.
    pub max_sessions_per_principal: Option<usize>,
    /// How many connections one principal may hold open at once: WebSockets, and HTTP
    /// requests with their (streamed) responses; `None` (the default): no limit but the
    /// server's. An idle HTTP connection is not counted (its principal is not known until
    /// its next request, and it is closed after the transport's idle timeout).
    pub max_connections_per_principal: Option<usize>,
    /// How many sessions (agents, resumable sessions) one principal may keep in the store;
    /// `None` (the default): no limit.
    pub max_stored_sessions_per_principal: Option<usize>,
    /// How many bytes one principal may keep in the store (its sessions' records and logs,
    /// its tasks: [`crate::Usage::bytes`]); `None` (the default): no limit. Checked before
    /// it starts to keep more (see [`Hub::may_store`]).
    pub max_stored_bytes_per_principal: Option<u64>,
    /// The secret that makes a modern request's `requestState` tamper-proof (32 bytes or
    /// more); `None`: a random one, so states do not outlive the process. Instances that
    /// serve one client in turn must share it.
    pub request_state_key: Option<Vec<u8>>,
    /// How long a `requestState` stays valid: a client has this long to answer an
    /// input-required result.
    pub request_state_ttl: Duration,
    /// How long a task is kept after its creation (its `ttlMs`); one still running then is
    /// stopped. It is also the longest a task may run.
    pub task_ttl: Duration,
    /// How often a task's client should poll it (`pollIntervalMs`).
    pub task_poll_interval: Duration,
    /// How many tasks one principal may keep (running or ended, until they expire); more
    /// are refused with -32001.
    pub max_tasks_per_principal: usize,
    /// The largest result a task keeps, in bytes (its JSON); a larger one fails the task.
    pub max_task_result_bytes: usize,
    /// This instance's name among those sharing a store: what its task leases name.
    pub instance_id: String,
    /// How long a task's lease lasts unless renewed (every third of it): on a shared store,
    /// how soon another instance takes up the tasks of one that died.
    pub task_lease: Duration,
}

/// A name for this process that no other instance has: its host, its process id and a
/// random part.
pub fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let mut random = [0u8; 4];
    let random = match getrandom::fill(&mut random) {
        Ok(()) => u32::from_le_bytes(random),
        Err(_) => 0,
    };
    format!("{host}-{}-{random:08x}", std::process::id())
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            server_info: Implementation {
                name: "mcp-server".to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                title: Some("MCP WebSocket server".to_owned()),
                extra: Default::default(),
            },
            instructions: Some(
                "Math tools: add, subtract, multiply, divide, power, modulo (two numbers `a` and `b`) and sqrt (one number `a`). \
                 Each returns {result, operation, a, b}; a failure (such as division by zero) is a result with isError set. \
                 `sleep` waits a given number of milliseconds."
                    .to_owned(),
            ),
            page_size: 50,
            outbound_capacity: 256,
            progress_interval: Duration::from_millis(100),
            call_timeout: Duration::from_secs(600),
            stop_grace: Duration::from_secs(5),
            heavy_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_inflight_per_session: 64,
            max_sessions: 10_000,
            init_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(3600),
            resume_grace: Duration::from_secs(300),
            resume_log: 4096,
            resume_log_bytes: 16 * 1024 * 1024,
            rate_limit: None,
            max_calls_per_principal: None,
            max_sessions_per_principal: None,
            max_connections_per_principal: None,
            max_stored_sessions_per_principal: None,
            max_stored_bytes_per_principal: None,
            request_state_key: None,
            request_state_ttl: Duration::from_secs(600),
            task_ttl: Duration::from_secs(3600),
            task_poll_interval: Duration::from_secs(1),
            max_tasks_per_principal: 1_000,
            max_task_result_bytes: 4 << 20,
            instance_id: default_instance_id(),
            task_lease: Duration::from_secs(6),
        }
    }
}

pub(crate) struct HubInner {
    pub(crate) config: ServerConfig,
    /// The tools and the providers of resources, prompts and completions.
    pub(crate) catalog: Catalog,
    /// The handlers of the methods every era serves.
    pub(crate) router: Router,
    /// The root of the cancellation tree: server, then session, then request. Cancelling it
    /// stops everything at once.
    pub(crate) shutdown: CancellationToken,
    /// Fires when a graceful shutdown begins; `drain_deadline` is then set.
    pub(crate) draining: CancellationToken,
    pub(crate) drain_deadline: std::sync::OnceLock<tokio::time::Instant>,
    /// Notified whenever a session ends.
    pub(crate) session_ended: tokio::sync::Notify,
    pub(crate) scheduler: Scheduler,
    pub(crate) metrics: Metrics,
    /// Sessions running or reserved: what `max_sessions` bounds.
    open_sessions: std::sync::atomic::AtomicUsize,
    /// Figures of other layers shown in the statistics resource (a transport's connections).
    stats: Vec<(&'static str, Stat)>,
    /// Where sessions (the seeds' agents) are kept.
    pub(crate) store: Arc<dyn SessionStore>,
    /// What carries signals to the other instances sharing the store, if any.
    pub(crate) bus: Option<Arc<dyn crate::Bus>>,
    /// The resources a modern request sees: no session's, so none of its own.
    pub(crate) stateless_resources: crate::resources::Resources,
    /// The key of modern requests' `requestState`.
    pub(crate) state_key: crate::round_trip::StateKey,
    /// Per-principal rate and concurrency limits.
    pub(crate) limits: crate::limits::Limits,
    /// The tasks (2026-07-28 tasks extension).
    pub(crate) tasks: crate::tasks::Tasks,
    next_session: AtomicU64,
    /// Bumped when the server statistics change (at most once per `refresh_stats` call).
    pub(crate) stats_version: tokio::sync::watch::Sender<u64>,
    last_stats: std::sync::Mutex<serde_json::Value>,
    started: tokio::time::Instant,
    /// Every running session, for broadcasts.
    sessions: std::sync::Mutex<std::collections::HashMap<u64, Notices>>,
    /// The resumable sessions running in this process, by id: how to reach each.
    live: std::sync::Mutex<std::collections::HashMap<SessionId, mpsc::Sender<Control>>>,
}

impl HubInner {
    /// The registry of running sessions, for broadcasts.
    pub(crate) fn sessions_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Notices>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Who runs a resumable session.
pub(crate) enum Claim {
    /// Nobody did: the caller does now, and receives its control messages here.
    Claimed(mpsc::Receiver<Control>),
    /// A live session: send it control messages here.
    Live(mpsc::Sender<Control>),
}

/// How to reach a session with a notice.
#[derive(Clone)]
pub(crate) struct Notices {
    pub(crate) queue: crate::outbound::WeakQueue,
    pub(crate) level: Arc<std::sync::atomic::AtomicU8>,
}

impl Notices {
    /// Queues `notifications/message` if the session wants `level`; whether it was queued.
    pub(crate) fn send(&self, level: LoggingLevel, logger: &str, data: serde_json::Value) -> bool {
        self.wants(level)
            && notice_text(level, logger, data).is_some_and(|text| self.send_text(level, &text))
    }

    /// Whether the session's client wants messages of `level`.
    fn wants(&self, level: LoggingLevel) -> bool {
        level >= LoggingLevel::ALL[usize::from(self.level.load(Ordering::Relaxed))]
    }

    /// Queues a notice already written (`notice_text`) if the session wants `level`.
    fn send_text(&self, level: LoggingLevel, text: &str) -> bool {
        if !self.wants(level) {
            return false;
        }
        let Some(queue) = self.queue.upgrade() else {
            return false;
        };
        queue.try_push_notice(text.to_owned()) == Ok(true)
    }
}

/// The text of a `notifications/message`.
pub(crate) fn notice_text(
    level: LoggingLevel,
    logger: &str,
    data: serde_json::Value,
) -> Option<String> {
    let params = LoggingMessageParams {
        level,
        logger: Some(logger.to_owned()),
        data,
    };
    let params = serde_json::to_value(params).ok()?;
    Some(
        Message::Notification(Notification {
            method: methods::MESSAGE.to_owned(),
            params: Some(params),
        })
        .to_text(),
    )
}

/// The state that every session of a server shares. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<HubInner>,
}

/// A figure of another layer, read when the statistics are.
pub type Stat = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Builds a [`Hub`]: its tools, providers and store.
pub struct HubBuilder {
    config: ServerConfig,
    tools: ToolRegistry,
    providers: Vec<Arc<dyn Provider>>,
    store: Option<Arc<dyn SessionStore>>,
    bus: Option<Arc<dyn crate::Bus>>,
    stats: Vec<(&'static str, Stat)>,
    tools_may_change: bool,
}

impl HubBuilder {
    /// How this instance and the others sharing its store tell each other things (none by
    /// default: one instance).
    pub fn bus(mut self, bus: Arc<dyn crate::Bus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// The tools the hub offers (none by default).
    pub fn tools(mut self, tools: ToolRegistry) -> Self {
        self.tools = tools;
        self
    }

    /// Says that the tools may change while the hub runs ([`Hub::set_tools`]): clients are
    /// told `tools.listChanged` in the capabilities.
    pub fn tools_may_change(mut self) -> Self {
        self.tools_may_change = true;
        self
    }

    /// Adds a provider of resources, prompts or completions.
    pub fn provider(mut self, provider: Arc<dyn Provider>) -> Self {
        self.providers.push(provider);
        self
    }

    /// Where resumable sessions are kept (in memory by default).
    pub fn store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Shows `stat` as `name` in the statistics resource (`mcp://server/stats`), beside the
    /// hub's own figures: how another layer adds its own (a transport's open connections).
    pub fn stat(mut self, name: &'static str, stat: Stat) -> Self {
        self.stats.push((name, stat));
        self
    }

    /// The hub.
    pub fn build(self) -> Hub {
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::default()));
        let catalog = Catalog::new(self.tools, self.providers, self.tools_may_change);
        Hub::from_parts(self.config, catalog, store, self.bus, self.stats)
    }
}

impl Hub {
    /// A hub offering `tools`, keeping sessions in memory.
    pub fn new(config: ServerConfig, tools: ToolRegistry) -> Self {
        Self::builder(config).tools(tools).build()
    }

    /// A hub to build, with `config`.
    pub fn builder(config: ServerConfig) -> HubBuilder {
        HubBuilder {
            config,
            tools: ToolRegistry::new(),
            providers: Vec::new(),
            store: None,
            bus: None,
            stats: Vec::new(),
            tools_may_change: false,
        }
    }

    fn from_parts(
        config: ServerConfig,
        catalog: Catalog,
        store: Arc<dyn SessionStore>,
        bus: Option<Arc<dyn crate::Bus>>,
        stats: Vec<(&'static str, Stat)>,
    ) -> Self {
        let router = Router::new(&catalog);
        let scheduler = Scheduler::new(config.heavy_concurrency);
        let limits = crate::limits::Limits::new(
            config.rate_limit,
            config.max_calls_per_principal,
            config.max_sessions_per_principal,
            config.max_connections_per_principal,
        );
        let state_key = crate::round_trip::StateKey::new(config.request_state_key.as_deref());
        Self {
            inner: Arc::new(HubInner {
                config,
                catalog,
                router,
                shutdown: CancellationToken::new(),
                draining: CancellationToken::new(),
                drain_deadline: std::sync::OnceLock::new(),
                session_ended: tokio::sync::Notify::new(),
                scheduler,
                metrics: Metrics::new(),
                store,
                bus,
                stateless_resources: crate::resources::Resources::default(),
                state_key,
                stats,
                open_sessions: std::sync::atomic::AtomicUsize::new(0),
                limits,
                tasks: crate::tasks::Tasks::default(),
                next_session: AtomicU64::new(1),
                sessions: std::sync::Mutex::new(std::collections::HashMap::new()),
                live: std::sync::Mutex::new(std::collections::HashMap::new()),
                stats_version: tokio::sync::watch::Sender::new(0),
                last_stats: std::sync::Mutex::new(serde_json::Value::Null),
                started: tokio::time::Instant::now(),
            }),
        }
    }

    /// Begins a graceful shutdown: every session tells its client, refuses new requests, and
    /// gives its running ones until `grace` has passed; then they are cancelled, their callers
    /// get a -32000 error, and the session closes ([`crate::CloseReason::ShuttingDown`]).
    pub fn begin_shutdown(&self, grace: Duration) {
        let _ = self
            .inner
            .drain_deadline
            .set(tokio::time::Instant::now() + grace);
        self.inner.draining.cancel();
    }

    /// Makes the caller the runner of session `id`, unless a live session has it. Checking
    /// and claiming are one step, so two connections resuming the same session at once end
    /// up in one session.
    pub(crate) fn claim(&self, id: &SessionId) -> Claim {
        let mut live = self
            .inner
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = live.get(id)
            && !tx.is_closed()
        {
            return Claim::Live(tx.clone());
        }
        let (tx, rx) = mpsc::channel(8);
        live.insert(id.clone(), tx);
        Claim::Claimed(rx)
    }

    /// Forgets the runner of session `id`.
    pub(crate) fn release(&self, id: &SessionId) {
        self.inner
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
        self.release_session_lease(id);
    }

    /// Whether session `id` is running in this process (its store record must not expire).
    pub fn is_live(&self, id: &SessionId) -> bool {
        self.inner
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .is_some_and(|tx| !tx.is_closed())
    }

    /// The stored sessions running here.
    pub fn live_sessions(&self) -> Vec<SessionId> {
        self.inner
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(_, tx)| !tx.is_closed())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Ends session `id` here if it runs here: it moves to another instance.
    pub(crate) async fn leave(&self, id: &SessionId) {
        self.control(id, Control::Leave).await;
    }

    /// Tells the live session `id`, if it runs here, to act on `control`.
    async fn control(&self, id: &SessionId, control: Control) {
        let tx = self
            .inner
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned();
        if let Some(tx) = tx {
            let _ = tx.send(control).await;
        }
    }

    /// Ends the live session `id`, if any, after its record was deleted; its connection is
    /// closed with [`crate::CloseReason::Deleted`].
    pub async fn end_deleted(&self, id: &SessionId) {
        self.control(id, Control::Delete).await;
    }

    /// Whether `principal` may keep more in the store, under its storage limits
    /// (`max_stored_sessions_per_principal` when `new_session`, and
    /// `max_stored_bytes_per_principal`): asked before it stores a new session, starts a
    /// task, or calls a tool in a stored session (whose answer is kept). Over a limit: the
    /// -32001 error naming it; a store that cannot tell: an internal error. The limits are
    /// soft by design: what is checked may take the principal past them by its own size, and
    /// what runs already (a session's log, bounded by `resume_log_bytes`) is not stopped;
    /// but nothing new is started over them.
    pub async fn may_store(
        &self,
        principal: &str,
        new_session: bool,
    ) -> Result<(), mcp_protocol::ErrorObject> {
        let config = &self.inner.config;
        let sessions = config
            .max_stored_sessions_per_principal
            .filter(|_| new_session);
        if sessions.is_none() && config.max_stored_bytes_per_principal.is_none() {
            return Ok(());
        }
        let usage = self.inner.store.usage(principal).await.map_err(|e| {
            mcp_protocol::ErrorObject::internal(format_args!("the session store failed: {e}"))
        })?;
        // Sessions expire after `idle_timeout`, freeing what they keep.
        let retry = self.inner.config.idle_timeout.min(Duration::from_secs(60));
        if let Some(limit) = sessions
            && usage.sessions >= limit
        {
            return Err(crate::limits::refuse(
                "stored_sessions_per_principal",
                format!(
                    "too many stored sessions: this principal keeps {} (agents and resumable sessions), the limit (--max-stored-sessions-per-principal); delete some, or wait until unused ones expire",
                    usage.sessions
                ),
                retry,
            ));
        }
        if let Some(limit) = config.max_stored_bytes_per_principal
            && usage.bytes >= limit
        {
            return Err(crate::limits::refuse(
                "stored_bytes_per_principal",
                format!(
                    "too much stored: this principal keeps {} bytes (its agents' and resumable sessions' records and logs, its tasks), the limit is {limit} (--max-stored-bytes-per-principal); delete agents or tasks, or wait until unused ones expire",
                    usage.bytes
                ),
                retry,
            ));
        }
        Ok(())
    }

    /// Reserves a place for one more session under `max_sessions`, or `None` when they are
    /// all taken. Checking and counting are one step, so concurrent connections cannot
    /// overshoot the limit; the place is held until the slot is dropped, or, once the
    /// session is opened in it ([`SessionSlot::open`]), until the session ends.
    pub fn reserve_session(&self) -> Option<SessionSlot> {
        let max = self.inner.config.max_sessions;
        self.inner
            .open_sessions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(SessionSlot {
            hub: Some(self.clone()),
            principal: None,
        })
    }

    /// [`Hub::reserve_session`] for `principal`, under its own limit too
    /// (`max_sessions_per_principal`): which limit refused, if one did.
    pub fn reserve_session_for(
        &self,
        principal: &Principal,
    ) -> Result<SessionSlot, SessionRefusal> {
        let counted = self
            .inner
            .limits
            .begin_session(principal)
            .map_err(SessionRefusal::Principal)?;
        let mut slot = self.reserve_session().ok_or(SessionRefusal::Full)?;
        slot.principal = Some(counted);
        Ok(slot)
    }

    /// Gives a session's place back.
    pub(crate) fn release_session(&self) {
        self.inner.open_sessions.fetch_sub(1, Ordering::AcqRel);
    }

    /// Completes once no session is running.
    pub async fn all_sessions_ended(&self) {
        loop {
            let ended = self.inner.session_ended.notified();
            if self.sessions() <= 0 {
                return;
            }
            ended.await;
        }
    }

    /// How many sessions are running or reserved.
    pub fn sessions(&self) -> i64 {
        self.inner.open_sessions.load(Ordering::Acquire) as i64
    }

    /// Where sessions are kept.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    /// Every tool `principal` may call, as `tools/list` describes them.
    pub fn tools(&self, principal: &crate::Principal) -> Vec<mcp_protocol::Tool> {
        self.inner
            .catalog
            .tools()
            .page(None, usize::MAX)
            .map(|page| page.tools.to_vec())
            .unwrap_or_default()
            .into_iter()
            .filter(|tool| principal.may_call(&tool.name))
            .collect()
    }

    /// The tools the hub offers now.
    pub fn tool_registry(&self) -> ToolRegistry {
        ToolRegistry::clone(&self.inner.catalog.tools())
    }

    /// Replaces the tools the hub offers (a gateway's upstream changed its list): calls
    /// running keep the tool they started with, and every 2025 session is told
    /// `notifications/tools/list_changed` (once, however often the list changes before it
    /// is sent). Returns how many sessions were told.
    pub fn set_tools(&self, tools: ToolRegistry) -> usize {
        self.inner.catalog.set_tools(tools);
        let text = Message::Notification(Notification {
            method: methods::TOOLS_LIST_CHANGED.to_owned(),
            params: None,
        })
        .to_text();
        let sessions: Vec<Notices> = self.inner.sessions_lock().values().cloned().collect();
        let told = sessions
            .iter()
            .filter_map(|s| s.queue.upgrade())
            .filter(|queue| {
                queue
                    .push_coalesced(
                        crate::outbound::Coalesce::ListChanged("tools"),
                        text.clone(),
                    )
                    .is_ok()
            })
            .count();
        tracing::info!(told, "the tool list changed");
        told
    }

    /// Counts a connection `principal` holds open until the [`ConnectionHold`] is dropped, or
    /// refuses it (-32001, `data.limit: "connections_per_principal"`) when the principal holds
    /// `max_connections_per_principal` already.
    pub fn hold_connection(
        &self,
        principal: &crate::Principal,
    ) -> Result<ConnectionHold, mcp_protocol::ErrorObject> {
        self.inner
            .limits
            .begin_connection(principal)
            .map(|counted| ConnectionHold { _counted: counted })
    }

    /// Takes one request from `principal`'s rate limit, or says (-32001) when to retry.
    pub fn check_rate(
        &self,
        principal: &crate::Principal,
    ) -> Result<(), mcp_protocol::ErrorObject> {
        self.inner.limits.check_rate(principal)
    }

    /// Runs a tool for `principal` outside any MCP session (the seeds' HTTP API): no progress
    /// reports, the server's time limit and heavy-call scheduling. `Ok(None)` when there is
    /// no such tool; an error (-32005 or -32001) when the principal's scopes or limits refuse
    /// the call.
    pub async fn call_tool(
        &self,
        principal: &crate::Principal,
        name: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<mcp_protocol::CallToolResult>, mcp_protocol::ErrorObject> {
        if !principal.may_call(name) {
            return Err(crate::router::forbidden_tool(name));
        }
        let limits = &self.inner.limits;
        limits.check_rate(principal)?;
        let slot = limits.begin_call(principal)?;
        let tools = self.inner.catalog.tools();
        if tools.get(name).is_some()
            && tools.task_support(name) != mcp_tools::TaskSupport::Forbidden
        {
            // A long call: a task underneath, kept in the store like a 2026-07-28 client's.
            let call = crate::router::ToolCall {
                name: name.to_owned(),
                arguments,
                progress_token: None,
                slot: Some(slot),
            };
            return self.run_task(principal, call).await.map(Some);
        }
        let _slot = slot;
        let token = self.inner.shutdown.child_token();
        let ctx = ToolContext {
            cancel: token.clone(),
            progress: Progress::none(),
            scheduler: self.inner.scheduler.clone(),
            principal: Arc::clone(principal.key()),
            session: 0,
            call_label: "http".to_owned(),
            log: Logger::none(),
            checkpoint: mcp_tools::Checkpoint::none(),
            // The agent API has no client to ask.
            client: mcp_tools::Client::none(),
            task: mcp_tools::TaskGate::open(),
        };
        let Some(call) = self.inner.catalog.tools().call(name, arguments, ctx) else {
            return Ok(None);
        };
        let config = &self.inner.config;
        Ok(Some(
            crate::router::with_time_limit(call, token, config.call_timeout, config.stop_grace)
                .await,
        ))
    }

    /// Sends `notifications/message` from logger `server` to every session whose client wants
    /// `level`. Never waits for a slow client. Returns how many sessions it reached.
    pub fn broadcast(&self, level: LoggingLevel, message: &str) -> usize {
        self.publish(crate::bus::Signal::Broadcast {
            level,
            message: message.to_owned(),
        });
        self.broadcast_here(level, message)
    }

    /// [`Hub::broadcast`] to this instance's sessions only.
    fn broadcast_here(&self, level: LoggingLevel, message: &str) -> usize {
        let sessions: Vec<Notices> = self.inner.sessions_lock().values().cloned().collect();
        // Written once for all: a broadcast to 10,000 sessions serialized it 10,000 times.
        let Some(text) = notice_text(level, "server", serde_json::Value::from(message)) else {
            return 0;
        };
        let reached = sessions
            .iter()
            .filter(|s| s.send_text(level, &text))
            .count();
        tracing::info!(%level, reached, sessions = sessions.len(), "broadcast");
        reached
    }

    /// Tells the other instances `signal`, if there are any; without waiting (a signal is a
    /// hint; one that cannot be sent is logged).
    pub(crate) fn publish(&self, signal: crate::bus::Signal) {
        let Some(bus) = self.inner.bus.clone() else {
            return;
        };
        self.inner.metrics.count_signal("sent");
        tokio::spawn(async move {
            if let Err(e) = bus.publish(&signal).await {
                tracing::debug!(error = %e, ?signal, "cannot tell the other instances");
            }
        });
    }

    /// Acts on what the other instances tell this one, until the server shuts down: stops
    /// a task they were asked to cancel, wakes the listen streams of a task that changed,
    /// delivers their broadcasts here.
    pub async fn follow_bus(self) {
        let Some(bus) = self.inner.bus.clone() else {
            return;
        };
        let mut signals = bus.subscribe();
        loop {
            let signal = tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                signal = signals.recv() => match signal {
                    Some(signal) => signal,
                    None => return,
                },
            };
            self.inner.metrics.count_signal("received");
            match signal {
                crate::bus::Signal::CancelTask { task } => self.cancel_task_here(&task),
                crate::bus::Signal::TaskChanged { task } => {
                    let _ = self.inner.tasks.changes.send(task);
                }
                crate::bus::Signal::Broadcast { level, message } => {
                    self.broadcast_here(level, &message);
                }
                crate::bus::Signal::ReleaseSession { session } => {
                    self.leave(&session).await;
                }
            }
        }
    }

    /// The server statistics, as the `mcp://server/stats` resource shows them.
    pub fn stats(&self) -> serde_json::Value {
        let (heavy_running, heavy_queued) = self.inner.scheduler.load();
        let mut stats = serde_json::json!({
            "sessions": self.sessions(),
            "inflightRequests": self.inflight_requests(),
            "heavyRunning": heavy_running,
            "heavyQueued": heavy_queued,
            "uptimeSeconds": self.inner.started.elapsed().as_secs(),
        });
        if let Some(map) = stats.as_object_mut() {
            for (name, stat) in &self.inner.stats {
                map.insert((*name).to_owned(), stat());
            }
        }
        stats
    }

    /// Tells the sessions subscribed to the statistics when they changed since the last call
    /// (uptime aside). The server calls this on a timer, which is what rate-limits the updates.
    pub fn refresh_stats(&self) {
        let mut now = self.stats();
        if let Some(obj) = now.as_object_mut() {
            obj.remove("uptimeSeconds");
        }
        let mut last = self
            .inner
            .last_stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *last != now {
            *last = now;
            self.inner.stats_version.send_modify(|v| *v += 1);
        }
    }

    /// Adds metrics of another layer (a transport's) to the hub's registry, so that
    /// [`Hub::render_metrics`] shows them too.
    pub fn register_metrics(&self, f: impl FnOnce(&mut prometheus_client::registry::Registry)) {
        self.inner.metrics.register(f);
    }

    /// The metrics in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        self.inner.metrics.render()
    }

    /// How many client requests are being worked on, across all sessions.
    pub fn inflight_requests(&self) -> i64 {
        self.inner.metrics.inflight()
    }

    /// The root cancellation token. Cancelling it ends every session: each sends
    /// [`Outbound::Close`] with [`crate::CloseReason::ShuttingDown`] and cancels its requests.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// What `initialize` answers for `version`.
    pub(crate) fn initialize_result(&self, version: ProtocolVersion) -> InitializeResult {
        let config = &self.inner.config;
        let catalog = &self.inner.catalog;
        InitializeResult {
            protocol_version: version.as_str().to_owned(),
            capabilities: ServerCapabilities {
                tools: Some(ToolsCapability {
                    list_changed: catalog.tools_may_change().then_some(true),
                }),
                logging: Some(serde_json::Map::new()),
                resources: Some(ResourcesCapability {
                    subscribe: Some(true),
                    list_changed: None,
                }),
                prompts: catalog.offers_prompts().then(serde_json::Map::new),
                completions: catalog.offers_completions().then(serde_json::Map::new),
                experimental: None,
                extensions: None,
            },
            server_info: config.server_info.clone(),
            instructions: config.instructions.clone(),
        }
    }

    /// The answer to a resuming `initialize`, naming the session (SEP-1288).
    pub(crate) fn initialize_text(
        &self,
        version: ProtocolVersion,
        session: &SessionId,
        id: RequestId,
    ) -> String {
        let result = to_value(self.initialize_result(version)).unwrap_or_default();
        let text = Message::Response(Response::ok(id, result)).to_text();
        with_member(
            &text,
            "mcpSessionId",
            &serde_json::Value::from(session.as_str()),
        )
    }

    /// Starts a session whatever the limit (tests, tools of the server's own); a transport
    /// reserves a place with [`Hub::reserve_session`] first. The transport sends what the
    /// returned receiver yields.
    ///
    /// The queue's capacity bounds what the session buffers for a slow client: when it is
    /// full, the session stops reading input until the transport catches up.
    pub fn open_session(&self) -> (Session, OutboundReceiver) {
        self.inner.open_sessions.fetch_add(1, Ordering::AcqRel);
        self.open_reserved()
    }

    /// Starts a session in a place already counted.
    fn open_reserved(&self) -> (Session, OutboundReceiver) {
        let id = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        let (queue, receiver) = outbound::channel(
            self.inner.config.outbound_capacity,
            self.inner.metrics.clone(),
        );
        (Session::new(self.clone(), id, queue), receiver)
    }
}

/// A place reserved for one session under the hub's limit ([`Hub::reserve_session`]).
pub struct SessionSlot {
    /// `None` once the place went to a session.
    hub: Option<Hub>,
    /// Its place under its principal's limit, when reserved for one.
    principal: Option<crate::limits::CallSlot>,
}

/// A connection counted against its principal (see [`Hub::hold_connection`]) until dropped.
pub struct ConnectionHold {
    /// Counted until dropped.
    _counted: crate::limits::CallSlot,
}

impl std::fmt::Debug for ConnectionHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionHold")
    }
}

/// Why no session could be reserved.
#[derive(Debug)]
pub enum SessionRefusal {
    /// The server has `max_sessions` open (HTTP: 503).
    Full,
    /// The principal has `max_sessions_per_principal` open: the -32001 error naming the
    /// limit (HTTP: 429).
    Principal(mcp_protocol::ErrorObject),
}

impl SessionSlot {
    /// Starts the session in this place; it holds the place until it ends.
    pub fn open(mut self) -> (Session, OutboundReceiver) {
        match self.hub.take() {
            Some(hub) => {
                let (mut session, receiver) = hub.open_reserved();
                session.hold(self.principal.take());
                (session, receiver)
            }
            None => unreachable!("a slot is opened once: `open` takes it"),
        }
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        if let Some(hub) = &self.hub {
            hub.release_session();
            hub.inner.session_ended.notify_waiters();
        }
    }
}
